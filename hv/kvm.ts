// Thin typed wrappers over /dev/kvm: one method per ioctl, every failure a
// SysError naming the ioctl and its errno (the kvm-ioctls shape).

import {
  check,
  cString,
  EINTR,
  lastErrno,
  libc,
  MAP_FAILED,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  SysError,
} from "../ffi/libc.ts";
import {
  ioctls,
  KVM_API_VERSION,
  KVM_CAP_IMMEDIATE_EXIT,
  KVM_CAP_XSAVE2,
  kvm_clear_dirty_log,
  kvm_cpuid2,
  kvm_cpuid_entry2,
  kvm_dirty_log,
  kvm_enable_cap,
  kvm_userspace_memory_region,
  kvm_xsave,
} from "../ffi/kvm.ts";

type IoctlName = keyof typeof ioctls;

/**
 * Every ioctl here but KVM_RUN (vcpu.ts), whose EINTR is how a kick arrives, is begun again when a
 * signal interrupts it: KVM_CREATE_VM, for one, returns EINTR to a process that a profiler's SIGPROF
 * or a child's SIGCHLD reaches while KVM sets the VM up, having done nothing.
 */
function restarted(name: IoctlName, call: () => number): number {
  for (;;) {
    const result = call();
    if (result !== -1) return result;
    const errno = lastErrno();
    if (errno !== EINTR) throw new SysError(name, errno);
  }
}
function ioctlBuf(fd: number, name: IoctlName, buf: Uint8Array): number {
  return restarted(name, () => libc().ioctl(fd, ioctls[name], buf));
}
function ioctlInt(fd: number, name: IoctlName, arg: number | bigint = 0): number {
  return restarted(name, () => libc().ioctl_int(fd, ioctls[name], BigInt(arg)));
}

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** A KVM_GET_CPUID2-shaped query (what KVM supports, or what a vCPU was given), decoded. */
export function readCpuid(fd: number, name: "KVM_GET_SUPPORTED_CPUID" | "KVM_GET_CPUID2"): CpuidEntry[] {
  const max = 256;
  const buf = new Uint8Array(kvm_cpuid2.size + max * kvm_cpuid_entry2.size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(kvm_cpuid2.fields.nent.offset, max, true);
  ioctlBuf(fd, name, buf);
  const n = dv.getUint32(kvm_cpuid2.fields.nent.offset, true);
  const entries: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const base = kvm_cpuid2.size + i * kvm_cpuid_entry2.size;
    const f = kvm_cpuid_entry2.fields;
    const u32 = (o: number) => dv.getUint32(base + o, true);
    entries.push({
      function: u32(f.function.offset),
      index: u32(f.index.offset),
      flags: u32(f.flags.offset),
      eax: u32(f.eax.offset),
      ebx: u32(f.ebx.offset),
      ecx: u32(f.ecx.offset),
      edx: u32(f.edx.offset),
    });
  }
  return entries;
}

/** The size of a vCPU's XSAVE area, and the ioctl that reads that many bytes (Kvm.xsaveArea). */
export interface XsaveArea {
  size: number;
  get: "KVM_GET_XSAVE" | "KVM_GET_XSAVE2";
}

let supportedCpuid: CpuidEntry[] | undefined;
let xsaveArea: XsaveArea | undefined;

/** Kvm.xsaveArea, asked once per thread: a vCPU's thread holds no /dev/kvm handle of its own. */
export function threadXsaveArea(): XsaveArea {
  if (!xsaveArea) {
    const kvm = new Kvm();
    try {
      xsaveArea = kvm.xsaveArea();
    } finally {
      kvm.close();
    }
  }
  return xsaveArea;
}

/** The /dev/kvm system handle. */
export class Kvm {
  #fd: number;

