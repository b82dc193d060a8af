// CreateThread's host side, kept by the host-services thread: each new guest
// thread gets a free vCPU slot (its TSS, exception stacks and TEB), a stack
// from the app's virtual memory with an uncommitted guard page below it, and
// a thread object its exit signals. Starting the vCPU itself is the
// instance's job (`launch`), because only the main thread hands out Workers.
// A thread created suspended starts on its vCPU too, and holds there until
// ResumeThread, as a thread suspended later does (hv/control_block.ts).

import type { ThreadStarter } from "../abi/handler_context.ts";
import { Win32Error } from "../abi/call_errors.ts";
import { MAX_SYNC_OBJECTS, SyncKind, type SyncObjects, type SyncRef } from "../abi/sync_objects.ts";
import { PlainState } from "../abi/plain_state.ts";
import type { VirtualMemory } from "../abi/virtual_memory.ts";
import { win32Constants as W, win32Errors as E } from "../abi/win32.ts";
import { guestAddressLimit, maxVcpus, PAGE } from "../abi/memory_map.ts";
import { writeTeb } from "../guest/teb.ts";
import { type ControlBlock, MAX_SUSPEND_COUNT } from "./control_block.ts";
import type { HostWrites } from "../abi/host_writes.ts";

/** Where a guest thread begins: registers, GS base and identity. */
export interface ThreadStart {
  cpu: number;
  threadId: number;
  /** The thread object its exit signals (none for the first thread). */
  object?: SyncRef;
  rip: number;
  rsp: number;
  /** The start routine, for guest/runtime.ts's PvxThreadStart. */
  rbx: bigint;
  /** The start routine's parameter, in both ABIs' first-argument register. */
  parameter: bigint;
  gsBase: number;
}

/** The first thread's id; later threads count up in fours, as Windows ids do. */
export const FIRST_THREAD_ID = 8;
/** Stack of a thread created with dwStackSize 0: what mingw and MSVC link into an exe by default. */
const DEFAULT_STACK = 1024 * 1024;
const STACK_GRANULARITY = 64 * 1024;
const MAX_STACK = 256 * 1024 * 1024;

/** A stack with its guard page: [base, base + PAGE) reserved, [base + PAGE, end) committed. */
interface Stack {
  base: number;
  end: number;
}

/** What a snapshot keeps of the threads an app created: each one's start, and the stacks. */
export interface GuestThreadsState {
  /** `rbx` and `parameter` in decimal: JSON has no 64-bit integers. */
  threads: {
    start: Omit<ThreadStart, "rbx" | "parameter"> & { rbx: string; parameter: string };
    /**
     * Above 0 only in snapshots from before SuspendThread, for a thread created suspended that had not run: it
     * starts at its entry, held that many times. Every other thread's count is its parked state's.
     */
    suspendCount?: number;
  }[];
  /** [vCPU slot, base, end] */
  stacks: [number, number, number][];
  nextId: number;
}

export class GuestThreads implements ThreadStarter {
  /** Each created thread that has not ended, where it began. */
  readonly #byCpu = new Map<number, ThreadStart>();
  /**
   * Each slot keeps the stack of its last thread for the next one: creating
   * and ending a thread then changes no page table, which would cost the
   * vCPU a trip through the kernel (guest/kernel.ts) each time.
   */
  readonly #stacks = new Map<number, Stack>();
  #nextId = FIRST_THREAD_ID + 4;

  constructor(
    private readonly ram: Uint8Array,
    private readonly memory: VirtualMemory,
    private readonly control: ControlBlock,
    private readonly threadStart: number,
    private readonly launch: (thread: ThreadStart) => void,
    private readonly writes?: HostWrites,
  ) {}

