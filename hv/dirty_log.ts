// Which pages of guest RAM changed since the last look: what a diff snapshot
// stores and what a migration round sends. The guest's own writes come from
// KVM's dirty log on the RAM slot; the host's (hypercall results, page
// tables, zeroed memory), which KVM never sees, from HostWrites.
//
// KVM maps a logged slot with 4 KiB pages only and faults on each page's
// first write after every look, so logging starts when there is something to
// count from: at an instance's first snapshot, or at once for one restored
// from a snapshot. Where KVM has KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, the log is
// read and then cleared for exactly the pages read (KVM_CLEAR_DIRTY_LOG), so
// a page written in between is never lost and a live reader can clear just
// before it copies.

import {
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MEM_LOG_DIRTY_PAGES,
} from "../ffi/kvm.ts";
import { HostWrites } from "../abi/host_writes.ts";
import { PAGE } from "../abi/memory_map.ts";
import type { Kvm, Vm } from "./kvm.ts";
import type { GuestRam } from "./memory.ts";
import { EINVAL, SysError } from "../ffi/libc.ts";

const RAM_SLOT = 0;

export class DirtyLog {
  readonly hostWrites: HostWrites;
  readonly #pages: number;
  /** KVM's bitmap: one bit per page, in whole 64-bit words as KVM_GET_DIRTY_LOG writes it. */
  readonly #bitmap: Uint8Array;
  /** Off until there is something to count from; "unsupported" where KVM refuses to log (EINVAL). */
  #logging: "off" | "on" | "unsupported" = "off";

  private constructor(private readonly vm: Vm, private readonly ram: GuestRam, private readonly manual: boolean) {
    this.#pages = ram.size / PAGE;
    this.#bitmap = new Uint8Array(Math.ceil(this.#pages / 64) * 8);
    this.hostWrites = HostWrites.create(ram.size);
  }

  /** Registers `ram` as the VM's RAM slot, logged from the start when `logNow` (a restored instance). */
  static register(kvm: Kvm, vm: Vm, ram: GuestRam, logNow: boolean): DirtyLog {
    const manual = (kvm.checkExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0;
    if (manual) vm.enableCap(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, BigInt(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE));
    const log = new DirtyLog(vm, ram, manual);
    log.#setSlot(0);
    if (logNow) log.#start();
    return log;
  }

  #setSlot(flags: number): void {
    this.vm.setUserMemoryRegion({
      slot: RAM_SLOT,
      flags,
      guestPhysAddr: 0n,
      size: BigInt(this.ram.size),
      hostAddr: this.ram.hostAddress,
    });
  }

  /** Turns KVM's log on for the slot (a flags-only change); a KVM that cannot log still runs the guest. */
  #start(): void {
    try {
      this.#setSlot(KVM_MEM_LOG_DIRTY_PAGES);
      this.#logging = "on";
    } catch (e) {
      if (!(e instanceof SysError && e.errno === EINVAL)) throw e;
      this.#logging = "unsupported";
    }
  }

  /**
   * The pages written since the last `take`, in order; undefined when that is not known (the first `take`, which
   * starts the log, or a KVM that cannot log). From now on only later writes count. Guest RAM must not change
   * while the log starts: call it with the vCPUs paused.
   */
  take(): number[] | undefined {
    if (this.#logging !== "on") {
      if (this.#logging === "off") this.#start();
      this.hostWrites.take(() => {});
      return undefined;
    }
    const bitmap = this.#bitmap;
    bitmap.fill(0);
    this.vm.getDirtyLog(RAM_SLOT, bitmap);
    if (this.manual) this.vm.clearDirtyLog(RAM_SLOT, 0, this.#pages, bitmap);
    this.hostWrites.take((page) => bitmap[page >> 3] |= 1 << (page & 7));
    const dirty: number[] = [];
    bitmap.forEach((byte, i) => {
      for (let bit = 0; byte !== 0; bit++, byte >>= 1) if (byte & 1) dirty.push(i * 8 + bit);
    });
    return dirty;
  }

  /** Puts back pages a `take` returned, for a snapshot that was not written after all: the next one has them. */
  giveBack(pages: Iterable<number>): void {
    for (const page of pages) this.hostWrites.mark(page * PAGE, PAGE);
  }
}
