import assert from "node:assert/strict";
import fc from "fast-check";
import { PageTables } from "../guest/paging.ts";
import { MiB, PAGE, pageTablePoolBase } from "../abi/memory_map.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const RAM = 16 * MiB;

Deno.test("large and small pages: protections, guards and boundaries are exact", () => {
  const ram = new Uint8Array(RAM);
  const pt = new PageTables(ram);
  pt.map(0x400000, 3 * PAGE, { write: false, exec: true }); // text, small pages
  pt.map(0x403000, 0x600000 - 0x403000, { write: true, exec: false }); // up to a 2 MiB boundary
  pt.map(0x600000, 4 * MiB, { write: true, exec: false }); // two whole large pages
  pt.map(0xa01000, 0x1000, { write: true, exec: false }); // after an unmapped guard page
  assert.deepEqual(pt.lookup(0x400000), { write: false, exec: true });
  assert.deepEqual(pt.lookup(0x403000), { write: true, exec: false });
  assert.deepEqual(pt.lookup(0x7fffff), { write: true, exec: false });
  assert.deepEqual(pt.lookup(0x9fffff), { write: true, exec: false });
  assert.equal(pt.lookup(0xa00000), undefined);
  assert.equal(pt.lookup(0x3ff000), undefined);
  assert.ok(pt.accessible(0x402ff0, 0x20, false));
  assert.ok(!pt.accessible(0x402ff0, 0x20, true), "text is not writable");
  assert.ok(pt.accessible(0x403000, 0x9fe000 - 0x403000 + 0x1000, true), "small then large pages, writable throughout");
  assert.ok(!pt.accessible(0x9ffff0, 0x20, false), "runs into the guard page");
  assert.ok(!pt.accessible(RAM - 8, 16, false), "past the end of RAM");
  assert.throws(() => pt.map(0x700000, PAGE, { write: false, exec: false }), /already mapped by a 2 MiB page/);
});

Deno.test("a guest that scribbles over its page tables never makes the host throw", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.integer({ min: 0, max: 3 * 512 - 1 }),
          fc.integer({ min: 0, max: 0xffffffff }),
          fc.integer({ min: 0, max: 0xffffffff }),
        ),
        { maxLength: 40 },
      ),
      fc.integer({ min: 0, max: RAM + PAGE }),
      fc.integer({ min: 0, max: 4 * MiB }),
      (writes, va, len) => {
        const ram = new Uint8Array(RAM);
        const pt = new PageTables(ram);
        pt.map(0x400000, 8 * MiB, { write: true, exec: false });
        const dv = new DataView(ram.buffer);
        // The first tables allocated: PML4, PDPT, PD.
        for (const [slot, low, high] of writes) {
          dv.setUint32(pageTablePoolBase + 8 * slot, low, true);
          dv.setUint32(pageTablePoolBase + 8 * slot + 4, high, true);
        }
        const seen = pt.lookup(va);
        const ok = pt.accessible(va, len, true);
        if (ok && len > 0) assert.ok(va + len <= RAM);
        if (ok && len > 0) assert.ok(seen?.write);
      },
    ),
    { numRuns: fuzzRuns },
  );
});

const RW = { write: true, exec: false }, RO = { write: false, exec: false }, RX = { write: false, exec: true };

Deno.test("reserved leaf tables let attached tables change the range without allocating", () => {
  const ram = new Uint8Array(RAM);
  const booted = new PageTables(ram);
  booted.map(0x400000, 4 * MiB, RW); // two large pages
  booted.reserveTables(0x800000, 4 * MiB);
  const attached = new PageTables(ram, booted.root);
  attached.map(0x800000, 2 * MiB + PAGE, RX);
  attached.protect(0x801000, PAGE, RO);
  attached.unmap(0x802000, PAGE);
  attached.unmap(0x400000, 2 * MiB); // a whole large page goes without a split
  attached.protect(0x600000, 2 * MiB, RX); // and changes protection as one entry
  assert.equal(booted.lookup(0x400000), undefined);
  assert.deepEqual(booted.lookup(0x7ff000), RX);
  assert.deepEqual(booted.lookup(0x800000), RX);
  assert.deepEqual(booted.lookup(0x801000), RO);
  assert.equal(booted.lookup(0x802000), undefined);
  assert.deepEqual(booted.lookup(0xa00000), RX);
  assert.equal(booted.lookup(0xa01000), undefined);
  assert.throws(() => attached.map(0xc00000, PAGE, RW), /attached and cannot allocate: 0xc00000 needs a new table/);
  assert.throws(() => attached.unmap(0x600000, PAGE), /attached and cannot allocate: 0x600000/, "a split allocates");
  assert.throws(() => attached.reserveTables(0xc00000, PAGE), /attached and cannot allocate/);
});