  get #sync(): SyncObjects {
    return this.control.sync;
  }

  create(start: bigint, parameter: bigint, stackSize: number, suspended: boolean) {
    let cpu = 1;
    while (cpu < maxVcpus && this.#byCpu.has(cpu)) cpu++;
    // Each live thread holds a vCPU slot; there are as many as the kernel has TSS slots.
    if (cpu === maxVcpus) throw new Win32Error(E.ERROR_NOT_ENOUGH_MEMORY, `no vCPU slot left for a thread`);
    if (stackSize > MAX_STACK) throw new Win32Error(E.ERROR_NOT_ENOUGH_MEMORY);
    const threadId = this.#nextId;
    const handle = this.#sync.create(SyncKind.Thread, { threadId });
    if (handle === undefined) throw new Win32Error(E.ERROR_NOT_ENOUGH_MEMORY);
    let stack: Stack;
    try {
      stack = this.#stack(cpu, Math.ceil((stackSize || DEFAULT_STACK) / STACK_GRANULARITY) * STACK_GRANULARITY);
    } catch (e) {
      this.#sync.close(handle);
      throw e;
    }
    const object = this.#sync.resolve(handle)!;
    this.#nextId += 4;
    const thread: ThreadStart = {
      cpu,
      threadId,
      object,
      rip: this.threadStart,
      rsp: stack.end,
      rbx: start,
      parameter,
      gsBase: this.#writeTeb(cpu, threadId, stack),
    };
    this.#byCpu.set(cpu, thread);
    this.control.threadStarted();
    this.control.claim(cpu, threadId, { suspendCount: suspended ? 1 : 0 });
    this.launch(thread);
    return { handle, threadId };
  }

  save(): GuestThreadsState {
    return {
      threads: [...this.#byCpu.values()].map((start) => ({
        start: { ...start, rbx: start.rbx.toString(), parameter: start.parameter.toString() },
      })),
      stacks: [...this.#stacks].map(([cpu, stack]) => [cpu, stack.base, stack.end]),
      nextId: this.#nextId,
    };
  }

  /**
   * Takes back a snapshot's threads. The instance restores the ones that had run from their parked state; one an
   * older snapshot kept as created suspended and never run starts now, at its entry, held.
   */
  restore(saved: GuestThreadsState, where: string): void {
    const state = new PlainState(where);
    const slot = (value: unknown, path: string) => state.integer(value, path, 1, maxVcpus - 1);
    const address = (value: unknown, path: string) => state.integer(value, path, 0, guestAddressLimit - 1);
    const { threads, stacks, nextId } = state.record(saved, "");
    const neverRun: { start: ThreadStart; suspendCount: number }[] = [];
    state.list(threads, "threads").forEach((raw, i) => {
      const at = `threads[${i}]`;
      const thread = state.record(raw, at);
      const s = state.record(thread.start, `${at} start`);
      const cpu = slot(s.cpu, `${at} cpu`);
      if (this.#byCpu.has(cpu)) state.fail(`${at} cpu`, `vCPU ${cpu} has another thread`);
      const o = state.record(s.object, `${at} object`);
      const object = {
        slot: state.integer(o.slot, `${at} object.slot`, 0, MAX_SYNC_OBJECTS - 1),
        gen: state.integer(o.gen, `${at} object.gen`, 0, 2 ** 31 - 1),
      };
      const suspendCount = thread.suspendCount === undefined
        ? 0
        : state.integer(thread.suspendCount, `${at} suspendCount`, 0, MAX_SUSPEND_COUNT);
      const restored: ThreadStart = {
        cpu,
        object,
        threadId: state.integer(s.threadId, `${at} threadId`, 1, 2 ** 31 - 1),
        rip: address(s.rip, `${at} rip`),
        rsp: address(s.rsp, `${at} rsp`),
        rbx: state.bigint(s.rbx, `${at} rbx`),
        parameter: state.bigint(s.parameter, `${at} parameter`),
        gsBase: address(s.gsBase, `${at} gsBase`),
      };
      this.#byCpu.set(cpu, restored);
      if (suspendCount > 0) neverRun.push({ start: restored, suspendCount });
    });
    state.list(stacks, "stacks").forEach((raw, i) => {
      const [c, b, e] = state.list(raw, `stacks[${i}]`, 3);
      const cpu = slot(c, `stacks[${i}] vCPU`);
      const base = address(b, `stacks[${i}] base`), end = address(e, `stacks[${i}] end`);
      if (base >= end) state.fail(`stacks[${i}]`, `base 0x${base.toString(16)} is not below its end`);
      this.#stacks.set(cpu, { base, end });
    });
    this.#nextId = state.integer(nextId, "nextId", 1, 2 ** 31 - 1);
    for (const { start, suspendCount } of neverRun) {
      this.control.claim(start.cpu, start.threadId, { suspendCount });
      this.launch(start);
    }
  }

  /** The thread on `cpu` has ended and its vCPU left the guest for good: the slot, and its stack, are free. */
  exited(cpu: number): void {
    this.#byCpu.delete(cpu);
  }

  #writeTeb(cpu: number, threadId: number, stack: Stack): number {
    const teb = writeTeb(this.ram, cpu, threadId, { start: stack.base + PAGE, end: stack.end });
    this.writes?.mark(teb, PAGE);
    return teb;
  }

  /** Slot `cpu`'s stack if it is big enough, else a new one of `size` bytes (the old one released). */
  #stack(cpu: number, size: number): Stack {
    const kept = this.#stacks.get(cpu);
    if (kept && kept.end - kept.base - PAGE >= size) return kept;
    if (kept) this.memory.free(kept.base, 0, W.MEM_RELEASE);
    this.#stacks.delete(cpu);
    const base = this.memory.alloc(0, size + PAGE, W.MEM_RESERVE, W.PAGE_READWRITE);
    this.memory.alloc(base + PAGE, size, W.MEM_COMMIT, W.PAGE_READWRITE);
    const stack = { base, end: base + PAGE + size };
    this.#stacks.set(cpu, stack);
    return stack;
  }
}
