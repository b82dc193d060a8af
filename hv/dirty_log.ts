// Which pages of guest RAM changed since the last look: what a diff snapshot
// stores and what a migration round sends. The guest's own writes come from
// KVM's dirty log on the RAM slot; the host's (hypercall results, page
// tables, zeroed memory), which KVM never sees, from HostWrites.
//
// Where KVM has KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 the log is read and then
// cleared for exactly the pages read (KVM_CLEAR_DIRTY_LOG), so a page written
// in between is never lost, and a live reader can clear just before copying.

import {
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_LOG_DIRTY_PAGES,
} from "../ffi/kvm.ts";
import { HostWrites } from "../abi/host_writes.ts";
import type { Kvm, Vm } from "./kvm.ts";
import type { GuestRam } from "./memory.ts";
import { EINVAL, SysError } from "../ffi/libc.ts";

const PAGE = 4096;
const RAM_SLOT = 0;

export class DirtyLog {
  readonly hostWrites: HostWrites;
  readonly #pages: number;
  /** KVM's bitmap: one bit per page, in whole 64-bit words as KVM_GET_DIRTY_LOG writes it. */
  readonly #bitmap: Uint8Array;

  private constructor(
    private readonly vm: Vm,
    ramBytes: number,
    private readonly manual: boolean,
    /** Whether KVM logs the slot at all; without it, which pages changed is unknown. */
    readonly logging: boolean,
  ) {
    this.#pages = ramBytes / PAGE;
    this.#bitmap = new Uint8Array(Math.ceil(this.#pages / 64) * 8);
    this.hostWrites = HostWrites.create(ramBytes);
  }

  /**
   * Registers `ram` as the VM's RAM slot with its writes logged from the start. A KVM that refuses to log
   * (EINVAL) still runs the guest; only diff snapshots are then refused.
   */
  static register(kvm: Kvm, vm: Vm, ram: GuestRam): DirtyLog {
    const manual = (kvm.checkExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0;
    if (manual) vm.enableCap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, BigInt(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE));
    const slot = (flags: number) =>
      vm.setUserMemoryRegion({
        slot: RAM_SLOT,
        flags,
        guestPhysAddr: 0n,
        size: BigInt(ram.size),
        hostAddr: ram.hostAddress,
      });
    try {
      slot(KVM_MEM_LOG_DIRTY_PAGES);
    } catch (e) {
      if (!(e instanceof SysError && e.errno === EINVAL)) throw e;
      slot(0);
      return new DirtyLog(vm, ram.size, manual, false);
    }
    return new DirtyLog(vm, ram.size, manual, true);
  }

  /**
   * The pages written since the last `take` (or since RAM was registered), in order, or undefined when KVM does
   * not log them; from now on only later writes count.
   */
  take(): number[] | undefined {
    if (!this.logging) {
      this.hostWrites.take(() => {});
      return undefined;
    }
    const bitmap = this.#bitmap;
    bitmap.fill(0);
    this.vm.getDirtyLog(RAM_SLOT, bitmap);
    if (this.manual) this.vm.clearDirtyLog(RAM_SLOT, 0, this.#pages, bitmap);
    const dirty = new Set<number>();
    bitmap.forEach((byte, i) => {
      for (let bit = 0; byte !== 0; bit++, byte >>= 1) if (byte & 1) dirty.add(i * 8 + bit);
    });
    this.hostWrites.take((page) => dirty.add(page));
    return [...dirty].sort((a, b) => a - b);
  }

  /** Puts back pages a `take` returned, for a snapshot that was not written after all: the next one has them. */
  giveBack(pages: Iterable<number>): void {
    for (const page of pages) this.hostWrites.mark(page * PAGE, PAGE);
  }
}
