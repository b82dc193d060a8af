// Routes a hypercall exit to its handler. All checking happens here, driven by
// the declarations in abi/calls.ts: handlers receive only validated arguments
// (views onto guest memory that were proven mapped), never raw guest pointers.

import { type CallDef, callsByName, callsByNr, frameSize, type Param } from "./calls.ts";
import type { PageTables } from "../guest/paging.ts";
import { win32Errors } from "./win32.ts";

/** Guest RAM as the host sees it, plus the guest's page tables for access checks. */
export interface GuestView {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly pages: PageTables;
}

/** A DWORD the host writes back into the guest. */
export class OutU32 {
  constructor(private readonly view: DataView, private readonly address: number) {}
  set(value: number): void {
    this.view.setUint32(this.address, value >>> 0, true);
  }
}

export type ArgValue = number | bigint | Uint8Array | OutU32 | null;
export type Args = Record<string, ArgValue>;

/** Per-vCPU state a handler may read or change. */
export interface Thread {
  lastError: number;
}

/** Returns the value for the frame's `ret` slot. */
export type Handler = (args: Args, thread: Thread) => number | bigint;

/** The guest broke the ABI itself (bad frame, unknown or forbidden call): the instance stops. */
export class AbiViolation extends Error {
  constructor(readonly call: string, message: string) {
    super(`hypercall ${call}: ${message}`);
    this.name = "AbiViolation";
  }
}

class BadArgument {
  constructor(readonly error: number) {}
}

const hex = (n: number | bigint) => `0x${n.toString(16)}`;

export class Dispatcher {
  readonly #table: ({ call: CallDef; handler: Handler } | undefined)[] = [];

  constructor(
    private readonly guest: GuestView,
    handlers: Readonly<Record<string, Handler>>,
    allowed: Iterable<string>,
  ) {
    for (const name of allowed) {
      const call = callsByName.get(name);
      if (!call) throw new Error(`manifest allows unknown hypercall ${name}`);
      const handler = handlers[name];
      if (!handler) throw new Error(`hypercall ${name} has no host handler`);
      this.#table[call.nr] = { call, handler };
    }
  }

  /** Runs call `nr` with the frame at guest address `frame`; throws AbiViolation when the frame itself is unusable. */
  dispatch(nr: number, frame: number, thread: Thread): void {
    const entry = this.#table[nr];
    if (!entry) {
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
      ret = handler(this.#decode(call, frame), thread);
    } catch (e) {
      if (!(e instanceof BadArgument)) throw e;
      thread.lastError = e.error;
      ret = call.failure;
    }
    view.setBigUint64(frame, BigInt.asUintN(64, BigInt(ret)), true);
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
          args[p.name] = raw <= 0xffffffffn ? Number(raw) : -1;
          break;
        case "in":
          args[p.name] = this.#buffer(raw, lengthOf(p), false);
          break;
        case "out":
          args[p.name] = this.#buffer(raw, lengthOf(p) * p.unit, true);
          break;
        case "outU32":
          if (raw === 0n && p.optional) args[p.name] = null;
          else args[p.name] = new OutU32(view, Number(this.#checked(raw, 4, true)));
          break;
        case "null":
          if (raw !== 0n) throw new BadArgument(win32Errors.ERROR_INVALID_PARAMETER);
          args[p.name] = null;
          break;
      }
    });
    return args;
  }

  #checked(address: bigint, length: number, write: boolean): number {
    if (address > BigInt(this.guest.bytes.byteLength)) throw new BadArgument(win32Errors.ERROR_NOACCESS);
    const a = Number(address);
    if (!this.guest.pages.accessible(a, length, write)) throw new BadArgument(win32Errors.ERROR_NOACCESS);
    return a;
  }

  #buffer(address: bigint, length: number, write: boolean): Uint8Array {
    if (length === 0) return new Uint8Array(0);
    const a = this.#checked(address, length, write);
    return this.guest.bytes.subarray(a, a + length);
  }
}
