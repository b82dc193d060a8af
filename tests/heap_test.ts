import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestHeap } from "../abi/heap.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const START = 0x10000, END = 0x11000, CAPACITY = END - START;

/** A heap over RAM holding what earlier tenants left behind, so zeroing is visible. */
function setup(start = START, end = END) {
  const ram = new Uint8Array(0x20000).fill(0xab);
  return { ram, heap: new GuestHeap(ram, start, end) };
}

/** Bytes a block takes, computed apart from the heap's own code: 16-byte units, at least one. */
const spanOf = (size: number) => Math.max(16, Math.ceil(size / 16) * 16);

Deno.test("blocks are 16-byte aligned, placed low, and 0-byte blocks are distinct", () => {
  const { heap } = setup();
  const a = heap.alloc(1, false), b = heap.alloc(0, false), c = heap.alloc(0, false), d = heap.alloc(17, false);
  assert.deepEqual([a, b, c, d], [START, START + 16, START + 32, START + 48]);
  assert.deepEqual([a, b, c, d].map((x) => heap.size(x)), [1, 0, 0, 17]);
  assert.equal(heap.alloc(16, false), START + 80);
  assert.ok(heap.free(b));
  assert.equal(heap.alloc(5, false), b, "the lowest hole that fits");
  assert.equal(heap.size(START + 8), -1);
  assert.equal(heap.size(0), -1);
});

Deno.test("zeroing on request, and sizes that are no byte count fail", () => {
  const { ram, heap } = setup();
  const dirty = heap.alloc(40, false);
  assert.equal(ram[dirty], 0xab, "not zeroed unless asked");
  const clean = heap.alloc(40, true);
  assert.ok(ram.subarray(clean, clean + 40).every((x) => x === 0));
  for (const bad of [-1, 1.5, NaN, Infinity, CAPACITY + 1, 2 ** 60]) {
    assert.equal(heap.alloc(bad, false), 0, `alloc(${bad})`);
    assert.equal(heap.realloc(dirty, bad, false, false), 0, `realloc(${bad})`);
  }
  assert.equal(heap.size(dirty), 40);
});

Deno.test("free refuses double frees and forged addresses", () => {
  const { heap } = setup();
  const a = heap.alloc(64, false);
  assert.ok(!heap.free(a + 16), "inside a block");
  assert.ok(!heap.free(START + 0x800), "never handed out");
  assert.ok(!heap.free(0));
  assert.ok(heap.free(a));
  assert.ok(!heap.free(a), "double free");
  assert.equal(heap.realloc(a, 8, false, false), 0, "realloc of a freed block");
});

