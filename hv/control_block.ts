// The shared memory through which an instance's threads coordinate without
// waiting on each other's event loops (a vCPU thread's loop is blocked in
// KVM_RUN while its guest runs): the stop and pause requests, the kick that
// pulls a vCPU out of the guest, the run tokens behind --cpus, the TLB
// generation, the guest clock, the count of live guest threads, one hypercall
// mailbox per vCPU for the host-services thread, the sync objects
// (abi/sync_objects.ts) and the hypercall counts (hv/hypercall_stats.ts).

import { libc, SIGURG } from "../ffi/libc.ts";
import { requestImmediateExit } from "./vcpu.ts";
import { SYNC_BYTES, SyncObjects } from "../abi/sync_objects.ts";
import { type Thread } from "../abi/dispatch.ts";
import { AbiViolation } from "../abi/call_errors.ts";
import { callsByNr } from "../abi/calls.ts";
import { maxVcpus } from "../abi/memory_map.ts";
import { HYPERCALL_STATS_BYTES, HypercallStats } from "./hypercall_stats.ts";
import type { ThreadControl } from "../abi/handler_context.ts";

// Header words.
const STOP = 0, TLB_GEN = 1, RUN_TOKENS = 2, SERVICE_BELL = 3, SERVICE_QUIT = 4, LIVE_THREADS = 5, PAUSE = 6;
/** Bumped by every stop, pause and resume, so a thread blocked on it re-checks which happened. */
const ATTENTION = 7;
/** A float64: host milliseconds the guest clock is behind the host's (paused time, a restore's gap). */
const CLOCK_SHIFT = 8;
/** Set by the instance, once every vCPU has parked, for the host-services thread to post its state. */
const STATE_REQUEST = 10;
/** A float64: the guest clock while a pause is requested, frozen until the resume. */
const FROZEN_CLOCK = 12, HEADER = 14;
// Words of one vCPU slot.
const TID = 0, IN_GUEST = 1, RUN_PAGE_LO = 2, RUN_PAGE_HI = 3;
const MAIL_STATE = 4, MAIL_NR = 5, MAIL_FRAME = 6, MAIL_LAST_ERROR = 7, MAIL_RESULT = 8, MAIL_THREAD = 9;
/** Counts the vCPU's returns from KVM_RUN, so a thread that kicked it can tell it has been out. */
const EXITS = 10;
/**
 * The guest thread on the vCPU (0: none), and what other threads asked of it: how many times it is suspended,
 * and whether it is to end (TERMINATE), with what code.
 */
const GUEST_THREAD = 11, SUSPENDS = 12, TERMINATE = 13, TERMINATE_CODE = 14;
const MAIL_TEXT = 16, MAIL_TEXT_BYTES = 192, CPU_WORDS = MAIL_TEXT + MAIL_TEXT_BYTES / 4;
const CPUS = HEADER;
const SYNC_OFFSET = 4 * (CPUS + CPU_WORDS * maxVcpus);
const STATS_OFFSET = Math.ceil((SYNC_OFFSET + SYNC_BYTES) / 8) * 8;
const BYTES = STATS_OFFSET + HYPERCALL_STATS_BYTES;

const enum Mail {
  Idle = 0,
  Request = 1,
  Done = 2,
}
/** MAIL_RESULT: how many page-table entries the vCPU must re-write, or one of these. */
const VIOLATION = -1, INTERRUPTED = -2;
const enum ServiceState {
  Running = 0,
  Quit = 1,
  Died = 2,
}
/** A mailbox "call number" that is not a hypercall: the sender's thread has ended. */
export const THREAD_EXITED = -1;

/** How often a thread waiting for a kicked vCPU to leave the guest checks that the vCPU still has a thread. */
const DETACH_CHECK_MS = 100;
/** How long a vCPU waits for a run token before it preempts one that holds it. */
const TIME_SLICE_MS = 10;
/** MAXIMUM_SUSPEND_COUNT: how many times over a thread may be suspended. */
export const MAX_SUSPEND_COUNT = 127;

