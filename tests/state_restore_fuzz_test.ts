// A snapshot's state section is hashed, but a crafted file hashes right too:
// these mutate what each component really saved (a field retyped, out of
// range, dropped or added) and restore it. A restore either rebuilds the
// component, which can then be saved again, or refuses with a StateError that
// names the field, never a TypeError or a RangeError from deep inside.

import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestHeap } from "../abi/heap.ts";
import { VirtualMemory } from "../abi/virtual_memory.ts";
import { HandleTable } from "../abi/handles.ts";
import { FileView } from "../abi/fileview.ts";
import { ObjectNames } from "../abi/object_names.ts";
import { SYNC_BYTES, SyncKind, SyncObjects } from "../abi/sync_objects.ts";
import { StateError } from "../abi/plain_state.ts";
import { GuestThreads } from "../hv/guest_threads.ts";
import { ControlBlock } from "../hv/control_block.ts";
import { STD_OUTPUT_HANDLE, win32Constants as W } from "../abi/win32.ts";
import { PageTables } from "../guest/paging.ts";
import { MiB, PAGE } from "../abi/memory_map.ts";
import { fuzzRuns } from "./support/fuzz.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Every place in `value` a mutation can reach: the path of keys and indexes to it. */
function paths(value: Json, at: (string | number)[] = []): (string | number)[][] {
  const below = Array.isArray(value)
    ? value.flatMap((v, i) => paths(v, [...at, i]))
    : value !== null && typeof value === "object"
    ? Object.entries(value).flatMap(([k, v]) => paths(v, [...at, k]))
    : [];
  return [at, ...below];
}

const replacement = fc.oneof(
  fc.constantFrom<Json>(null, -1, 0, 1.5, 2 ** 31, 2 ** 53, -(2 ** 53), "", "x", "12", [], {}, [1, 2], true),
  fc.jsonValue() as fc.Arbitrary<Json>,
);
const mutation = fc.record({ pick: fc.nat(), replacement, remove: fc.boolean() });

/** `state` with each mutation applied at the path its `pick` chooses. */
function mutate(state: Json, mutations: { pick: number; replacement: Json; remove: boolean }[]): Json {
  let value = structuredClone(state);
  for (const m of mutations) {
    // A copy: fast-check hands the same constant ([1, 2], {}) to many runs, and
    // a later mutation writing into it would leave it changed, even cyclic.
    const replacement = structuredClone(m.replacement);
    const all = paths(value);
    const path = all[m.pick % all.length];
    if (path.length === 0) {
      value = replacement;
      continue;
    }
    const parent = path.slice(0, -1).reduce((v, k) => (v as Record<string | number, Json>)[k], value) as
      | Json[]
      | Record<string, Json>;
    const key = path[path.length - 1];
    if (m.remove && Array.isArray(parent)) parent.splice(key as number, 1);
    else if (m.remove) delete (parent as Record<string, Json>)[key];
    else (parent as Record<string | number, Json>)[key] = replacement;
  }
  return value;
}

/** Saved state as a snapshot file carries it: JSON, 64-bit values as decimal strings. */
const asJson = (state: unknown): Json =>
  JSON.parse(JSON.stringify(state, (_, v) => typeof v === "bigint" ? v.toString() : v));

function refusesOrRestores(saved: unknown, restore: (state: Json) => { again(): unknown }) {
  const state = asJson(saved);
  restore(state).again(); // the unmutated state restores
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
      try {
        restore(mutate(state, mutations)).again();
      } catch (e) {
        if (!(e instanceof StateError)) throw e;
      }
    }),
    { numRuns: fuzzRuns },
  );
}

const RAM = 16 * MiB, VM_START = 0x7f3000, VM_END = 0xbf3000;

function guestMemory() {
  const ram = new Uint8Array(RAM);
  const booted = new PageTables(ram);
  booted.map(0x400000, VM_START - 0x400000, { write: true, exec: false });
  booted.reserveTables(VM_START, VM_END - VM_START);
  return { ram, pages: new PageTables(ram, booted.root) };
}

Deno.test("fuzz: a mutated heap state restores or is refused by name", () => {
  const ram = new Uint8Array(0x20000);
  const heap = new GuestHeap(ram, 0x10000, 0x11000);
  const blocks = [heap.alloc(10, false), heap.alloc(100, true), heap.alloc(1, false)];
  heap.free(blocks[1]);
  refusesOrRestores(heap.serialize(), (s) => {
    const restored = GuestHeap.restore(ram, 0x10000, 0x11000, s);
    return { again: () => restored.serialize() };
  });
});

