// The process heap behind HeapAlloc, HeapFree, HeapReAlloc and HeapSize. Its
// blocks lie in a fixed guest range mapped read-write at boot, but which
// blocks exist is known only here, on the host, so a guest that overruns a
// block or frees a forged pointer cannot corrupt the allocator.
//
// First fit over an address-ordered free list that coalesces on every free:
// blocks land as low as they fit, so the guest touches few pages, and freeing
// everything leaves one free block again.

import { PlainState } from "./plain_state.ts";
import type { HostWrites } from "./host_writes.ts";
import { hex } from "./hex.ts";

/** Block alignment and size unit; what HeapAlloc guarantees on x64. */
const ALIGN = 16;

/** An address range of the heap: a free extent, or a block's span. */
interface Extent {
  address: number;
  size: number;
}

/** Snapshot form: live blocks as [address, requested size], by address; the free list is the gaps. */
export interface GuestHeapData {
  blocks: [number, number][];
}

/**
 * Bytes a block of `size` occupies: whole units, at least one so that even a
 * 0-byte block has an address of its own. Sizes that are no byte count take
 * more than any heap has.
 */
function spanOf(size: number): number {
  if (!Number.isSafeInteger(size) || size < 0) return Infinity;
  return Math.max(ALIGN, Math.ceil(size / ALIGN) * ALIGN);
}

export class GuestHeap {
  /** Live blocks: address → the size the guest asked for. */
  readonly #blocks = new Map<number, number>();
  /** Sorted by address; never two touching, since frees coalesce. */
  readonly #free: Extent[] = [];

  /** [start, end) must be 16-byte aligned and above 0, which is the failure value. */
  /** `writes` hears of the bytes the heap zeroes or moves. */
  constructor(
    private readonly ram: Uint8Array,
    private readonly start: number,
    private readonly end: number,
    private readonly writes?: HostWrites,
  ) {
    if (start % ALIGN || end % ALIGN || start <= 0 || end < start || end > ram.byteLength) {
      const range = `[${hex(start)}, ${hex(end)})`;
      throw new Error(`heap range ${range} is not 16-byte aligned above 0 inside RAM of ${hex(ram.byteLength)} bytes`);
    }
    if (end > start) this.#free.push({ address: start, size: end - start });
  }

  /** A 16-byte aligned block, zeroed if asked; 0 when no free extent is large enough. */
  alloc(size: number, zero: boolean): number {
    const address = this.#place(spanOf(size));
    if (address === 0) return 0;
    this.#blocks.set(address, size);
    if (zero) this.#zero(address, address + size);
    return address;
  }

  /** False, changing nothing, when `address` is not a live block (freed already, or never handed out). */
  free(address: number): boolean {
    const size = this.#blocks.get(address);
    if (size === undefined) return false;
    this.#blocks.delete(address);
    this.#release(address, spanOf(size));
    return true;
  }

  /**
   * Resizes in place when the block or the free extent right after it has
   * room, else moves it (unless `inPlaceOnly`). Contents up to the smaller size
   * survive; with `zero`, bytes past the old size are zeroed. 0 on failure,
   * with the old block untouched.
   */
  realloc(address: number, size: number, zero: boolean, inPlaceOnly: boolean): number {
    const oldSize = this.#blocks.get(address);
    if (oldSize === undefined) return 0;
    const span = spanOf(size);
    let target = address;
    if (!this.#resizeInPlace(address, spanOf(oldSize), span)) {
      if (inPlaceOnly) return 0;
      target = this.#move(address, oldSize, span);
      if (target === 0) return 0;
    }
    this.#blocks.set(target, size);
    if (zero && size > oldSize) this.#zero(target + oldSize, target + size);
    return target;
  }

  /** The size the block was asked for, or -1 when `address` is not a live block. */
  size(address: number): number {
    return this.#blocks.get(address) ?? -1;
  }

  serialize(): GuestHeapData {
    return { blocks: [...this.#blocks].sort(([a], [b]) => a - b) };
  }

  static restore(ram: Uint8Array, start: number, end: number, data: unknown, writes?: HostWrites): GuestHeap {
    const heap = new GuestHeap(ram, start, end, writes);
    const state = new PlainState(`heap snapshot for [${hex(start)}, ${hex(end)})`);
    const blocks = state.list(state.record(data, "the heap").blocks, "blocks");
    heap.#free.length = 0;
    let previousEnd = start;
    blocks.forEach((block, i) => {
      const [a, s] = state.list(block, `blocks[${i}]`, 2);
      const address = state.integer(a, `blocks[${i}] address`, start, end);
      const size = state.integer(s, `blocks[${i}] size`, 0, end - start);
      const blockEnd = address + spanOf(size);
      if (!(address >= previousEnd && address % ALIGN === 0 && blockEnd <= end)) {
        state.fail(
          `blocks[${i}]`,
          `is corrupt: block ${address} of ${size} bytes is unaligned, overlaps the one before or ends past the heap`,
        );
      }
      if (address > previousEnd) heap.#free.push({ address: previousEnd, size: address - previousEnd });
      heap.#blocks.set(address, size);
      previousEnd = blockEnd;
    });
    if (end > previousEnd) heap.#free.push({ address: previousEnd, size: end - previousEnd });
    return heap;
  }

  /** Takes `span` bytes from the front of the lowest free extent that has them; 0 when none does. */
  #place(span: number): number {
    const index = this.#free.findIndex((extent) => extent.size >= span);
    if (index < 0) return 0;
    const address = this.#free[index].address;
    this.#takeFront(index, span);
    return address;
  }

  #takeFront(index: number, span: number): void {
    const extent = this.#free[index];
    if (extent.size === span) this.#free.splice(index, 1);
    else {
      extent.address += span;
      extent.size -= span;
    }
  }

  /** Gives [address, address+span) back, merging it with the free extents it touches. */
  #release(address: number, span: number): void {
    const index = this.#firstFreeAbove(address);
    const before = this.#free[index - 1], after = this.#free[index];
    const joinsBefore = before !== undefined && before.address + before.size === address;
    const joinsAfter = after !== undefined && address + span === after.address;
    if (joinsBefore && joinsAfter) {
      before.size += span + after.size;
      this.#free.splice(index, 1);
    } else if (joinsBefore) before.size += span;
    else if (joinsAfter) {
      after.address = address;
      after.size += span;
    } else this.#free.splice(index, 0, { address, size: span });
  }

  /** Index of the first free extent starting above `address`. */
  #firstFreeAbove(address: number): number {
    let low = 0, high = this.#free.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.#free[mid].address <= address) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** Shrinks the block, or grows it into the free extent right after it; false when that has too little room. */
  #resizeInPlace(address: number, oldSpan: number, span: number): boolean {
    if (span <= oldSpan) {
      if (span < oldSpan) this.#release(address + span, oldSpan - span);
      return true;
    }
    const index = this.#firstFreeAbove(address);
    const after = this.#free[index];
    if (after?.address !== address + oldSpan || oldSpan + after.size < span) return false;
    this.#takeFront(index, span - oldSpan);
    return true;
  }

  #zero(from: number, to: number): void {
    this.ram.fill(0, from, to);
    this.writes?.mark(from, to - from);
  }

  /** Copies the block into a new one of `span` bytes and frees the old; 0, changing nothing, when there is no room. */
  #move(address: number, oldSize: number, span: number): number {
    const target = this.#place(span);
    if (target === 0) return 0;
    this.ram.copyWithin(target, address, address + oldSize);
    this.writes?.mark(target, oldSize);
    this.#blocks.delete(address);
    this.#release(address, spanOf(oldSize));
    return target;
  }
}
