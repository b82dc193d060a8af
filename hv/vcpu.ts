// A vCPU, driven by exactly one host thread (the Worker in hv/vcpu_worker.ts):
// KVM penalises a vCPU that moves between threads.

import { EINTR, lastErrno, libc, SysError } from "../ffi/libc.ts";
import {
  exitReasons,
  ioctls,
  kvm_cpuid2,
  kvm_cpuid_entry2,
  kvm_debugregs,
  kvm_dtable,
  KVM_EXIT_IO_OUT,
  KVM_MAX_XCRS,
  kvm_msr_entry,
  kvm_msrs,
  kvm_regs,
  kvm_run,
  KVM_RUN_EXIT_UNION,
  kvm_run_fail_entry,
  kvm_run_internal,
  kvm_run_io,
  kvm_run_mmio,
  kvm_run_system_event,
  kvm_segment,
  kvm_sregs,
  kvm_vcpu_events,
  kvm_vcpu_events_exception,
  kvm_vcpu_events_interrupt,
  kvm_vcpu_events_nmi,
  kvm_vcpu_events_smi,
  kvm_vcpu_events_triple_fault,
  kvm_xcr,
  kvm_xcrs,
} from "../ffi/kvm.ts";
import type { Field } from "../ffi/layout.ts";
import type { Segment, Sregs } from "../guest/system_registers.ts";
import { type CpuidEntry, ioctlBuf, readCpuid, threadXsaveArea } from "./kvm.ts";

export type RegName = keyof typeof kvm_regs.fields & string;
export type Regs = Record<RegName, bigint>;

/** An extended control register (XCR0 is the only one x86 defines so far). */
export interface Xcr {
  xcr: number;
  value: bigint;
}

export interface DebugRegs {
  /** DR0-DR3. */
  db: bigint[];
  dr6: bigint;
  dr7: bigint;
}

/** Exceptions, interrupts, NMIs and SMIs the vCPU has pending or half-delivered (struct kvm_vcpu_events). */
export interface VcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number };
  sipiVector: number;
  /** KVM_VCPUEVENT_VALID_*: which optional parts KVM filled in, and so which KVM_SET_VCPU_EVENTS takes back. */
  flags: number;
  smi: { smm: number; pending: number; smmInsideNmi: number; latchedInit: number };
  tripleFaultPending: number;
  exceptionHasPayload: number;
  exceptionPayload: bigint;
}

/** A KVM exit, decoded from kvm_run before anyone switches on it. */
export type VmExit =
  | { kind: "io-out"; port: number; size: number; value: number }
  | { kind: "io-in"; port: number; size: number }
  | { kind: "mmio"; address: bigint; isWrite: boolean; length: number; data: bigint }
  | { kind: "hlt" }
  | { kind: "shutdown" }
  | { kind: "interrupted" }
  | { kind: "fail-entry"; reason: bigint }
  | { kind: "internal-error"; suberror: number; data: bigint[] }
  | { kind: "system-event"; type: number }
  | { kind: "unknown"; reason: number };

const segFields = ["type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable"] as const;
const regNames = kvm_regs.order.map((f) => f.name) as RegName[];

export class Vcpu {
  #fd: number;
  #run: DataView;
  #regsBuf = new Uint8Array(kvm_regs.size);
  #regsView = new DataView(this.#regsBuf.buffer);

  constructor(fd: number, runPage: Deno.PointerObject, runSize: number) {
    this.#fd = fd;
    const ab = Deno.UnsafePointerView.getArrayBuffer(runPage, runSize);
    this.#run = new DataView(ab);
  }

  get fd(): number {
    return this.#fd;
  }

