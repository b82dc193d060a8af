// Named events, mutexes and semaphores: one case-sensitive namespace, where a name is taken while its object
// has a handle and free once the last one closes, and a snapshot keeps the names in use.

import assert from "node:assert/strict";
import { SYNC_BYTES, SyncKind, SyncObjects } from "../abi/sync_objects.ts";
import { ObjectNames } from "../abi/object_names.ts";
import { Win32Error } from "../abi/call_errors.ts";
import { StateError } from "../abi/plain_state.ts";
import { win32Errors as E } from "../abi/win32.ts";

function table() {
  const sync = new SyncObjects(new SharedArrayBuffer(SYNC_BYTES));
  return { sync, names: new ObjectNames(sync), event: () => sync.create(SyncKind.Event, {})! };
}

function fails(code: number, f: () => unknown) {
  assert.throws(f, (e) => e instanceof Win32Error && e.code === code);
}

Deno.test("a second create of a name opens its object, and an open finds it, of its own kind only", () => {
  const { sync, names, event } = table();
  const first = names.create("ready", SyncKind.Event, event);
  assert.equal(first.existed, false);
  const second = names.create("ready", SyncKind.Event, () => assert.fail("the name's object is reused"));
  assert.equal(second.existed, true);
  assert.notEqual(second.handle, first.handle);
  assert.deepEqual(sync.resolve(second.handle)?.slot, sync.resolve(first.handle)?.slot);
  assert.equal(sync.resolve(names.open("Local\\ready", SyncKind.Event))?.slot, sync.resolve(first.handle)?.slot);
  fails(E.ERROR_INVALID_HANDLE, () => names.open("ready", SyncKind.Mutex));
  fails(E.ERROR_INVALID_HANDLE, () => names.create("ready", SyncKind.Semaphore, () => assert.fail("not made")));
  fails(E.ERROR_FILE_NOT_FOUND, () => names.open("READY", SyncKind.Event));
  fails(E.ERROR_FILE_NOT_FOUND, () => names.open("Global\\ready", SyncKind.Event));
  fails(E.ERROR_PATH_NOT_FOUND, () => names.open("a\\ready", SyncKind.Event));
  fails(E.ERROR_INVALID_PARAMETER, () => names.open(null, SyncKind.Event));
  fails(E.ERROR_INVALID_HANDLE, () => names.open("", SyncKind.Event));
  assert.equal(names.create("", SyncKind.Event, event).existed, false, "the empty name makes an unnamed object");
});

Deno.test("a name is free again once its object's last handle closes, and a snapshot keeps only the names in use", () => {
  const { sync, names, event } = table();
  const made = names.create("once", SyncKind.Event, event);
  const kept = names.create("kept", SyncKind.Event, event);
  const opened = names.open("once", SyncKind.Event);
  sync.close(made.handle);
  const reopened = names.create("once", SyncKind.Event, event);
  assert.equal(reopened.existed, true, "one handle is still open");
  assert.deepEqual(names.save().names.map(([name]) => name).sort(), ["kept", "once"]);

  const restored = ObjectNames.restore(sync, structuredClone(names.save()), "snapshot");
  assert.equal(sync.resolve(restored.open("kept", SyncKind.Event))?.slot, sync.resolve(kept.handle)?.slot);
  sync.close(opened);
  sync.close(reopened.handle);
  fails(E.ERROR_FILE_NOT_FOUND, () => names.open("once", SyncKind.Event));
  const again = names.create("once", SyncKind.Mutex, () => sync.create(SyncKind.Mutex, {})!);
  assert.equal(again.existed, false, "the freed name takes an object of another kind");
});

Deno.test("a snapshot's names are refused by field when they cannot be a table's", () => {
  const { sync } = table();
  for (
    const [names, field] of [
      [[["a", 0]], /names\[0\]: has 2 items, not 3/],
      [[["a", 4096, 0]], /names\[0\] slot: is not a whole number from 0 to 4095/],
      [[[7, 0, 0]], /names\[0\] name: is not a string/],
      [[["a", 0, 0], ["a", 1, 0]], /names\[1\] name: is empty or named twice/],
    ] as const
  ) {
    assert.throws(
      () => ObjectNames.restore(sync, { names } as never, "snapshot"),
      (e) => e instanceof StateError && field.test(e.message) && e.message.startsWith("snapshot: object names"),
    );
  }
});
