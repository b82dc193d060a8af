// VirtualAlloc, VirtualFree, VirtualProtect and VirtualQuery over the guest
// region the host manages. What is reserved and committed lives here, on the
// host, where the guest cannot forge it; the page tables follow every change
// (committed and accessible pages mapped with their protection, all else not
// present) using leaf tables reserved at boot, so nothing here allocates one.
//
// The host cannot invalidate a vCPU's TLB, so after free and protect the
// guest must flush its own before touching the range (the hypercall stub does).
//
// Rules where pvx picks among what Windows might do:
// - PAGE_WRITECOPY and PAGE_EXECUTE_WRITECOPY are refused (as VirtualAlloc
//   refuses them on Windows), and so are the PAGE_GUARD, PAGE_NOCACHE and
//   PAGE_WRITECOMBINE modifiers: all ERROR_INVALID_PARAMETER.
// - MEM_COMMIT at address 0 reserves too, as on Windows; MEM_TOP_DOWN and the
//   other allocation flags are refused.
// - Committing committed pages keeps their contents and gives them the new protection.
// - MEM_DECOMMIT with size 0 decommits the whole allocation and, like
//   MEM_RELEASE, needs its base (ERROR_INVALID_PARAMETER otherwise).
// - VirtualProtect with size 0 is ERROR_INVALID_PARAMETER.
// - Any address outside the region is ERROR_INVALID_ADDRESS, for query too.
// - VirtualQuery reports Protect 0 for reserved pages and PAGE_NOACCESS for free ones.

import { PlainState } from "./plain_state.ts";
import { PAGE, pageDown, pageUp } from "./memory_map.ts";
import type { AddressSpace, Protection } from "./address_space.ts";
import { Win32Error } from "./call_errors.ts";
import { win32Constants as W, win32Errors } from "./win32.ts";
import type { HostWrites } from "./host_writes.ts";
import { hex } from "./hex.ts";

/** Reservations start on 64 KiB boundaries, as on Windows. */
const GRANULARITY = 0x10000;

/** What each accepted PAGE_* value lets the guest do. */
const pageAccess = new Map<number, Protection | "none">([
  [W.PAGE_NOACCESS, "none"],
  [W.PAGE_READONLY, { write: false, exec: false }],
  [W.PAGE_READWRITE, { write: true, exec: false }],
  [W.PAGE_EXECUTE, { write: false, exec: true }],
  [W.PAGE_EXECUTE_READ, { write: false, exec: true }],
  [W.PAGE_EXECUTE_READWRITE, { write: true, exec: true }],
]);

/** A failed Virtual* call; `code` is the Win32 error the guest gets. */
export class VmError extends Win32Error {
  constructor(code: number, message: string) {
    super(code, message);
    this.name = "VmError";
  }
}

/** One reservation: [base, end), with the protection it was made with. */
interface Allocation {
  base: number;
  end: number;
  protect: number;
}

export interface MemoryInformation {
  baseAddress: number;
  allocationBase: number;
  allocationProtect: number;
  regionSize: number;
  state: number;
  protect: number;
  type: number;
}

/** Snapshot form: reservations as [base, end, protect], page protections (0 = not committed) as [value, count] runs. */
export interface VirtualMemoryData {
  allocations: [number, number, number][];
  pages: [number, number][];
}

export class VirtualMemory {
  /** Sorted by base, never overlapping. */
  #allocations: Allocation[] = [];
  /** Per page of the region: its PAGE_* protection, or 0 when not committed. */
  readonly #pages: Uint8Array;

  /** The region [start, end) must be page aligned with its leaf tables reserved; nothing in it may be mapped. */
  constructor(
    private readonly tables: AddressSpace,
    private readonly ram: Uint8Array,
    private readonly start: number,
    private readonly end: number,
    /** Hears of the pages a commit zeroes. */
    private readonly writes?: HostWrites,
  ) {
    if (start % PAGE || end % PAGE || start < 0 || end < start || end > ram.byteLength) {
      const region = `[${hex(start)}, ${hex(end)})`;
      throw new Error(`virtual memory region ${region} is not page aligned inside RAM of ${hex(ram.byteLength)} bytes`);
    }
    this.#pages = new Uint8Array((end - start) / PAGE);
  }

