// 4-level x86-64 page tables with 4 KiB leaves, so that every page can carry
// its own write and execute permission (text read-only, data no-execute).

import { PAGE, pageTablePoolBase, pageTablePoolEnd } from "./memory_map.ts";

const P = 1n, RW = 2n, ACCESSED = 0x20n, DIRTY = 0x40n, NX = 1n << 63n;
const ADDR_MASK = 0x000f_ffff_ffff_f000n;

export interface Protection {
  write: boolean;
  exec: boolean;
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

  #entry(table: number, index: number): number {
    return table + index * 8;
  }

  /**
   * Walks to the leaf table covering `va`, creating intermediate tables if
   * asked. The guest can rewrite its tables, so a walk that leads outside
   * guest RAM counts as unmapped rather than trusting the entry.
   */
  #leafTable(va: number, create: boolean): number | undefined {
    let table = this.root;
    for (const shift of [39, 30, 21]) {
      if (table + PAGE > this.#mem.byteLength) return undefined;
      const e = this.#entry(table, Math.floor(va / 2 ** shift) & 511);
      let v = this.#mem.getBigUint64(e, true);
      if ((v & P) && (v & 0x80n)) return undefined; // large pages: pvx never writes them
      if (!(v & P)) {
        if (!create) return undefined;
        v = BigInt(this.#allocate()) | P | RW | ACCESSED;
        this.#mem.setBigUint64(e, v, true);
      }
      table = Number(v & ADDR_MASK);
    }
    return table;
  }

  /** Identity-maps [va, va+len) page by page; both must be page aligned. */
  map(va: number, len: number, prot: Protection): void {
    if (va % PAGE || len % PAGE) throw new Error(`map 0x${va.toString(16)}+0x${len.toString(16)} is not page aligned`);
    // Boot maps every page of RAM, so this loop sets the start-up time: one walk
    // per leaf table and two 32-bit stores per entry, no BigInt (guest RAM < 4 GiB).
    const low = Number(P | ACCESSED | DIRTY | (prot.write ? RW : 0n));
    const high = prot.exec ? 0 : Number(NX >> 32n);
    let leaf = 0;
    for (let a = va; a < va + len; a += PAGE) {
      if (leaf === 0 || a % LEAF_SPAN === 0) leaf = this.#leafTable(a, true)!;
      const e = this.#entry(leaf, Math.floor(a / PAGE) & 511);
      this.#mem.setUint32(e, a + low, true);
      this.#mem.setUint32(e + 4, high, true);
    }
  }

  /** The protection of the page at `va`, or undefined when it is not mapped. */
  lookup(va: number): Protection | undefined {
    const leaf = this.#leafTable(va, false);
    if (leaf === undefined) return undefined;
    const v = this.#mem.getBigUint64(this.#entry(leaf, Math.floor(va / PAGE) & 511), true);
    if (!(v & P) || Number(v & ADDR_MASK) !== pageOf(va)) return undefined;
    return { write: (v & RW) !== 0n, exec: (v & NX) === 0n };
  }

  /**
   * True when every page of [va, va+len) is mapped (and writable if asked)
   * onto itself inside guest RAM. One walk per 2 MiB: a leaf table covers that.
   */
  accessible(va: number, len: number, write: boolean): boolean {
    if (len === 0) return true;
    const end = va + len;
    if (va < 0 || end > this.#mem.byteLength) return false;
    let leaf: number | undefined;
    for (let page = pageOf(va); page < end; page += PAGE) {
      if (leaf === undefined || page % LEAF_SPAN === 0) leaf = this.#leafTable(page, false);
      if (leaf === undefined) return false;
      const v = this.#mem.getBigUint64(this.#entry(leaf, Math.floor(page / PAGE) & 511), true);
      if (!(v & P) || (write && !(v & RW)) || Number(v & ADDR_MASK) !== page) return false;
    }
    return true;
  }
}

const LEAF_SPAN = 512 * PAGE;
const pageOf = (a: number) => Math.floor(a / PAGE) * PAGE;
