// The guest's address space as the ABI sees it: what the dispatcher checks guest pointers against,
// and what VirtualAlloc and VirtualProtect change. The portable kernel's page tables
// (guest/paging.ts) implement it.

/** An app page's access; a page the app cannot reach has none. */
export interface Protection {
  write: boolean;
  exec: boolean;
}

export interface AddressSpace {
  /** True when every page of [va, va+len) is the app's (and writable if asked): what a hypercall may point at. */
  accessible(va: number, len: number, write: boolean): boolean;
  /** The app's access to the page at `va`, or undefined when the app cannot reach it. */
  lookup(va: number): Protection | undefined;
  /** Maps [va, va+len) for the app; both page aligned. */
  map(va: number, len: number, prot: Protection): void;
  /** Makes [va, va+len) unreachable; both page aligned. */
  unmap(va: number, len: number): void;
}
