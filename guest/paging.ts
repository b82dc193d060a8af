// 4-level x86-64 identity page tables. Pages carry their own write and execute
// permission (text read-only, data no-execute); a range that covers a whole
// aligned 2 MiB chunk gets one large-page entry instead of 512 small ones,
// which is what keeps mapping all of RAM at boot cheap.

import { PAGE, pageTablePoolBase, pageTablePoolEnd } from "./memory_map.ts";

// Entry bits, split into the low and high 32-bit halves: guest RAM lies below
// 4 GiB, so an entry's address fits the low half and NX is the only high bit.
const P = 1, RW = 2, LARGE = 0x80, ACCESSED = 0x20, DIRTY = 0x40;
const NX_HIGH = 0x8000_0000;
const ADDR_LOW = 0xffff_f000;
const LARGE_PAGE = 512 * PAGE;

export interface Protection {
  write: boolean;
  exec: boolean;
}

/** What maps one address: a 4 KiB entry in a leaf table or a 2 MiB entry in a directory. */
interface Mapping {
  entry: number;
  base: number;
  size: number;
}

export class PageTables {
  #mem: DataView;
  #next = pageTablePoolBase;
  readonly root: number;

  /** Starts fresh tables in `mem`, or reads the ones already at `root`. */
  constructor(mem: Uint8Array, root?: number) {
    this.#mem = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
    this.root = root ?? this.#allocate();
  }

  #allocate(): number {
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
  }

  /**
   * The page directory entry covering `va`, creating the tables above it if
   * asked. The guest can rewrite its tables, so a walk that leads outside
   * guest RAM, or through a table entry above 4 GiB, counts as unmapped.
   */
  #directoryEntry(va: number, create: boolean): number | undefined {
    let table = this.root;
    for (const shift of [39, 30]) {
      if (table + PAGE > this.#mem.byteLength) return undefined;
      const e = table + 8 * (Math.floor(va / 2 ** shift) & 511);
      if (!(this.#low(e) & P)) {
        if (!create) return undefined;
        this.#set(e, this.#allocate() | P | RW | ACCESSED, 0);
      }
      if (this.#low(e) & LARGE || this.#mem.getUint32(e + 4, true) & ~NX_HIGH) return undefined;
      table = this.#target(e);
    }
    if (table + PAGE > this.#mem.byteLength) return undefined;
    return table + 8 * (Math.floor(va / LARGE_PAGE) & 511);
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

  /** Identity-maps [va, va+len); both must be page aligned. */
  map(va: number, len: number, prot: Protection): void {
    if (va % PAGE || len % PAGE) throw new Error(`map 0x${va.toString(16)}+0x${len.toString(16)} is not page aligned`);
    const flags = P | ACCESSED | DIRTY | (prot.write ? RW : 0);
    const high = prot.exec ? 0 : NX_HIGH;
    const end = va + len;
    for (let a = va; a < end;) {
      const pde = this.#directoryEntry(a, true)!;
      if (a % LARGE_PAGE === 0 && a + LARGE_PAGE <= end && !(this.#low(pde) & P)) {
        this.#set(pde, a | flags | LARGE, high);
        a += LARGE_PAGE;
        continue;
      }
      if (this.#low(pde) & LARGE) throw new Error(`0x${a.toString(16)} is already mapped by a 2 MiB page`);
      if (!(this.#low(pde) & P)) this.#set(pde, this.#allocate() | P | RW | ACCESSED, 0);
      const leaf = this.#target(pde);
      const chunkEnd = Math.min(end, a - (a % LARGE_PAGE) + LARGE_PAGE);
      for (; a < chunkEnd; a += PAGE) this.#set(leaf + 8 * (Math.floor(a / PAGE) & 511), a | flags, high);
    }
  }

  /** The protection of the page at `va`, or undefined when it is not mapped onto itself. */
  lookup(va: number): Protection | undefined {
    const m = this.#mapping(va);
    if (!m || !identity(this.#low(m.entry), m)) return undefined;
    return { write: (this.#low(m.entry) & RW) !== 0, exec: (this.#mem.getUint32(m.entry + 4, true) & NX_HIGH) === 0 };
  }

  /**
   * True when every page of [va, va+len) is mapped (and writable if asked)
   * onto itself inside guest RAM.
   */
  accessible(va: number, len: number, write: boolean): boolean {
    if (len === 0) return true;
    const end = va + len;
    if (va < 0 || end > this.#mem.byteLength) return false;
    for (let a = va; a < end;) {
      const m = this.#mapping(a);
      if (!m || !identity(this.#low(m.entry), m) || (write && !(this.#low(m.entry) & RW))) return false;
      a = m.base + m.size;
    }
    return true;
  }
}

/** The guest address an entry maps its page to. */
function entryBase(low: number, m: Mapping): number {
  return (low & ADDR_LOW & ~(m.size - 1)) >>> 0;
}

/** pvx only writes identity mappings; anything else the guest wrote is not trusted as guest memory. */
function identity(low: number, m: Mapping): boolean {
  return entryBase(low, m) === m.base;
}
