// Routes a hypercall exit to its handler. All checking happens here, driven by
// the declarations in abi/calls.ts: handlers receive only validated arguments
// (views onto guest memory that were proven mapped), never raw guest pointers.

import { type CallDef, callsByName, callsByNr, frameSize, type Param } from "./calls.ts";
import type { AddressSpace } from "./address_space.ts";
import { win32Errors } from "./win32.ts";
import { PAGE } from "./memory_map.ts";
import type { HostWrites } from "./host_writes.ts";
import { AbiViolation, Win32Error } from "./call_errors.ts";
import type { SpecialCalls } from "./special_calls.ts";
import { hex } from "./hex.ts";

/** Guest RAM as the host sees it, plus the guest's page tables for access checks. */
export interface GuestView {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly pages: AddressSpace;
  /** Told of every range a handler may write: the frame's result and each out-argument. */
  readonly writes?: HostWrites;
}

/** A DWORD the host writes back into the guest. */
export class OutU32 {
  constructor(private readonly view: DataView, private readonly address: number) {}
  set(value: number): void {
    this.view.setUint32(this.address, value >>> 0, true);
  }
}

export type ArgValue = number | bigint | string | Uint8Array | OutU32 | null;
export type Args = Record<string, ArgValue>;

/** The calling guest thread, as a handler sees it. */
export interface Thread {
  lastError: number;
  readonly id: number;
}

/** Returns the value for the frame's `ret` slot. */
export type Handler = (args: Args, thread: Thread) => number | bigint;

/** Longest Win32 path (and so the longest string argument) in characters, without the NUL. */
const MAX_WIDE_STRING = 32767;

/**
 * A handle slot as a number: Windows compares handles as sign-extended 32-bit values, so the pseudo-handles
 * (GetCurrentProcess() is -1, GetCurrentThread() -2) come out negative, and a value that is neither is no handle (0).
 */
export function handleValue(raw: bigint): number {
  if (raw <= 0xffffffffn) return Number(raw);
  return raw >= 0xffffffff80000000n ? Number(BigInt.asIntN(64, raw)) : 0;
}

export class Dispatcher {
  readonly #table: ({ call: CallDef; handler: Handler; allowed: boolean } | undefined)[] = [];

  /**
   * Serves `handlers`. A call outside `allowed` (the manifest's) goes to
   * `special` when there is one, and stops the guest when there is not.
   */
  constructor(
    private readonly guest: GuestView,
    handlers: Readonly<Record<string, Handler>>,
    allowed: Iterable<string>,
    private readonly special?: SpecialCalls,
  ) {
    for (const [name, handler] of Object.entries(handlers)) {
      const call = callsByName.get(name);
      if (!call) throw new Error(`handler for unknown hypercall ${name}`);
      this.#table[call.nr] = { call, handler, allowed: false };
    }
    for (const name of allowed) {
      if (!callsByName.has(name)) throw new Error(`manifest allows unknown hypercall ${name}`);
      const entry = this.#table[callsByName.get(name)!.nr];
      if (entry) entry.allowed = true;
    }
  }

  /** Whether this dispatcher serves call `nr`. */
  serves(nr: number): boolean {
    return this.#table[nr] !== undefined;
  }