Deno.test("fuzz: a mutated virtual memory state restores or is refused by name", () => {
  const { ram, pages } = guestMemory();
  const vm = new VirtualMemory(pages, ram, VM_START, VM_END);
  const a = vm.alloc(0, 6 * PAGE, W.MEM_RESERVE, W.PAGE_EXECUTE_READ);
  vm.alloc(a + PAGE, 2 * PAGE, W.MEM_COMMIT, W.PAGE_READONLY);
  vm.alloc(0, 3 * PAGE, W.MEM_COMMIT, W.PAGE_READWRITE);
  refusesOrRestores(vm.serialize(), (s) => {
    const restored = VirtualMemory.restore(guestMemory().pages, ram, VM_START, VM_END, s);
    return { again: () => restored.serialize() };
  });
});

Deno.test("fuzz: a mutated handle table restores or is refused by name, its files opened again with their locks", async () => {
  const overlayDir = await Deno.makeTempDir({ prefix: "pvx-state-" });
  try {
    const view = new FileView({ bundleFiles: new Map(), overlayDir, shares: [] });
    const options = {
      read: true,
      write: true,
      deleteAccess: false,
      disposition: W.CREATE_ALWAYS as 2,
      share: 3,
      attributes: 0,
      flags: 0,
    };
    const { file } = view.open("C:\\data.txt", options);
    file.lock({ offset: 3n, length: 5n });
    file.lock({ offset: 1n << 40n, length: 0n });
    file.lock({ offset: 20n, length: 4n, shared: true });
    const table = new HandleTable();
    const handle = table.open({ kind: "file", file, options, position: 7, read: true, write: true })!;
    const twin = table.duplicate(handle)!;
    const stdout = table.std.get(STD_OUTPUT_HANDLE)!, stdoutTwin = table.duplicate(stdout)!;
    table.open({
      kind: "find",
      entries: [{ name: "data.txt", attributes: 32, size: 0, lastWrite: 1n << 60n }],
      next: 1,
    });
    table.open({ kind: "heap" });
    const saved = table.save();
    table.closeAll();
    const reopen = (path: string, o: Parameters<FileView["open"]>[1]) =>
      view.open(path, { ...o, disposition: W.OPEN_EXISTING }).file;

    const restored = HandleTable.restore(saved, reopen);
    assert.equal(restored.get(twin, "file"), restored.get(handle, "file"), "a duplicate shares its file's object");
    assert.equal(restored.get(stdoutTwin, "console"), restored.get(stdout, "console"));
    assert.equal(restored.get(twin, "file")!.position, 7);
    assert.deepEqual(restored.get(handle, "file")!.file.locks(), [
      { offset: 3n, length: 5n },
      { offset: 1n << 40n, length: 0n },
      { offset: 20n, length: 4n, shared: true },
    ]);
    const other = view.open("C:\\data.txt", options).file;
    assert.throws(() => other.read(new Uint8Array(2), 6), /locked through another handle/, "the lock still holds");
    assert.equal(other.read(new Uint8Array(2), 21), 0, "a shared lock lets others read");
    assert.throws(() => other.write(new Uint8Array(2), 21), /locked shared/, "and no one write");
    other.close();
    restored.closeAll();

    refusesOrRestores(saved, (s) => {
      const restored = HandleTable.restore(s as never, reopen);
      return {
        again: () => {
          restored.save();
          restored.closeAll();
        },
      };
    });
  } finally {
    await Deno.remove(overlayDir, { recursive: true });
  }
});

Deno.test("fuzz: mutated sync objects, object names and guest threads restore or are refused by name", () => {
  const sync = new SyncObjects(new SharedArrayBuffer(SYNC_BYTES), 0);
  sync.create(SyncKind.Event, { signaled: true, manual: true });
  sync.create(SyncKind.Mutex, { owner: 12 });
  refusesOrRestores(sync.save(), (s) => {
    const restored = new SyncObjects(new SharedArrayBuffer(SYNC_BYTES), 0);
    restored.restore(s as never, "snapshot");
    return { again: () => restored.save() };
  });

  const names = new ObjectNames(sync);
  names.create("Global\\started", SyncKind.Event, () => sync.create(SyncKind.Event, {})!);
  names.create("lock", SyncKind.Mutex, () => sync.create(SyncKind.Mutex, {})!);
  refusesOrRestores(names.save(), (s) => {
    const restored = ObjectNames.restore(sync, s as never, "snapshot");
    return { again: () => restored.save() };
  });

  const threadsOf = () => {
    const { ram, pages } = guestMemory();
    const memory = new VirtualMemory(pages, ram, VM_START, VM_END);
    return new GuestThreads(ram, memory, new ControlBlock({ cpus: 2 }), 0x401000, () => {});
  };
  const threads = threadsOf();
  threads.create(0x402000n, 42n, 64 * 1024, true);
  threads.create(0x402000n, (1n << 63n) + 5n, 0, false);
  refusesOrRestores(threads.save(), (s) => {
    const restored = threadsOf();
    restored.restore(s as never, "snapshot: threads");
    return { again: () => restored.save() };
  });
});
