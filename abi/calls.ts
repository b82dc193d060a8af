// The hypercall ABI: every call a guest can make, in one table. The C header
// (abi/pvx.h), the dispatcher's argument checks and the kernel32 thunks all
// derive from it, so a call is declared exactly once.
//
// Mechanism: the guest fills a frame of 64-bit slots { ret, arg0, arg1, ... }
// and executes `out dx, eax` with dx = HYPERCALL_PORT_BASE + nr and eax = the
// frame's guest-physical address (abi/ports.ts). The host checks every pointer
// and length against guest memory, runs the handler and stores the result in
// `ret`. Only the calls named in the bundle manifest are callable.

export const ABI_VERSION = 1;

/** How the host treats one argument slot. */
export type Param =
  /** A 32-bit integer (upper half of the slot ignored). */
  | { name: string; c: string; kind: "u32" }
  /** A full 64-bit value, guest pointers the host never follows included. */
  | { name: string; c: string; kind: "u64" }
  | { name: string; c: string; kind: "handle" }
  /** A buffer the host reads, `len` bytes long, `len` naming another parameter. */
  | { name: string; c: string; kind: "in"; len: string }
  /** A buffer the host writes; `len` counts `unit`-byte elements. */
  | { name: string; c: string; kind: "out"; len: string; unit: 1 | 2 }
  /** A DWORD the host writes; NULL allowed when `optional`. */
  | { name: string; c: string; kind: "outU32"; optional: boolean }
  /** Must be NULL: features pvx does not offer (overlapped I/O). */
  | { name: string; c: string; kind: "null" };

export interface CallDef {
  readonly nr: number;
  readonly name: string;
  /** C return type; "VOID" calls still get a frame slot. */
  readonly ret: string;
  /** The value `ret` holds when the host refuses the arguments (FALSE, 0, INVALID_HANDLE_VALUE). */
  readonly failure: bigint;
  readonly params: readonly Param[];
  readonly noreturn?: boolean;
  /** pvx-specific calls are not part of kernel32; the header prefixes them `Pvx`. */
  readonly doc: string;
}

export const calls = [
  {
    nr: 0,
    name: "PvxNull",
    ret: "DWORD",
    failure: 0n,
    params: [],
    doc: "Does nothing; measures a hypercall round trip.",
  },
  {
    nr: 1,
    name: "ExitProcess",
    ret: "VOID",
    failure: 0n,
    noreturn: true,
    params: [{ name: "uExitCode", c: "UINT", kind: "u32" }],
    doc: "Ends the instance; the host exits with uExitCode.",
  },
  {
    nr: 2,
    name: "GetStdHandle",
    ret: "HANDLE",
    failure: 0xffffffffffffffffn,
    params: [{ name: "nStdHandle", c: "DWORD", kind: "u32" }],
    doc: "STD_INPUT/OUTPUT/ERROR_HANDLE to the console handle.",
  },
  {
    nr: 3,
    name: "WriteFile",
    ret: "BOOL",
    failure: 0n,
    params: [
      { name: "hFile", c: "HANDLE", kind: "handle" },
      { name: "lpBuffer", c: "LPCVOID", kind: "in", len: "nNumberOfBytesToWrite" },
      { name: "nNumberOfBytesToWrite", c: "DWORD", kind: "u32" },
      { name: "lpNumberOfBytesWritten", c: "LPDWORD", kind: "outU32", optional: true },
      { name: "lpOverlapped", c: "LPOVERLAPPED", kind: "null" },
    ],
    doc: "Writes to a console or file handle.",
  },
  {
    nr: 4,
    name: "PvxGetCommandLineW",
    ret: "DWORD",
    failure: 0n,
    params: [
      { name: "lpBuffer", c: "LPWSTR", kind: "out", len: "nSize", unit: 2 },
      { name: "nSize", c: "DWORD", kind: "u32" },
    ],
    doc: "Copies the command line (UTF-16, NUL-terminated); returns its length without the NUL, " +
      "or the size needed including the NUL when nSize is too small.",
  },
  { nr: 5, name: "GetLastError", ret: "DWORD", failure: 0n, params: [], doc: "The calling thread's last error." },
  {
    nr: 6,
    name: "SetLastError",
    ret: "VOID",
    failure: 0n,
    params: [{ name: "dwErrCode", c: "DWORD", kind: "u32" }],
    doc: "Sets the calling thread's last error.",
  },
] as const satisfies readonly CallDef[];

export type CallName = (typeof calls)[number]["name"];

export const callsByName: ReadonlyMap<string, CallDef> = new Map(calls.map((c) => [c.name, c]));
export const callsByNr: readonly (CallDef | undefined)[] = (() => {
  const table: (CallDef | undefined)[] = [];
  for (const c of calls) {
    if (table[c.nr]) throw new Error(`hypercall ${c.nr} declared twice (${table[c.nr]!.name}, ${c.name})`);
    table[c.nr] = c;
  }
  return table;
})();

/** Bytes in a call's frame: the return slot plus one slot per parameter. */
export function frameSize(call: CallDef): number {
  return 8 * (1 + call.params.length);
}