  constructor(path = "/dev/kvm") {
    this.#fd = check(`open ${path}`, libc().open(cString(path), O_RDWR | O_CLOEXEC, 0));
    const version = ioctlInt(this.#fd, "KVM_GET_API_VERSION");
    if (version !== KVM_API_VERSION) {
      this.close();
      throw new Error(`${path}: KVM API version ${version}, pvx needs ${KVM_API_VERSION}`);
    }
    if (this.checkExtension(KVM_CAP_IMMEDIATE_EXIT) <= 0) {
      this.close();
      throw new Error(`${path}: KVM lacks KVM_CAP_IMMEDIATE_EXIT, which pvx needs to stop a vCPU`);
    }
  }

  checkExtension(cap: number): number {
    return ioctlInt(this.#fd, "KVM_CHECK_EXTENSION", cap);
  }

  vcpuMmapSize(): number {
    return ioctlInt(this.#fd, "KVM_GET_VCPU_MMAP_SIZE");
  }

  /** What KVM can show a guest; fixed for the life of the host kernel, so asked once per process. */
  supportedCpuid(): CpuidEntry[] {
    supportedCpuid ??= this.#readSupportedCpuid();
    return supportedCpuid;
  }

  #readSupportedCpuid(): CpuidEntry[] {
    return readCpuid(this.#fd, "KVM_GET_SUPPORTED_CPUID");
  }

  /**
   * How to read a vCPU's XSAVE area: KVM_GET_XSAVE2 (Linux 5.17) with the size
   * KVM_CAP_XSAVE2 reports where KVM has it, else the 4096-byte KVM_GET_XSAVE.
   * KVM sizes the area by the XSAVE features this process may hand guests
   * (arch_prctl ARCH_REQ_XCOMP_GUEST_PERM), not per VM, so /dev/kvm's answer
   * holds for every VM the process makes.
   */
  xsaveArea(): XsaveArea {
    const size = this.checkExtension(KVM_CAP_XSAVE2);
    return size > 0 ? { size, get: "KVM_GET_XSAVE2" } : { size: kvm_xsave.size, get: "KVM_GET_XSAVE" };
  }

  createVm(): Vm {
    return new Vm(ioctlInt(this.#fd, "KVM_CREATE_VM", 0), this.vcpuMmapSize());
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
}

/** A VM file descriptor: memory slots, vCPUs, dirty log. */
export class Vm {
  #fd: number;
  constructor(fd: number, readonly vcpuMmapSize: number) {
    this.#fd = fd;
  }

  get fd(): number {
    return this.#fd;
  }

  setUserMemoryRegion(r: { slot: number; flags: number; guestPhysAddr: bigint; size: bigint; hostAddr: bigint }): void {
    const buf = new Uint8Array(kvm_userspace_memory_region.size);
    const dv = new DataView(buf.buffer);
    const f = kvm_userspace_memory_region.fields;
    dv.setUint32(f.slot.offset, r.slot, true);
    dv.setUint32(f.flags.offset, r.flags, true);
    dv.setBigUint64(f.guest_phys_addr.offset, r.guestPhysAddr, true);
    dv.setBigUint64(f.memory_size.offset, r.size, true);
    dv.setBigUint64(f.userspace_addr.offset, r.hostAddr, true);
    ioctlBuf(this.#fd, "KVM_SET_USER_MEMORY_REGION", buf);
  }

  /** Returns the vCPU's fd; the vCPU itself is driven by the thread that runs it (hv/vcpu.ts). */
  createVcpu(id: number): number {
    return ioctlInt(this.#fd, "KVM_CREATE_VCPU", id);
  }

  /** KVM_ENABLE_CAP on this VM with `args[0]`. */
  enableCap(cap: number, arg0: bigint): void {
    const buf = new Uint8Array(kvm_enable_cap.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(kvm_enable_cap.fields.cap.offset, cap, true);
    dv.setBigUint64(kvm_enable_cap.fields.args.offset, arg0, true);
    ioctlBuf(this.#fd, "KVM_ENABLE_CAP", buf);
  }

  /**
   * Fills `bitmap` (one bit per page of the slot, its length a multiple of 8 bytes) with the pages written
   * since the last call, which clears the log, or, with manual protection enabled, since `clearDirtyLog`.
   */
  getDirtyLog(slot: number, bitmap: Uint8Array): void {
    const buf = new Uint8Array(kvm_dirty_log.size);
    const dv = new DataView(buf.buffer);
    dv.setUint32(kvm_dirty_log.fields.slot.offset, slot, true);
    dv.setBigUint64(
      kvm_dirty_log.fields.dirty_bitmap.offset,
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bitmap))),
      true,
    );
    ioctlBuf(this.#fd, "KVM_GET_DIRTY_LOG", buf);
  }

  /**
   * With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: marks clean, and watches again, the pages of slot `slot` set in
   * `bitmap`, whose bit 0 is page `firstPage` (a multiple of 64).
   */
  clearDirtyLog(slot: number, firstPage: number, pages: number, bitmap: Uint8Array): void {
    const buf = new Uint8Array(kvm_clear_dirty_log.size);
    const dv = new DataView(buf.buffer);
    const f = kvm_clear_dirty_log.fields;
    dv.setUint32(f.slot.offset, slot, true);
    dv.setUint32(f.num_pages.offset, pages, true);
    dv.setBigUint64(f.first_page.offset, BigInt(firstPage), true);
    dv.setBigUint64(f.dirty_bitmap.offset, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bitmap))), true);
    ioctlBuf(this.#fd, "KVM_CLEAR_DIRTY_LOG", buf);
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }
}

/** Maps a vCPU's shared kvm_run page; valid in every thread of the process. */
export function mapKvmRun(vcpuFd: number, size: number): Deno.PointerObject {
  const p = libc().mmap(null, BigInt(size), PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFd, 0n);
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === BigInt.asUintN(64, MAP_FAILED)) {
    check("mmap kvm_run", -1);
  }
  return p!;
}

export { ioctlBuf };
