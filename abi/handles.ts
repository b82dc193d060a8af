// Guest-visible handles: small numbers in a per-instance table, never host
// fds, so a guest can neither forge access to a host descriptor nor learn one.

import type { FindEntry, OpenOptions } from "./fileview.ts";
import type { OpenFile } from "./open_files.ts";
import { PlainState } from "./plain_state.ts";
import { SYNC_HANDLE_BASE } from "./sync_objects.ts";
import { STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE } from "./win32.ts";

export type ConsoleStream = "stdin" | "stdout" | "stderr";
export type HandleObject =
  | { kind: "console"; stream: ConsoleStream }
  /** `options` are what CreateFileW asked for, so a restored instance can open the file again. */
  | { kind: "file"; file: OpenFile; options: OpenOptions; position: number; read: boolean; write: boolean }
  | { kind: "find"; entries: FindEntry[]; next: number }
  | { kind: "heap" };
export type HandleKind = HandleObject["kind"];

/** Windows hands out handles in steps of four and ignores their two low bits (OBJ_HANDLE_TAGBITS), which apps may use as tags. */
const STEP = 4;
/** The process heap's handle: the fourth, after the console's three. */
export const PROCESS_HEAP = 4 * STEP;
const untagged = (handle: number) => handle - (handle % STEP);
/**
 * More open handles than any sane app needs; past it CreateFileW fails instead of the host growing without
 * bound. An instance's partition may set a lower cap.
 */
export const MAX_HANDLES = 1 << 16;
/** The console's three handles and the process heap are open from the start: a cap needs room for one more. */
export const MIN_HANDLES = 5;

/**
 * A handle as a snapshot keeps it: an open file by its guest path, never by a host descriptor. A handle that
 * DuplicateHandle made names the handle whose object it shares, which the snapshot keeps once.
 */
export type HandleState =
  | { kind: "console"; stream: ConsoleStream }
  | { kind: "duplicate"; of: number }
  /**
   * `locks` (absent before pvx kept them): the handle's locked ranges, 64-bit numbers as decimal strings, `shared`
   * for LockFileEx's shared locks.
   */
  | {
    kind: "file";
    path: string;
    options: OpenOptions;
    position: number;
    locks?: { offset: string; length: string; shared?: true }[];
  }
  | { kind: "find"; entries: (Omit<FindEntry, "lastWrite"> & { lastWrite: string })[]; next: number }
  | { kind: "heap" };

export interface HandleTableState {
  handles: [number, HandleState][];
  next: number;
}

export class HandleTable {
  #objects = new Map<number, HandleObject>();
  /** How many handles refer to each object: more than one after DuplicateHandle. */
  #handleCounts = new Map<HandleObject, number>();
  #next = STEP;
  readonly std: ReadonlyMap<number, number>;
  /** Always PROCESS_HEAP: Windows code reads it from the PEB without asking. */
  readonly processHeap = PROCESS_HEAP;

  /** `limit` counts every handle, the three console ones and the process heap's among them. */
  constructor(readonly limit = MAX_HANDLES) {
    this.std = new Map([
      [STD_INPUT_HANDLE, this.open({ kind: "console", stream: "stdin" })!],
      [STD_OUTPUT_HANDLE, this.open({ kind: "console", stream: "stdout" })!],
      [STD_ERROR_HANDLE, this.open({ kind: "console", stream: "stderr" })!],
    ]);
    if (this.open({ kind: "heap" }) !== PROCESS_HEAP) throw new Error("the process heap's handle moved");
  }