Deno.test("realloc: shrinks and grows in place when it can, moves otherwise, fails without touching the block", () => {
  const { ram, heap } = setup();
  const a = heap.alloc(100, false);
  ram.fill(1, a, a + 100);
  assert.equal(heap.realloc(a, 20, false, true), a, "shrink stays");
  assert.equal(heap.alloc(16, false), a + 32, "and frees the tail");
  const b = heap.alloc(48, false); // right after the block at a + 32
  assert.equal(heap.realloc(a, 28, true, true), a, "grows within its 32 bytes");
  assert.deepEqual(
    [...ram.subarray(a + 18, a + 30)],
    [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    "only bytes 20..28 are new",
  );
  assert.equal(heap.realloc(a, 40, false, true), 0, "the next block is in the way");
  assert.equal(heap.size(a), 28);
  ram.fill(2, b, b + 48);
  assert.equal(heap.realloc(b, 200, false, true), b, "grows into the free extent after it");
  const moved = heap.realloc(a, 60, true, false);
  assert.equal(moved, b + 208);
  assert.deepEqual([...ram.subarray(moved, moved + 21)], [...Array(20).fill(1), 0]);
  assert.ok(ram.subarray(moved + 28, moved + 60).every((x) => x === 0));
  assert.equal(heap.size(a), -1, "the old block is gone");
  assert.equal(heap.alloc(16, false), a, "and its space reused");
  assert.equal(heap.realloc(b, CAPACITY, false, false), 0, "no room anywhere");
  assert.equal(heap.size(b), 200);
  assert.ok(ram.subarray(b, b + 48).every((x) => x === 2));
});

Deno.test("exhausting the heap and freeing everything leaves one free block", () => {
  const { heap } = setup();
  const blocks: number[] = [];
  for (let a = heap.alloc(0, false); a !== 0; a = heap.alloc(0, false)) blocks.push(a);
  assert.equal(blocks.length, CAPACITY / 16);
  for (const [i, a] of blocks.entries()) if (i % 3 === 0) assert.ok(heap.free(a));
  for (const [i, a] of blocks.entries()) if (i % 3 !== 0) assert.ok(heap.free(a));
  assert.equal(heap.alloc(CAPACITY, false), START);
});

Deno.test("an empty heap hands out nothing; a bad range is refused", () => {
  assert.equal(setup(START, START).heap.alloc(0, false), 0);
  assert.throws(() => setup(START + 8, END), /heap range \[0x10008, 0x11000\) is not 16-byte aligned/);
  assert.throws(() => setup(0, END), /above 0/);
  assert.throws(() => setup(START, 0x30000), /inside RAM of 0x20000 bytes/);
});

Deno.test("serialize and restore keep blocks and holes; corrupt snapshots are refused", () => {
  const { ram, heap } = setup();
  const blocks = [heap.alloc(10, false), heap.alloc(40, false), heap.alloc(0, false), heap.alloc(30, false)];
  heap.free(blocks[1]);
  const data = JSON.parse(JSON.stringify(heap.serialize()));
  const restored = GuestHeap.restore(ram, START, END, data);
  assert.deepEqual(restored.serialize(), heap.serialize());
  assert.equal(restored.size(blocks[3]), 30);
  assert.equal(restored.alloc(48, false), blocks[1], "the hole is free again");
  assert.equal(restored.alloc(16, false), blocks[3] + 32, "and so is the space above");
  assert.ok(restored.free(blocks[0]) && !restored.free(blocks[0]));
  assert.throws(
    () => GuestHeap.restore(ram, START, END, { blocks: [[START, 20], [START + 16, 1]] }),
    /heap snapshot for \[0x10000, 0x11000\): blocks\[1\]: is corrupt: block 65552 of 1 bytes/,
  );
  assert.throws(() => GuestHeap.restore(ram, START, END, { blocks: [[END - 16, 17]] }), /ends past the heap/);
  assert.throws(() => GuestHeap.restore(ram, START, END, { blocks: [[START + 4, 1]] }), /is corrupt/);
  assert.throws(() => GuestHeap.restore(ram, START, END, {}), /\): blocks: is not a list/);
  assert.throws(
    () => GuestHeap.restore(ram, START, END, { blocks: [[START, 16n]] }),
    /blocks\[0\] size: is not a whole/,
  );
  assert.throws(() => GuestHeap.restore(ram, START, END, { blocks: [5] }), /blocks\[0\]: is not a list/);
});

/** Which live block an operation aims at (by index), or a forged address. */
const target = fc.oneof(
  { weight: 4, arbitrary: fc.record({ live: fc.nat() }) },
  fc.record({ live: fc.nat(), inside: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ raw: fc.integer({ min: START - 32, max: END + 32 }) }),
);
const size = fc.oneof(fc.integer({ min: 0, max: 48 }), fc.integer({ min: 0, max: 1200 }));
const operation = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant("alloc" as const), size, zero: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("free" as const), target }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("realloc" as const),
      target,
      size,
      zero: fc.boolean(),
      inPlaceOnly: fc.boolean(),
    }),
  },
  fc.record({ op: fc.constant("size" as const), target }),
);

/** Where first fit puts `span` bytes among the live blocks; 0 when nowhere. */
function firstFit(live: Map<number, Uint8Array>, span: number): number {
  let cursor = START;
  for (const [address, contents] of [...live].sort(([a], [b]) => a - b)) {
    if (address - cursor >= span) return cursor;
    cursor = address + spanOf(contents.length);
  }
  return END - cursor >= span ? cursor : 0;
}

