// The portable kernel: GDT, per-vCPU TSS with IST stacks, an IDT whose every
// vector lands in a stub that hands the host a fault frame, and the boot
// state that puts a vCPU straight into 64-bit long mode with the app in ring 3.
// Kernel pages are supervisor-only, so the app can neither read nor rewrite
// its descriptor tables, stubs or page tables.

import type { Segment, Sregs } from "./system_registers.ts";
import { Asm, Reg, registerNames } from "./x86.ts";
import {
  cpuStacksBase,
  cpuStacksSlot,
  gdtBase,
  idtBase,
  ist1Top,
  ist2Top,
  kernelTextBase,
  kernelTextSize,
  maxVcpus,
  PAGE,
  pageTablePoolBase,
  pageTablePoolEnd,
  pageTableUpdatesBase,
  pageTableUpdatesSlot,
  tssBase,
  tssSlot,
} from "../abi/memory_map.ts";
import type { PageTables } from "./paging.ts";
import { DOORBELL_BASE, DOORBELL_SIZE, FAULT_DOORBELL, PAGE_TABLES_UPDATED_DOORBELL } from "../abi/doorbell.ts";

const CODE_SELECTOR = 0x08;
const DATA_SELECTOR = 0x10;
// User segments sit where SYSRET expects them: data at STAR's base + 8, code at + 16.
const USER_DATA_SELECTOR = 0x18 | 3;
const USER_CODE_SELECTOR = 0x20 | 3;
const tssSelector = (cpu: number) => 0x28 + 16 * cpu;
/** STAR: kernel code at 0x08, SYSRET's user base 0x10 (so user data 0x1b, user code 0x23). */
export const STAR = (0x10n << 48n) | (0x08n << 32n);
const TSS_LIMIT = 103;

export const vectorNames = [
  "#DE divide error",
  "#DB debug",
  "NMI",
  "#BP breakpoint",
  "#OF overflow",
  "#BR bound range",
  "#UD invalid opcode",
  "#NM device not available",
  "#DF double fault",
  "coprocessor overrun",
  "#TS invalid TSS",
  "#NP segment not present",
  "#SS stack fault",
  "#GP general protection",
  "#PF page fault",
  "reserved",
  "#MF x87 error",
  "#AC alignment check",
  "#MC machine check",
  "#XM SIMD error",
  "#VE virtualization",
  "#CP control protection",
];
export function vectorName(v: number): string {
  return vectorNames[v] ?? `interrupt ${v}`;
}
const hasErrorCode = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
const DOUBLE_FAULT = 8;

const savedGprs = [
  Reg.rax,
  Reg.rbx,
  Reg.rcx,
  Reg.rdx,
  Reg.rsi,
  Reg.rdi,
  Reg.rbp,
  Reg.r8,
  Reg.r9,
  Reg.r10,
  Reg.r11,
  Reg.r12,
  Reg.r13,
  Reg.r14,
  Reg.r15,
] as const;

/**
 * The fault frame, lowest address first, as the stubs leave it on the IST
 * stack: what the common stub pushed last comes first, then what the CPU pushed.
 */
export const faultFrameFields: readonly string[] = [
  "cr2",
  ...[...savedGprs].reverse().map((r) => registerNames[r]),
  "vector",
  "error",
  "rip",
  "cs",
  "rflags",
  "rsp",
  "ss",
];
export const faultFrameSize = faultFrameFields.length * 8;

const STUB_STRIDE = 16;

/**
 * The exception stubs, then the page-table update routine: the only kernel
 * code the host runs on purpose. With rsi = a list of entry addresses and
 * ecx = how many, it writes each entry back unchanged. A hypervisor that
 * shadows the guest's page tables (PVM always, KVM without EPT/NPT) sees
 * guest writes to them, never the host's, so this is how it learns that the
 * host changed them; the CR3 reload then flushes this vCPU's TLB where the
 * tables are walked in hardware. With ecx = 0 it only reloads CR3: how a
 * vCPU drops translations other vCPUs' changes made stale.
 */
