// Where the portable kernel puts things in guest memory. It is part of the ABI: the dispatcher checks
// guest pointers against it, and abi/pvx.h hands apps the info block's address. Guest virtual
// addresses equal guest physical ones (identity map), so a guest pointer is
// also the address the host checks; everything lives below 4 GiB so a
// hypercall can carry an address in one 32-bit `out`.

export const PAGE = 0x1000;
export const MiB = 1024 * 1024;

/** [0, nullGuardEnd) is never mapped: NULL and small offsets from it fault. */
export const nullGuardEnd = 0x10000;
export const gdtBase = 0x10000;
export const idtBase = 0x11000;
/** One 128-byte TSS slot per vCPU. */
export const tssBase = 0x12000;
export const tssSlot = 128;
/** Read-only block the app reads its heap and stack bounds from (struct pvx_info). */
export const infoBase = 0x13000;
/** Kernel text: exception stubs. */
export const kernelTextBase = 0x14000;
export const kernelTextSize = 2 * PAGE;
/** Per-vCPU exception stacks: [guard][IST1: 2 pages][IST2: 1 page]. */
export const cpuStacksBase = 0x20000;
export const cpuStacksSlot = 4 * PAGE;
export const maxVcpus = 32;
/** The process environment block of a Windows app (a user page). */
export const pebBase = 0x16000;
/**
 * Per vCPU, the page-table entries the host changed and the kernel must
 * re-write so the hypervisor's shadow of the tables catches up (guest/kernel.ts).
 */
export const pageTableUpdatesBase = 0x17000;
export const pageTableUpdatesSlot = 256;
export const pageTableUpdates = (cpu: number) => pageTableUpdatesBase + cpu * pageTableUpdatesSlot;
/** One thread environment block per vCPU (user pages); GS points at the running thread's. */
export const tebBase = 0xa0000;
/** Two pages, as on Windows: TlsSlots sit at TEB+0x1480. */
export const tebSize = 2 * PAGE;
/** Code pvx writes for a Windows app: kernel32 thunks and the entry trampoline (user, read-execute). */
export const thunksBase = 0xe0000;
export const thunksSize = 0x20000;
/** Page tables come from this pool. */
export const pageTablePoolBase = 0x100000;
export const pageTablePoolEnd = 0x400000;
/**
 * Every guest address pvx maps lies below this: the lower half of the canonical 48-bit address space, as x86-64
 * user space is; it also keeps addresses exact as JS numbers.
 */
export const guestAddressLimit = 2 ** 47;
/** Lowest address an app image may occupy. */
export const appBase = 0x400000;
/** Guest RAM bounds pvx accepts; the top must stay addressable by a 32-bit frame pointer. */
export const minMemory = 8 * MiB;
export const maxMemory = 1024 * MiB;
export const stackSize = 1 * MiB;

export function ist1Top(cpu: number): number {
  return cpuStacksBase + cpu * cpuStacksSlot + 3 * PAGE;
}
export function ist2Top(cpu: number): number {
  return cpuStacksBase + cpu * cpuStacksSlot + 4 * PAGE;
}

export const pageDown = (a: number) => Math.floor(a / PAGE) * PAGE;
export const pageUp = (a: number) => Math.ceil(a / PAGE) * PAGE;
