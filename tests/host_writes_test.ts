import assert from "node:assert/strict";
import { HostWrites } from "../abi/host_writes.ts";

const taken = (writes: HostWrites) => {
  const pages: number[] = [];
  writes.take((page) => pages.push(page));
  return pages;
};

Deno.test("host writes are kept per page, across page and word boundaries, until taken", () => {
  const writes = HostWrites.create(200 * 4096);
  writes.mark(4095, 2); // straddles pages 0 and 1
  writes.mark(31 * 4096, 4096 * 2); // pages 31 and 32, across a bitmap word
  writes.mark(199 * 4096 + 10, 1);
  writes.mark(50 * 4096, 0); // an empty range marks nothing
  // Another thread marks through the same shared memory.
  new HostWrites(writes.buffer).mark(100 * 4096, 1);
  assert.deepEqual(taken(writes), [0, 1, 31, 32, 100, 199]);
  assert.deepEqual(taken(writes), [], "taking clears");
});