function emitKernelText(): { code: Uint8Array; updatePageTables: number } {
  const asm = new Asm(kernelTextBase);
  for (let v = 0; v < 256; v++) {
    asm.alignTo(STUB_STRIDE);
    if (!hasErrorCode.has(v)) asm.pushImm(0);
    asm.pushImm(v).jmp("common");
  }
  asm.alignTo(STUB_STRIDE).label("common");
  for (const r of savedGprs) asm.push(r);
  asm.movRaxCr2().push(Reg.rax);
  // The host reads the frame at the stack pointer; the IST stacks are below 4 GiB.
  asm.movEaxEsp().movEdxImm(FAULT_DOORBELL).movMemRdxEax();
  asm.label("halt").hlt().jmp("halt");

  asm.alignTo(STUB_STRIDE).label("update page tables");
  asm.test32(Reg.rcx, Reg.rcx).jcc("e", "reload cr3");
  asm.label("next entry");
  asm.loadMem64(Reg.rdi, Reg.rsi, 0).loadMem64(Reg.rax, Reg.rdi, 0).storeMem64(Reg.rdi, 0, Reg.rax);
  asm.addImm8(Reg.rsi, 8).dec32(Reg.rcx).jcc("ne", "next entry");
  asm.label("reload cr3").reloadCr3().movEdxImm(PAGE_TABLES_UPDATED_DOORBELL).movMemRdxEax().jmp("halt");
  const code = asm.finish();
  if (code.length > kernelTextSize) throw new Error("kernel stubs outgrew kernel text");
  return { code, updatePageTables: asm.address("update page tables") };
}

const kernelText = emitKernelText();
/** Where the host starts a vCPU to re-write changed page-table entries (see emitKernelText). */
export const UPDATE_PAGE_TABLES = kernelText.updatePageTables;

/** The state that runs UPDATE_PAGE_TABLES: `s` with ring-0 code and stack segments. */
export function kernelModeSregs(s: Sregs): Sregs {
  const kernel = (selector: number, type: number, code: boolean): Segment => ({
    ...userSegment(selector, type, code),
    dpl: 0,
  });
  return { ...s, cs: kernel(CODE_SELECTOR, 11, true), ss: kernel(DATA_SELECTOR, 3, false) };
}

function writeGdt(mem: DataView, cpus: number): void {
  mem.setBigUint64(gdtBase + 0, 0n, true);
  mem.setBigUint64(gdtBase + CODE_SELECTOR, 0x00af9b000000ffffn, true);
  mem.setBigUint64(gdtBase + DATA_SELECTOR, 0x00cf93000000ffffn, true);
  mem.setBigUint64(gdtBase + (USER_DATA_SELECTOR & ~3), 0x00cff3000000ffffn, true);
  mem.setBigUint64(gdtBase + (USER_CODE_SELECTOR & ~3), 0x00affb000000ffffn, true);
  for (let cpu = 0; cpu < cpus; cpu++) {
    const base = BigInt(tssBase + cpu * tssSlot);
    const at = gdtBase + tssSelector(cpu);
    // 64-bit TSS descriptor, already busy: KVM loads TR from sregs, not by LTR.
    const low = BigInt(TSS_LIMIT) | ((base & 0xffffffn) << 16n) | (0x8bn << 40n) | (((base >> 24n) & 0xffn) << 56n);
    mem.setBigUint64(at, low, true);
    mem.setBigUint64(at + 8, base >> 32n, true);
  }
}

function writeTss(mem: DataView, cpu: number): void {
  const at = tssBase + cpu * tssSlot;
  for (let i = 0; i < tssSlot; i += 4) mem.setUint32(at + i, 0, true);
  mem.setBigUint64(at + 4, BigInt(ist1Top(cpu)), true); // RSP0; unused while every gate has an IST
  mem.setBigUint64(at + 36, BigInt(ist1Top(cpu)), true); // IST1: every vector but #DF
  mem.setBigUint64(at + 44, BigInt(ist2Top(cpu)), true); // IST2: #DF, so a fault in a fault still reports
  mem.setUint16(at + 102, TSS_LIMIT + 1, true); // no I/O bitmap
}