  /** The new handle, or undefined when the table is full. */
  open(object: HandleObject): number | undefined {
    if (this.#objects.size >= this.limit) return undefined;
    // Below the sync objects' handles (abi/sync_objects.ts), which name their slots instead.
    const advance = () => this.#next = (this.#next + STEP) % SYNC_HANDLE_BASE;
    while (this.#objects.has(this.#next) || this.#next === 0) advance();
    const h = this.#next;
    advance();
    this.#adopt(h, object);
    return h;
  }

  /**
   * DuplicateHandle: a second handle to what `handle` refers to, or undefined when the table is full. A file's
   * handles then share one position and one set of locks, as Windows' handles to one file object do.
   */
  duplicate(handle: number): number | undefined {
    const o = this.#objects.get(untagged(handle));
    if (o?.kind !== "console" && o?.kind !== "file") throw new Error(`internal: handle ${handle} is not duplicable`);
    return this.open(o);
  }

  get<K extends HandleKind>(handle: number, kind: K): Extract<HandleObject, { kind: K }> | undefined {
    const o = this.#objects.get(untagged(handle));
    return o?.kind === kind ? o as Extract<HandleObject, { kind: K }> : undefined;
  }

  kindOf(handle: number): HandleKind | undefined {
    return this.#objects.get(untagged(handle))?.kind;
  }

  /** Removes the handle; its object when no other handle refers to it any more, for the caller to release. */
  take(handle: number): HandleObject | undefined {
    const o = this.#objects.get(untagged(handle));
    if (!o) return undefined;
    this.#objects.delete(untagged(handle));
    const left = this.#handleCounts.get(o)! - 1;
    if (left > 0) {
      this.#handleCounts.set(o, left);
      return undefined;
    }
    this.#handleCounts.delete(o);
    return o;
  }

  /** The process is ending: every file it still has open is closed, as Windows does (delete-on-close included). */
  closeAll(): void {
    for (const handle of [...this.#objects.keys()]) {
      const o = this.take(handle);
      if (o?.kind === "file") o.file.close();
    }
  }

  save(): HandleTableState {
    const savedAt = new Map<HandleObject, number>();
    const handles = [...this.#objects].map(([handle, o]): [number, HandleState] => {
      const first = savedAt.get(o);
      if (first !== undefined) return [handle, { kind: "duplicate", of: first }];
      savedAt.set(o, handle);
      switch (o.kind) {
        case "file":
          return [handle, {
            kind: "file",
            path: o.file.path,
            options: o.options,
            position: o.position,
            locks: o.file.locks().map((l) => ({
              offset: l.offset.toString(),
              length: l.length.toString(),
              ...(l.shared ? { shared: true as const } : {}),
            })),
          }];
        case "find":
          return [handle, {
            kind: "find",
            entries: o.entries.map((e) => ({ ...e, lastWrite: e.lastWrite.toString() })),
            next: o.next,
          }];
        default:
          return [handle, o];
      }
    });
    return { handles, next: this.#next };
  }

  /**
   * Rebuilds the table of a snapshot, opening each file again through
   * `reopen`; a file that cannot be opened any more (deleted while open, a
   * share that is missing) fails the restore, naming the handle.
   */
  static restore(
    saved: HandleTableState,
    reopen: (path: string, options: OpenOptions) => OpenFile,
    limit = MAX_HANDLES,
  ): HandleTable {
    const state = new PlainState("snapshot: handles");
    const table = new HandleTable(limit);
    table.#objects.clear();
    table.#handleCounts.clear();
    try {
      const { handles, next } = state.record(saved, "");
      const entries = state.list(handles, "handles");
      if (entries.length > limit) state.fail("handles", `${entries.length} are open, past this instance's ${limit}`);
      const duplicates: [number, unknown, string][] = [];
      entries.forEach((entry, i) => {
        const [rawHandle, rawObject] = state.list(entry, `handles[${i}]`, 2);
        const handle = state.integer(rawHandle, `handles[${i}] handle`, STEP, SYNC_HANDLE_BASE - 1);
        if (handle % STEP || table.#objects.has(handle) || duplicates.some(([h]) => h === handle)) {
          state.fail(`handle ${handle}`, "is not one the table hands out");
        }
        const at = `handle 0x${handle.toString(16)}`;
        const saved = state.record(rawObject, at);
        if (saved.kind === "duplicate") duplicates.push([handle, saved.of, at]);
        else table.#adopt(handle, restoredObject(state, at, saved, reopen));
      });
      // A duplicate may come before the handle it shares with: they are joined once every object is back.
      for (const [handle, of, at] of duplicates) {
        const object = table.#objects.get(state.integer(of, `${at} of`, STEP, SYNC_HANDLE_BASE - 1));
        const shared = object?.kind === "console" || object?.kind === "file"
          ? object
          : state.fail(`${at} of`, `names no console or file handle of the snapshot (${JSON.stringify(of)})`);
        table.#adopt(handle, shared);
      }
      table.#next = state.integer(next, "next", 0, SYNC_HANDLE_BASE - 1);
    } catch (e) {
      table.closeAll();
      throw e;
    }
    return table;
  }

  #adopt(handle: number, object: HandleObject): void {
    this.#objects.set(handle, object);
    this.#handleCounts.set(object, (this.#handleCounts.get(object) ?? 0) + 1);
  }

  /** Plain data, for snapshots and reports. */
  describe(): { handle: number; kind: HandleKind; path?: string; position?: number }[] {
    return [...this.#objects].map(([handle, o]) => ({
      handle,
      kind: o.kind,
      ...(o.kind === "file" ? { path: o.file.path, position: o.position } : {}),
    }));
  }
}

