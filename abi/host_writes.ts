// The pages of guest RAM the host writes on the guest's behalf: hypercall
// results and out-buffers, page tables, zeroed heap and virtual memory, TEBs.
// KVM's dirty log sees only the guest's own writes, so a diff snapshot or a
// migration round takes the union of both (hv/dirty_log.ts), as Firecracker
// ORs its device writes into KVM's bitmap. One bit per page, in shared memory,
// because the host-services thread and every vCPU thread write guest RAM.

import { PAGE } from "./memory_map.ts";

export class HostWrites {
  readonly #words: Int32Array;

  /** `buffer` comes from `HostWrites.create(...).buffer` in the thread that made the instance. */
  constructor(readonly buffer: SharedArrayBuffer) {
    this.#words = new Int32Array(buffer);
  }

  /** A bitmap for `ramBytes` of guest RAM, all clear. */
  static create(ramBytes: number): HostWrites {
    return new HostWrites(new SharedArrayBuffer(Math.ceil(ramBytes / PAGE / 32) * 4));
  }

  /** The host is about to write, or has written, guest bytes [address, address + length). */
  mark(address: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((address + length - 1) / PAGE);
    for (let page = Math.floor(address / PAGE); page <= last; page++) {
      Atomics.or(this.#words, page >>> 5, 1 << (page & 31));
    }
  }

  /** Calls `each` with every marked page, in order, and clears them. */
  take(each: (page: number) => void): void {
    for (let word = 0; word < this.#words.length; word++) {
      let bits = Atomics.exchange(this.#words, word, 0);
      while (bits !== 0) {
        const low = 31 - Math.clz32(bits & -bits);
        each(word * 32 + low);
        bits &= bits - 1;
      }
    }
  }
}
