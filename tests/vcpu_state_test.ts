// hv/vcpu_state.ts: a saved vCPU state survives its JSON form, a malformed
// one is refused with the field at fault, and on real KVM a state saved in
// one VM runs on in a fresh one with its registers, SSE/AVX state, MSRs and
// clock intact.

import assert from "node:assert/strict";
import fc from "fast-check";
import { kvm_regs, msrs } from "../ffi/kvm.ts";
import { libc } from "../ffi/libc.ts";
import { Kvm, mapKvmRun } from "../hv/kvm.ts";
import { type GuestRam, mapGuestRam, unmapGuestRam } from "../hv/memory.ts";
import { type RegName, type Regs, Vcpu } from "../hv/vcpu.ts";
import { type Segment } from "../guest/system_registers.ts";
import {
  decodeVcpuState,
  encodeVcpuState,
  restoreVcpu,
  saveVcpu,
  type VcpuState,
  VcpuStateError,
} from "../hv/vcpu_state.ts";
import { bootSregs, faultFrameFields, vectorName, writeKernel } from "../guest/kernel.ts";
import { appBase, minMemory, PAGE } from "../abi/memory_map.ts";
import { PageTables } from "../guest/paging.ts";
import { DOORBELL_BASE, FAULT_DOORBELL } from "../abi/doorbell.ts";
import { NESTED_SOCKET_ENV } from "../tools/accel.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const u8 = fc.nat(0xff), u16 = fc.nat(0xffff);
const u32 = fc.bigInt({ min: 0n, max: 0xffffffffn }).map(Number);
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** fc.record, but with ordinary objects, like those the decoder makes (fast-check also makes null-prototype ones). */
function record<T>(shape: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(shape, { noNullPrototype: true }) as fc.Arbitrary<T>;
}
/** The same arbitrary for each of `names`, to spread into record. */
const each = <K extends string, T>(names: readonly K[], arb: fc.Arbitrary<T>) =>
  Object.fromEntries(names.map((n) => [n, arb])) as { [N in K]: fc.Arbitrary<T> };

const segment: fc.Arbitrary<Segment> = record({
  base: u64,
  limit: u32,
  selector: u16,
  ...each(["type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable"], u8),
});
const dtable = record({ base: u64, limit: u16 });
const savedMsrNames = [
  "MSR_STAR",
  "MSR_LSTAR",
  "MSR_CSTAR",
  "MSR_SYSCALL_MASK",
  "MSR_FS_BASE",
  "MSR_GS_BASE",
  "MSR_KERNEL_GS_BASE",
  "MSR_IA32_PAT",
  "MSR_IA32_TSC",
] as const;

const anyState: fc.Arbitrary<VcpuState> = record({
  version: fc.constant(1 as const),
  cpuid: fc.array(record(each(["function", "index", "flags", "eax", "ebx", "ecx", "edx"], u32)), { maxLength: 8 }),
  regs: record(each(kvm_regs.order.map((f) => f.name as RegName), u64)),
  sregs: record({
    ...each(["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"], segment),
    gdt: dtable,
    idt: dtable,
    ...each(["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apicBase"], u64),
  }),
  xsave: fc.uint8Array({ minLength: 4096, maxLength: 4200 }),
  xcrs: fc.array(record({ xcr: u32, value: u64 }), { maxLength: 16 }),
  debugRegs: record({ db: fc.array(u64, { minLength: 4, maxLength: 4 }), dr6: u64, dr7: u64 }),
  msrs: record(each(savedMsrNames, u64)),
  events: record({
    exception: record({ ...each(["injected", "nr", "hasErrorCode", "pending"], u8), errorCode: u32 }),
    interrupt: record(each(["injected", "nr", "soft", "shadow"], u8)),
    nmi: record(each(["injected", "pending", "masked"], u8)),
    sipiVector: u32,
    flags: u32,
    smi: record(each(["smm", "pending", "smmInsideNmi", "latchedInit"], u8)),
    tripleFaultPending: u8,
    exceptionHasPayload: u8,
    exceptionPayload: u64,
  }),
});

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const throughJson = (state: VcpuState, where = "test") =>
  decodeVcpuState(JSON.parse(JSON.stringify(encodeVcpuState(state))), where);

