// Waitable objects (events, mutexes, semaphores, threads, the process) and address waits, kept in
// shared memory so every vCPU thread of an instance can wait on them itself:
// a waiting guest thread blocks its own host thread in Atomics.wait and costs
// no CPU, and no other thread has to serve the wait.
//
// A sync handle names its slot and which of the object's handles it is
// (SYNC_HANDLE_BASE + 4 * (copy * MAX_SYNC_OBJECTS + slot)), so a vCPU thread
// resolves it without asking the thread that owns the handle table. The call
// that made an object gave it its first handle, DuplicateHandle the others; it
// is freed with its last one. A slot's generation changes when it is freed, which is how a thread
// blocked on it learns that another thread closed it.
//
// GetCurrentProcess() and GetCurrentThread() name the process and the calling thread, neither of which
// can end while the caller waits on it: to a wait they are objects that are never signalled.

import { PlainState } from "./plain_state.ts";
import { win32Constants, win32Errors } from "./win32.ts";

export const enum SyncKind {
  Free = 0,
  Event = 1,
  Mutex = 2,
  Thread = 3,
  Semaphore = 4,
  /** A real handle to the app's process (DuplicateHandle, OpenProcess): never signalled while anyone can wait. */
  Process = 5,
}

/** Objects an instance may hold open at once. */
export const MAX_SYNC_OBJECTS = 4096;
/** Handles one object may have at once: the one that made it and up to 15 duplicates. */
const COPIES = 16;
/** The pseudo-handles, as the dispatcher decodes them (sign-extended, as Windows compares handles). */
export const CURRENT_PROCESS = -1, CURRENT_THREAD = -2;
/** Sync handles sit above every handle the handle table hands out. */
export const SYNC_HANDLE_BASE = 0x4000_0000;
const BUCKETS = 256;

// Header words.
const LOCK = 0, EPOCH = 1, HEADER = 2;
// Words of one object slot; HANDLES has a bit for each of the object's open handles. OWNER is a mutex's
// owner, a semaphore's maximum and a thread's id.
const KIND = 0, GEN = 1, SIGNALED = 2, MANUAL = 3, OWNER = 4, COUNT = 5, ABANDONED = 6, EXIT_CODE = 7, HANDLES = 8;
const SLOT = 9;
/** Slots as snapshots before duplicate handles kept them: without HANDLES, a live object has its first handle. */
const SLOT_BEFORE_HANDLES = 8;
const OBJECTS = HEADER, ADDRESS_BUCKETS = OBJECTS + SLOT * MAX_SYNC_OBJECTS;
export const SYNC_BYTES = 4 * (ADDRESS_BUCKETS + BUCKETS);

const { WAIT_OBJECT_0, WAIT_ABANDONED_0, WAIT_TIMEOUT, STILL_ACTIVE, MAXIMUM_WAIT_OBJECTS } = win32Constants;

/** A handle resolved to its slot at one generation. */
export interface SyncRef {
  slot: number;
  gen: number;
}

export type WaitResult = { code: number } | { error: number } | { stopped: true };

/** How a blocked wait meets the instance's clock and its stop and pause requests. */
export interface WaitControl {
  /** Guest-clock milliseconds, which deadlines are on. */
  now(): number;
  /**
   * Called before each sleep of a wait: true when the instance is stopping.
   * While it is paused this parks the thread, keeping `deadline` for any
   * snapshot taken meanwhile, and returns when it resumes.
   */
  checkpoint(deadline: number): boolean;
}

/** The slots a snapshot keeps: every one that is in use or has been (its generation tells stale handles apart). */
export interface SyncObjectsState {
  /**
   * [slot, the slot's nine words (kind, generation, signalled, manual, owner, count, abandoned, exit code, open
   * handles)]; a snapshot from before DuplicateHandle has the first eight.
   */
  slots: [number, number[]][];
}

export class SyncObjects {
  readonly #w: Int32Array;

  /** `buffer` holds SYNC_BYTES at `byteOffset`, shared by every thread of the instance, zeroed at start. */
  constructor(buffer: SharedArrayBuffer, byteOffset = 0) {
    this.#w = new Int32Array(buffer, byteOffset, SYNC_BYTES / 4);
  }

