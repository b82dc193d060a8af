// Handles to waitable objects: DuplicateHandle's copies name one object, which lives until its
// last handle closes, and a snapshot from before copies existed still restores.

import assert from "node:assert/strict";
import {
  CURRENT_PROCESS,
  CURRENT_THREAD,
  SYNC_BYTES,
  SyncKind,
  SyncObjects,
  type WaitControl,
} from "../abi/sync_objects.ts";
import { StateError } from "../abi/plain_state.ts";
import { win32Constants as W, win32Errors as E } from "../abi/win32.ts";

const objects = () => new SyncObjects(new SharedArrayBuffer(SYNC_BYTES));
const TID = 8;

/** A wait's clock that runs `steps` in turn, one at each checkpoint, and never stops the instance. */
function stepping(...steps: (() => void)[]): WaitControl {
  return {
    now: () => performance.now(),
    checkpoint: () => {
      steps.shift()?.();
      return false;
    },
  };
}

const noWaiting = stepping();

Deno.test("a duplicate names the same event, and the event outlives the handle that made it", () => {
  const sync = objects();
  const event = sync.create(SyncKind.Event, { manual: true })!;
  const twin = sync.duplicate(event)!;
  assert.notEqual(twin, event);
  assert.ok(sync.setEvent(sync.resolve(twin)!, true));
  assert.deepEqual(sync.wait([event], false, 0, TID, noWaiting), { code: W.WAIT_OBJECT_0 });
  assert.ok(sync.close(event));
  assert.equal(sync.close(event), false, "a handle closes once");
  assert.deepEqual(sync.wait([twin], false, 0, TID, noWaiting), { code: W.WAIT_OBJECT_0 }, "the duplicate still works");
  assert.ok(sync.close(twin));
  assert.equal(sync.resolve(twin), undefined, "the last close frees the object");
});

Deno.test("an object has at most 16 handles, and a closed one's place is taken again", () => {
  const sync = objects();
  const mutex = sync.create(SyncKind.Mutex, {})!;
  const copies = Array.from({ length: 15 }, () => sync.duplicate(mutex)!);
  assert.equal(new Set([mutex, ...copies]).size, 16);
  assert.equal(sync.duplicate(mutex), undefined);
  assert.ok(sync.close(copies[3]));
  assert.equal(sync.duplicate(copies[0]), copies[3]);
});

Deno.test("a thread's own handle names its object while that lives, and a new one that its exit signals after", () => {
  const sync = objects();
  const created = sync.create(SyncKind.Thread, { threadId: TID })!;
  const object = sync.resolve(created)!;
  const own = sync.openThread(TID, object)!;
  assert.equal(sync.threadId(object), TID);
  assert.notEqual(own.handle, created);
  assert.deepEqual(own.object, object, "while CreateThread's handle is open, the same object");
  assert.ok(sync.close(created) && sync.close(own.handle));
  const remade = sync.openThread(TID, object)!;
  assert.notDeepEqual(remade.object, object, "every handle closed: a new object");
  assert.equal(sync.threadId(remade.object), TID, "of the same thread");
  assert.equal(sync.exitCode(remade.object), W.STILL_ACTIVE);
  sync.threadExited(TID, 9, remade.object);
  assert.deepEqual(sync.wait([remade.handle], false, 0, TID, noWaiting), { code: W.WAIT_OBJECT_0 });
  assert.equal(sync.exitCode(remade.object), 9);
  const full = sync.openThread(TID)!;
  for (let i = 1; i < 16; i++) sync.duplicate(full.handle);
  assert.equal(sync.openThread(TID, full.object), undefined, "no handle left: nothing, rather than another object");
});

Deno.test("the process, by pseudo-handle or real handle, and the calling thread are never signalled, beside objects that are", () => {
  const sync = objects();
  const event = sync.create(SyncKind.Event, { signaled: true })!;
  assert.deepEqual(sync.wait([CURRENT_THREAD], false, 0, TID, noWaiting), { code: W.WAIT_TIMEOUT });
  assert.deepEqual(sync.wait([CURRENT_PROCESS, event], false, 0, TID, noWaiting), { code: W.WAIT_OBJECT_0 + 1 });
  sync.setEvent(sync.resolve(event)!, true);
  assert.deepEqual(sync.wait([event, CURRENT_PROCESS], true, 0, TID, noWaiting), { code: W.WAIT_TIMEOUT });
  assert.deepEqual(sync.wait([event], false, 0, TID, noWaiting), { code: W.WAIT_OBJECT_0 }, "a wait for all took none");
  assert.deepEqual(sync.wait([-3], false, 0, TID, noWaiting), { error: E.ERROR_INVALID_HANDLE });
  const process = sync.create(SyncKind.Process, {})!;
  assert.deepEqual(sync.wait([process], false, 0, TID, noWaiting), { code: W.WAIT_TIMEOUT }, "nor is a process handle");
});

Deno.test("waiting for all of two handles of one object is refused, as Windows refuses it", () => {
  const sync = objects();
  const event = sync.create(SyncKind.Event, { signaled: true, manual: true })!;
  const twin = sync.duplicate(event)!;
  assert.deepEqual(sync.wait([event, twin], true, 0, TID, noWaiting), { error: E.ERROR_INVALID_PARAMETER });
  assert.deepEqual(sync.wait([event, twin], false, 0, TID, noWaiting), { code: W.WAIT_OBJECT_0 });
});

Deno.test("a wait goes on when another handle to its object closes, and fails when the last one does", () => {
  const sync = objects();
  const event = sync.create(SyncKind.Event, {})!;
  const twin = sync.duplicate(event)!;
  const signalled = stepping(() => sync.close(event), () => sync.setEvent(sync.resolve(twin)!, true));
  assert.deepEqual(sync.wait([twin], false, performance.now() + 60_000, TID, signalled), { code: W.WAIT_OBJECT_0 });
  const gone = stepping(() => sync.close(twin));
  assert.deepEqual(sync.wait([twin], false, performance.now() + 60_000, TID, gone), { error: E.ERROR_INVALID_HANDLE });
});

Deno.test("a snapshot's slots restore with their handles, and one from before duplicates with its first", () => {
  const sync = objects();
  const event = sync.create(SyncKind.Event, { signaled: true })!;
  const twin = sync.duplicate(event)!;
  const restored = objects();
  restored.restore(sync.save(), "snapshot");
  assert.ok(restored.resolve(event) && restored.resolve(twin));

  const old = { slots: sync.save().slots.map(([slot, words]): [number, number[]] => [slot, words.slice(0, 8)]) };
  const fromOld = objects();
  fromOld.restore(old, "old snapshot");
  assert.ok(fromOld.resolve(event), "the first handle is open");
  assert.equal(fromOld.resolve(twin), undefined, "an eight-word slot has no duplicates");

  const [[slot, words]] = sync.save().slots;
  for (const open of [0, -1, 1 << 16]) {
    assert.throws(
      () => objects().restore({ slots: [[slot, [...words.slice(0, 8), open]]] }, "snapshot"),
      (e) => e instanceof StateError && /open handles/.test(e.message),
      `open handles ${open}`,
    );
  }
});
