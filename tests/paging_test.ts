import assert from "node:assert/strict";
import fc from "fast-check";
import { PageTables } from "../guest/paging.ts";
import { MiB, PAGE, pageTablePoolBase } from "../guest/memory_map.ts";
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
        if (ok) assert.ok(va + len <= RAM);
        if (ok && len > 0) assert.ok(seen?.write);
      },
    ),
    { numRuns: fuzzRuns },
  );
});