  /** The handle of a new object, or undefined when all slots are taken. */
  create(
    kind: SyncKind,
    init: { signaled?: boolean; manual?: boolean; owner?: number; count?: number; maximum?: number; threadId?: number },
  ): number | undefined {
    return this.#locked(() => {
      for (let slot = 0; slot < MAX_SYNC_OBJECTS; slot++) {
        const at = OBJECTS + SLOT * slot;
        if (this.#w[at + KIND] !== SyncKind.Free) continue;
        this.#w[at + KIND] = kind;
        this.#w[at + SIGNALED] = init.signaled ? 1 : 0;
        this.#w[at + MANUAL] = init.manual ? 1 : 0;
        this.#w[at + OWNER] = kind === SyncKind.Semaphore
          ? init.maximum ?? 0
          : kind === SyncKind.Thread
          ? init.threadId ?? 0
          : init.owner ?? 0;
        // A mutex counts its owner's recursion, a semaphore its count.
        this.#w[at + COUNT] = kind === SyncKind.Semaphore ? init.count ?? 0 : init.owner ? 1 : 0;
        this.#w[at + ABANDONED] = 0;
        this.#w[at + EXIT_CODE] = STILL_ACTIVE;
        this.#w[at + HANDLES] = 1;
        return syncHandle(slot, 0);
      }
      return undefined;
    });
  }

  /** The live object `handle` names (tag bits ignored, as Windows does), if it is of one of `kinds`. */
  resolve(handle: number, ...kinds: SyncKind[]): SyncRef | undefined {
    const named = handleParts(handle);
    if (!named) return undefined;
    const at = OBJECTS + SLOT * named.slot;
    const kind = Atomics.load(this.#w, at + KIND);
    if (kind === SyncKind.Free || (kinds.length && !kinds.includes(kind))) return undefined;
    if (!(Atomics.load(this.#w, at + HANDLES) & (1 << named.copy))) return undefined;
    return { slot: named.slot, gen: Atomics.load(this.#w, at + GEN) };
  }

  /**
   * Closes the handle; with the object's last, frees the object, and threads waiting on it wake and fail with
   * ERROR_INVALID_HANDLE. While another handle stays open, a wait through this one goes on, as on Windows.
   */
  close(handle: number): boolean {
    const named = handleParts(handle);
    if (!named || !this.resolve(handle)) return false;
    return this.#change(() => {
      const at = OBJECTS + SLOT * named.slot, bit = 1 << named.copy;
      if (this.#w[at + KIND] === SyncKind.Free || !(this.#w[at + HANDLES] & bit)) return false;
      this.#w[at + HANDLES] &= ~bit;
      if (this.#w[at + HANDLES] === 0) {
        this.#w[at + KIND] = SyncKind.Free;
        this.#w[at + GEN]++;
      }
      return true;
    });
  }

  /** DuplicateHandle: another handle to the object `handle` names, or undefined when it has all it may have. */
  duplicate(handle: number): number | undefined {
    const named = handleParts(handle);
    if (!named || !this.resolve(handle)) return undefined;
    return this.#locked(() => {
      const at = OBJECTS + SLOT * named.slot;
      if (this.#w[at + KIND] === SyncKind.Free || !(this.#w[at + HANDLES] & (1 << named.copy))) return undefined;
      return this.#addHandle(named.slot);
    });
  }

  /**
   * A new handle to the thread object `ref` names, or, once that is freed (or with none), to a new one: a running
   * thread's object outlives its handles, as on Windows. Undefined when no object or handle is left.
   */
  openThread(threadId: number, ref?: SyncRef): { handle: number; object: SyncRef } | undefined {
    const live = ref && this.open(ref);
    if (live) return live.handle === undefined ? undefined : { handle: live.handle, object: ref! };
    const made = this.create(SyncKind.Thread, { threadId });
    return made === undefined ? undefined : { handle: made, object: this.resolve(made)! };
  }

  /**
   * Another handle to the object `ref` names (an open by name): undefined once the object is freed, and no handle
   * while it has all it may have.
   */
  open(ref: SyncRef): { handle: number | undefined } | undefined {
    return this.#locked(() => this.#live(ref) ? { handle: this.#addHandle(ref.slot) } : undefined);
  }

  /** The kind of the object `ref` names, undefined once it is freed. */
  kindOf(ref: SyncRef): SyncKind | undefined {
    return this.#locked(() => this.#live(ref) ? this.#w[this.#at(ref) + KIND] as SyncKind : undefined);
  }

  #addHandle(slot: number): number | undefined {
    const at = OBJECTS + SLOT * slot, open = this.#w[at + HANDLES];
    for (let copy = 0; copy < COPIES; copy++) {
      if (open & (1 << copy)) continue;
      this.#w[at + HANDLES] = open | (1 << copy);
      return syncHandle(slot, copy);
    }
    return undefined;
  }

  setEvent(ref: SyncRef, signaled: boolean): boolean {
    return this.#change(() => {
      if (!this.#live(ref) || this.#w[this.#at(ref) + KIND] !== SyncKind.Event) return false;
      this.#w[this.#at(ref) + SIGNALED] = signaled ? 1 : 0;
      return true;
    });
  }

  /** Gives up one level of ownership; false when `tid` does not own the mutex (ERROR_NOT_OWNER). */
  releaseMutex(ref: SyncRef, tid: number): boolean {
    return this.#change(() => {
      const at = this.#at(ref);
      if (!this.#live(ref) || this.#w[at + OWNER] !== tid) return false;
      if (--this.#w[at + COUNT] === 0) this.#w[at + OWNER] = 0;
      return true;
    });
  }

  /** Adds `n` to a semaphore's count: its previous count, or undefined past its maximum (ERROR_TOO_MANY_POSTS). */
  releaseSemaphore(ref: SyncRef, n: number): number | undefined {
    return this.#change(() => {
      const at = this.#at(ref);
      const count = this.#w[at + COUNT], maximum = this.#w[at + OWNER];
      if (!this.#live(ref) || n > maximum - count) return undefined;
      this.#w[at + COUNT] = count + n;
      return count;
    });
  }

  /** A thread object's thread id: 0 for one restored from a snapshot made before objects kept it. */
  threadId(ref: SyncRef): number | undefined {
    if (!this.#live(ref)) return undefined;
    return this.#w[this.#at(ref) + OWNER];
  }

  /** A thread object's exit code, STILL_ACTIVE while the thread runs. */
  exitCode(ref: SyncRef): number | undefined {
    if (!this.#live(ref)) return undefined;
    return this.#w[this.#at(ref) + EXIT_CODE] >>> 0;
  }

  /**
   * Thread `tid` has ended: its object (if its handle is still open) is
   * signalled with `code`, and the mutexes it still owns are abandoned.
   */
  threadExited(tid: number, code: number, object?: SyncRef): void {
    this.#change(() => {
      if (object && this.#live(object)) {
        this.#w[this.#at(object) + SIGNALED] = 1;
        this.#w[this.#at(object) + EXIT_CODE] = code | 0;
      }
      for (let slot = 0; slot < MAX_SYNC_OBJECTS; slot++) {
        const at = OBJECTS + SLOT * slot;
        if (this.#w[at + KIND] === SyncKind.Mutex && this.#w[at + OWNER] === tid) {
          this.#w[at + OWNER] = 0;
          this.#w[at + COUNT] = 0;
          this.#w[at + ABANDONED] = 1;
        }
      }
    });
  }

  /**
   * WaitForMultipleObjects for thread `tid`: the first signalled object
   * (or all of them) is acquired atomically, the way Windows does it.
   */
  wait(handles: readonly number[], all: boolean, deadline: number, tid: number, control: WaitControl): WaitResult {
    if (handles.length === 0 || handles.length > MAXIMUM_WAIT_OBJECTS) {
      return { error: win32Errors.ERROR_INVALID_PARAMETER };
    }
    /** null: a pseudo-handle, never signalled. */
    const refs: (SyncRef | null)[] = [];
    for (const h of handles) {
      const ref = h === CURRENT_PROCESS || h === CURRENT_THREAD ? null : this.resolve(h);
      if (ref === undefined) return { error: win32Errors.ERROR_INVALID_HANDLE };
      refs.push(ref);
    }
    if (all && new Set(handles.map((h, i) => refs[i]?.slot ?? h)).size !== refs.length) {
      return { error: win32Errors.ERROR_INVALID_PARAMETER };
    }
    for (;;) {
      const epoch = Atomics.load(this.#w, EPOCH);
      const result = this.#locked(() => this.#tryAcquire(refs, all, tid));
      if (result) return result;
      if (control.checkpoint(deadline)) return { stopped: true };
      const left = deadline - control.now();
      if (left <= 0) return { code: WAIT_TIMEOUT };
      Atomics.wait(this.#w, EPOCH, epoch, left === Infinity ? undefined : left);
    }
  }

  /**
   * Blocks while the guest word `read()` still equals `expected`: false on
   * timeout. Like WaitOnAddress it may wake spuriously, as it does for a
   * pause or a stop that comes while it sleeps.
   */
  waitOnAddress(
    address: number,
    read: () => number,
    expected: number,
    deadline: number,
    control: WaitControl,
  ): boolean {
    const bucket = ADDRESS_BUCKETS + (address >>> 2) % BUCKETS;
    const seen = Atomics.load(this.#w, bucket);
    if ((read() | 0) !== (expected | 0) || control.checkpoint(deadline)) return true;
    const left = deadline - control.now();
    if (left <= 0) return false;
    const r = Atomics.wait(this.#w, bucket, seen, left === Infinity ? undefined : left);
    return r !== "timed-out";
  }

  wakeByAddress(address: number): void {
    const bucket = ADDRESS_BUCKETS + (address >>> 2) % BUCKETS;
    Atomics.add(this.#w, bucket, 1);
    Atomics.notify(this.#w, bucket);
  }

  /** Taken while no thread of the instance runs (paused), so no lock is needed. */
  save(): SyncObjectsState {
    const slots: [number, number[]][] = [];
    for (let slot = 0; slot < MAX_SYNC_OBJECTS; slot++) {
      const at = OBJECTS + SLOT * slot;
      if (this.#w[at + KIND] !== SyncKind.Free || this.#w[at + GEN] !== 0) {
        slots.push([slot, [...this.#w.subarray(at, at + SLOT)]]);
      }
    }
    return { slots };
  }

  /** Fills a new instance's zeroed objects from a snapshot's; `where` names it in errors. */
  restore(saved: SyncObjectsState, where: string): void {
    const state = new PlainState(`${where}: sync objects`);
    state.list(state.record(saved, "").slots, "slots").forEach((entry, i) => {
      const [s, w] = state.list(entry, `slots[${i}]`, 2);
      const slot = state.integer(s, `slots[${i}] slot`, 0, MAX_SYNC_OBJECTS - 1);
      const kept = state.list(w, `slot ${slot}`);
      if (kept.length !== SLOT && kept.length !== SLOT_BEFORE_HANDLES) {
        state.fail(
          `slot ${slot}`,
          `has ${kept.length} words, not ${SLOT} (or ${SLOT_BEFORE_HANDLES} before DuplicateHandle)`,
        );
      }
      const words = kept.map((word, j) => state.integer(word, `slot ${slot}[${j}]`, -(2 ** 31), 2 ** 31 - 1));
      if (words[KIND] < SyncKind.Free || words[KIND] > SyncKind.Process) {
        state.fail(`slot ${slot}`, "is of no known kind");
      }
      if (words.length === SLOT_BEFORE_HANDLES) words.push(words[KIND] === SyncKind.Free ? 0 : 1);
      const open = words[HANDLES];
      if (open < 0 || open >= 1 << COPIES || (open === 0) !== (words[KIND] === SyncKind.Free)) {
        state.fail(`slot ${slot}`, `open handles ${open} do not fit an object of kind ${words[KIND]}`);
      }
      this.#w.set(words, OBJECTS + SLOT * slot);
    });
  }

  /** Wakes every blocked thread so it can see that the instance is stopping. */
  wakeAll(): void {
    this.#bump();
    for (let b = 0; b < BUCKETS; b++) {
      Atomics.add(this.#w, ADDRESS_BUCKETS + b, 1);
      Atomics.notify(this.#w, ADDRESS_BUCKETS + b);
    }
  }

  #tryAcquire(refs: (SyncRef | null)[], all: boolean, tid: number): WaitResult | undefined {
    if (!refs.every((r) => r === null || this.#live(r))) return { error: win32Errors.ERROR_INVALID_HANDLE };
    const ready = refs.map((r) => r !== null && this.#available(r, tid));
    if (all) {
      if (!ready.every(Boolean)) return undefined;
      const abandoned = refs.map((r) => this.#acquire(r!, tid)).indexOf(true);
      return { code: abandoned >= 0 ? WAIT_ABANDONED_0 + abandoned : WAIT_OBJECT_0 };
    }
    const i = ready.indexOf(true);
    if (i < 0) return undefined;
    return { code: (this.#acquire(refs[i]!, tid) ? WAIT_ABANDONED_0 : WAIT_OBJECT_0) + i };
  }

  #available(ref: SyncRef, tid: number): boolean {
    const at = this.#at(ref);
    if (this.#w[at + KIND] === SyncKind.Mutex) return this.#w[at + OWNER] === 0 || this.#w[at + OWNER] === tid;
    if (this.#w[at + KIND] === SyncKind.Semaphore) return this.#w[at + COUNT] > 0;
    return this.#w[at + SIGNALED] === 1;
  }

  /** Takes what the wait consumes; true when that was an abandoned mutex. */
  #acquire(ref: SyncRef, tid: number): boolean {
    const at = this.#at(ref);
    switch (this.#w[at + KIND]) {
      case SyncKind.Mutex: {
        this.#w[at + OWNER] = tid;
        this.#w[at + COUNT]++;
        const abandoned = this.#w[at + ABANDONED] === 1;
        this.#w[at + ABANDONED] = 0;
        return abandoned;
      }
      case SyncKind.Event:
        if (!this.#w[at + MANUAL]) this.#w[at + SIGNALED] = 0;
        return false;
      case SyncKind.Semaphore:
        this.#w[at + COUNT]--;
        return false;
      default:
        return false;
    }
  }

  #at(ref: SyncRef): number {
    return OBJECTS + SLOT * ref.slot;
  }

  #live(ref: SyncRef): boolean {
    const at = this.#at(ref);
    return this.#w[at + KIND] !== SyncKind.Free && this.#w[at + GEN] === ref.gen;
  }

  /** A state change waiters may care about: made under the lock, then every waiter rechecks. */
  #change<T>(f: () => T): T {
    const r = this.#locked(f);
    this.#bump();
    return r;
  }

  #bump(): void {
    Atomics.add(this.#w, EPOCH, 1);
    Atomics.notify(this.#w, EPOCH);
  }

  /** A futex-style lock (0 free, 1 held, 2 held with waiters) around multi-word updates. */
  #locked<T>(f: () => T): T {
    if (Atomics.compareExchange(this.#w, LOCK, 0, 1) !== 0) {
      while (Atomics.exchange(this.#w, LOCK, 2) !== 0) Atomics.wait(this.#w, LOCK, 2);
    }
    try {
      return f();
    } finally {
      if (Atomics.exchange(this.#w, LOCK, 0) === 2) Atomics.notify(this.#w, LOCK, 1);
    }
  }
}

function syncHandle(slot: number, copy: number): number {
  return SYNC_HANDLE_BASE + 4 * (copy * MAX_SYNC_OBJECTS + slot);
}

/** Which slot, and which of its object's handles, a sync handle names (tag bits ignored); undefined for others. */
function handleParts(handle: number): { slot: number; copy: number } | undefined {
  if (handle < SYNC_HANDLE_BASE || handle >= syncHandle(0, COPIES)) return undefined;
  const index = (handle - SYNC_HANDLE_BASE) >>> 2;
  return { slot: index % MAX_SYNC_OBJECTS, copy: Math.floor(index / MAX_SYNC_OBJECTS) };
}
