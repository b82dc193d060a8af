// A vCPU's state as plain, versioned data (Firecracker's Persist shape: the
// state type beside the component, save returns it, restore rebuilds a vCPU
// from it), and its JSON form for snapshot files.
//
// Not kept, because pvx gives its VMs no in-kernel irqchip: the local APIC
// (there is none) and the MP state (such a vCPU is always runnable; KVM
// refuses to set any other). Nor is sregs' interrupt bitmap: KVM fills it from
// events.interrupt (an injected external interrupt), which goes back with the
// events.

import { KVM_MAX_XCRS, kvm_regs, kvm_xsave, msrs } from "../ffi/kvm.ts";
import type { CpuidEntry } from "./kvm.ts";
import type { DebugRegs, RegName, Regs, Vcpu, VcpuEvents, Xcr } from "./vcpu.ts";
import type { DTable, Segment, Sregs } from "../guest/system_registers.ts";

export const VCPU_STATE_VERSION = 1;

/**
 * The MSRs pvx sets (STAR, GS base), those the guest's SYSCALL and SWAPGS
 * use, FS base, PAT (which gives page-table caching bits their meaning) and
 * the TSC. EFER is part of the sregs.
 */
const savedMsrs = [
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
export type SavedMsr = typeof savedMsrs[number];

export interface VcpuState {
  version: typeof VCPU_STATE_VERSION;
  /** What the vCPU was given with KVM_SET_CPUID2: the guest's CPU model, and what its XSAVE area may hold. */
  cpuid: CpuidEntry[];
  regs: Regs;
  sregs: Sregs;
  /** The XSAVE area as KVM hands it out (standard format): x87, SSE, AVX and every other XSAVE component. */
  xsave: Uint8Array;
  xcrs: Xcr[];
  debugRegs: DebugRegs;
  msrs: Record<SavedMsr, bigint>;
  events: VcpuEvents;
}

/** Reads the state of a vCPU that is not running. */
export function saveVcpu(vcpu: Vcpu): VcpuState {
  const regs = vcpu.getRegs();
  const sregs = vcpu.getSregs();
  const xsave = vcpu.getXsave();
  const xcrs = vcpu.getXcrs();
  const debugRegs = vcpu.getDebugRegs();
  const cpuid = vcpu.getCpuid();
  const values = vcpu.getMsrs(savedMsrs.map((name) => msrs[name]));
  const saved = {} as Record<SavedMsr, bigint>;
  for (const name of savedMsrs) saved[name] = values.get(msrs[name])!;
  // Last, as Firecracker does: the other KVM_GET_* calls may still settle pending events.
  const events = vcpu.getVcpuEvents();
  return { version: VCPU_STATE_VERSION, cpuid, regs, sregs, xsave, xcrs, debugRegs, msrs: saved, events };
}

/**
 * Puts `state` into a vCPU that has not run yet, or into one that ran with
 * the same CPUID (after the first KVM_RUN, KVM_SET_CPUID2 takes only the
 * CPUID the vCPU already has). The order is Firecracker's, for KVM's reasons:
 * - CPUID first: KVM checks XCR0 (KVM_SET_XCRS) and the components of the
 *   XSAVE area (KVM_SET_XSAVE) against the guest's CPUID, not against each
 *   other, so with the CPUID in place those two may come in either order
 *   (Firecracker and QEMU both put the area first).
 * - sregs before the MSRs: KVM refuses a non-canonical FS, GS, kernel GS,
 *   LSTAR or CSTAR value, and CR4.LA57 decides what is canonical.
 * - the events last: KVM_SET_REGS drops a pending exception and
 *   KVM_SET_SREGS queues the interrupt of its bitmap; the events have the
 *   last word on both.
 */
export function restoreVcpu(vcpu: Vcpu, state: VcpuState): void {
  vcpu.setCpuid(state.cpuid);
  vcpu.setRegs(state.regs);
  vcpu.setSregs(state.sregs);
  vcpu.setXsave(state.xsave);
  // A host CPU without XSAVE has no XCRs: KVM reports none and refuses to set any.
  if (state.xcrs.length) vcpu.setXcrs(state.xcrs);
  vcpu.setDebugRegs(state.debugRegs);
  const values = new Map<number, bigint>(
    savedMsrs.filter((name) => name !== "MSR_IA32_TSC").map((name) => [msrs[name], state.msrs[name]]),
  );
  // The guest's TSC must never run backwards. A new vCPU's starts near 0, so it
  // gets the saved value back: the guest resumes where it stopped, as if the time
  // the snapshot lay on disk never passed (pvx guests read the wall clock by
  // hypercall, not from the TSC). A vCPU of a VM that was only paused has kept
  // counting since and is left ahead; not writing it also keeps it in step with
  // its VM's other vCPUs (KVM matches a written TSC to theirs only when it lands
  // within a second of them).
  const tsc = vcpu.getMsrs([msrs.MSR_IA32_TSC]).get(msrs.MSR_IA32_TSC)!;
  if (tsc < state.msrs.MSR_IA32_TSC) values.set(msrs.MSR_IA32_TSC, state.msrs.MSR_IA32_TSC);
  vcpu.setMsrs(values);
  vcpu.setVcpuEvents(state.events);
}

/** A saved vCPU state that cannot be read back; `field` is the path inside it, e.g. `sregs.cs.limit`. */
export class VcpuStateError extends Error {
  constructor(readonly where: string, readonly field: string, problem: string) {
    super(`${where}${field ? `.${field}` : ""}: ${problem}`);
    this.name = "VcpuStateError";
  }
}

interface Path {
  where: string;
  field: string;
}

/** A value's JSON form, and a decoder that accepts exactly what `encode` can produce. */
interface Codec<T> {
  encode(value: T): unknown;
  decode(json: unknown, at: Path): T;
}

const fail = (at: Path, problem: string): never => {
  throw new VcpuStateError(at.where, at.field, problem);
};
const member = (at: Path, name: string): Path => ({ ...at, field: at.field ? `${at.field}.${name}` : name });
const element = (at: Path, i: number): Path => ({ ...at, field: `${at.field}[${i}]` });

function shown(json: unknown): string {
  if (json === undefined) return "nothing";
  const text = JSON.stringify(json);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}

function uint(bits: 8 | 16 | 32): Codec<number> {
  const max = 2 ** bits - 1;
  return {
    encode: (value) => value,
    decode: (json, at) =>
      typeof json === "number" && Number.isInteger(json) && json >= 0 && json <= max
        ? json
        : fail(at, `expected an integer 0..${max}, got ${shown(json)}`),
  };
}
const u8 = uint(8), u16 = uint(16), u32 = uint(32);

/** 64-bit values as hex strings: JSON numbers lose precision above 2^53. */
const u64: Codec<bigint> = {
  encode: (value) => `0x${value.toString(16)}`,
  decode: (json, at) =>
    typeof json === "string" && /^0x[0-9a-f]{1,16}$/.test(json)
      ? BigInt(json)
      : fail(at, `expected a 64-bit value in lower-case hex ("0x1f"), got ${shown(json)}`),
};

const base64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytes(minLength: number, what: string): Codec<Uint8Array> {
  return {
    encode: (value) => value.toBase64(),
    decode: (json, at) => {
      if (typeof json !== "string" || !base64.test(json)) return fail(at, `expected base64, got ${shown(json)}`);
      let decoded: Uint8Array;
      try {
        // Strict: the unused bits of the last character must be zero, so every area has one spelling.
        decoded = Uint8Array.fromBase64(json, { lastChunkHandling: "strict" });
      } catch {
        return fail(at, `expected base64, got ${shown(json)} (bits set past the end)`);
      }
      if (decoded.length < minLength) fail(at, `${decoded.length} bytes, but ${what} is at least ${minLength}`);
      return decoded;
    },
  };
}

function list<T>(item: Codec<T>, length: { max: number } | { exactly: number }): Codec<T[]> {
  return {
    encode: (value) => value.map((v) => item.encode(v)),
    decode: (json, at) => {
      if (!Array.isArray(json)) return fail(at, `expected a list, got ${shown(json)}`);
      if ("max" in length && json.length > length.max) fail(at, `${json.length} entries, at most ${length.max}`);
      if ("exactly" in length && json.length !== length.exactly) {
        fail(at, `${json.length} entries, expected ${length.exactly}`);
      }
      return json.map((v, i) => item.decode(v, element(at, i)));
    },
  };
}

/** An object with exactly these fields: none missing, none unknown. */
function record<T>(shape: { [K in keyof T]-?: Codec<T[K]> }): Codec<T> {
  const names = Object.keys(shape) as (keyof T & string)[];
  return {
    encode: (value) => Object.fromEntries(names.map((name) => [name, shape[name].encode(value[name])])),
    decode: (json, at) => {
      if (typeof json !== "object" || json === null || Array.isArray(json)) {
        return fail(at, `expected an object, got ${shown(json)}`);
      }
      const fields = json as Record<string, unknown>;
      for (const name of Object.keys(fields)) {
        if (!Object.hasOwn(shape, name)) fail(member(at, name), "is not a field of a saved vCPU state");
      }
      const value = {} as T;
      for (const name of names) {
        if (!Object.hasOwn(fields, name)) fail(member(at, name), "missing");
        value[name] = shape[name].decode(fields[name], member(at, name));
      }
      return value;
    },
  };
}

function each<K extends string, T>(names: readonly K[], codec: Codec<T>): { [N in K]: Codec<T> } {
  return Object.fromEntries(names.map((name) => [name, codec])) as { [N in K]: Codec<T> };
}

const segment = record<Segment>({
  base: u64,
  limit: u32,
  selector: u16,
  ...each(["type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable"], u8),
});
const dtable = record<DTable>({ base: u64, limit: u16 });

const version: Codec<typeof VCPU_STATE_VERSION> = {
  encode: (value) => value,
  decode: (json, at) =>
    json === VCPU_STATE_VERSION
      ? VCPU_STATE_VERSION
      : fail(at, `unknown vCPU state version ${shown(json)} (this pvx reads version ${VCPU_STATE_VERSION})`),
};

const stateCodec = record<VcpuState>({
  version,
  // KVM takes at most 256 CPUID entries (KVM_MAX_CPUID_ENTRIES, kernel-internal).
  cpuid: list(record<CpuidEntry>(each(["function", "index", "flags", "eax", "ebx", "ecx", "edx"], u32)), { max: 256 }),
  regs: record<Regs>(each(kvm_regs.order.map((f) => f.name as RegName), u64)),
  sregs: record<Sregs>({
    ...each(["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"], segment),
    gdt: dtable,
    idt: dtable,
    ...each(["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apicBase"], u64),
  }),
  xsave: bytes(kvm_xsave.size, "struct kvm_xsave"),
  xcrs: list(record<Xcr>({ xcr: u32, value: u64 }), { max: KVM_MAX_XCRS }),
  debugRegs: record<DebugRegs>({ db: list(u64, { exactly: 4 }), dr6: u64, dr7: u64 }),
  msrs: record<Record<SavedMsr, bigint>>(each(savedMsrs, u64)),
  events: record<VcpuEvents>({
    exception: record<VcpuEvents["exception"]>({
      ...each(["injected", "nr", "hasErrorCode", "pending"], u8),
      errorCode: u32,
    }),
    interrupt: record<VcpuEvents["interrupt"]>(each(["injected", "nr", "soft", "shadow"], u8)),
    nmi: record<VcpuEvents["nmi"]>(each(["injected", "pending", "masked"], u8)),
    sipiVector: u32,
    flags: u32,
    smi: record<VcpuEvents["smi"]>(each(["smm", "pending", "smmInsideNmi", "latchedInit"], u8)),
    tripleFaultPending: u8,
    exceptionHasPayload: u8,
    exceptionPayload: u64,
  }),
});

/** The JSON form of `state`: 64-bit values as hex strings, the XSAVE area in base64. */
export function encodeVcpuState(state: VcpuState): unknown {
  return stateCodec.encode(state);
}

/** Reads back what encodeVcpuState wrote; anything else is a VcpuStateError naming `where` and the field. */
export function decodeVcpuState(json: unknown, where: string): VcpuState {
  const at = { where, field: "" };
  // The version first: a later format's other fields mean nothing to this reader.
  if (typeof json === "object" && json !== null && "version" in json) {
    version.decode(json.version, member(at, "version"));
  }
  return stateCodec.decode(json, at);
}