/** What other threads asked of a guest thread that it has not yet acted on; a snapshot keeps it. */
export interface ThreadRequests {
  suspendCount: number;
  /** TerminateThread's exit code, when one was asked for. */
  terminate?: number;
}

/**
 * A served call: how many changed page-table entries the calling vCPU must
 * re-write (guest/kernel.ts); `interrupted` when a pause reached it before it
 * did anything (abi/dispatch.ts CallInterrupted).
 */
export type ServiceResult = { pageTableUpdates: number; interrupted?: true };
/** What the host-services thread answers for one mailbox request. */
export type ServiceAnswer = ServiceResult | { violation: string };

export class ControlBlock implements ThreadControl {
  readonly buffer: SharedArrayBuffer;
  readonly sync: SyncObjects;
  readonly hypercalls: HypercallStats;
  readonly #w: Int32Array;
  readonly #clockShift: Float64Array;
  readonly #frozenClock: Float64Array;
  readonly #text = new TextEncoder();
  #kickNext = 0;

  /** A new block (`cpus` = how many vCPUs may be in the guest at once), or a view of an existing one. */
  constructor(from: { cpus: number } | SharedArrayBuffer) {
    this.buffer = from instanceof SharedArrayBuffer ? from : new SharedArrayBuffer(BYTES);
    this.#w = new Int32Array(this.buffer, 0, SYNC_OFFSET / 4);
    this.#clockShift = new Float64Array(this.buffer, 4 * CLOCK_SHIFT, 1);
    this.#frozenClock = new Float64Array(this.buffer, 4 * FROZEN_CLOCK, 1);
    this.sync = new SyncObjects(this.buffer, SYNC_OFFSET);
    this.hypercalls = new HypercallStats(this.buffer, STATS_OFFSET);
    if (!(from instanceof SharedArrayBuffer)) {
      this.#w[RUN_TOKENS] = from.cpus;
      this.#w[LIVE_THREADS] = 1;
    }
  }

  // --- stopping ---