  alloc(address: number, size: number, allocationType: number, protect: number): number {
    const call = `VirtualAlloc(${hex(address)}, ${hex(size)}, ${hex(allocationType)}, ${hex(protect)})`;
    checkNumbers(call, address, size);
    if (size === 0) throw new VmError(win32Errors.ERROR_INVALID_PARAMETER, `${call}: size is 0`);
    const kinds = W.MEM_COMMIT | W.MEM_RESERVE;
    if (!(allocationType & kinds) || allocationType & ~kinds) {
      throw new VmError(win32Errors.ERROR_INVALID_PARAMETER, `${call}: type must be MEM_RESERVE and/or MEM_COMMIT`);
    }
    checkProtection(call, protect);
    if (allocationType & W.MEM_RESERVE || address === 0) {
      const { base, end } = address === 0 ? this.#findSpace(call, size) : this.#checkFree(call, address, size);
      this.#allocations.splice(this.#indexAfter(base), 0, { base, end, protect });
      if (allocationType & W.MEM_COMMIT) this.#commit(base, end, protect);
      return base;
    }
    const first = pageDown(address), end = pageUp(address + size);
    this.#allocationHolding(call, first, end);
    this.#commit(first, end, protect);
    return first;
  }

  free(address: number, size: number, freeType: number): void {
    const call = `VirtualFree(${hex(address)}, ${hex(size)}, ${hex(freeType)})`;
    checkNumbers(call, address, size);
    if (freeType !== W.MEM_RELEASE && freeType !== W.MEM_DECOMMIT) {
      throw new VmError(win32Errors.ERROR_INVALID_PARAMETER, `${call}: type must be MEM_RELEASE or MEM_DECOMMIT`);
    }
    if (freeType === W.MEM_DECOMMIT && size !== 0) {
      const first = pageDown(address), end = pageUp(address + size);
      this.#allocationHolding(call, first, end);
      this.#setPages(first, end, 0);
      return;
    }
    const allocation = this.#allocationHolding(call, address, address + 1);
    if (size !== 0 || address !== allocation.base) {
      throw new VmError(
        win32Errors.ERROR_INVALID_PARAMETER,
        `${call}: releasing, or decommitting with size 0, needs size 0 and the allocation base ${hex(allocation.base)}`,
      );
    }
    this.#setPages(allocation.base, allocation.end, 0);
    if (freeType === W.MEM_RELEASE) this.#allocations.splice(this.#allocations.indexOf(allocation), 1);
  }

  /** Returns the protection the first page had. */
  protect(address: number, size: number, newProtect: number): number {
    const call = `VirtualProtect(${hex(address)}, ${hex(size)}, ${hex(newProtect)})`;
    checkNumbers(call, address, size);
    checkProtection(call, newProtect);
    if (size === 0) throw new VmError(win32Errors.ERROR_INVALID_PARAMETER, `${call}: size is 0`);
    const first = pageDown(address), end = pageUp(address + size);
    this.#allocationHolding(call, first, end);
    const uncommitted = this.#pages.subarray(this.#page(first), this.#page(end)).indexOf(0);
    if (uncommitted >= 0) {
      throw new VmError(
        win32Errors.ERROR_INVALID_ADDRESS,
        `${call}: page ${hex(first + uncommitted * PAGE)} is not committed`,
      );
    }
    const old = this.#pages[this.#page(first)];
    this.#setPages(first, end, newProtect);
    return old;
  }