/** One handle's object from its saved state, its file opened again through `reopen`. */
function restoredObject(
  state: PlainState,
  at: string,
  h: Record<string, unknown>,
  reopen: (path: string, options: OpenOptions) => OpenFile,
): HandleObject {
  switch (state.oneOf(h.kind, `${at} kind`, ["console", "file", "find", "heap"] as const)) {
    case "console":
      return { kind: "console", stream: state.oneOf(h.stream, `${at} stream`, ["stdin", "stdout", "stderr"] as const) };
    case "heap":
      return { kind: "heap" };
    case "find": {
      const entries = state.list(h.entries, `${at} entries`).map((raw, i) => {
        const e = state.record(raw, `${at} entries[${i}]`);
        return {
          name: state.text(e.name, `${at} entries[${i}] name`),
          attributes: state.integer(e.attributes, `${at} entries[${i}] attributes`, 0, 0xffffffff),
          size: state.integer(e.size, `${at} entries[${i}] size`),
          lastWrite: state.bigint(e.lastWrite, `${at} entries[${i}] lastWrite`),
        };
      });
      return { kind: "find", entries, next: state.integer(h.next, `${at} next`, 0, entries.length) };
    }
    case "file": {
      const path = state.text(h.path, `${at} path`);
      const o = state.record(h.options, `${at} options`);
      const options: OpenOptions = {
        read: state.flag(o.read, `${at} options.read`),
        write: state.flag(o.write, `${at} options.write`),
        deleteAccess: state.flag(o.deleteAccess, `${at} options.deleteAccess`),
        disposition: state.integer(o.disposition, `${at} options.disposition`, 1, 5) as OpenOptions["disposition"],
        share: state.integer(o.share, `${at} options.share`, 0, 0xffffffff),
        attributes: state.integer(o.attributes, `${at} options.attributes`, 0, 0xffffffff),
        flags: state.integer(o.flags, `${at} options.flags`, 0, 0xffffffff),
      };
      const position = state.integer(h.position, `${at} position`);
      const locks = state.list(h.locks ?? [], `${at} locks`).map((raw, i) => {
        const l = state.record(raw, `${at} locks[${i}]`);
        return {
          offset: state.bigint(l.offset, `${at} locks[${i}] offset`),
          length: state.bigint(l.length, `${at} locks[${i}] length`),
          shared: l.shared !== undefined && state.flag(l.shared, `${at} locks[${i}] shared`),
        };
      });
      let file: OpenFile;
      try {
        file = reopen(path, options);
      } catch (e) {
        return state.fail(`${at} (${path})`, `cannot be opened again: ${(e as Error).message}`);
      }
      try {
        for (const range of locks) file.lock(range);
      } catch (e) {
        file.close();
        return state.fail(`${at} (${path}) locks`, (e as Error).message);
      }
      return { kind: "file", file, options, position, read: options.read, write: options.write };
    }
  }
}
