// The guest clock across a pause, in the shared block every thread of an
// instance reads it from. A vCPU keeps running for a while after a pause is
// requested, until it reaches a point where it parks: whatever time it reads
// then must not be taken back by the resume, or by a restore of a snapshot of
// the pause.

import assert from "node:assert/strict";
import { ControlBlock } from "../hv/control_block.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("the guest clock stops when a pause is requested, for every thread, and goes on from there after the resume", async () => {
  const control = new ControlBlock({ cpus: 1 });
  const vcpuView = new ControlBlock(control.buffer);
  const before = vcpuView.now();
  const frozen = control.requestPause();
  assert.ok(frozen >= before);
  await sleep(20);
  // A vCPU that has not parked yet reads the clock where the pause stopped it, however long parking takes.
  assert.equal(vcpuView.now(), frozen);
  await sleep(20);
  assert.equal(vcpuView.now(), frozen);

  const resumedAt = performance.now();
  control.resume();
  const after = vcpuView.now();
  const hostElapsed = performance.now() - resumedAt;
  assert.ok(after >= frozen, "the clock ran backwards across the pause");
  assert.ok(after - frozen <= hostElapsed + 1e-3, `the guest clock counted the pause: ${after - frozen} ms`);
});

Deno.test("a restored clock goes on from the snapshot's time, and a pause of it stops it there", () => {
  const control = new ControlBlock({ cpus: 1 });
  const saved = control.now() - 3_600_000;
  const restoredAt = performance.now();
  control.continueClockFrom(saved);
  const restored = control.now();
  const hostElapsed = performance.now() - restoredAt;
  assert.ok(restored >= saved && restored - saved <= hostElapsed + 1e-3, `${restored - saved} ms from the snapshot's`);
  assert.equal(control.requestPause(), control.now());
});