Deno.test("every vCPU state reads back from its JSON form unchanged (fast-check)", () => {
  fc.assert(fc.property(anyState, (state) => assert.deepEqual(throughJson(state), state)), { numRuns: fuzzRuns });
});

Deno.test("the JSON form spells 64-bit values in hex and the XSAVE area in base64", () => {
  const [state] = fc.sample(anyState, { numRuns: 1, seed: 7 });
  state.regs.rip = 0xfffff80000001000n;
  state.xsave = new Uint8Array(4096).fill(0xff);
  const json = encodeVcpuState(state) as Record<string, Record<string, unknown>>;
  assert.equal(json.version, 1);
  assert.equal(json.regs.rip, "0xfffff80000001000");
  assert.equal(json.xsave, "/".repeat(5460) + "/w==");
});

/** A valid state's JSON form, to break one part of at a time. */
function goodJson(): Json {
  const [state] = fc.sample(anyState, { numRuns: 1, seed: 1 });
  const cpuid = [{ function: 1, index: 0, flags: 0, eax: 1, ebx: 2, ecx: 3, edx: 4 }];
  return encodeVcpuState({ ...state, cpuid }) as Json;
}

// deno-lint-ignore no-explicit-any
function rejects(change: (json: any) => void, message: string) {
  const json = goodJson();
  change(json);
  assert.throws(() => decodeVcpuState(json, "snap.pvx: paused.threads[0].vcpu"), (e) => {
    assert.ok(e instanceof VcpuStateError, String(e));
    assert.equal(e.message, `snap.pvx: paused.threads[0].vcpu${message}`);
    return true;
  });
}

Deno.test("a malformed vCPU state is refused with where it came from and the field at fault", () => {
  const base64Of = (n: number) => new Uint8Array(n).toBase64();
  rejects((j) => j.version = 2, ".version: unknown vCPU state version 2 (this pvx reads version 1)");
  // A later version is named as such, not as the fields this reader misses.
  rejects((j) => {
    for (const k of Object.keys(j)) if (k !== "version") delete j[k];
    j.version = 2;
  }, ".version: unknown vCPU state version 2 (this pvx reads version 1)");
  rejects((j) => delete j.version, ".version: missing");
  rejects((j) => delete j.regs.rip, ".regs.rip: missing");
  rejects((j) => delete j.msrs.MSR_CSTAR, ".msrs.MSR_CSTAR: missing");
  rejects((j) => j.events.nmi.pad = 0, ".events.nmi.pad: is not a field of a saved vCPU state");
  rejects((j) => j.xsave = base64Of(4095), ".xsave: 4095 bytes, but struct kvm_xsave is at least 4096");
  rejects((j) => j.xsave = "not base64!", '.xsave: expected base64, got "not base64!"');
  rejects((j) => j.xsave = "QR==", '.xsave: expected base64, got "QR==" (bits set past the end)');
  rejects((j) => j.xsave = 7, ".xsave: expected base64, got 7");
  rejects((j) => j.sregs.cs.dpl = 256, ".sregs.cs.dpl: expected an integer 0..255, got 256");
  rejects((j) => j.sregs.gdt.limit = 1.5, ".sregs.gdt.limit: expected an integer 0..65535, got 1.5");
  rejects((j) => j.cpuid[0].eax = -1, ".cpuid[0].eax: expected an integer 0..4294967295, got -1");
  rejects((j) => j.regs.rax = 16, '.regs.rax: expected a 64-bit value in lower-case hex ("0x1f"), got 16');
  rejects((j) => j.regs.rax = "0xABC", '.regs.rax: expected a 64-bit value in lower-case hex ("0x1f"), got "0xABC"');
  rejects(
    (j) => j.regs.rax = "0x10000000000000000",
    '.regs.rax: expected a 64-bit value in lower-case hex ("0x1f"), got "0x10000000000000000"',
  );
  rejects((j) => j.debugRegs.db.pop(), ".debugRegs.db: 3 entries, expected 4");
  rejects((j) => j.xcrs = Array(17).fill({ xcr: 0, value: "0x1" }), ".xcrs: 17 entries, at most 16");
  rejects((j) => j.events = [], ".events: expected an object, got []");
  assert.throws(() => decodeVcpuState(null, "snap.pvx"), /^VcpuStateError: snap.pvx: expected an object, got null$/);
});

