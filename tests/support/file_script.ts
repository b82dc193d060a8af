// One guest thread's script of file calls, performed the way a guest makes
// them: a frame and buffers in this thread's own page of guest memory, then a
// hypercall through `call`. The concurrency test runs scripts on several
// Workers against one host-services loop, then again one call at a time in
// the order the host served them; both runs must agree.

import { callsByName } from "../../abi/calls.ts";
import type { Thread } from "../../abi/dispatch.ts";
import { encodeWide } from "../../abi/handlers/strings.ts";
import { win32Constants as W } from "../../abi/win32.ts";

/** Which handle an operation uses: one of the handles opened before the threads start, or the thread's own. */
export type HandleName = "shared" | "sharedToo" | "other" | "own";
export type FileOp =
  | { kind: "write"; handle: HandleName; length: number }
  | { kind: "read"; handle: HandleName; length: number }
  | { kind: "seek"; handle: HandleName; to: number }
  | { kind: "close"; handle: HandleName };

export interface OpResult {
  ret: string;
  lastError: number;
  /** Bytes transferred, and for a read what it read. */
  count?: number;
  data?: number[];
}

/** Each thread's frame, strings and buffer live in its own 8 KiB of guest memory from here. */
export const SCRIPT_AREA = 0x800000;
const AREA = 0x2000, COUNT = 0x100, PATH = 0x200, BUFFER = 0x1000;
export const MAX_TRANSFER = 0x1000;

export type Caller = (nr: number, frame: number, thread: Thread) => void;

export class ScriptThread {
  readonly thread: Thread;
  readonly #base: number;

  constructor(
    readonly cpu: number,
    private readonly view: DataView,
    private readonly handles: Map<HandleName, number>,
    private readonly call: Caller,
  ) {
    this.thread = { lastError: 0, id: 8 + 4 * cpu };
    this.#base = SCRIPT_AREA + AREA * cpu;
  }

  /** Opens (creating) `path` for reading and writing, shared both ways; returns the handle. */
  open(path: string): number {
    const at = this.#base + PATH;
    encodeWide(path).forEach((b, i) => this.view.setUint8(at + i, b));
    const ret = this.#invoke("CreateFileW", [
      at,
      W.GENERIC_READ | W.GENERIC_WRITE,
      W.FILE_SHARE_READ | W.FILE_SHARE_WRITE,
      0,
      W.OPEN_ALWAYS,
      0,
      0,
    ]);
    return Number(ret);
  }

  perform(op: FileOp, step: number): OpResult {
    const h = this.handles.get(op.handle) ?? 0;
    const buffer = this.#base + BUFFER, count = this.#base + COUNT;
    this.view.setUint32(count, 0xcccccccc, true);
    let ret: bigint;
    switch (op.kind) {
      case "write":
        // Bytes that say who wrote them, so interleaved writes stay tellable apart.
        for (let i = 0; i < op.length; i++) this.view.setUint8(buffer + i, (this.cpu << 5) + (step & 31));
        ret = this.#invoke("WriteFile", [h, buffer, op.length, count, 0]);
        return this.#result(ret, { count: this.view.getUint32(count, true) });
      case "read": {
        for (let i = 0; i < op.length; i++) this.view.setUint8(buffer + i, 0xee);
        ret = this.#invoke("ReadFile", [h, buffer, op.length, count, 0]);
        const n = this.view.getUint32(count, true);
        const data = ret ? Array.from({ length: n }, (_, i) => this.view.getUint8(buffer + i)) : [];
        return this.#result(ret, { count: n, data });
      }
      case "seek":
        return this.#result(this.#invoke("SetFilePointerEx", [h, op.to, 0, W.FILE_BEGIN]), {});
      case "close":
        return this.#result(this.#invoke("CloseHandle", [h]), {});
    }
  }

  #result(ret: bigint, extra: Partial<OpResult>): OpResult {
    return { ret: ret.toString(16), lastError: this.thread.lastError, ...extra };
  }

  #invoke(name: string, args: (number | bigint)[]): bigint {
    const call = callsByName.get(name)!;
    const frame = this.#base;
    args.forEach((a, i) => this.view.setBigUint64(frame + 8 * (i + 1), BigInt(a), true));
    this.thread.lastError = 0;
    this.call(call.nr, frame, this.thread);
    return this.view.getBigUint64(frame, true);
  }
}
