import assert from "node:assert/strict";
import fc from "fast-check";
import { type MemoryInformation, VirtualMemory, VmError } from "../abi/virtual_memory.ts";
import { Win32Error } from "../abi/call_errors.ts";
import { win32Constants as W, win32Errors as E } from "../abi/win32.ts";
import { PageTables } from "../guest/paging.ts";
import { MiB, PAGE } from "../abi/memory_map.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const RAM = 16 * MiB;
// Neither end on a 2 MiB boundary, so the region shares leaf tables with the
// mapped memory around it, and neither end is on the 64 KiB granularity.
const START = 0x7f3000, END = 0xbf3000;
const RW = { write: true, exec: false };
/** Pages just outside the region, whose mappings must never change. */
const NEIGHBOURS = [START - 2 * PAGE, START - PAGE, END, END + PAGE];

/** Boots tables with mapped neighbours, then hands VirtualMemory tables attached the way a vCPU thread does. */
function setup() {
  const ram = new Uint8Array(RAM);
  const booted = new PageTables(ram);
  booted.map(0x400000, START - 0x400000, RW);
  booted.map(END, 0xe00000 - END, { write: false, exec: true });
  booted.reserveTables(START, END - START);
  const pages = new PageTables(ram, booted.root);
  return { ram, pages, vm: new VirtualMemory(pages, ram, START, END) };
}