/** Every place in `json`, as the decoder names it, with a way to replace or remove what is there. */
function places(json: Json, field = ""): { field: string; set(v: Json): void; remove(): void }[] {
  if (typeof json !== "object" || json === null) return [];
  const here = (k: string | number) => Array.isArray(json) ? `${field}[${k}]` : field ? `${field}.${k}` : String(k);
  return Object.keys(json).flatMap((k) => {
    const key = Array.isArray(json) ? Number(k) : k;
    const target = json as Record<string | number, Json>;
    return [
      {
        field: here(key),
        set: (v: Json) => target[key] = v,
        remove: () => Array.isArray(json) ? json.splice(key as number, 1) : delete target[key],
      },
      ...places(target[key], here(key)),
    ];
  });
}

Deno.test("whatever part of a state is broken, decoding throws a VcpuStateError at or inside it (fast-check)", () => {
  fc.assert(
    fc.property(anyState, fc.nat(), fc.jsonValue(), fc.boolean(), (state, pick, junk, remove) => {
      const json = encodeVcpuState(state) as Json;
      const all = places(json);
      const place = all[pick % all.length];
      if (remove) place.remove();
      else place.set(junk as Json);
      try {
        decodeVcpuState(json, "fuzz");
      } catch (e) {
        assert.ok(e instanceof VcpuStateError, `${place.field}: ${e}`);
        assert.equal(e.where, "fuzz");
        // Removing a list entry can shorten the list or shift the next one into its place.
        const parent = place.field.replace(/(\.[^.[]+|\[\d+\])$/, "");
        const within = (f: string) => e.field === f || e.field.startsWith(`${f}.`) || e.field.startsWith(`${f}[`);
        assert.ok(within(place.field) || (remove && within(parent)), `broke ${place.field}, blamed ${e.field}`);
      }
    }),
    { numRuns: fuzzRuns },
  );
  fc.assert(
    fc.property(fc.jsonValue(), (junk) => {
      assert.throws(() => decodeVcpuState(junk, "fuzz"), VcpuStateError);
    }),
    { numRuns: fuzzRuns },
  );
});

// The real-KVM test: pvx's own guest layout and kernel, with the test's code as the app, in ring 3 (PVM
// emulates ring-0 code, and without SSE). It stops as an app's hypercall does: a store to the doorbell.
const CODE = appBase, OUT = appBase + PAGE, FS_AREA = appBase + 2 * PAGE, STACK_TOP = appBase + 3 * PAGE;
const RAM_BYTES = minMemory;
const CR4_OSXSAVE = 1n << 18n;
const XCR0_X87 = 1n, XCR0_SSE = 2n, XCR0_AVX = 4n;
/** Offsets in the standard-format XSAVE area (SDM vol. 1, 13.4). */
const XSAVE_FCW = 0, XSAVE_MXCSR = 24, XSAVE_XMM0 = 160, XSAVE_XMM1 = 176, XSAVE_XSTATE_BV = 512;

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
/** The ModRM and SIB bytes of a [disp32] operand with `reg` in ModRM.reg. */
const abs = (reg: number, address: number) => [(reg << 3) | 4, 0x25, ...le32(address)];
const storeEdxEax = (at: number) => [0x89, ...abs(0, at), 0x89, ...abs(2, at + 4)];

const ringDoorbell = [0x48, 0xbf, ...le32(DOORBELL_BASE), 0, 0, 0, 0, 0x89, 0x07]; // mov rdi, DOORBELL_BASE; mov [rdi], eax

/** Before the save: the guest marks its own SSE state, reads its clock, and rings. */
const beforeSave = [
  ...[0x66, 0x0f, 0x76, 0xc9], // pcmpeqd xmm1, xmm1: all ones
  ...[0x0f, 0x31, ...storeEdxEax(OUT)], // rdtsc
  ...ringDoorbell,
];
/** After the restore, in the other VM: the guest writes out what it finds, and rings. */
const afterRestore = (avx: boolean, xsave: boolean) => [
  ...[0xf3, 0x0f, 0x7f, ...abs(0, OUT + 0x10)], // movdqu [OUT+0x10], xmm0
  ...[0xf3, 0x0f, 0x7f, ...abs(1, OUT + 0x20)], // movdqu [OUT+0x20], xmm1
  ...(avx ? [0xc5, 0xfe, 0x7f, ...abs(0, OUT + 0x40)] : []), // vmovdqu [OUT+0x40], ymm0
  ...[0x0f, 0xae, ...abs(3, OUT + 0x60)], // stmxcsr [OUT+0x60]
  ...[0x48, 0x89, ...abs(3, OUT + 0x68)], // mov [OUT+0x68], rbx
  ...(xsave ? [0x31, 0xc9, 0x0f, 0x01, 0xd0, ...storeEdxEax(OUT + 0x70)] : []), // xor ecx, ecx; xgetbv
  ...[0x64, 0x48, 0x8b, ...abs(0, 0), 0x48, 0x89, ...abs(0, OUT + 0x78)], // mov rax, fs:[0]; mov [OUT+0x78], rax
  ...[0x0f, 0x31, ...storeEdxEax(OUT + 0x80)], // rdtsc
  ...ringDoorbell,
];

interface TestVm {
  vcpu: Vcpu;
  ram: GuestRam;
  close(): void;
}

function testVm(kvm: Kvm): TestVm {
  const vm = kvm.createVm();
  const ram = mapGuestRam(RAM_BYTES);
  vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0n, size: BigInt(RAM_BYTES), hostAddr: ram.hostAddress });
  const fd = vm.createVcpu(0);
  const runPage = mapKvmRun(fd, vm.vcpuMmapSize);
  const vcpu = new Vcpu(fd, runPage, vm.vcpuMmapSize);
  return {
    vcpu,
    ram,
    close() {
      vcpu.close();
      libc().munmap(runPage, BigInt(vm.vcpuMmapSize));
      vm.close();
      unmapGuestRam(ram);
    },
  };
}