  /** Runs until the next exit. A pending stop request surfaces as `interrupted`. */
  run(): VmExit {
    if (libc().ioctl_int(this.#fd, ioctls.KVM_RUN, 0n) === -1) {
      const errno = lastErrno();
      if (errno === EINTR) return { kind: "interrupted" };
      throw new SysError("KVM_RUN", errno);
    }
    return this.#decodeExit();
  }

  #decodeExit(): VmExit {
    const run = this.#run;
    const reason = run.getUint32(kvm_run.fields.exit_reason.offset, true);
    const u = KVM_RUN_EXIT_UNION;
    switch (reason) {
      case exitReasons.KVM_EXIT_IO: {
        const f = kvm_run_io.fields;
        const port = run.getUint16(u + f.port.offset, true);
        const size = run.getUint8(u + f.size.offset);
        if (run.getUint8(u + f.direction.offset) !== KVM_EXIT_IO_OUT) return { kind: "io-in", port, size };
        const dataOffset = Number(run.getBigUint64(u + f.data_offset.offset, true));
        const value = size === 4
          ? run.getUint32(dataOffset, true)
          : size === 2
          ? run.getUint16(dataOffset, true)
          : run.getUint8(dataOffset);
        return { kind: "io-out", port, size, value };
      }
      case exitReasons.KVM_EXIT_MMIO: {
        const f = kvm_run_mmio.fields;
        return {
          kind: "mmio",
          address: run.getBigUint64(u + f.phys_addr.offset, true),
          isWrite: run.getUint8(u + f.is_write.offset) !== 0,
          length: run.getUint32(u + f.len.offset, true),
          data: run.getBigUint64(u + f.data.offset, true),
        };
      }
      case exitReasons.KVM_EXIT_HLT:
        return { kind: "hlt" };
      case exitReasons.KVM_EXIT_SHUTDOWN:
        return { kind: "shutdown" };
      case exitReasons.KVM_EXIT_INTR:
        return { kind: "interrupted" };
      case exitReasons.KVM_EXIT_FAIL_ENTRY:
        return {
          kind: "fail-entry",
          reason: run.getBigUint64(u + kvm_run_fail_entry.fields.hardware_entry_failure_reason.offset, true),
        };
      case exitReasons.KVM_EXIT_INTERNAL_ERROR: {
        const f = kvm_run_internal.fields;
        const n = Math.min(run.getUint32(u + f.ndata.offset, true), 16);
        const data = Array.from({ length: n }, (_, i) => run.getBigUint64(u + f.data.offset + 8 * i, true));
        return { kind: "internal-error", suberror: run.getUint32(u + f.suberror.offset, true), data };
      }
      case exitReasons.KVM_EXIT_SYSTEM_EVENT:
        return { kind: "system-event", type: run.getUint32(u + kvm_run_system_event.fields.type.offset, true) };
      default:
        return { kind: "unknown", reason };
    }
  }

