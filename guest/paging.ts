// 4-level x86-64 identity page tables. Pages carry their own write and execute
// permission (text read-only, data no-execute); a range that covers a whole
// aligned 2 MiB chunk gets one large-page entry instead of 512 small ones,
// which is what keeps mapping all of RAM at boot cheap. App pages are user
// pages (the app runs in ring 3); the kernel's are supervisor-only.
//
// Tables come from a bump pool whose watermark only the instance that built
// them knows. An instance attached to existing tables (another thread, after
// boot) therefore never allocates: ranges it will change later are given
// their leaf tables up front with reserveTables.

import { PAGE, pageTablePoolBase, pageTablePoolEnd } from "../abi/memory_map.ts";
import type { HostWrites } from "../abi/host_writes.ts";
import type { AddressSpace, Protection } from "../abi/address_space.ts";

// Entry bits, split into the low and high 32-bit halves: guest RAM lies below
// 4 GiB, so an entry's address fits the low half and NX is the only high bit.
const P = 1, RW = 2, USER = 4, LARGE = 0x80, ACCESSED = 0x20, DIRTY = 0x40;
/** Table entries allow everything; the leaf entry alone decides a page's access. */
const TABLE = P | RW | USER | ACCESSED;
const NX_HIGH = 0x8000_0000;
const ADDR_LOW = 0xffff_f000;
const LARGE_PAGE = 512 * PAGE;

const hex = (n: number) => `0x${n.toString(16)}`;

/** What maps one address: a 4 KiB entry in a leaf table or a 2 MiB entry in a directory. */
interface Mapping {
  entry: number;
  base: number;
  size: number;
}

export class PageTables implements AddressSpace {
  #mem: DataView;
  #next = pageTablePoolBase;
  /**
   * Directory entries of the 2 MiB chunks changed since `takeChanges`, with the PDPT entry above each.
   * Only attached tables record them: before boot no vCPU has seen the tables.
   */
  readonly #changed = new Map<number, number>();
  readonly #attached: boolean;
  readonly root: number;

  /**
   * Starts fresh tables in `mem`, or attaches to the ones already at `root`; `writes` hears of every table page
   * the host changes in a running guest.
   */
  constructor(mem: Uint8Array, root?: number, private readonly writes?: HostWrites) {
    this.#mem = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    this.#attached = root !== undefined;
    this.root = root ?? this.#allocate(0);
  }

  /** A zeroed table page for the tables covering `va`. */
  #allocate(va: number): number {
    if (this.#attached) {
      throw new Error(
        `page tables at ${hex(this.root)} are attached and cannot allocate: ` +
          `${hex(va)} needs a new table (reserveTables must cover it before boot)`,
      );
    }
    if (this.#next >= pageTablePoolEnd) throw new Error("page-table pool exhausted: guest memory map too large");
    const page = this.#next;
    this.#next += PAGE;
    new Uint8Array(this.#mem.buffer, this.#mem.byteOffset + page, PAGE).fill(0);
    return page;
  }

  #low(entry: number): number {
    return this.#mem.getUint32(entry, true);
  }

  /** The table or page an entry points at (unsigned: the guest may have set bit 31). */
  #target(entry: number): number {
    return (this.#low(entry) & ADDR_LOW) >>> 0;
  }