const pattern = (first: number) => Uint8Array.from({ length: 16 }, (_, i) => first + i);
const tscOf = (vcpu: Vcpu) => vcpu.getMsrs([msrs.MSR_IA32_TSC]).get(msrs.MSR_IA32_TSC)!;

/** Runs `vm` until the guest rings the doorbell; a fault is reported by the kernel's stub with its frame. */
function runToDoorbell(vm: TestVm): void {
  const exit = vm.vcpu.run();
  if (exit.kind === "mmio" && exit.address === BigInt(FAULT_DOORBELL)) {
    const frame = (name: string) =>
      vm.ram.view.getBigUint64(Number(exit.data) + 8 * faultFrameFields.indexOf(name), true);
    assert.fail(`the guest took ${vectorName(Number(frame("vector")))} at RIP 0x${frame("rip").toString(16)}`);
  }
  assert.deepEqual(exit, {
    kind: "mmio",
    address: BigInt(DOORBELL_BASE),
    isWrite: true,
    length: 4,
    data: exit.kind === "mmio" ? exit.data : 0n,
  });
}

/** Sets up distinctive state on a vCPU, runs it, saves, restores into a fresh VM, and runs the guest on there. */
function saveAndRestoreOnKvm(): void {
  const kvm = new Kvm();
  const a = testVm(kvm);
  let b: TestVm | undefined;
  try {
    const cpuid = kvm.supportedCpuid();
    const leaf1 = cpuid.find((e) => e.function === 1)!;
    const hasXsave = (leaf1.ecx & (1 << 26)) !== 0;
    const avx = (leaf1.ecx & (1 << 28)) !== 0;
    const ymmHiOffset = cpuid.find((e) => e.function === 0xd && e.index === 2)?.ebx;
    const xcr0 = XCR0_X87 | XCR0_SSE | (avx ? XCR0_AVX : 0n);

    const pt = new PageTables(a.ram.bytes);
    writeKernel(a.ram.bytes, pt);
    pt.map(appBase, 3 * PAGE, { write: true, exec: true });
    a.ram.view.setBigUint64(FS_AREA, 0x0123456789abcdefn, true);
    a.ram.bytes.set([...beforeSave, ...afterRestore(avx, hasXsave)], CODE);

    a.vcpu.setCpuid(cpuid);
    const boot = bootSregs(0, pt.root);
    a.vcpu.setSregs({ ...boot, cr4: boot.cr4 | (hasXsave ? CR4_OSXSAVE : 0n), cr2: 0xdead0000n });
    const regs = Object.fromEntries(
      kvm_regs.order.map((f, i) => [f.name, 0x0101010101010101n * BigInt(i + 1)]),
    ) as Regs;
    // PVM enters ring 3 only with a canonical RSP (else the first SSE instruction takes #UD).
    a.vcpu.setRegs({ ...regs, rip: BigInt(CODE), rsp: BigInt(STACK_TOP), rflags: 2n });
    // XCR0 only where the CPU model has XSAVE: PVM's has not (and reports XCR0 = 1 all the same).
    if (hasXsave) a.vcpu.setXcrs([{ xcr: 0, value: xcr0 }]);
    const xsave = a.vcpu.getXsave();
    const area = new DataView(xsave.buffer);
    area.setUint16(XSAVE_FCW, 0x27f, true);
    area.setUint32(XSAVE_MXCSR, 0x3f80, true); // rounding down, every exception masked
    xsave.set(pattern(0xa0), XSAVE_XMM0);
    if (avx) xsave.set(pattern(0xe0), ymmHiOffset!);
    area.setBigUint64(XSAVE_XSTATE_BV, area.getBigUint64(XSAVE_XSTATE_BV, true) | xcr0, true);
    a.vcpu.setXsave(xsave);
    const msrValues = {
      MSR_STAR: 0x0010000800000000n,
      MSR_LSTAR: 0xffff800000001000n,
      MSR_CSTAR: 0xffff800000002000n,
      MSR_SYSCALL_MASK: 0x47700n,
      MSR_FS_BASE: BigInt(FS_AREA),
      MSR_GS_BASE: 0x7f0000002000n,
      MSR_KERNEL_GS_BASE: 0xffff800000003000n,
      MSR_IA32_PAT: 0x0007040600070106n,
    };
    const startTsc = 1n << 40n;
    a.vcpu.setMsrs(
      new Map([
        ...Object.entries(msrValues).map(([k, v]) => [msrs[k as keyof typeof msrValues], v] as [number, bigint]),
        [msrs.MSR_IA32_TSC, startTsc],
      ]),
    );
    const debugRegs = { db: [0x1000n, 0x2000n, 0x3000n, 0x4000n], dr6: 0xffff0ff0n, dr7: 0x000d0400n };
    a.vcpu.setDebugRegs(debugRegs);

    runToDoorbell(a);
    // As if the snapshot caught the guest inside an NMI handler.
    const events = a.vcpu.getVcpuEvents();
    a.vcpu.setVcpuEvents({ ...events, nmi: { ...events.nmi, masked: 1 } });

    const saved = saveVcpu(a.vcpu);
    assert.equal(saved.regs.rip, BigInt(CODE + beforeSave.length));
    assert.equal(saved.regs.rbx, regs.rbx);
    assert.equal(saved.sregs.cr2, 0xdead0000n);
    assert.deepEqual({ ...saved.msrs, MSR_IA32_TSC: undefined }, { ...msrValues, MSR_IA32_TSC: undefined });
    // The TSC the host set, a run's cycles on. PVM ignores the host's write: its guests read the host's own TSC
    // (this test once failed on a host up for less than 2^40 cycles, 7 minutes).
    const tscDrift = saved.msrs.MSR_IA32_TSC - startTsc;
    if (!onPvm) assert.ok(tscDrift > 0n && tscDrift < 1n << 36n, `TSC ${saved.msrs.MSR_IA32_TSC}, set to ${startTsc}`);
    assert.deepEqual(saved.xsave.subarray(XSAVE_XMM0, XSAVE_XMM0 + 16), pattern(0xa0));
    assert.deepEqual(saved.xsave.subarray(XSAVE_XMM1, XSAVE_XMM1 + 16), new Uint8Array(16).fill(0xff));
    if (hasXsave) assert.deepEqual(saved.xcrs.find((x) => x.xcr === 0), { xcr: 0, value: xcr0 });
    assert.deepEqual(saved.debugRegs, debugRegs);
    assert.equal(saved.events.nmi.masked, 1);
    // KVM may drop entries it does not model (PVM drops some), but gives back no entry it was not given.
    const given = new Set(cpuid.map((e) => `${e.function}.${e.index}`));
    assert.ok(saved.cpuid.every((e) => given.has(`${e.function}.${e.index}`)), "KVM_GET_CPUID2 made up an entry");
    assert.ok(saved.cpuid.some((e) => e.function === 1), "KVM_GET_CPUID2 lost leaf 1");

    // A fresh VM, with the guest's memory as a snapshot would carry it.
    b = testVm(kvm);
    b.ram.bytes.set(a.ram.bytes);
    restoreVcpu(b.vcpu, throughJson(saved));
    const again = saveVcpu(b.vcpu);
    const clockless = (s: VcpuState) => ({ ...s, msrs: { ...s.msrs, MSR_IA32_TSC: 0n } });
    assert.deepEqual(clockless(again), clockless(saved));
    assert.ok(again.msrs.MSR_IA32_TSC >= saved.msrs.MSR_IA32_TSC, "the restored TSC went back");

    runToDoorbell(b);
    const out = (at: number, n: number) => b!.ram.bytes.slice(OUT + at, OUT + at + n);
    const u64At = (at: number) => b!.ram.view.getBigUint64(OUT + at, true);
    assert.deepEqual(out(0x10, 16), pattern(0xa0), "XMM0, set by the host before the save");
    assert.deepEqual(out(0x20, 16), new Uint8Array(16).fill(0xff), "XMM1, set by the guest before the save");
    if (avx) assert.deepEqual(out(0x40, 32), new Uint8Array([...pattern(0xa0), ...pattern(0xe0)]), "YMM0");
    assert.equal(b.ram.view.getUint32(OUT + 0x60, true), 0x3f80, "MXCSR");
    assert.equal(u64At(0x68), regs.rbx, "RBX");
    if (hasXsave) assert.equal(u64At(0x70), xcr0, "XCR0");
    assert.equal(u64At(0x78), 0x0123456789abcdefn, "what FS_BASE points at");
    assert.ok(u64At(0x80) > u64At(0), "the guest's clock ran on from where it read it before the save");

    // Back into the vCPU it came from, which has kept counting: its clock stays ahead, not reset.
    const before = tscOf(a.vcpu);
    restoreVcpu(a.vcpu, saved);
    assert.ok(tscOf(a.vcpu) >= before, "restoring into a running VM's vCPU set its TSC back");
    assert.deepEqual(clockless(saveVcpu(a.vcpu)), clockless(saved));

    const longer = { ...saved, xsave: new Uint8Array(saved.xsave.length + 64) };
    assert.throws(() => restoreVcpu(a.vcpu, longer), /the XSAVE area is \d+ bytes, but this host's KVM takes \d+/);
  } finally {
    b?.close();
    a.close();
    kvm.close();
  }
}

const onPvm = (() => {
  try {
    return Deno.statSync("/sys/module/kvm_pvm").isDirectory;
  } catch {
    return false;
  }
})();

const onKvm = "on KVM, a vCPU saved in one VM runs on in a fresh one: registers, SSE/AVX, XCR0, MSRs, clock";

Deno.test(onKvm, async () => {
  // Where the test command shares a nested VM, this process has no KVM of its own: this test alone runs there.
  if (!Deno.env.get(NESTED_SOCKET_ENV)) return saveAndRestoreOnKvm();
  // Loaded only here, so that the run in the nested VM does not load the pvx command's modules on its slow CPU.
  const { whereKvm } = await import("./support/guests.ts");
  const r = await whereKvm(["test", "-A", "--no-check", import.meta.filename!, "--filter", onKvm]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\| 1 passed \| 0 failed/, "the nested run found the test");
});