  getRegs(): Regs {
    ioctlBuf(this.#fd, "KVM_GET_REGS", this.#regsBuf);
    const regs = {} as Regs;
    for (const name of regNames) regs[name] = this.#regsView.getBigUint64(kvm_regs.fields[name].offset, true);
    return regs;
  }

  setRegs(regs: Regs): void {
    for (const name of regNames) this.#regsView.setBigUint64(kvm_regs.fields[name].offset, regs[name], true);
    ioctlBuf(this.#fd, "KVM_SET_REGS", this.#regsBuf);
  }

  getSregs(): Sregs {
    const buf = new Uint8Array(kvm_sregs.size);
    ioctlBuf(this.#fd, "KVM_GET_SREGS", buf);
    return decodeSregs(new DataView(buf.buffer));
  }

  setSregs(s: Sregs): void {
    // Read-modify-write keeps fields pvx does not model (the interrupt bitmap) as KVM has them.
    const buf = new Uint8Array(kvm_sregs.size);
    ioctlBuf(this.#fd, "KVM_GET_SREGS", buf);
    encodeSregs(new DataView(buf.buffer), s);
    ioctlBuf(this.#fd, "KVM_SET_SREGS", buf);
  }

  getMsrs(indices: readonly number[]): Map<number, bigint> {
    const buf = msrBuffer(indices.map((i) => [i, 0n]));
    const n = ioctlBuf(this.#fd, "KVM_GET_MSRS", buf);
    if (n !== indices.length) {
      throw new Error(`KVM_GET_MSRS read ${n} of ${indices.length} MSRs (first missing 0x${indices[n].toString(16)})`);
    }
    const dv = new DataView(buf.buffer);
    return new Map(
      indices.map((
        idx,
        i,
      ) => [idx, dv.getBigUint64(kvm_msrs.size + i * kvm_msr_entry.size + kvm_msr_entry.fields.data.offset, true)]),
    );
  }

  setMsrs(values: ReadonlyMap<number, bigint>): void {
    const entries = [...values];
    const n = ioctlBuf(this.#fd, "KVM_SET_MSRS", msrBuffer(entries));
    if (n !== entries.length) {
      throw new Error(
        `KVM_SET_MSRS wrote ${n} of ${entries.length} MSRs (first refused 0x${entries[n][0].toString(16)})`,
      );
    }
  }

  /** The CPUID last given with setCpuid, with the bits KVM keeps in step with CR4 and XCR0. */
  getCpuid(): CpuidEntry[] {
    // Some kernels (6.1 among them) leave nent as it was on success, so the slots past the real entries come back
    // zeroed. Firecracker drops them the same way: no real entry is, as leaf 0's eax is the highest basic leaf.
    return readCpuid(this.#fd, "KVM_GET_CPUID2").filter((e) => e.function || e.index || e.flags || e.eax);
  }

  /** The raw XSAVE area (x87, SSE, AVX and every other XSAVE component), in the standard format. */
  getXsave(): Uint8Array {
    const area = threadXsaveArea();
    const buf = new Uint8Array(area.size);
    ioctlBuf(this.#fd, area.get, buf);
    return buf;
  }

  setXsave(xsave: Uint8Array): void {
    // KVM_SET_XSAVE reads as many bytes as KVM_GET_XSAVE2 writes, whatever the buffer's length.
    const { size } = threadXsaveArea();
    if (xsave.length !== size) {
      throw new Error(`the XSAVE area is ${xsave.length} bytes, but this host's KVM takes ${size}`);
    }
    ioctlBuf(this.#fd, "KVM_SET_XSAVE", xsave);
  }

  getXcrs(): Xcr[] {
    const buf = new Uint8Array(kvm_xcrs.size);
    ioctlBuf(this.#fd, "KVM_GET_XCRS", buf);
    const dv = new DataView(buf.buffer);
    const n = dv.getUint32(kvm_xcrs.fields.nr_xcrs.offset, true);
    return Array.from({ length: n }, (_, i) => {
      const at = kvm_xcrs.fields.xcrs.offset + i * kvm_xcr.size;
      return {
        xcr: dv.getUint32(at + kvm_xcr.fields.xcr.offset, true),
        value: dv.getBigUint64(at + kvm_xcr.fields.value.offset, true),
      };
    });
  }

  setXcrs(xcrs: readonly Xcr[]): void {
    if (xcrs.length > KVM_MAX_XCRS) throw new Error(`${xcrs.length} XCRs, KVM takes at most ${KVM_MAX_XCRS}`);
    const buf = new Uint8Array(kvm_xcrs.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(kvm_xcrs.fields.nr_xcrs.offset, xcrs.length, true);
    xcrs.forEach((x, i) => {
      const at = kvm_xcrs.fields.xcrs.offset + i * kvm_xcr.size;
      dv.setUint32(at + kvm_xcr.fields.xcr.offset, x.xcr, true);
      dv.setBigUint64(at + kvm_xcr.fields.value.offset, x.value, true);
    });
    ioctlBuf(this.#fd, "KVM_SET_XCRS", buf);
  }

  getDebugRegs(): DebugRegs {
    const buf = new Uint8Array(kvm_debugregs.size);
    ioctlBuf(this.#fd, "KVM_GET_DEBUGREGS", buf);
    const dv = new DataView(buf.buffer);
    const f = kvm_debugregs.fields;
    return {
      db: Array.from({ length: 4 }, (_, i) => dv.getBigUint64(f.db.offset + 8 * i, true)),
      dr6: dv.getBigUint64(f.dr6.offset, true),
      dr7: dv.getBigUint64(f.dr7.offset, true),
    };
  }

  setDebugRegs(d: DebugRegs): void {
    if (d.db.length !== 4) throw new Error(`debug registers: ${d.db.length} breakpoint addresses, x86 has 4`);
    const buf = new Uint8Array(kvm_debugregs.size);
    const dv = new DataView(buf.buffer);
    const f = kvm_debugregs.fields;
    d.db.forEach((v, i) => dv.setBigUint64(f.db.offset + 8 * i, v, true));
    dv.setBigUint64(f.dr6.offset, d.dr6, true);
    dv.setBigUint64(f.dr7.offset, d.dr7, true);
    ioctlBuf(this.#fd, "KVM_SET_DEBUGREGS", buf);
  }

  getVcpuEvents(): VcpuEvents {
    const buf = new Uint8Array(kvm_vcpu_events.size);
    ioctlBuf(this.#fd, "KVM_GET_VCPU_EVENTS", buf);
    return decodeVcpuEvents(new DataView(buf.buffer));
  }

  setVcpuEvents(e: VcpuEvents): void {
    const buf = new Uint8Array(kvm_vcpu_events.size);
    encodeVcpuEvents(new DataView(buf.buffer), e);
    ioctlBuf(this.#fd, "KVM_SET_VCPU_EVENTS", buf);
  }

  setCpuid(entries: readonly CpuidEntry[]): void {
    const buf = new Uint8Array(kvm_cpuid2.size + entries.length * kvm_cpuid_entry2.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(kvm_cpuid2.fields.nent.offset, entries.length, true);
    entries.forEach((e, i) => {
      const base = kvm_cpuid2.size + i * kvm_cpuid_entry2.size;
      const f = kvm_cpuid_entry2.fields;
      for (const k of ["function", "index", "flags", "eax", "ebx", "ecx", "edx"] as const) {
        dv.setUint32(base + f[k].offset, e[k], true);
      }
    });
    ioctlBuf(this.#fd, "KVM_SET_CPUID2", buf);
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
}

function msrBuffer(entries: ReadonlyArray<readonly [number, bigint]>): Uint8Array {
  const buf = new Uint8Array(kvm_msrs.size + entries.length * kvm_msr_entry.size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(kvm_msrs.fields.nmsrs.offset, entries.length, true);
  entries.forEach(([index, data], i) => {
    const base = kvm_msrs.size + i * kvm_msr_entry.size;
    dv.setUint32(base + kvm_msr_entry.fields.index.offset, index, true);
    dv.setBigUint64(base + kvm_msr_entry.fields.data.offset, data, true);
  });
  return buf;
}

function decodeSegment(dv: DataView, at: number): Segment {
  const f = kvm_segment.fields;
  const seg = {
    base: dv.getBigUint64(at + f.base.offset, true),
    limit: dv.getUint32(at + f.limit.offset, true),
    selector: dv.getUint16(at + f.selector.offset, true),
  } as Segment;
  for (const k of segFields) seg[k] = dv.getUint8(at + f[k].offset);
  return seg;
}

function encodeSegment(dv: DataView, at: number, seg: Segment): void {
  const f = kvm_segment.fields;
  dv.setBigUint64(at + f.base.offset, seg.base, true);
  dv.setUint32(at + f.limit.offset, seg.limit, true);
  dv.setUint16(at + f.selector.offset, seg.selector, true);
  for (const k of segFields) dv.setUint8(at + f[k].offset, seg[k]);
}

const segNames = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
const crNames = [["cr0", "cr0"], ["cr2", "cr2"], ["cr3", "cr3"], ["cr4", "cr4"], ["cr8", "cr8"], ["efer", "efer"], [
  "apicBase",
  "apic_base",
]] as const;

function decodeSregs(dv: DataView): Sregs {
  const s = {} as Sregs;
  for (const n of segNames) s[n] = decodeSegment(dv, kvm_sregs.fields[n].offset);
  for (const n of ["gdt", "idt"] as const) {
    const at = kvm_sregs.fields[n].offset;
    s[n] = {
      base: dv.getBigUint64(at + kvm_dtable.fields.base.offset, true),
      limit: dv.getUint16(at + kvm_dtable.fields.limit.offset, true),
    };
  }
  for (const [k, c] of crNames) s[k] = dv.getBigUint64(kvm_sregs.fields[c].offset, true);
  return s;
}

function encodeSregs(dv: DataView, s: Sregs): void {
  for (const n of segNames) encodeSegment(dv, kvm_sregs.fields[n].offset, s[n]);
  for (const n of ["gdt", "idt"] as const) {
    const at = kvm_sregs.fields[n].offset;
    dv.setBigUint64(at + kvm_dtable.fields.base.offset, s[n].base, true);
    dv.setUint16(at + kvm_dtable.fields.limit.offset, s[n].limit, true);
  }
  for (const [k, c] of crNames) dv.setBigUint64(kvm_sregs.fields[c].offset, s[k], true);
}

const ev = kvm_vcpu_events.fields;
const exc = kvm_vcpu_events_exception.fields, intr = kvm_vcpu_events_interrupt.fields;
const nmi = kvm_vcpu_events_nmi.fields, smi = kvm_vcpu_events_smi.fields;
const tripleFault = kvm_vcpu_events_triple_fault.fields;

function decodeVcpuEvents(dv: DataView): VcpuEvents {
  const u8 = (part: Field, f: Field) => dv.getUint8(part.offset + f.offset);
  return {
    exception: {
      injected: u8(ev.exception, exc.injected),
      nr: u8(ev.exception, exc.nr),
      hasErrorCode: u8(ev.exception, exc.has_error_code),
      pending: u8(ev.exception, exc.pending),
      errorCode: dv.getUint32(ev.exception.offset + exc.error_code.offset, true),
    },
    interrupt: {
      injected: u8(ev.interrupt, intr.injected),
      nr: u8(ev.interrupt, intr.nr),
      soft: u8(ev.interrupt, intr.soft),
      shadow: u8(ev.interrupt, intr.shadow),
    },
    nmi: { injected: u8(ev.nmi, nmi.injected), pending: u8(ev.nmi, nmi.pending), masked: u8(ev.nmi, nmi.masked) },
    sipiVector: dv.getUint32(ev.sipi_vector.offset, true),
    flags: dv.getUint32(ev.flags.offset, true),
    smi: {
      smm: u8(ev.smi, smi.smm),
      pending: u8(ev.smi, smi.pending),
      smmInsideNmi: u8(ev.smi, smi.smm_inside_nmi),
      latchedInit: u8(ev.smi, smi.latched_init),
    },
    tripleFaultPending: u8(ev.triple_fault, tripleFault.pending),
    exceptionHasPayload: dv.getUint8(ev.exception_has_payload.offset),
    exceptionPayload: dv.getBigUint64(ev.exception_payload.offset, true),
  };
}

function encodeVcpuEvents(dv: DataView, e: VcpuEvents): void {
  const u8 = (part: Field, f: Field, v: number) => dv.setUint8(part.offset + f.offset, v);
  u8(ev.exception, exc.injected, e.exception.injected);
  u8(ev.exception, exc.nr, e.exception.nr);
  u8(ev.exception, exc.has_error_code, e.exception.hasErrorCode);
  u8(ev.exception, exc.pending, e.exception.pending);
  dv.setUint32(ev.exception.offset + exc.error_code.offset, e.exception.errorCode, true);
  u8(ev.interrupt, intr.injected, e.interrupt.injected);
  u8(ev.interrupt, intr.nr, e.interrupt.nr);
  u8(ev.interrupt, intr.soft, e.interrupt.soft);
  u8(ev.interrupt, intr.shadow, e.interrupt.shadow);
  u8(ev.nmi, nmi.injected, e.nmi.injected);
  u8(ev.nmi, nmi.pending, e.nmi.pending);
  u8(ev.nmi, nmi.masked, e.nmi.masked);
  dv.setUint32(ev.sipi_vector.offset, e.sipiVector, true);
  dv.setUint32(ev.flags.offset, e.flags, true);
  u8(ev.smi, smi.smm, e.smi.smm);
  u8(ev.smi, smi.pending, e.smi.pending);
  u8(ev.smi, smi.smm_inside_nmi, e.smi.smmInsideNmi);
  u8(ev.smi, smi.latched_init, e.smi.latchedInit);
  u8(ev.triple_fault, tripleFault.pending, e.tripleFaultPending);
  dv.setUint8(ev.exception_has_payload.offset, e.exceptionHasPayload);
  dv.setBigUint64(ev.exception_payload.offset, e.exceptionPayload, true);
}

/** Requests that the vCPU leave KVM_RUN: set before signalling its thread. */
export function requestImmediateExit(runPage: Deno.PointerObject, on: boolean): void {
  new DataView(Deno.UnsafePointerView.getArrayBuffer(runPage, kvm_run.size))
    .setUint8(kvm_run.fields.immediate_exit.offset, on ? 1 : 0);
}
