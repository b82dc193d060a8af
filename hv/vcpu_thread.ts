// The protocol between an instance (main thread) and the Worker that runs one
// of its vCPUs. The control block is shared memory so the main thread can
// stop a vCPU without waiting for the Worker's event loop, which is blocked in
// KVM_RUN while the guest runs.

import type { CpuidEntry } from "./kvm.ts";
import type { Sregs } from "./vcpu.ts";
import type { HostInit } from "./host_state.ts";

export interface VcpuInit {
  vcpuFd: number;
  runPage: bigint;
  runSize: number;
  ram: { hostAddress: bigint; size: number };
  pageTableRoot: number;
  sregs: Sregs;
  entry: number;
  stackPointer: number;
  gsBase: number;
  /** "DLL!name" by the index a missing-import stub reports (Windows apps). */
  missingImports: string[];
  cpuid: CpuidEntry[];
  allowedCalls: string[];
  host: HostInit;
  /** Int32Array over: [0] = Control request, [1] = host thread id once running. */
  control: SharedArrayBuffer;
}

export const enum Control {
  Run = 0,
  Stop = 1,
}
export const CONTROL_REQUEST = 0;
export const CONTROL_TID = 1;
export const CONTROL_WORDS = 2;

/** Why a vCPU stopped, as the Worker reports it, and when the guest first left it (epoch ms). */
export type VcpuReport = VcpuEnd & { firstExitAt?: number };
type VcpuEnd =
  | { kind: "exit"; code: number }
  | { kind: "fault"; frame: Record<string, bigint> }
  | { kind: "stopped"; rip: bigint }
  | { kind: "violation"; message: string; rip: bigint }
  | { kind: "crash"; message: string; rip?: bigint }
  | { kind: "host-error"; message: string };