  /**
   * Runs call `nr` with the frame at guest address `frame` and returns its
   * definition; throws AbiViolation when the frame itself is unusable.
   */
  dispatch(nr: number, frame: number, thread: Thread): CallDef {
    const entry = this.#table[nr];
    if (!entry || (!entry.allowed && !this.special)) {
      const known = callsByNr[nr];
      throw new AbiViolation(known?.name ?? `#${nr}`, known ? "not allowed by this bundle's manifest" : "no such call");
    }
    const { call, handler } = entry;
    if (!this.guest.pages.accessible(frame, frameSize(call), true)) {
      throw new AbiViolation(
        call.name,
        `argument frame ${hex(frame)}+${frameSize(call)} is not mapped writable guest memory`,
      );
    }
    const view = this.guest.view;
    let ret: number | bigint;
    try {
      if (!entry.allowed) {
        this.special!.unseen({ kind: "call", name: call.name }, call.name, win32Errors.ERROR_ACCESS_DENIED);
      }
      ret = handler(this.#decode(call, frame), thread);
    } catch (e) {
      if (!(e instanceof Win32Error)) throw e;
      thread.lastError = e.code;
      ret = call.failure;
    }
    view.setBigUint64(frame, BigInt.asUintN(64, BigInt(ret)), true);
    this.guest.writes?.mark(frame, 8);
    return call;
  }

  #decode(call: CallDef, frame: number): Args {
    const view = this.guest.view;
    const slot = (i: number) => view.getBigUint64(frame + 8 * (i + 1), true);
    const args: Args = {};
    const lengthOf = (p: Param & { len: string }) => {
      const i = call.params.findIndex((q) => q.name === p.len);
      return Number(slot(i) & 0xffffffffn);
    };
    call.params.forEach((p, i) => {
      const raw = slot(i);
      switch (p.kind) {
        case "u32":
          args[p.name] = Number(raw & 0xffffffffn);
          break;
        case "u64":
          args[p.name] = raw;
          break;
        case "handle":
          args[p.name] = handleValue(raw);
          break;
        case "in":
          args[p.name] = this.#buffer(raw, lengthOf(p) * p.unit, false);
          break;
        case "inStruct":
          args[p.name] = this.#buffer(raw, p.size, false, true);
          break;
        case "out":
          args[p.name] = this.#buffer(raw, lengthOf(p) * p.unit, true);
          break;
        case "outU32":
          if (raw === 0n && p.optional) args[p.name] = null;
          else args[p.name] = new OutU32(view, Number(this.#checked(raw, 4, true)));
          break;
        case "outStruct":
          args[p.name] = raw === 0n && p.optional ? null : this.#buffer(raw, p.size, true, true);
          break;
        case "wstr":
          if (raw === 0n && !p.optional) throw new Win32Error(win32Errors.ERROR_INVALID_PARAMETER);
          args[p.name] = raw === 0n ? null : this.#string(raw, 2);
          break;
        case "nameOrOrdinal":
          args[p.name] = raw < 0x10000n ? Number(raw) : this.#string(raw, 1);
          break;
        case "null":
          if (raw !== 0n) throw new Win32Error(win32Errors.ERROR_INVALID_PARAMETER);
          args[p.name] = null;
          break;
      }
    });
    return args;
  }

  #checked(address: bigint, length: number, write: boolean): number {
    if (address > BigInt(this.guest.bytes.byteLength)) throw new Win32Error(win32Errors.ERROR_NOACCESS);
    const a = Number(address);
    if (!this.guest.pages.accessible(a, length, write)) throw new Win32Error(win32Errors.ERROR_NOACCESS);
    if (write) this.guest.writes?.mark(a, length);
    return a;
  }

  #buffer(address: bigint, length: number, write: boolean, nonNull = false): Uint8Array {
    if (length === 0 && !nonNull) return new Uint8Array(0);
    const a = this.#checked(address, length, write);
    return this.guest.bytes.subarray(a, a + length);
  }

  /** A NUL-terminated string of 1- or 2-byte units, every page it touches checked before it is read. */
  #string(address: bigint, unitSize: 1 | 2): string {
    const start = this.#checked(address, unitSize, false);
    const units: number[] = [];
    for (let at = start;; at += unitSize) {
      // Re-check where a character begins a page or straddles into the next one.
      const crosses = at % PAGE === 0 || at % PAGE > PAGE - unitSize;
      if (at !== start && crosses && !this.guest.pages.accessible(at, unitSize, false)) {
        throw new Win32Error(win32Errors.ERROR_NOACCESS);
      }
      const unit = unitSize === 2 ? this.guest.view.getUint16(at, true) : this.guest.view.getUint8(at);
      if (unit === 0) break;
      if (units.length === MAX_WIDE_STRING) throw new Win32Error(win32Errors.ERROR_FILENAME_EXCED_RANGE);
      units.push(unit);
    }
    let text = "";
    for (let i = 0; i < units.length; i += 4096) text += String.fromCharCode(...units.slice(i, i + 4096));
    return text;
  }
}
