// Guest RAM: one anonymous mapping registered as KVM memory slot 0. Every
// access the host makes on the guest's behalf goes through a bounds check.

import {
  check,
  libc,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
} from "../ffi/libc.ts";
import { PAGE } from "../abi/memory_map.ts";

/** A guest address or length the host refused to touch. */
export class GuestAccessError extends Error {
  constructor(readonly address: number, readonly length: number, readonly limit: number) {
    super(
      `guest range 0x${address.toString(16)}+0x${length.toString(16)} is outside guest RAM (0..0x${
        limit.toString(16)
      })`,
    );
    this.name = "GuestAccessError";
  }
}

/** Views of guest RAM valid in whichever thread made them (the mapping itself is process-wide). */
export class GuestRam {
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(readonly hostAddress: bigint, readonly size: number) {
    const ptr = Deno.UnsafePointer.create(hostAddress);
    if (!ptr) throw new Error("guest RAM at host address 0");
    const ab = Deno.UnsafePointerView.getArrayBuffer(ptr, size);
    this.bytes = new Uint8Array(ab);
    this.view = new DataView(ab);
  }

  /** Throws unless [address, address+length) lies inside guest RAM. */
  check(address: number, length: number): void {
    if (
      !Number.isSafeInteger(address) || !Number.isSafeInteger(length) || address < 0 || length < 0 ||
      address + length > this.size
    ) {
      throw new GuestAccessError(address, length, this.size);
    }
  }

  /**
   * Pages of guest RAM in host memory now (mincore): those the guest touched, and for a guest
   * mapped from a snapshot file the file's pages in the page cache, which its clones share.
   */
  residentPages(): number {
    const vec = new Uint8Array(Math.ceil(this.size / PAGE));
    check("mincore guest RAM", libc().mincore(Deno.UnsafePointer.create(this.hostAddress), BigInt(this.size), vec));
    let resident = 0;
    for (const v of vec) resident += v & 1;
    return resident;
  }

  /** A checked window onto guest memory; writes through it land in the guest. */
  slice(address: number, length: number): Uint8Array {
    this.check(address, length);
    return this.bytes.subarray(address, address + length);
  }
}

/** Maps `size` bytes of zeroed anonymous memory for a guest. */
export function mapGuestRam(size: number): GuestRam {
  const p = libc().mmap(
    null,
    BigInt(size),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
    -1,
    0n,
  );
  const addr = BigInt(Deno.UnsafePointer.value(p));
  if (addr === 0xffffffffffffffffn) check("mmap guest RAM", -1);
  return new GuestRam(addr, size);
}

export function unmapGuestRam(ram: GuestRam): void {
  check("munmap guest RAM", libc().munmap(Deno.UnsafePointer.create(ram.hostAddress), BigInt(ram.size)));
}

/** A private, writable mmap of `fd` from `offset`, at `at` (MAP_FIXED) or wherever the kernel chooses. */
function mapFilePrivately(operation: string, at: bigint | null, size: number, fd: number, offset: number): bigint {
  const p = libc().mmap(
    at === null ? null : Deno.UnsafePointer.create(at),
    BigInt(size),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_NORESERVE | (at === null ? 0 : MAP_FIXED),
    fd,
    BigInt(offset),
  );
  const addr = BigInt(Deno.UnsafePointer.value(p));
  if (addr === 0xffffffffffffffffn) check(operation, -1);
  return addr;
}

/**
 * Guest RAM whose initial contents are `size` bytes of `fd` from `fileOffset` (page aligned). Nothing is read
 * here: each page is read from the file the first time it is touched, so the cost of mapping does not grow with
 * `size`. MAP_PRIVATE keeps the guest's writes in this process; the file never changes. The file must not be
 * truncated while mapped: touching a page past its end raises SIGBUS.
 */
export function mapGuestRamFromFile(fd: number, fileOffset: number, size: number): GuestRam {
  return new GuestRam(mapFilePrivately("mmap guest RAM from file", null, size, fd, fileOffset), size);
}

/**
 * Replaces each guest range of `ram` with the same range of `fd`, guest byte `a` coming from `fileOffset + a`:
 * how a diff snapshot is laid over its parent's memory. MAP_FIXED swaps the pages in place, so guest RAM keeps
 * the one host address it was registered at however many diffs are layered. Each range becomes its own kernel
 * mapping, so the number of ranges is bounded by vm.max_map_count (65530 by default).
 */
export function overlayGuestRamFromFile(
  ram: GuestRam,
  fd: number,
  fileOffset: number,
  ranges: readonly { start: number; length: number }[],
): void {
  for (const { start, length } of ranges) {
    ram.check(start, length);
    const at = ram.hostAddress + BigInt(start);
    mapFilePrivately("mmap snapshot pages over guest RAM", at, length, fd, fileOffset + start);
  }
}