  stopRequested(): boolean {
    return Atomics.load(this.#w, STOP) !== 0;
  }

  /** Stops every vCPU: out of the guest, out of any wait (a paused one too), and never back in. */
  requestStop(): void {
    Atomics.store(this.#w, STOP, 1);
    Atomics.add(this.#w, RUN_TOKENS, maxVcpus);
    this.#callAttention();
  }

  // --- pausing ---

  pauseRequested(): boolean {
    return Atomics.load(this.#w, PAUSE) !== 0;
  }

  /**
   * Every vCPU parks at its next instruction boundary or in the wait it is in (hv/vcpu_worker.ts). The guest
   * clock stops now, not when the last vCPU has parked: one that runs on until then reads no time that a
   * snapshot of the pause, or the resume, would then take back. Returns the guest time it stopped at.
   */
  requestPause(): number {
    // Frozen before the request is seen: whoever sees the pause sees the frozen clock.
    const now = this.#frozenClock[0] = this.now();
    Atomics.store(this.#w, PAUSE, 1);
    this.#callAttention();
    return now;
  }

  /** Unparks every vCPU; the guest clock goes on from where the pause stopped it. */
  resume(): void {
    this.continueClockFrom(this.#frozenClock[0]);
    Atomics.store(this.#w, PAUSE, 0);
    this.#callAttention();
  }

  /** Blocks the calling thread while the instance is paused and not stopping. */
  waitWhilePaused(): void {
    for (;;) {
      const attention = Atomics.load(this.#w, ATTENTION);
      if (!this.pauseRequested() || this.stopRequested()) return;
      Atomics.wait(this.#w, ATTENTION, attention);
    }
  }

  /**
   * Blocks until the guest clock reaches `deadline` (Infinity = never), the
   * instance stops or the thread on `cpu` is to end (true), or it pauses
   * (false, early: the caller parks and sleeps again).
   */
  sleepUntil(deadline: number, cpu?: number): boolean {
    for (;;) {
      const attention = Atomics.load(this.#w, ATTENTION);
      if (this.stopRequested() || (cpu !== undefined && this.terminating(cpu) !== undefined)) return true;
      if (this.pauseRequested()) return false;
      const left = deadline - this.now();
      if (left <= 0) return false;
      Atomics.wait(this.#w, ATTENTION, attention, left === Infinity ? undefined : left);
    }
  }

  /** Every vCPU, or only `cpu`'s, looks again at what is asked of it: out of the guest, and out of any wait. */
  #callAttention(cpu?: number): void {
    Atomics.add(this.#w, ATTENTION, 1);
    Atomics.notify(this.#w, ATTENTION);
    this.sync.wakeAll();
    Atomics.notify(this.#w, RUN_TOKENS);
    if (cpu !== undefined) return this.kick(cpu);
    for (let c = 0; c < maxVcpus; c++) this.kick(c);
  }

  // --- the guest clock ---

  /**
   * Guest milliseconds, on the host's epoch: host time less every pause, so
   * the guest's clocks never jump while it was not running, and never run
   * backwards across a snapshot and restore.
   */
  now(): number {
    for (;;) {
      if (this.pauseRequested()) return this.#frozenClock[0];
      const now = performance.timeOrigin + performance.now() - this.#clockShift[0];
      // A pause requested meanwhile froze the clock at a time that may be earlier than this one.
      if (!this.pauseRequested()) return now;
    }
  }

  /** A restored instance's clock continues from `guestNow`, its clock when the snapshot was taken. */
  continueClockFrom(guestNow: number): void {
    this.#clockShift[0] = performance.timeOrigin + performance.now() - guestNow;
  }

  // --- vCPU slots ---

  /** Called by the thread that runs vCPU `cpu`, so others can kick it. */
  attach(cpu: number, runPage: bigint): void {
    const at = this.#cpu(cpu);
    Atomics.store(this.#w, at + RUN_PAGE_LO, Number(runPage & 0xffffffffn) | 0);
    Atomics.store(this.#w, at + RUN_PAGE_HI, Number(runPage >> 32n) | 0);
    Atomics.store(this.#w, at + TID, libc().gettid());
  }

  /** The thread of vCPU `cpu` is done with it: no more kicks. */
  detach(cpu: number): void {
    Atomics.store(this.#w, this.#cpu(cpu) + TID, 0);
  }

  /** Pulls vCPU `cpu` out of KVM_RUN: immediate_exit covers a thread about to enter, the signal one inside. */
  kick(cpu: number): void {
    const at = this.#cpu(cpu);
    const tid = Atomics.load(this.#w, at + TID);
    if (tid === 0) return;
    const page = (BigInt(Atomics.load(this.#w, at + RUN_PAGE_HI) >>> 0) << 32n) |
      BigInt(Atomics.load(this.#w, at + RUN_PAGE_LO) >>> 0);
    requestImmediateExit(Deno.UnsafePointer.create(page)!, true);
    libc().tgkill(libc().getpid(), tid, SIGURG);
  }

  /**
   * Takes a run token before vCPU `cpu` enters the guest (--cpus); false when
   * the instance is stopping or pausing. A vCPU that waits a whole time slice preempts
   * one in the guest, which gives its token back on the way out.
   */
  enterGuest(cpu: number): boolean {
    for (;;) {
      if (this.stopRequested() || this.pauseRequested()) return false;
      const tokens = Atomics.load(this.#w, RUN_TOKENS);
      if (tokens > 0) {
        if (Atomics.compareExchange(this.#w, RUN_TOKENS, tokens, tokens - 1) === tokens) break;
        continue;
      }
      if (Atomics.wait(this.#w, RUN_TOKENS, tokens, TIME_SLICE_MS) === "timed-out") this.#preemptOne(cpu);
    }
    Atomics.store(this.#w, this.#cpu(cpu) + IN_GUEST, 1);
    return true;
  }

  /** KVM_RUN returned on vCPU `cpu`: whatever it ran has been through a VM exit. */
  returnedFromGuest(cpu: number): void {
    Atomics.add(this.#w, this.#cpu(cpu) + EXITS, 1);
    Atomics.notify(this.#w, this.#cpu(cpu) + EXITS);
  }

  leftGuest(cpu: number): void {
    Atomics.store(this.#w, this.#cpu(cpu) + IN_GUEST, 0);
    Atomics.add(this.#w, RUN_TOKENS, 1);
    Atomics.notify(this.#w, RUN_TOKENS, 1);
  }

  #preemptOne(self: number): void {
    for (let i = 0; i < maxVcpus; i++) {
      const cpu = (this.#kickNext + i) % maxVcpus;
      if (cpu !== self && Atomics.load(this.#w, this.#cpu(cpu) + IN_GUEST) === 1) {
        this.#kickNext = cpu + 1;
        this.kick(cpu);
        return;
      }
    }
  }

  // --- translations ---

  tlbGeneration(): number {
    return Atomics.load(this.#w, TLB_GEN);
  }

  /**
   * Page tables changed: every other vCPU flushes its TLB before it next
   * enters, and those inside are pulled out now; returns the new generation,
   * which the caller (having flushed its own) is up to date with.
   */
  invalidateTranslations(self: number): number {
    const generation = Atomics.add(this.#w, TLB_GEN, 1) + 1;
    for (let cpu = 0; cpu < maxVcpus; cpu++) {
      if (cpu !== self && Atomics.load(this.#w, this.#cpu(cpu) + IN_GUEST) === 1) this.kick(cpu);
    }
    return generation;
  }

  /**
   * Kicks every vCPU but `self` that is in the guest and returns once each
   * has come back from KVM_RUN since. A VM exit drains that processor's
   * store buffer, which is what FlushProcessWriteBuffers promises.
   */
  pullOutOthers(self: number): void {
    const inside: { cpu: number; exits: number }[] = [];
    for (let cpu = 0; cpu < maxVcpus; cpu++) {
      const at = this.#cpu(cpu);
      if (cpu === self || Atomics.load(this.#w, at + IN_GUEST) !== 1) continue;
      inside.push({ cpu, exits: Atomics.load(this.#w, at + EXITS) });
      this.kick(cpu);
    }
    for (const { cpu, exits } of inside) {
      const at = this.#cpu(cpu);
      while (Atomics.load(this.#w, at + IN_GUEST) === 1 && Atomics.load(this.#w, at + EXITS) === exits) {
        // Every kick ends a KVM_RUN (immediate_exit covers a thread about to enter); the timeout only checks
        // for a thread that detached without leaving, as one that died does.
        if (Atomics.wait(this.#w, at + EXITS, exits, DETACH_CHECK_MS) === "timed-out" && !this.#attached(cpu)) break;
      }
    }
  }

  #attached(cpu: number): boolean {
    return Atomics.load(this.#w, this.#cpu(cpu) + TID) !== 0;
  }

  // --- guest threads ---

  threadStarted(): void {
    Atomics.add(this.#w, LIVE_THREADS, 1);
  }

  /** Guest threads created and not yet ended (suspended ones count). */
  get liveThreads(): number {
    return Atomics.load(this.#w, LIVE_THREADS);
  }

  set liveThreads(count: number) {
    Atomics.store(this.#w, LIVE_THREADS, count);
  }

  /** How many guest threads are left once the caller's has ended. */
  threadEnded(): number {
    return Atomics.sub(this.#w, LIVE_THREADS, 1) - 1;
  }

  /**
   * Guest thread `threadId` is on vCPU `cpu` from now on, with what was asked of it before (a snapshot's). Whoever
   * starts a thread claims its vCPU first, so no handle to it is ever out before another thread can reach it.
   */
  claim(cpu: number, threadId: number, requests: ThreadRequests = { suspendCount: 0 }): void {
    const at = this.#cpu(cpu);
    Atomics.store(this.#w, at + SUSPENDS, requests.suspendCount);
    Atomics.store(this.#w, at + TERMINATE_CODE, requests.terminate ?? 0);
    Atomics.store(this.#w, at + TERMINATE, requests.terminate === undefined ? 0 : 1);
    Atomics.store(this.#w, at + GUEST_THREAD, threadId);
  }

  /** The thread on `cpu` has ended: nothing more can be asked of it. */
  release(cpu: number): void {
    Atomics.store(this.#w, this.#cpu(cpu) + GUEST_THREAD, 0);
  }

  requests(cpu: number): ThreadRequests {
    const code = this.terminating(cpu);
    return { suspendCount: this.suspendCount(cpu), ...(code === undefined ? {} : { terminate: code }) };
  }

  suspendCount(cpu: number): number {
    return Atomics.load(this.#w, this.#cpu(cpu) + SUSPENDS);
  }

  /** TerminateThread's code for the thread on `cpu`, if it is to end. */
  terminating(cpu: number): number | undefined {
    const at = this.#cpu(cpu);
    return Atomics.load(this.#w, at + TERMINATE) ? Atomics.load(this.#w, at + TERMINATE_CODE) >>> 0 : undefined;
  }

  suspendThread(threadId: number): number | "ended" | "limit" {
    const cpu = this.#vcpuOf(threadId);
    if (cpu === undefined) return "ended";
    const at = this.#cpu(cpu) + SUSPENDS;
    for (;;) {
      const n = Atomics.load(this.#w, at);
      if (n >= MAX_SUSPEND_COUNT) return "limit";
      if (Atomics.compareExchange(this.#w, at, n, n + 1) !== n) continue;
      // A thread in the guest stops at its next exit, one in a wait at its next look: both hold there.
      if (n === 0) this.#callAttention(cpu);
      return n;
    }
  }

  resumeThread(threadId: number): number | "ended" {
    const cpu = this.#vcpuOf(threadId);
    if (cpu === undefined) return "ended";
    const at = this.#cpu(cpu) + SUSPENDS;
    for (;;) {
      const n = Atomics.load(this.#w, at);
      if (n === 0) return 0;
      if (Atomics.compareExchange(this.#w, at, n, n - 1) !== n) continue;
      if (n === 1) this.#callAttention(cpu);
      return n;
    }
  }

  terminateThread(threadId: number, code: number): boolean {
    const cpu = this.#vcpuOf(threadId);
    if (cpu === undefined) return false;
    const at = this.#cpu(cpu);
    Atomics.store(this.#w, at + TERMINATE_CODE, code | 0);
    Atomics.store(this.#w, at + TERMINATE, 1);
    this.#callAttention(cpu);
    return true;
  }

  /**
   * Blocks the thread on `cpu` while it is suspended: until it is resumed or is to end, or the instance stops or
   * pauses (the caller parks, then holds again).
   */
  holdWhileSuspended(cpu: number): void {
    for (;;) {
      const attention = Atomics.load(this.#w, ATTENTION);
      if (this.stopRequested() || this.pauseRequested() || this.terminating(cpu) !== undefined) return;
      if (this.suspendCount(cpu) === 0) return;
      Atomics.wait(this.#w, ATTENTION, attention);
    }
  }

  #vcpuOf(threadId: number): number | undefined {
    if (threadId === 0) return undefined;
    for (let cpu = 0; cpu < maxVcpus; cpu++) {
      if (Atomics.load(this.#w, this.#cpu(cpu) + GUEST_THREAD) === threadId) return cpu;
    }
    return undefined;
  }

  // --- the host-services mailboxes ---

  /**
   * Runs hypercall `nr` of vCPU `cpu` on the host-services thread and waits
   * for its answer, which a pause does not hold up (a blocking call comes
   * back interrupted).
   */
  call(cpu: number, nr: number, frame: number, thread: Thread): ServiceResult {
    const at = this.#cpu(cpu);
    this.#w[at + MAIL_NR] = nr;
    this.#w[at + MAIL_FRAME] = frame;
    this.#w[at + MAIL_LAST_ERROR] = thread.lastError;
    this.#w[at + MAIL_THREAD] = thread.id;
    Atomics.store(this.#w, at + MAIL_STATE, Mail.Request);
    Atomics.add(this.#w, SERVICE_BELL, 1);
    Atomics.notify(this.#w, SERVICE_BELL);
    // The service answers every request, even while stopping, so this wait ends unless the service died.
    while (Atomics.load(this.#w, at + MAIL_STATE) === Mail.Request) {
      if (Atomics.load(this.#w, SERVICE_QUIT) === ServiceState.Died) throw new Error("the host-services thread died");
      Atomics.wait(this.#w, at + MAIL_STATE, Mail.Request);
    }
    Atomics.store(this.#w, at + MAIL_STATE, Mail.Idle);
    thread.lastError = this.#w[at + MAIL_LAST_ERROR] >>> 0;
    const result = this.#w[at + MAIL_RESULT];
    if (result === VIOLATION) {
      const bytes = new Uint8Array(this.buffer, 4 * (at + MAIL_TEXT), MAIL_TEXT_BYTES).slice();
      const text = new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0) < 0 ? undefined : bytes.indexOf(0)));
      throw new AbiViolation(callsByNr[nr]?.name ?? `#${nr}`, text);
    }
    return result === INTERRUPTED ? { pageTableUpdates: 0, interrupted: true } : { pageTableUpdates: result };
  }

  /** Asks the host-services thread for its state (`serve`'s `postState`): every vCPU must be parked. */
  requestServiceState(): void {
    Atomics.store(this.#w, STATE_REQUEST, 1);
    Atomics.add(this.#w, SERVICE_BELL, 1);
    Atomics.notify(this.#w, SERVICE_BELL);
  }

  /** The host-services loop: answers mailbox requests, and posts its state when asked, until `quitService`. */
  serve(
    answer: (cpu: number, nr: number, frame: number, thread: Thread) => ServiceAnswer,
    postState: () => void,
  ): void {
    for (;;) {
      const bell = Atomics.load(this.#w, SERVICE_BELL);
      if (Atomics.exchange(this.#w, STATE_REQUEST, 0) !== 0) postState();
      for (let cpu = 0; cpu < maxVcpus; cpu++) {
        const at = this.#cpu(cpu);
        if (Atomics.load(this.#w, at + MAIL_STATE) !== Mail.Request) continue;
        const thread: Thread = { lastError: this.#w[at + MAIL_LAST_ERROR] >>> 0, id: this.#w[at + MAIL_THREAD] };
        const r = answer(cpu, this.#w[at + MAIL_NR], this.#w[at + MAIL_FRAME] >>> 0, thread);
        this.#w[at + MAIL_LAST_ERROR] = thread.lastError;
        if ("violation" in r) {
          const text = new Uint8Array(this.buffer, 4 * (at + MAIL_TEXT), MAIL_TEXT_BYTES).fill(0);
          // Whole characters only, and a NUL left at the end.
          this.#text.encodeInto(r.violation, text.subarray(0, MAIL_TEXT_BYTES - 1));
          this.#w[at + MAIL_RESULT] = VIOLATION;
        } else {
          this.#w[at + MAIL_RESULT] = r.interrupted ? INTERRUPTED : r.pageTableUpdates;
        }
        Atomics.store(this.#w, at + MAIL_STATE, Mail.Done);
        Atomics.notify(this.#w, at + MAIL_STATE);
      }
      if (Atomics.load(this.#w, SERVICE_QUIT) !== 0) return;
      Atomics.wait(this.#w, SERVICE_BELL, bell);
    }
  }

  quitService(): void {
    Atomics.store(this.#w, SERVICE_QUIT, ServiceState.Quit);
    Atomics.add(this.#w, SERVICE_BELL, 1);
    Atomics.notify(this.#w, SERVICE_BELL);
  }

  /** The host-services thread is gone: vCPUs waiting for an answer give up instead of waiting for ever. */
  serviceDied(): void {
    Atomics.store(this.#w, SERVICE_QUIT, ServiceState.Died);
    for (let cpu = 0; cpu < maxVcpus; cpu++) Atomics.notify(this.#w, this.#cpu(cpu) + MAIL_STATE);
  }

  #cpu(cpu: number): number {
    return CPUS + CPU_WORDS * cpu;
  }
}