function writeIdt(mem: DataView): void {
  for (let v = 0; v < 256; v++) {
    const handler = kernelTextBase + v * STUB_STRIDE;
    const at = idtBase + v * 16;
    mem.setUint16(at, handler & 0xffff, true);
    mem.setUint16(at + 2, CODE_SELECTOR, true);
    mem.setUint8(at + 4, v === DOUBLE_FAULT ? 2 : 1);
    mem.setUint8(at + 5, 0x8e); // present, DPL 0, 64-bit interrupt gate
    mem.setUint16(at + 6, (handler >>> 16) & 0xffff, true);
    mem.setUint32(at + 8, 0, true);
    mem.setUint32(at + 12, 0, true);
  }
}

/** Writes the kernel, with a TSS and exception stacks for every vCPU slot a thread may take, and maps it. */
export function writeKernel(bytes: Uint8Array, pt: PageTables): void {
  const mem = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const cpus = maxVcpus;
  writeGdt(mem, cpus);
  writeIdt(mem);
  for (let cpu = 0; cpu < cpus; cpu++) writeTss(mem, cpu);
  bytes.set(kernelText.code, kernelTextBase);
  pt.mapSupervisor(gdtBase, 3 * PAGE, { write: true, exec: false });
  pt.mapSupervisor(kernelTextBase, kernelTextSize, { write: false, exec: true });
  for (let cpu = 0; cpu < cpus; cpu++) {
    // The slot's first page stays unmapped: an overflowing exception stack faults into #DF.
    pt.mapSupervisor(cpuStacksBase + cpu * cpuStacksSlot + PAGE, cpuStacksSlot - PAGE, { write: true, exec: false });
  }
  // The kernel re-writes page-table entries the host changed (UPDATE_PAGE_TABLES).
  pt.mapSupervisor(pageTablePoolBase, pageTablePoolEnd - pageTablePoolBase, { write: true, exec: false });
  pt.mapSupervisor(pageTableUpdatesBase, maxVcpus * pageTableUpdatesSlot, { write: false, exec: false });
  // No memory slot backs the doorbell: the app's stores to it are the hypercalls.
  pt.map(DOORBELL_BASE, DOORBELL_SIZE, { write: true, exec: false });
}

const CR0_PE = 1n, CR0_MP = 2n, CR0_ET = 0x10n, CR0_NE = 0x20n, CR0_WP = 0x10000n, CR0_PG = 0x80000000n;
const CR4_PAE = 0x20n, CR4_OSFXSR = 0x200n, CR4_OSXMMEXCPT = 0x400n;
const EFER_SCE = 1n, EFER_LME = 0x100n, EFER_LMA = 0x400n, EFER_NXE = 0x800n;

/** A flat ring-3 segment: the app's code or data. */
function userSegment(selector: number, type: number, code: boolean): Segment {
  return {
    base: 0n,
    limit: 0xffffffff,
    selector,
    type,
    present: 1,
    dpl: 3,
    db: code ? 0 : 1,
    s: 1,
    l: code ? 1 : 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

/** Control and segment state for vCPU `cpu`: long mode, paging on, the app's ring 3. */
export function bootSregs(cpu: number, pageTableRoot: number): Sregs {
  const data = userSegment(USER_DATA_SELECTOR, 3, false);
  return {
    cs: userSegment(USER_CODE_SELECTOR, 11, true),
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr: {
      base: BigInt(tssBase + cpu * tssSlot),
      limit: TSS_LIMIT,
      selector: tssSelector(cpu),
      type: 11,
      present: 1,
      dpl: 0,
      db: 0,
      s: 0,
      l: 0,
      g: 0,
      avl: 0,
      unusable: 0,
    },
    ldt: { ...data, selector: 0, type: 2, s: 0, db: 0, g: 0, limit: 0, present: 0, unusable: 1 },
    gdt: { base: BigInt(gdtBase), limit: tssSelector(maxVcpus) - 1 },
    idt: { base: BigInt(idtBase), limit: 256 * 16 - 1 },
    cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG,
    cr2: 0n,
    cr3: BigInt(pageTableRoot),
    cr4: CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
    cr8: 0n,
    efer: EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE,
    apicBase: 0xfee00900n,
  };
}