Deno.test("reserving or splitting a large page keeps every page's protection", () => {
  const ram = new Uint8Array(RAM);
  const pt = new PageTables(ram);
  pt.map(0x400000, 4 * MiB, RX);
  pt.reserveTables(0x5ff000, 2); // touches only the first chunk
  pt.unmap(0x700000, PAGE); // splits the second
  for (let a = 0x400000; a < 0x800000; a += PAGE) {
    assert.deepEqual(pt.lookup(a), a === 0x700000 ? undefined : RX, `0x${a.toString(16)}`);
  }
  pt.map(0x600000, 2 * MiB, RW); // no longer refused: the chunk has small pages now
  assert.deepEqual(pt.lookup(0x7ff000), RW);
  assert.throws(() => pt.protect(0x400800, PAGE, RO), /protect 0x400800\+0x1000 is not a page-aligned range/);
  assert.throws(() => pt.unmap(0x400000, 0x10), /unmap 0x400000\+0x10 is not a page-aligned range/);
});

Deno.test("protect changes present pages only; none hides them", () => {
  const pt = new PageTables(new Uint8Array(RAM));
  pt.map(0x400000, 2 * PAGE, RW);
  pt.protect(0x400000, 3 * PAGE, RX);
  assert.deepEqual(pt.lookup(0x400000), RX);
  assert.deepEqual(pt.lookup(0x401000), RX);
  assert.equal(pt.lookup(0x402000), undefined, "protect does not map");
  pt.protect(0x401000, PAGE, "none");
  assert.equal(pt.lookup(0x401000), undefined);
  assert.ok(pt.accessible(0x400000, PAGE, false));
  assert.ok(!pt.accessible(0x400000, 2 * PAGE, false));
  assert.ok(!pt.accessible(0x400000, PAGE, true));
  pt.map(0x600000, 2 * MiB, RW);
  pt.protect(0x600000, 2 * MiB, "none"); // the large entry itself
  assert.equal(pt.lookup(0x600000), undefined);
  pt.map(0x601000, PAGE, RO);
  assert.deepEqual(pt.lookup(0x601000), RO);
  assert.equal(pt.lookup(0x600000), undefined, "the hidden large page stays hidden");
});

/** How pvx represents a 2 MiB chunk: map refuses to add small pages to a large one. */
type Chunk = "absent" | "large" | "leaf";

Deno.test("map, unmap, protect and reserveTables agree with a page-by-page model", () => {
  const first = 0x400000, chunks = 4, pagesPerChunk = 512, pages = chunks * pagesPerChunk;
  const prot = fc.constantFrom(RW, RO, RX, { write: true, exec: true });
  const range = fc.tuple(
    fc.oneof(fc.integer({ min: 0, max: pages - 1 }), fc.integer({ min: 0, max: chunks - 1 }).map((c) => c * 512)),
    fc.oneof(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: pages })),
  ).map(([start, count]) => ({ start, count: Math.min(count, pages - start) }));
  const op = fc.oneof(
    fc.record({ kind: fc.constant("map" as const), range, prot }),
    fc.record({ kind: fc.constant("unmap" as const), range }),
    fc.record({ kind: fc.constant("protect" as const), range, prot: fc.oneof(prot, fc.constant("none" as const)) }),
    fc.record({ kind: fc.constant("reserve" as const), range }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
      const pt = new PageTables(new Uint8Array(RAM));
      const model: (typeof RW | undefined)[] = new Array(pages).fill(undefined);
      const chunk: Chunk[] = new Array(chunks).fill("absent");
      for (const o of ops) {
        const { start, count } = o.range;
        const va = first + start * PAGE, len = count * PAGE;
        const firstChunk = Math.floor(start / pagesPerChunk),
          lastChunk = Math.floor((start + count - 1) / pagesPerChunk);
        const chunkIndexes = [...Array(chunks).keys()].filter((c) => c >= firstChunk && c <= lastChunk);
        const whole = (c: number) => start <= c * pagesPerChunk && (c + 1) * pagesPerChunk <= start + count;
        if (o.kind === "map") {
          if (chunkIndexes.some((c) => chunk[c] === "large")) continue; // refused; tested above
          for (const c of chunkIndexes) chunk[c] = chunk[c] === "absent" && whole(c) ? "large" : "leaf";
          pt.map(va, len, o.prot);
          model.fill(o.prot, start, start + count);
        } else if (o.kind === "unmap") {
          for (const c of chunkIndexes) if (chunk[c] === "large") chunk[c] = whole(c) ? "absent" : "leaf";
          pt.unmap(va, len);
          model.fill(undefined, start, start + count);
        } else if (o.kind === "protect") {
          for (const c of chunkIndexes) {
            if (chunk[c] === "large") chunk[c] = !whole(c) ? "leaf" : o.prot === "none" ? "absent" : "large";
          }
          pt.protect(va, len, o.prot);
          for (let p = start; p < start + count; p++) {
            if (model[p]) model[p] = o.prot === "none" ? undefined : o.prot;
          }
        } else {
          for (const c of chunkIndexes) chunk[c] = "leaf";
          pt.reserveTables(va, len);
        }
        for (let p = -1; p <= pages; p++) {
          assert.deepEqual(pt.lookup(first + p * PAGE), model[p], `page 0x${(first + p * PAGE).toString(16)}`);
        }
        const allPresent = model.slice(start, start + count).every((m) => m);
        assert.equal(pt.accessible(va, len, false), allPresent);
        assert.equal(
          pt.accessible(va, len, true),
          allPresent && model.slice(start, start + count).every((m) => m!.write),
        );
      }
    }),
    { numRuns: fuzzRuns },
  );
});