  /**
   * VirtualQuery: the run of pages from `address` that share one state and
   * protection. Outside the VirtualAlloc region (images, heap, stacks) pvx
   * knows pages only by their mapping, so each run is its own allocation.
   */
  query(address: number): MemoryInformation {
    const call = `VirtualQuery(${hex(address)})`;
    checkNumbers(call, address);
    if (address >= this.ram.byteLength) {
      throw new VmError(
        win32Errors.ERROR_INVALID_PARAMETER,
        `${call}: above the app's highest address ${hex(this.ram.byteLength - 1)}`,
      );
    }
    if (address < this.start || address >= this.end) return this.#queryMapped(address);
    const baseAddress = pageDown(address);
    const next = this.#indexAfter(address);
    const allocation = this.#allocations[next - 1];
    if (!allocation || address >= allocation.end) {
      return {
        baseAddress,
        allocationBase: 0,
        allocationProtect: 0,
        regionSize: (this.#allocations[next]?.base ?? this.end) - baseAddress,
        state: W.MEM_FREE,
        protect: W.PAGE_NOACCESS,
        type: 0,
      };
    }
    const protect = this.#pages[this.#page(baseAddress)];
    let regionEnd = baseAddress + PAGE;
    while (regionEnd < allocation.end && this.#pages[this.#page(regionEnd)] === protect) regionEnd += PAGE;
    return {
      baseAddress,
      allocationBase: allocation.base,
      allocationProtect: allocation.protect,
      regionSize: regionEnd - baseAddress,
      state: protect ? W.MEM_COMMIT : W.MEM_RESERVE,
      protect,
      type: W.MEM_PRIVATE,
    };
  }

  #queryMapped(address: number): MemoryInformation {
    const baseAddress = pageDown(address);
    const protectionAt = (a: number) => {
      const p = this.tables.lookup(a);
      if (!p) return 0;
      return p.exec
        ? (p.write ? W.PAGE_EXECUTE_READWRITE : W.PAGE_EXECUTE_READ)
        : p.write
        ? W.PAGE_READWRITE
        : W.PAGE_READONLY;
    };
    const protect = protectionAt(baseAddress);
    const limit = baseAddress < this.start ? this.start : this.ram.byteLength;
    let end = baseAddress + PAGE;
    while (end < limit && protectionAt(end) === protect) end += PAGE;
    return {
      baseAddress,
      allocationBase: protect ? baseAddress : 0,
      allocationProtect: protect,
      regionSize: end - baseAddress,
      state: protect ? W.MEM_COMMIT : W.MEM_FREE,
      protect: protect || W.PAGE_NOACCESS,
      type: protect ? W.MEM_PRIVATE : 0,
    };
  }

  serialize(): VirtualMemoryData {
    const pages: [number, number][] = [];
    for (const value of this.#pages) {
      const last = pages.at(-1);
      if (last?.[0] === value) last[1]++;
      else pages.push([value, 1]);
    }
    return { allocations: this.#allocations.map((a) => [a.base, a.end, a.protect]), pages };
  }

  /** Rebuilds the bookkeeping; the page tables and contents come back with the snapshot's RAM. */
  static restore(
    tables: AddressSpace,
    ram: Uint8Array,
    start: number,
    end: number,
    data: unknown,
    writes?: HostWrites,
  ): VirtualMemory {
    const vm = new VirtualMemory(tables, ram, start, end, writes);
    const state = new PlainState(`virtual memory snapshot for [${hex(start)}, ${hex(end)})`);
    const fail = (what: string): never => state.fail("", `is corrupt: ${what}`);
    const saved = state.record(data, "");
    const allocations = state.list(saved.allocations, "allocations");
    const pages = state.list(saved.pages, "pages");
    let page = 0;
    pages.forEach((run, i) => {
      const [v, n] = state.list(run, `pages[${i}]`, 2);
      const value = state.integer(v, `pages[${i}] protection`, 0, 0xffff);
      const count = state.integer(n, `pages[${i}] count`, 1);
      if (page + count > vm.#pages.length) fail(`page run of ${count} overflows`);
      if (value !== 0 && !pageAccess.has(value)) fail(`page protection ${value} is invalid`);
      vm.#pages.fill(value, page, page + count);
      page += count;
    });
    if (page !== vm.#pages.length) fail(`page runs cover ${page} of ${vm.#pages.length} pages`);
    const checkNothingCommitted = (from: number, to: number) => {
      if (vm.#pages.subarray(vm.#page(from), vm.#page(to)).some((value) => value !== 0)) {
        fail(`pages in [${hex(from)}, ${hex(to)}) are committed outside any allocation`);
      }
    };
    let previousEnd = start;
    allocations.forEach((allocation, i) => {
      const [b, e, p] = state.list(allocation, `allocations[${i}]`, 3);
      const base = state.integer(b, `allocations[${i}] base`, start, end);
      const allocationEnd = state.integer(e, `allocations[${i}] end`, start, end);
      const protect = state.integer(p, `allocations[${i}] protection`, 0, 0xffff);
      const inOrder = base >= previousEnd && allocationEnd > base && allocationEnd <= end;
      if (!inOrder || base % GRANULARITY || allocationEnd % PAGE || !pageAccess.has(protect)) {
        fail(`allocation [${base}, ${allocationEnd}) protect ${protect} is out of order, unaligned or invalid`);
      }
      checkNothingCommitted(previousEnd, base);
      vm.#allocations.push({ base, end: allocationEnd, protect });
      previousEnd = allocationEnd;
    });
    checkNothingCommitted(previousEnd, end);
    return vm;
  }

  #page(address: number): number {
    return (address - this.start) / PAGE;
  }

  /** Index of the first allocation whose base lies above `address`. */
  #indexAfter(address: number): number {
    let low = 0, high = this.#allocations.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.#allocations[mid].base <= address) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** The allocation holding all of [first, end). */
  #allocationHolding(call: string, first: number, end: number): Allocation {
    const allocation = this.#allocations[this.#indexAfter(first) - 1];
    if (!allocation || first >= allocation.end || end > allocation.end) {
      throw new VmError(
        win32Errors.ERROR_INVALID_ADDRESS,
        `${call}: [${hex(first)}, ${hex(end)}) is not inside one allocation`,
      );
    }
    return allocation;
  }

  /** The lowest free range for `size` bytes that starts on the allocation granularity. */
  #findSpace(call: string, size: number): { base: number; end: number } {
    const need = pageUp(size);
    let cursor = this.start;
    for (const allocation of [...this.#allocations, { base: this.end, end: this.end }]) {
      const base = alignUp(cursor, GRANULARITY);
      if (base + need <= allocation.base) return { base, end: base + need };
      cursor = allocation.end;
    }
    throw new VmError(win32Errors.ERROR_NOT_ENOUGH_MEMORY, `${call}: no free ${hex(need)} bytes in the region`);
  }

  /** The range a reservation at `address` takes, which must be inside the region and free. */
  #checkFree(call: string, address: number, size: number): { base: number; end: number } {
    const base = address - address % GRANULARITY, end = pageUp(address + size);
    if (base < this.start || end > this.end) {
      throw new VmError(
        win32Errors.ERROR_INVALID_ADDRESS,
        `${call}: [${hex(base)}, ${hex(end)}) is outside the region [${hex(this.start)}, ${hex(this.end)})`,
      );
    }
    const before = this.#allocations[this.#indexAfter(end - 1) - 1];
    if (before && before.end > base) {
      throw new VmError(
        win32Errors.ERROR_INVALID_ADDRESS,
        `${call}: [${hex(base)}, ${hex(end)}) overlaps the allocation at ${hex(before.base)}`,
      );
    }
    return { base, end };
  }

  /** Commits [first, end) with `protect`; pages committed only now start zeroed. */
  #commit(first: number, end: number, protect: number): void {
    for (let a = first; a < end; a += PAGE) {
      if (this.#pages[this.#page(a)]) continue;
      this.ram.fill(0, a, a + PAGE);
      this.writes?.mark(a, PAGE);
    }
    this.#setPages(first, end, protect);
  }

  /** Records `protect` (0: not committed) for [first, end) and makes the page tables match. */
  #setPages(first: number, end: number, protect: number): void {
    this.#pages.fill(protect, this.#page(first), this.#page(end));
    const access = pageAccess.get(protect) ?? "none";
    if (access === "none") this.tables.unmap(first, end - first);
    else this.tables.map(first, end - first, access);
  }
}

function alignUp(a: number, n: number): number {
  return Math.ceil(a / n) * n;
}

/** Guest-supplied addresses and sizes must be whole non-negative numbers. */
function checkNumbers(call: string, ...values: number[]): void {
  if (!values.every((v) => Number.isSafeInteger(v) && v >= 0)) {
    throw new VmError(win32Errors.ERROR_INVALID_PARAMETER, `${call}: address or size is not a whole number`);
  }
}

function checkProtection(call: string, protect: number): void {
  if (!pageAccess.has(protect)) {
    throw new VmError(
      win32Errors.ERROR_INVALID_PARAMETER,
      `${call}: protection ${hex(protect)} is not one of PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, ` +
        "PAGE_EXECUTE, PAGE_EXECUTE_READ or PAGE_EXECUTE_READWRITE (no WRITECOPY or GUARD/NOCACHE modifiers)",
    );
  }
}