function vmError(code: number, message?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof VmError, `expected a VmError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  };
}

/** What makes pages one region: the same allocation, state and protection. */
const kind = (info: MemoryInformation) => [info.allocationBase, info.state, info.protect].join();

/** The regions query reports, walked from the region's start to its end; each is uniform and as long as it can be. */
function regions(vm: VirtualMemory): MemoryInformation[] {
  const out: MemoryInformation[] = [];
  for (let a = START; a < END;) {
    const info = vm.query(a);
    assert.equal(info.baseAddress, a);
    assert.ok(info.regionSize > 0 && info.regionSize % PAGE === 0 && a + info.regionSize <= END);
    assert.equal(kind(vm.query(a + info.regionSize - 1)), kind(info), `last page of ${JSON.stringify(info)}`);
    if (out.length) assert.notEqual(kind(out.at(-1)!), kind(info), `${JSON.stringify(info)} continues the last region`);
    out.push(info);
    a += info.regionSize;
  }
  return out;
}

/** Page-table protection a query result implies, derived from the PAGE_* bits rather than pvx's own table. */
function expectedMapping(info: MemoryInformation) {
  if (info.state !== W.MEM_COMMIT || info.protect === W.PAGE_NOACCESS) return undefined;
  return {
    write: (info.protect & (W.PAGE_READWRITE | W.PAGE_EXECUTE_READWRITE)) !== 0,
    exec: (info.protect & (W.PAGE_EXECUTE | W.PAGE_EXECUTE_READ | W.PAGE_EXECUTE_READWRITE)) !== 0,
  };
}

function checkTablesMatchQuery(vm: VirtualMemory, pages: PageTables): void {
  for (const info of regions(vm)) {
    const expected = expectedMapping(info);
    for (let a = info.baseAddress; a < info.baseAddress + info.regionSize; a += PAGE) {
      assert.deepEqual(pages.lookup(a), expected, `page 0x${a.toString(16)} in ${JSON.stringify(info)}`);
    }
  }
}

Deno.test("reserve, then commit inside: regions, protections and zeroed pages", () => {
  const { ram, pages, vm } = setup();
  ram.fill(0xcc, START, END); // what an earlier tenant left behind
  const base = vm.alloc(0, 10 * PAGE, W.MEM_RESERVE, W.PAGE_READWRITE);
  assert.equal(base, 0x800000, "the first 64 KiB boundary in the region");
  assert.equal(pages.lookup(base), undefined, "reserved is not mapped");
  assert.equal(vm.alloc(base + 2 * PAGE + 5, PAGE, W.MEM_COMMIT, W.PAGE_EXECUTE_READ), base + 2 * PAGE);
  assert.deepEqual(pages.lookup(base + 2 * PAGE), { write: false, exec: true });
  assert.deepEqual(pages.lookup(base + 3 * PAGE), { write: false, exec: true }, "byte +5 spills into the next page");
  assert.ok(ram.subarray(base + 2 * PAGE, base + 4 * PAGE).every((b) => b === 0));
  assert.equal(ram[base + PAGE], 0xcc, "uncommitted pages are left alone");
  assert.deepEqual(vm.query(base + 100), {
    baseAddress: base,
    allocationBase: base,
    allocationProtect: W.PAGE_READWRITE,
    regionSize: 2 * PAGE,
    state: W.MEM_RESERVE,
    protect: 0,
    type: W.MEM_PRIVATE,
  });
  assert.deepEqual(vm.query(base + 3 * PAGE + 1), {
    baseAddress: base + 3 * PAGE,
    allocationBase: base,
    allocationProtect: W.PAGE_READWRITE,
    regionSize: PAGE,
    state: W.MEM_COMMIT,
    protect: W.PAGE_EXECUTE_READ,
    type: W.MEM_PRIVATE,
  });
  assert.deepEqual(vm.query(base + 10 * PAGE), {
    baseAddress: base + 10 * PAGE,
    allocationBase: 0,
    allocationProtect: 0,
    regionSize: END - base - 10 * PAGE,
    state: W.MEM_FREE,
    protect: W.PAGE_NOACCESS,
    type: 0,
  });
  assert.deepEqual(vm.query(START).regionSize, base - START);
  checkTablesMatchQuery(vm, pages);
});

Deno.test("reserving at an address rounds down to 64 KiB and covers every touched page", () => {
  const { pages, vm } = setup();
  const base = vm.alloc(0x905432, 0x10000, W.MEM_RESERVE | W.MEM_COMMIT, W.PAGE_READWRITE);
  assert.equal(base, 0x900000);
  const info = vm.query(base);
  assert.equal(info.state, W.MEM_COMMIT);
  assert.equal(info.regionSize, 0x916000 - 0x900000);
  assert.deepEqual(pages.lookup(0x915000), RW);
  assert.throws(
    () => vm.alloc(0x915000, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE),
    vmError(E.ERROR_INVALID_ADDRESS, /overlaps the allocation at 0x900000/),
  );
  assert.throws(() => vm.alloc(0x8f0000, 0x10001, W.MEM_RESERVE, W.PAGE_READWRITE), vmError(E.ERROR_INVALID_ADDRESS));
  assert.equal(vm.alloc(0x920000, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE), 0x920000, "the next granule is free");
  assert.equal(vm.alloc(0, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE), 0x800000, "lowest free granule first");
  assert.equal(vm.alloc(0, 0xf0000, W.MEM_RESERVE, W.PAGE_READWRITE), 0x810000, "the rest of the hole below");
  assert.equal(vm.alloc(0, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE), 0x930000, "0x916000 is not on a granule");
  checkTablesMatchQuery(vm, pages);
});

Deno.test("MEM_COMMIT at address 0 reserves too; recommitting keeps contents and takes the new protection", () => {
  const { ram, pages, vm } = setup();
  const base = vm.alloc(0, 3 * PAGE, W.MEM_COMMIT, W.PAGE_READWRITE);
  assert.equal(vm.query(base).state, W.MEM_COMMIT);
  ram.fill(7, base, base + 3 * PAGE);
  assert.equal(vm.alloc(base + PAGE, PAGE, W.MEM_COMMIT, W.PAGE_READONLY), base + PAGE);
  assert.ok(ram.subarray(base, base + 3 * PAGE).every((b) => b === 7));
  assert.deepEqual(pages.lookup(base + PAGE), { write: false, exec: false });
  assert.equal(vm.query(base).regionSize, PAGE);
  checkTablesMatchQuery(vm, pages);
});

Deno.test("decommit drops pages to reserved; committing again gives zeros", () => {
  const { ram, pages, vm } = setup();
  const base = vm.alloc(0, 4 * PAGE, W.MEM_RESERVE | W.MEM_COMMIT, W.PAGE_EXECUTE_READWRITE);
  ram.fill(9, base, base + 4 * PAGE);
  vm.free(base + PAGE, 2 * PAGE, W.MEM_DECOMMIT);
  assert.equal(vm.query(base + PAGE).state, W.MEM_RESERVE);
  assert.equal(vm.query(base + PAGE).regionSize, 2 * PAGE);
  assert.equal(pages.lookup(base + PAGE), undefined);
  vm.free(base + PAGE, PAGE, W.MEM_DECOMMIT); // already reserved: fine
  vm.alloc(base, 4 * PAGE, W.MEM_COMMIT, W.PAGE_READWRITE);
  assert.equal(ram[base], 9);
  assert.equal(ram[base + PAGE], 0);
  assert.equal(ram[base + 3 * PAGE - 1], 0);
  assert.equal(ram[base + 3 * PAGE], 9);
  assert.throws(() => vm.free(base + PAGE, 0, W.MEM_DECOMMIT), vmError(E.ERROR_INVALID_PARAMETER, /allocation base/));
  vm.free(base, 0, W.MEM_DECOMMIT);
  assert.deepEqual(vm.query(base).regionSize, 4 * PAGE);
  assert.deepEqual(vm.query(base).state, W.MEM_RESERVE);
  assert.throws(
    () => vm.free(base, 5 * PAGE, W.MEM_DECOMMIT),
    vmError(E.ERROR_INVALID_ADDRESS, /not inside one allocation/),
  );
  checkTablesMatchQuery(vm, pages);
});

Deno.test("release needs size 0 and the allocation base", () => {
  const { pages, vm } = setup();
  const base = vm.alloc(0, 2 * PAGE, W.MEM_RESERVE | W.MEM_COMMIT, W.PAGE_READWRITE);
  assert.throws(() => vm.free(base, 2 * PAGE, W.MEM_RELEASE), vmError(E.ERROR_INVALID_PARAMETER));
  assert.throws(() => vm.free(base + PAGE, 0, W.MEM_RELEASE), vmError(E.ERROR_INVALID_PARAMETER));
  assert.throws(() => vm.free(base + 0x10000, 0, W.MEM_RELEASE), vmError(E.ERROR_INVALID_ADDRESS));
  assert.throws(() => vm.free(0x100000, 0, W.MEM_RELEASE), vmError(E.ERROR_INVALID_ADDRESS), "outside the region");
  assert.throws(() => vm.free(base, 0, W.MEM_RELEASE | W.MEM_DECOMMIT), vmError(E.ERROR_INVALID_PARAMETER));
  vm.free(base, 0, W.MEM_RELEASE);
  assert.equal(vm.query(base).state, W.MEM_FREE);
  assert.equal(pages.lookup(base), undefined);
  assert.throws(() => vm.free(base, 0, W.MEM_RELEASE), vmError(E.ERROR_INVALID_ADDRESS), "double release");
  assert.equal(vm.alloc(0, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE), base, "the space is reused");
});

Deno.test("protect: old protection back, committed pages of one allocation only, no WRITECOPY or modifiers", () => {
  const { pages, vm } = setup();
  const a = vm.alloc(0, 2 * PAGE, W.MEM_RESERVE | W.MEM_COMMIT, W.PAGE_READWRITE);
  const b = vm.alloc(0, 2 * PAGE, W.MEM_RESERVE, W.PAGE_READWRITE);
  assert.equal(vm.protect(a + 10, 1, W.PAGE_NOACCESS), W.PAGE_READWRITE);
  assert.equal(pages.lookup(a), undefined);
  assert.equal(vm.query(a).state, W.MEM_COMMIT);
  assert.equal(vm.protect(a, 2 * PAGE, W.PAGE_EXECUTE), W.PAGE_NOACCESS);
  assert.deepEqual(pages.lookup(a + PAGE), { write: false, exec: true });
  assert.throws(() => vm.protect(b, PAGE, W.PAGE_READONLY), vmError(E.ERROR_INVALID_ADDRESS, /not committed/));
  assert.throws(
    () => vm.protect(a, 0x20000, W.PAGE_READONLY),
    vmError(E.ERROR_INVALID_ADDRESS),
    "spans two allocations",
  );
  assert.throws(() => vm.protect(a, 0, W.PAGE_READONLY), vmError(E.ERROR_INVALID_PARAMETER));
  for (const bad of [W.PAGE_WRITECOPY, 0x80, W.PAGE_READWRITE | W.PAGE_GUARD, W.PAGE_READWRITE | 0x200, 0, 3]) {
    assert.throws(() => vm.protect(a, PAGE, bad), vmError(E.ERROR_INVALID_PARAMETER, /protection/));
    assert.throws(() => vm.alloc(0, PAGE, W.MEM_COMMIT, bad), vmError(E.ERROR_INVALID_PARAMETER, /protection/));
  }
  checkTablesMatchQuery(vm, pages);
});

Deno.test("outside the VirtualAlloc region, a query describes the pages by their mapping", () => {
  const { vm } = setup();
  assert.deepEqual(vm.query(END + 5), {
    baseAddress: END,
    allocationBase: END,
    allocationProtect: W.PAGE_EXECUTE_READ,
    regionSize: 0xe00000 - END,
    state: W.MEM_COMMIT,
    protect: W.PAGE_EXECUTE_READ,
    type: W.MEM_PRIVATE,
  });
  // A mapped run below the region stops where the region starts, whatever the region's pages are.
  assert.equal(vm.query(0x400000).regionSize, START - 0x400000);
  assert.equal(vm.query(0x400000).protect, W.PAGE_READWRITE);
  assert.deepEqual(vm.query(0x123456), {
    baseAddress: 0x123000,
    allocationBase: 0,
    allocationProtect: 0,
    regionSize: 0x400000 - 0x123000,
    state: W.MEM_FREE,
    protect: W.PAGE_NOACCESS,
    type: 0,
  });
  assert.equal(vm.query(0xe00000).regionSize, RAM - 0xe00000);
});

Deno.test("bad requests: size 0, unknown types, outside the region, out of space", () => {
  const { vm } = setup();
  assert.throws(() => vm.alloc(0, 0, W.MEM_COMMIT, W.PAGE_READWRITE), vmError(E.ERROR_INVALID_PARAMETER, /size is 0/));
  assert.throws(() => vm.alloc(0, PAGE, 0, W.PAGE_READWRITE), vmError(E.ERROR_INVALID_PARAMETER));
  assert.throws(() => vm.alloc(0, PAGE, W.MEM_COMMIT | 0x100000, W.PAGE_READWRITE), vmError(E.ERROR_INVALID_PARAMETER));
  assert.throws(() => vm.alloc(0, 1.5, W.MEM_COMMIT, W.PAGE_READWRITE), vmError(E.ERROR_INVALID_PARAMETER));
  assert.throws(() => vm.alloc(0x400000, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE), vmError(E.ERROR_INVALID_ADDRESS));
  assert.throws(() => vm.alloc(0xbf0000, 0x4000, W.MEM_RESERVE, W.PAGE_READWRITE), vmError(E.ERROR_INVALID_ADDRESS));
  assert.throws(
    () => vm.alloc(0x900000, PAGE, W.MEM_COMMIT, W.PAGE_READWRITE),
    vmError(E.ERROR_INVALID_ADDRESS),
    "not reserved",
  );
  assert.throws(() => vm.query(RAM), vmError(E.ERROR_INVALID_PARAMETER, /above the app's highest address/));
  assert.throws(() => vm.query(-1), vmError(E.ERROR_INVALID_PARAMETER));
  const whole = END - 0x800000;
  assert.throws(() => vm.alloc(0, whole + 1, W.MEM_RESERVE, W.PAGE_READWRITE), vmError(E.ERROR_NOT_ENOUGH_MEMORY));
  assert.equal(vm.alloc(0, whole, W.MEM_RESERVE, W.PAGE_READWRITE), 0x800000);
  assert.throws(() => vm.alloc(0, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE), vmError(E.ERROR_NOT_ENOUGH_MEMORY));
  // A Win32Error is what the dispatcher turns into the call's failure value and last error.
  assert.throws(() => vm.alloc(0, PAGE, W.MEM_RESERVE, W.PAGE_READWRITE), Win32Error);
});

Deno.test("serialize and restore carry the bookkeeping; corrupt snapshots are refused", () => {
  const { ram, pages, vm } = setup();
  const a = vm.alloc(0, 6 * PAGE, W.MEM_RESERVE, W.PAGE_EXECUTE_READ);
  vm.alloc(a + PAGE, 2 * PAGE, W.MEM_COMMIT, W.PAGE_READONLY);
  vm.alloc(0, 3 * PAGE, W.MEM_COMMIT, W.PAGE_READWRITE);
  const data = JSON.parse(JSON.stringify(vm.serialize()));
  const restored = VirtualMemory.restore(pages, ram, START, END, data);
  assert.deepEqual(regions(restored), regions(vm));
  checkTablesMatchQuery(restored, pages);
  restored.free(a, 0, W.MEM_RELEASE);
  assert.equal(restored.query(a).state, W.MEM_FREE);

  const corrupt = (change: (d: typeof data) => void) => {
    const d = structuredClone(data);
    change(d);
    return () => VirtualMemory.restore(pages, ram, START, END, d);
  };
  assert.throws(corrupt((d) => d.pages[0][1] += 1), /snapshot for \[0x7f3000, 0xbf3000\): is corrupt: page run/);
  assert.throws(corrupt((d) => d.allocations[1][0] = d.allocations[0][0]), /is corrupt: allocation .* out of order/);
  assert.throws(corrupt((d) => d.allocations.pop()), /is corrupt: pages in \[0x[0-9a-f]+, 0xbf3000\) are committed/);
  assert.throws(corrupt((d) => d.pages[1][0] = W.PAGE_WRITECOPY), /page protection 8 is invalid/);
  assert.throws(() => VirtualMemory.restore(pages, ram, START, END, null), /0xbf3000\): is not an object/);
  assert.throws(corrupt((d) => d.allocations[0] = 7 as never), /: allocations\[0\]: is not a list/);
  assert.throws(corrupt((d) => d.pages[0][1] = "1" as never), /: pages\[0\] count: is not a whole number/);
  assert.throws(
    () => new VirtualMemory(pages, ram, START + 1, END),
    /region \[0x7f3001, 0xbf3000\) is not page aligned/,
  );
});

/** One guest request; addresses are either raw or relative to an allocation made earlier in the run. */
const address = fc.oneof(
  fc.constant(0),
  fc.integer({ min: START - 0x20000, max: END + 0x20000 }),
  {
    weight: 4,
    arbitrary: fc.record({
      earlier: fc.nat(),
      offset: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 0, max: 18 }).map((pages) => pages * PAGE),
        fc.integer({ min: -PAGE, max: 0x12000 }),
      ),
    }),
  },
);
const smallSize = fc.integer({ min: 1, max: 0x12000 });
const size = fc.oneof(
  fc.constant(0),
  { weight: 6, arbitrary: smallSize },
  fc.integer({ min: 1, max: END - START + 0x10000 }),
);
const validProtection = fc.constantFrom(0x01, 0x02, 0x04, 0x10, 0x20, 0x40);
const protection = fc.oneof(
  { weight: 10, arbitrary: validProtection },
  { weight: 1, arbitrary: fc.constantFrom(0x08, 0x80, 0x104, 0x204, 0) },
);
const allocationType = fc.constantFrom(W.MEM_RESERVE, W.MEM_COMMIT, W.MEM_RESERVE | W.MEM_COMMIT);
/** Allocations every run starts with, so that later requests have something to hit. */
const firstAllocation = fc.record({
  call: fc.constant("alloc" as const),
  address: fc.constant(0),
  size: smallSize,
  type: allocationType,
  protect: validProtection,
});
const request = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      call: fc.constant("alloc" as const),
      address,
      size,
      type: fc.oneof(
        { weight: 10, arbitrary: allocationType },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
      ),
      protect: protection,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      call: fc.constant("free" as const),
      address,
      size: fc.oneof(fc.constant(0), size),
      type: fc.oneof(
        { weight: 10, arbitrary: fc.constantFrom(W.MEM_RELEASE, W.MEM_DECOMMIT) },
        { weight: 1, arbitrary: fc.constantFrom(W.MEM_RELEASE | W.MEM_DECOMMIT, 0) },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ call: fc.constant("protect" as const), address, size, protect: protection }) },
  fc.record({ call: fc.constant("query" as const), address }),
  // The guest writing a marker into a page it believes committed.
  {
    weight: 2,
    arbitrary: fc.record({ call: fc.constant("write" as const), address, marker: fc.integer({ min: 1, max: 255 }) }),
  },
);

/** Per page of the region: its committed protection, or 0. */
function commitState(vm: VirtualMemory): number[] {
  return regions(vm).flatMap((r) => Array(r.regionSize / PAGE).fill(r.state === W.MEM_COMMIT ? r.protect : 0));
}

Deno.test("random Virtual* sequences: only VmErrors, tables always match query, contents kept or zeroed", () => {
  fc.assert(
    fc.property(
      fc.array(firstAllocation, { minLength: 1, maxLength: 4 }),
      fc.array(request, { maxLength: 30, size: "medium" }),
      (first, rest) => {
        const { ram, pages, vm } = setup();
        ram.fill(0xcc, START, END);
        const outside = NEIGHBOURS.map((a) => pages.lookup(a));
        const bases: number[] = [];
        /** What the guest last wrote to each committed page (0: nothing since it was committed). */
        let contents = new Map<number, number>();
        for (const r of [...first, ...rest]) {
          const at = typeof r.address === "number"
            ? r.address
            : Math.max(0, bases[r.address.earlier % bases.length] + r.address.offset);
          const before = commitState(vm);
          try {
            if (r.call === "alloc") bases.push(vm.alloc(at, r.size, r.type, r.protect));
            else if (r.call === "free") vm.free(at, r.size, r.type);
            else if (r.call === "protect") vm.protect(at, r.size, r.protect);
            else if (r.call === "query") vm.query(at);
            else {
              const page = at - at % PAGE;
              if (pages.lookup(page)?.write) {
                ram.fill(r.marker, page, page + PAGE);
                contents.set(page, r.marker);
              }
            }
          } catch (e) {
            if (!(e instanceof VmError)) throw e;
          }
          checkTablesMatchQuery(vm, pages);
          assert.deepEqual(NEIGHBOURS.map((a) => pages.lookup(a)), outside);
          const after = commitState(vm);
          const kept = new Map<number, number>();
          after.forEach((protect, i) => {
            const page = START + i * PAGE;
            if (!protect) return;
            const expected = before[i] ? contents.get(page) ?? 0 : 0;
            assert.equal(ram[page], expected, `first byte of 0x${page.toString(16)}`);
            assert.equal(ram[page + PAGE - 1], expected, `last byte of 0x${page.toString(16)}`);
            kept.set(page, expected);
          });
          contents = kept;
        }
      },
    ),
    { numRuns: fuzzRuns },
  );
});
