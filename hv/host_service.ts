// The calls that need an instance's shared state (handle table, virtual
// drive, heap, virtual memory, threads), answered in one place. An app that
// cannot create threads has this served by its only vCPU thread directly; an
// app that can has it on a host-services Worker (hv/host_worker.ts) that
// every vCPU thread reaches through its mailbox in the ControlBlock.

import { Dispatcher, type Thread } from "../abi/dispatch.ts";
import { AbiViolation, CallInterrupted } from "../abi/call_errors.ts";
import { hostHandlers } from "../abi/host_handlers.ts";
import { PageTables } from "../guest/paging.ts";
import { createHost, type HostInit, type HostState, saveHost } from "./host_state.ts";
import type { WaitControl } from "../abi/sync_objects.ts";
import { GuestRam } from "./memory.ts";
import type { ControlBlock, ServiceAnswer, ServiceResult } from "./control_block.ts";
import { pageTableUpdates, pageTableUpdatesSlot } from "../abi/memory_map.ts";
import { GuestThreads, type GuestThreadsState } from "./guest_threads.ts";
import type { SharedRam } from "./vcpu_thread.ts";
import type { ThreadStart } from "./guest_threads.ts";
import { HostWrites } from "../abi/host_writes.ts";
import type { Host } from "../abi/handler_context.ts";

export interface HostServiceInit {
  ram: SharedRam;
  pageTableRoot: number;
  allowedCalls: readonly string[];
  host: HostInit;
  control: ControlBlock;
  /** Set when the app can create threads: where they begin, and how the instance starts their vCPUs. */
  threads?: { threadStart: number; launch(thread: ThreadStart): void };
  /** How a console read yields to a stop or pause; by default it only stops. */
  waits?: WaitControl;
  /** The bookkeeping of a snapshot this instance is restored from. */
  restore?: HostState;
  restoreThreads?: GuestThreadsState;
  /** Called at the app's first console read, which then waits to be paused (a template's ready point). */
  onFirstRead?: () => void;
}

export class HostService {
  readonly #dispatcher: Dispatcher;
  readonly #host: Host;
  readonly #ram: GuestRam;
  readonly #pages: PageTables;
  readonly #writes: HostWrites;
  #threads?: GuestThreads;

  constructor(init: HostServiceInit) {
    const ram = this.#ram = new GuestRam(init.ram.hostAddress, init.ram.size);
    const writes = this.#writes = new HostWrites(init.ram.writes);
    const pages = this.#pages = new PageTables(ram.bytes, init.pageTableRoot, writes);
    const control = init.control;
    // On the host-services thread a pause cannot park the caller, whose vCPU thread waits on the answer:
    // the call is given up and its vCPU thread parks and makes it again.
    const waits = init.waits ?? {
      now: () => control.now(),
      checkpoint: () => {
        if (control.stopRequested()) return true;
        if (control.pauseRequested()) throw new CallInterrupted();
        return false;
      },
    };
    this.#host = createHost(
      init.host,
      ram.bytes,
      pages,
      { sync: control.sync, waits, writes, onFirstRead: init.onFirstRead },
      (memory) => {
        if (!init.threads) return noThreads;
        return this.#threads ??= new GuestThreads(
          ram.bytes,
          memory,
          control,
          init.threads.threadStart,
          init.threads.launch,
          writes,
        );
      },
      init.restore,
    );
    if (init.restoreThreads) this.#threads!.restore(init.restoreThreads, "snapshot: threads");
    const handlers = hostHandlers(this.#host);
    this.#dispatcher = new Dispatcher(
      { bytes: ram.bytes, view: ram.view, pages, writes },
      handlers,
      init.allowedCalls,
      init.host.specialCalls && this.#host.special,
    );
  }

  /**
   * Runs hypercall `nr` for vCPU `cpu`; throws AbiViolation when the guest
   * broke the ABI. When the call changed page tables, the entries the vCPU
   * must re-write are in its update list (guest/kernel.ts) and their count
   * is returned.
   */
  dispatch(cpu: number, nr: number, frame: number, thread: Thread): ServiceResult {
    this.#dispatcher.dispatch(nr, frame, thread);
    return this.#changes(cpu);
  }

  /** `dispatch` as a mailbox answer. */
  answer(cpu: number, nr: number, frame: number, thread: Thread): ServiceAnswer {
    try {
      return this.dispatch(cpu, nr, frame, thread);
    } catch (e) {
      if (e instanceof AbiViolation) return { violation: e.message.replace(/^hypercall [^:]*: /, "") };
      if (e instanceof CallInterrupted) return { pageTableUpdates: 0, interrupted: true };
      throw e;
    }
  }

  /** The thread on `cpu` ended: its stack is released, which the vCPU still has to tell the hypervisor. */
  threadExited(cpu: number): ServiceResult {
    this.#threads?.exited(cpu);
    return this.#changes(cpu);
  }

  #changes(cpu: number): ServiceResult {
    const entries = this.#pages.takeChanges(pageTableUpdatesSlot / 8);
    entries.forEach((entry, i) => this.#ram.view.setBigUint64(pageTableUpdates(cpu) + 8 * i, BigInt(entry), true));
    this.#writes.mark(pageTableUpdates(cpu), 8 * entries.length);
    return { pageTableUpdates: entries.length };
  }

  save(): HostState {
    return saveHost(this.#host);
  }

  /** The threads the app created; only an instance whose app can create them has any. */
  saveThreads(): GuestThreadsState {
    if (!this.#threads) throw new Error("an instance started without thread support has no thread table");
    return this.#threads.save();
  }

  /** The instance is over: close what the guest left open. */
  close(): void {
    this.#host.handles.closeAll();
  }
}

/** An app whose manifest does not allow CreateThread never reaches these. */
const noThreads = {
  create(): never {
    throw new Error("CreateThread reached an instance started without thread support");
  },
};
