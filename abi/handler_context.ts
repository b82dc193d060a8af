// What a host handler may reach. Handlers (abi/handlers/) take one of these, and the hypervisor
// side (hv/) builds them, so neither side imports the other.

import type { ConsoleStream, HandleTable } from "./handles.ts";
import type { FileView } from "./fileview.ts";
import type { GuestHeap } from "./heap.ts";
import type { VirtualMemory } from "./virtual_memory.ts";
import type { SyncObjects, WaitControl } from "./sync_objects.ts";
import type { ObjectNames } from "./object_names.ts";
import type { SpecialCalls } from "./special_calls.ts";

export interface ConsoleIo {
  write(stream: ConsoleStream, bytes: Uint8Array): void;
  /** Blocks until input arrives; 0 at end of input. */
  read(into: Uint8Array): number;
}

/** The modules loaded at boot, as plain data, so they can cross to whichever thread serves hypercalls. */
export interface ModuleTable {
  /** The exe's HMODULE (its base address); for an ELF guest, its image start. */
  exe: number;
  /** [lower-case file name, HMODULE, [export name or null, ordinal, address][]]; a module's first name is its own. */
  modules: [string, number, [string | null, number, number][]][];
}

/** Everything a handler can touch on the host: nothing else is reachable from the guest. */
export interface Host {
  readonly handles: HandleTable;
  readonly files: FileView;
  readonly heap: GuestHeap;
  readonly memory: VirtualMemory;
  /** Names upper-cased: Windows looks variables up case-insensitively. */
  readonly environment: ReadonlyMap<string, string>;
  /** Loaded modules and their exports, for GetModuleHandleW and GetProcAddress. */
  readonly modules: ModuleTable;
  /** Where a lookup, a DLL load or a call the bundle's analysis never saw is decided, and lookups are traced. */
  readonly special: SpecialCalls;
  /** Guest address of the UTF-16 command line the kernel left on the initial stack. */
  readonly commandLineAddress: number;
  readonly console: ConsoleIo;
  /** Events, mutexes and thread objects, shared with every vCPU thread. */
  readonly sync: SyncObjects;
  /** The names of events, mutexes and semaphores. */
  readonly names: ObjectNames;
  readonly threads: ThreadStarter;
}

/** Starts guest threads: each gets a vCPU, a stack and a TEB of its own. */
export interface ThreadStarter {
  /**
   * The new thread's handle and id; throws Win32Error when no vCPU slot or memory is left. A suspended one waits
   * on its vCPU for ResumeThread.
   */
  create(start: bigint, parameter: bigint, stackSize: number, suspended: boolean): { handle: number; threadId: number };
}

/**
 * What one thread may ask of another, by thread id. Each takes effect at the target's next instruction boundary
 * or in the wait it is in; "ended" for a thread that is not running any more.
 */
export interface ThreadControl {
  /** SuspendThread: the previous count, or "limit" at MAXIMUM_SUSPEND_COUNT. */
  suspendThread(threadId: number): number | "ended" | "limit";
  /** ResumeThread: the previous count; the thread runs again once it is 0. */
  resumeThread(threadId: number): number | "ended";
  /** TerminateThread: false when the thread has already ended. */
  terminateThread(threadId: number, code: number): boolean;
}

/**
 * What the calls answered on the calling vCPU's own thread may touch: the
 * shared sync objects, what one thread may ask of another, and this thread's
 * identity, never the handle table.
 */
export interface ThreadContext {
  readonly sync: SyncObjects;
  readonly threads: ThreadControl;
  readonly threadId: number;
  /** Guest-clock milliseconds when the instance started, for GetTickCount64. */
  readonly startedAt: number;
  /** The guest clock, and how a blocked call yields to a stop or a pause. */
  readonly waits: WaitControl;
  /**
   * The guest-clock deadline of a wait of `ms` (INFINITE: Infinity) that
   * begins now; a wait that a snapshot caught is remade with the one it had.
   */
  deadline(ms: number): number;
  /** Blocks this thread for `ms` (0 = yield), returning early if the instance is stopping. */
  sleep(ms: number): void;
  /** PvxReady: where a template is being made, waits there to be paused for its snapshot; else nothing. */
  ready(): void;
  /**
   * A new handle to this thread's object, which its exit signals. One is made if the thread has none (the first
   * thread, or one whose every handle was closed); undefined when no object or handle is left.
   */
  openCurrentThread(): number | undefined;
  exitProcess(code: number): void;
  exitThread(code: number): void;
  /** FlushProcessWriteBuffers: returns once every other thread running in the guest has been through a VM exit. */
  serializeOtherThreads(): void;
}