Deno.test("alloc, free, realloc and size follow a first-fit model exactly", () => {
  fc.assert(
    fc.property(fc.array(operation, { maxLength: 60, size: "medium" }), (operations) => {
      const { ram, heap } = setup();
      /** Live blocks: address → the contents the guest last wrote. */
      const live = new Map<number, Uint8Array>();
      let stamp = 0;
      /** The guest filling a block with bytes no other write uses. */
      const scribble = (address: number, size: number) => {
        stamp++;
        const bytes = Uint8Array.from({ length: size }, (_, i) => (stamp * 7 + i) & 0xff);
        ram.set(bytes, address);
        live.set(address, bytes);
      };
      const addressOf = (t: { live: number; inside?: number } | { raw: number }) => {
        if ("raw" in t) return t.raw;
        const addresses = [...live.keys()];
        if (!addresses.length) return START + (t.inside ?? 0);
        return addresses[t.live % addresses.length] + (t.inside ?? 0);
      };
      for (const o of operations) {
        if (o.op === "alloc") {
          const expected = firstFit(live, spanOf(o.size));
          const address = heap.alloc(o.size, o.zero);
          assert.equal(address, expected, `alloc(${o.size})`);
          if (address === 0) continue;
          if (o.zero) assert.ok(ram.subarray(address, address + o.size).every((x) => x === 0), "zeroed");
          scribble(address, o.size);
        } else if (o.op === "free") {
          const address = addressOf(o.target);
          const wasLive = live.has(address);
          if (wasLive) ram.fill(0xee, address, address + live.get(address)!.length); // use after free leaves junk
          assert.equal(heap.free(address), wasLive, `free(0x${address.toString(16)})`);
          live.delete(address);
        } else if (o.op === "realloc") {
          const address = addressOf(o.target);
          const old = live.get(address);
          if (!old) {
            assert.equal(heap.realloc(address, o.size, o.zero, o.inPlaceOnly), 0, "realloc of no block");
            continue;
          }
          const oldSpan = spanOf(old.length), span = spanOf(o.size);
          const others = new Map([...live].filter(([a]) => a !== address));
          const nextStart = Math.min(END, ...[...others.keys()].filter((a) => a > address));
          const inPlace = span <= oldSpan || nextStart - address >= span;
          const expected = inPlace ? address : o.inPlaceOnly ? 0 : firstFit(live, span);
          const result = heap.realloc(address, o.size, o.zero, o.inPlaceOnly);
          assert.equal(result, expected, `realloc(0x${address.toString(16)}, ${old.length} → ${o.size})`);
          if (result === 0) continue;
          const kept = Math.min(old.length, o.size);
          assert.deepEqual(ram.subarray(result, result + kept), old.subarray(0, kept), "contents survive");
          if (o.zero && o.size > old.length) {
            assert.ok(ram.subarray(result + old.length, result + o.size).every((x) => x === 0), "tail zeroed");
          }
          live.delete(address);
          scribble(result, o.size);
        } else {
          const address = addressOf(o.target);
          assert.equal(heap.size(address), live.get(address)?.length ?? -1);
        }
        let previousEnd = START;
        for (const [address, contents] of [...live].sort(([a], [b]) => a - b)) {
          assert.equal(address % 16, 0);
          assert.ok(address >= previousEnd, "blocks never overlap");
          previousEnd = address + spanOf(contents.length);
          assert.ok(previousEnd <= END, "blocks stay in the heap");
          assert.equal(heap.size(address), contents.length);
          assert.deepEqual(
            ram.subarray(address, address + contents.length),
            contents,
            "no write reached another block",
          );
        }
      }
      for (const address of live.keys()) assert.ok(heap.free(address));
      assert.equal(heap.alloc(CAPACITY, false), START, "everything freed is one free block again");
    }),
    { numRuns: fuzzRuns },
  );
});
