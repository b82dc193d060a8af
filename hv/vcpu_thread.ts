// The protocol between an instance (main thread), the Workers that run its
// vCPUs and its host-services Worker. Whatever must reach a Worker while its
// event loop is blocked (in KVM_RUN, or serving hypercalls) goes through the
// instance's ControlBlock instead (hv/control_block.ts).

import type { CpuidEntry } from "./kvm.ts";
import type { Sregs } from "../guest/system_registers.ts";
import type { HostInit, HostState } from "./host_state.ts";
import type { GuestThreadsState, ThreadStart } from "./guest_threads.ts";
import type { VcpuState } from "./vcpu_state.ts";
import type { SyncRef } from "../abi/sync_objects.ts";
import type { ThreadRequests } from "./control_block.ts";
import type { SpecialCallRules } from "../abi/special_calls.ts";

/** Guest RAM as another thread attaches to it: the mapping, and the bitmap of pages the host writes (HostWrites). */
export interface SharedRam {
  hostAddress: bigint;
  size: number;
  writes: SharedArrayBuffer;
}

/** Where `pvx template create` snapshots an app: its first console read, or its PvxReady call. */
export type ReadyPoint = "first-input" | "call";

/** A hypercall a thread was blocked in when it parked: a restore makes it again, with the deadline it had. */
export interface PendingCall {
  nr: number;
  frame: number;
  /** On the guest clock; null for a wait without timeout. */
  deadline: number | null;
}

/** A guest thread parked by a pause: everything a snapshot needs of it. */
export interface ParkedThread {
  cpu: number;
  threadId: number;
  /** The thread object its exit signals (none for the first thread). */
  object?: SyncRef;
  lastError: number;
  vcpu: VcpuState;
  pending?: PendingCall;
  /** What other threads asked of it (SuspendThread, TerminateThread) that it has yet to act on. */
  requests?: ThreadRequests;
}

/** A thread to rebuild from a snapshot rather than start at its entry point. */
export interface ThreadRestore {
  lastError: number;
  vcpu: VcpuState;
  pending?: PendingCall;
  /** The instance's host bookkeeping, for the thread that serves the shared-state calls itself. */
  host?: HostState;
}

/** What a vCPU thread needs to run one guest thread. */
export interface VcpuInit {
  thread: ThreadStart;
  vcpuFd: number;
  runPage: bigint;
  runSize: number;
  /** A vCPU that never ran yet gets its CPUID set (KVM refuses a change after the first run). */
  fresh: boolean;
  ram: SharedRam;
  pageTableRoot: number;
  sregs: Sregs;
  /** "DLL!name" by the index a missing-import stub reports (Windows apps). */
  missingImports: string[];
  cpuid: CpuidEntry[];
  allowedCalls: string[];
  /** The Windows app's special-call rules (hv/host_state.ts HostInit). */
  specialCalls?: SpecialCallRules;
  /** Set when this vCPU serves the instance's shared-state calls itself (an app that cannot create threads). */
  host?: HostInit;
  control: SharedArrayBuffer;
  startedAt: number;
  restore?: ThreadRestore;
  /** A template's ready point: post "ready" when the app reaches it, then wait there to be paused. */
  readyAt?: ReadyPoint;
}

/** What the host-services Worker needs (an app that can create threads). */
export interface ServiceInit {
  ram: SharedRam;
  pageTableRoot: number;
  allowedCalls: string[];
  host: HostInit;
  threadStart: number;
  control: SharedArrayBuffer;
  restore?: { host: HostState; threads: GuestThreadsState };
  readyAt?: ReadyPoint;
}

/** Messages from the host-services Worker to the instance. */
export type ServiceMessage =
  | { kind: "start-thread"; thread: ThreadStart }
  | { kind: "ready" }
  /** The state it keeps, asked for once every vCPU has parked (ControlBlock.requestServiceState). */
  | { kind: "state"; host: HostState; threads: GuestThreadsState }
  | { kind: "done" }
  | { kind: "host-error"; message: string };

/** What a vCPU thread posts: that it parked (with the host state, if it keeps it), or why it stopped. */
export type VcpuMessage =
  | { kind: "parked"; thread: ParkedThread; host?: HostState }
  | { kind: "ready" }
  | VcpuReport;

/** Why a vCPU stopped, as the Worker reports it, and when the guest first left it (epoch ms). */
export type VcpuReport = VcpuEnd & { firstExitAt?: number };
type VcpuEnd =
  /** This guest thread ended; others still run. */
  | { kind: "thread-exit" }
  | { kind: "exit"; code: number }
  | { kind: "fault"; frame: Record<string, bigint> }
  | { kind: "stopped"; rip: bigint }
  | { kind: "violation"; message: string; rip: bigint }
  | { kind: "crash"; message: string; rip?: bigint }
  | { kind: "host-error"; message: string };
