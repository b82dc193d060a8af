// How a guest leaves for the host: one 32-bit store to the doorbell page,
// `mov [DOORBELL_BASE + 4 * nr], eax`, eax = guest-physical address of the
// call's argument frame. No memory slot backs the page, so the store is a
// KVM_EXIT_MMIO carrying both numbers: one exit, no register read.
//
// Why a store and not `out`: apps run in ring 3, where `out` faults and where
// `vmcall` never reaches userspace. A store to unbacked guest-physical memory
// exits from any ring, on hardware KVM and on software PVM alike. (On PVM,
// ring-0 guest code is emulated, about 4500 times slower and without SSE, so
// apps cannot live in ring 0 there; see README.)

/** Guest-physical (and, identity-mapped, virtual) address of the doorbell page: above any guest RAM, below 4 GiB. */
export const DOORBELL_BASE = 0xc000_0000;
export const DOORBELL_SIZE = 0x1000;
/** Hypercall numbers: one 4-byte doorbell slot each. */
export const HYPERCALL_COUNT = 0x100;
/** The exception stubs ring this slot with the address of their fault frame. */
export const FAULT_DOORBELL = DOORBELL_BASE + DOORBELL_SIZE - 4;
/** A Windows app called an import pvx does not implement: the stub rings this slot with the import's index. */
export const MISSING_IMPORT_DOORBELL = DOORBELL_BASE + DOORBELL_SIZE - 8;

/** The kernel finished re-writing page-table entries for the host (guest/kernel.ts). */
export const PAGE_TABLES_UPDATED_DOORBELL = DOORBELL_BASE + DOORBELL_SIZE - 12;

/** The hypercall a doorbell address stands for, or undefined. */
export function hypercallNumber(address: bigint): number | undefined {
  const offset = Number(address - BigInt(DOORBELL_BASE));
  if (offset < 0 || offset >= 4 * HYPERCALL_COUNT || offset % 4) return undefined;
  return offset / 4;
}