  #set(entry: number, low: number, high: number): void {
    this.#mem.setUint32(entry, low, true);
    this.#mem.setUint32(entry + 4, high, true);
    this.writes?.mark(entry, 8);
  }

  /**
   * The page directory entry covering `va`, creating the tables above it if
   * asked. The guest can rewrite its tables, so a walk that leads outside
   * guest RAM, or through a table entry above 4 GiB, counts as unmapped.
   */
  #directoryEntry(va: number, create: boolean, changed = false): number | undefined {
    let table = this.root;
    let pdpte = 0;
    for (const shift of [39, 30]) {
      if (table + PAGE > this.#mem.byteLength) return undefined;
      const e = pdpte = table + 8 * (Math.floor(va / 2 ** shift) & 511);
      if (!(this.#low(e) & P)) {
        if (!create) return undefined;
        this.#set(e, this.#allocate(va) | TABLE, 0);
      }
      if (this.#low(e) & LARGE || this.#mem.getUint32(e + 4, true) & ~NX_HIGH) return undefined;
      table = this.#target(e);
    }
    if (table + PAGE > this.#mem.byteLength) return undefined;
    const pde = table + 8 * (Math.floor(va / LARGE_PAGE) & 511);
    if (changed && this.#attached) this.#changed.set(pde, pdpte);
    return pde;
  }

  /**
   * The table entries to re-write from inside the guest so that a hypervisor
   * shadowing these tables sees what changed since the last call (see
   * guest/kernel.ts): the directory entry of each changed 2 MiB chunk, or the
   * PDPT entries above them when there are more than `max`.
   */
  takeChanges(max: number): number[] {
    const entries = this.#changed.size <= max ? [...this.#changed.keys()] : [...new Set(this.#changed.values())];
    this.#changed.clear();
    return entries;
  }

  /** The present entry that maps `va`, if any. */
  #mapping(va: number): Mapping | undefined {
    const pde = this.#directoryEntry(va, false);
    if (pde === undefined || !(this.#low(pde) & P)) return undefined;
    if (this.#low(pde) & LARGE) return { entry: pde, base: va - (va % LARGE_PAGE), size: LARGE_PAGE };
    const leaf = this.#target(pde);
    if (leaf + PAGE > this.#mem.byteLength) return undefined;
    const pte = leaf + 8 * (Math.floor(va / PAGE) & 511);
    return this.#low(pte) & P ? { entry: pte, base: va - (va % PAGE), size: PAGE } : undefined;
  }

  /** Identity-maps [va, va+len) for the app (ring 3); both must be page aligned. */
  map(va: number, len: number, prot: Protection): void {
    this.#map(va, len, prot, USER);
  }

  /** Identity-maps [va, va+len) for the kernel alone: the app (ring 3) cannot touch these pages. */
  mapSupervisor(va: number, len: number, prot: Protection): void {
    this.#map(va, len, prot, 0);
  }

  #map(va: number, len: number, prot: Protection, user: number): void {
    checkPageRange("map", va, len);
    const flags = P | ACCESSED | DIRTY | user | (prot.write ? RW : 0);
    const high = prot.exec ? 0 : NX_HIGH;
    const end = va + len;
    for (let a = va; a < end;) {
      const pde = this.#directoryEntry(a, true, true)!;
      if (a % LARGE_PAGE === 0 && a + LARGE_PAGE <= end && !(this.#low(pde) & P)) {
        this.#set(pde, a | flags | LARGE, high);
        a += LARGE_PAGE;
        continue;
      }
      // A 2 MiB entry protect made not present maps nothing, so a fresh leaf table replaces it.
      if (!(this.#low(pde) & P)) this.#set(pde, this.#allocate(a) | TABLE, 0);
      else if (this.#low(pde) & LARGE) throw new Error(`${hex(a)} is already mapped by a 2 MiB page`);
      const leaf = this.#target(pde);
      const chunkEnd = Math.min(end, chunkEndOf(a));
      for (; a < chunkEnd; a += PAGE) this.#set(leaf + 8 * (Math.floor(a / PAGE) & 511), a | flags, high);
    }
  }

  /**
   * Gives every 2 MiB chunk touching [va, va+len) its leaf table (a large page
   * there is split into the equivalent 4 KiB entries), so that map, unmap and
   * protect inside the range never allocate.
   */
  reserveTables(va: number, len: number): void {
    if (va < 0 || len < 0) throw new Error(`reserveTables ${hex(va)}+${hex(len)} is negative`);
    for (let a = va - (va % LARGE_PAGE); a < va + len; a += LARGE_PAGE) {
      const pde = this.#directoryEntry(a, true, true)!;
      if (!(this.#low(pde) & P)) this.#set(pde, this.#allocate(a) | TABLE, 0);
      else if (this.#low(pde) & LARGE) this.#split(pde, a);
    }
  }

  /** Makes [va, va+len) not present; both must be page aligned. */
  unmap(va: number, len: number): void {
    checkPageRange("unmap", va, len);
    this.#edit(va, len, (entry) => this.#set(entry, 0, 0));
  }

  /**
   * Changes the protection of the present pages in [va, va+len); "none" makes
   * them not present. Pages that are not present stay so.
   */
  protect(va: number, len: number, prot: Protection | "none"): void {
    checkPageRange("protect", va, len);
    this.#edit(va, len, (entry) => {
      const low = this.#low(entry), high = this.#mem.getUint32(entry + 4, true);
      if (!(low & P)) return;
      if (prot === "none") return this.#set(entry, low & ~P, high);
      this.#set(entry, (low & ~RW) | (prot.write ? RW : 0), (high & ~NX_HIGH) | (prot.exec ? 0 : NX_HIGH));
    });
  }

  /**
   * Applies `edit` to the entries mapping [va, va+len): a 2 MiB entry the
   * range covers whole is edited as one, one it covers in part is split first.
   * Chunks without a directory entry have nothing mapped and are skipped.
   */
  #edit(va: number, len: number, edit: (entry: number) => void): void {
    const end = va + len;
    for (let a = va; a < end; a = chunkEndOf(a)) {
      const pde = this.#directoryEntry(a, false, true);
      if (pde === undefined || !(this.#low(pde) & P)) continue;
      const chunkEnd = Math.min(end, chunkEndOf(a));
      if (this.#low(pde) & LARGE) {
        if (a % LARGE_PAGE === 0 && chunkEnd - a === LARGE_PAGE) {
          edit(pde);
          continue;
        }
        this.#split(pde, a);
      }
      const leaf = this.#target(pde);
      // A table the guest pointed outside RAM maps nothing the host would trust.
      if (leaf + PAGE > this.#mem.byteLength) continue;
      for (let p = a; p < chunkEnd; p += PAGE) edit(leaf + 8 * (Math.floor(p / PAGE) & 511));
    }
  }

  /** Replaces the 2 MiB entry `pde` (covering `va`) with a leaf table of 512 equivalent 4 KiB entries. */
  #split(pde: number, va: number): void {
    const leaf = this.#allocate(va);
    const low = this.#low(pde), high = this.#mem.getUint32(pde + 4, true);
    // In a 4 KiB entry the large-page bit means PAT, so it must not carry over.
    const flags = low & 0xfff & ~LARGE;
    const base = entryBase(low, LARGE_PAGE);
    for (let i = 0; i < 512; i++) this.#set(leaf + 8 * i, (base + i * PAGE) | flags, high);
    this.#set(pde, leaf | TABLE, 0);
  }

  /** The app's access to the page at `va`, or undefined when the app cannot reach it. */
  lookup(va: number): Protection | undefined {
    const m = this.#mapping(va);
    if (!m || !identity(this.#low(m.entry), m) || !(this.#low(m.entry) & USER)) return undefined;
    return { write: (this.#low(m.entry) & RW) !== 0, exec: (this.#mem.getUint32(m.entry + 4, true) & NX_HIGH) === 0 };
  }

  /**
   * True when every page of [va, va+len) is mapped for the app (and writable
   * if asked) onto itself inside guest RAM: what a hypercall may point at.
   */
  accessible(va: number, len: number, write: boolean): boolean {
    if (len === 0) return true;
    const end = va + len;
    if (va < 0 || end > this.#mem.byteLength) return false;
    const needed = P | USER | (write ? RW : 0);
    // ReadFile and WriteFile check every page of megabyte buffers on each call,
    // so walk the upper levels once per 2 MiB and read leaf entries directly.
    for (let a = va - (va % PAGE); a < end;) {
      const pde = this.#directoryEntry(a, false);
      if (pde === undefined) return false;
      const dir = this.#low(pde);
      if ((dir & (P | LARGE)) === (P | LARGE)) {
        const m = { entry: pde, base: a - (a % LARGE_PAGE), size: LARGE_PAGE };
        if ((dir & needed) !== needed || !identity(dir, m)) return false;
        a = m.base + LARGE_PAGE;
        continue;
      }
      const leaf = this.#target(pde);
      if (!(dir & P) || leaf + PAGE > this.#mem.byteLength) return false;
      for (const chunkEnd = Math.min(end, chunkEndOf(a)); a < chunkEnd; a += PAGE) {
        const low = this.#low(leaf + 8 * (Math.floor(a / PAGE) & 511));
        if ((low & needed) !== needed || ((low & ADDR_LOW) >>> 0) !== a) return false;
      }
    }
    return true;
  }
}

function checkPageRange(operation: string, va: number, len: number): void {
  if (va % PAGE || len % PAGE || va < 0 || len < 0) {
    throw new Error(`${operation} ${hex(va)}+${hex(len)} is not a page-aligned range`);
  }
}

/** Where the 2 MiB chunk holding `va` ends. */
function chunkEndOf(va: number): number {
  return va - (va % LARGE_PAGE) + LARGE_PAGE;
}

/** The guest address an entry maps its page to. */
function entryBase(low: number, size: number): number {
  return (low & ADDR_LOW & ~(size - 1)) >>> 0;
}

/** pvx only writes identity mappings; anything else the guest wrote is not trusted as guest memory. */
function identity(low: number, m: Mapping): boolean {
  return entryBase(low, m.size) === m.base;
}
