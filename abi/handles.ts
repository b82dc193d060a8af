// Guest-visible handles: small numbers in a per-instance table, never host
// fds, so a guest can neither forge access to a host descriptor nor learn one.

import { STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE } from "./win32.ts";

export type ConsoleStream = "stdin" | "stdout" | "stderr";
export type HandleObject = { kind: "console"; stream: ConsoleStream };

/** Windows hands out handles in steps of four; guests sometimes rely on the low bits being clear. */
const STEP = 4;

export class HandleTable {
  #objects = new Map<number, HandleObject>();
  #next = STEP;
  readonly std: ReadonlyMap<number, number>;

  constructor() {
    this.std = new Map([
      [STD_INPUT_HANDLE, this.open({ kind: "console", stream: "stdin" })],
      [STD_OUTPUT_HANDLE, this.open({ kind: "console", stream: "stdout" })],
      [STD_ERROR_HANDLE, this.open({ kind: "console", stream: "stderr" })],
    ]);
  }

  open(object: HandleObject): number {
    const h = this.#next;
    this.#next += STEP;
    this.#objects.set(h, object);
    return h;
  }

  get(handle: number): HandleObject | undefined {
    return this.#objects.get(handle);
  }

  close(handle: number): boolean {
    return this.#objects.delete(handle);
  }

  /** Plain data, for snapshots and for reports. */
  serialize(): { next: number; entries: [number, HandleObject][] } {
    return { next: this.#next, entries: [...this.#objects] };
  }
}
