// The two I/O port ranges the portable kernel uses to leave the guest.
// A hypercall is `out dx, eax` with dx = HYPERCALL_PORT_BASE + call number and
// eax = guest-physical address of the call's argument frame (Solo5 hvt's shape):
// the host needs no register read, so a hypercall costs one exit.

export const HYPERCALL_PORT_BASE = 0x500;
export const HYPERCALL_PORT_COUNT = 0x100;
/** The exception stubs' port: eax = address of the fault frame. */
export const FAULT_PORT = 0x4ff;
