// Lays out a whole guest in fresh RAM: kernel, app image, heap, stack with
// argc/argv/envp/auxv, the info page; returns what the vCPU needs to start.

import { type ElfImage, loadElf } from "./elf.ts";
import { loadWindowsApp, type WindowsApp } from "./windows.ts";
import { bootSregs, writeKernel } from "./kernel.ts";
import { PageTables } from "./paging.ts";
import { ABI_VERSION } from "../abi/calls.ts";
import { INFO_MAGIC, writeInfo } from "./info.ts";
import { infoBase, maxMemory, MiB, minMemory, PAGE, stackSize } from "../abi/memory_map.ts";
import { ThunkWriter } from "./thunks.ts";
import { mapTebs, writeTeb } from "./teb.ts";

const alignDown = (a: number, n: number) => Math.floor(a / n) * n;
/** VirtualAlloc reserves in 64 KiB units, as on Windows. */
const ALLOCATION_GRANULARITY = 0x10000;
import type { Sregs } from "./system_registers.ts";
import { encodeWide } from "../abi/handlers/strings.ts";

export interface BootPlan {
  /** First instruction of the app. */
  entry: number;
  /** Stack pointer at entry: points at argc. */
  stackPointer: number;
  pageTableRoot: number;
  /** RAM the host's heap allocator hands out (mapped read-write at boot). */
  heap: { start: number; end: number };
  /** RAM VirtualAlloc manages (unmapped at boot; its leaf tables exist already). */
  virtual: { start: number; end: number };
  stack: { start: number; end: number };
  /** The UTF-16 command line, left above the initial stack like argv's strings. */
  commandLineAddress: number;
  /** Where the app's image begins (an ELF guest's HMODULE). */
  imageStart: number;
  /** GS base at entry: the first thread's TEB. */
  gsBase: number;
  /** Where the threads an app creates begin (guest/runtime.ts); unset when it cannot create any. */
  threadStart?: number;
  /** Set for a Windows app: its modules, thunks and missing imports. */
  windows?: WindowsApp;
  sregs(cpu: number): Sregs;
}

const AT_NULL = 0, AT_PHDR = 3, AT_PHENT = 4, AT_PHNUM = 5, AT_PAGESZ = 6, AT_ENTRY = 9, AT_RANDOM = 25;

export function checkMemorySize(bytes: number): void {
  if (!Number.isInteger(bytes) || bytes < minMemory || bytes > maxMemory || bytes % MiB) {
    throw new Error(
      `guest memory ${bytes / MiB} MiB is outside ${minMemory / MiB}..${maxMemory / MiB} MiB in whole MiB`,
    );
  }
}

/** What boots: a static ELF (argv on a System V stack) or a Windows exe with the DLLs it ships. */
export type GuestApp =
  | { kind: "elf"; image: ElfImage; bytes: Uint8Array }
  /** `libraries`: DLLs the app loads by name at run time, which pvx maps at boot (guest/windows.ts). */
  | { kind: "pe"; files: ReadonlyMap<string, Uint8Array>; entry: string; libraries?: readonly string[] };

export function bootGuest(
  ram: Uint8Array,
  app: GuestApp,
  opts: { argv: readonly string[]; envp: readonly string[]; commandLine: string; mainThreadId: number },
): BootPlan {
  checkMemorySize(ram.byteLength);
  const mem = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  const pt = new PageTables(ram);
  writeKernel(ram, pt);
  mapTebs(pt);
  const thunks = new ThunkWriter();

  const stack = { start: ram.byteLength - stackSize, end: ram.byteLength };
  pt.map(stack.start, stackSize, { write: true, exec: false });
  const commandLine = encodeWide(opts.commandLine);
  const commandLineAddress = alignDown(stack.end - commandLine.length, 16);
  ram.set(commandLine, commandLineAddress);

  // One unmapped guard page below the stack and one between heap and stack guard.
  const limit = stack.start - 2 * PAGE;
  let image: { start: number; end: number; entry: number; stackPointer: number };
  let windows: WindowsApp | undefined;
  let threadStart: number | undefined;
  if (app.kind === "elf") {
    // A pvx.h guest may use any of them; its manifest still decides which hypercalls they can make.
    threadStart = thunks.routine("PvxThreadStart");
    const { phdrAddress } = loadElf(app.image, app.bytes, ram, pt, limit);
    const auxv: [number, number][] = [
      [AT_PHDR, phdrAddress],
      [AT_PHENT, app.image.phdr.entsize],
      [AT_PHNUM, app.image.phdr.count],
      [AT_PAGESZ, PAGE],
      [AT_ENTRY, app.image.entry],
    ];
    const random = crypto.getRandomValues(new Uint8Array(16));
    const stackPointer = writeInitialStack(mem, commandLineAddress, opts.argv, opts.envp, auxv, random);
    image = { start: app.image.start, end: app.image.end, entry: app.image.entry, stackPointer };
  } else {
    windows = loadWindowsApp(ram, pt, thunks, app.files, app.entry, limit, app.libraries);
    threadStart = windows.threadStart;
    // Windows code finds its arguments through GetCommandLineW, not on the stack.
    image = {
      start: windows.start,
      end: windows.end,
      entry: windows.entry,
      stackPointer: alignDown(commandLineAddress, 16),
    };
  }

  // Free RAM between the image and the stack guard: the heap below, VirtualAlloc's region above.
  const free = { start: image.end + PAGE, end: stack.start - PAGE };
  const split = Math.max(free.start, alignDown(free.start + (free.end - free.start) / 2, ALLOCATION_GRANULARITY));
  const heap = { start: free.start, end: split };
  const virtual = { start: split, end: Math.max(split, free.end) };
  if (heap.end > heap.start) pt.map(heap.start, heap.end - heap.start, { write: true, exec: false });
  if (virtual.end > virtual.start) pt.reserveTables(virtual.start, virtual.end - virtual.start);

  const routine = (name: Parameters<ThunkWriter["routine"]>[0]) =>
    app.kind === "elf" ? BigInt(thunks.routine(name)) : 0n;
  writeInfo(mem, {
    magic: INFO_MAGIC,
    abi_version: BigInt(ABI_VERSION),
    memory_size: BigInt(ram.byteLength),
    image_start: BigInt(image.start),
    image_end: BigInt(image.end),
    heap_start: BigInt(heap.start),
    heap_end: BigInt(heap.end),
    virtual_start: BigInt(virtual.start),
    virtual_end: BigInt(virtual.end),
    stack_start: BigInt(stack.start),
    stack_end: BigInt(stack.end),
    initialize_critical_section: routine("InitializeCriticalSection"),
    enter_critical_section: routine("EnterCriticalSection"),
    try_enter_critical_section: routine("TryEnterCriticalSection"),
    leave_critical_section: routine("LeaveCriticalSection"),
  });
  thunks.install(ram, pt, app.kind === "elf" ? "guest runtime" : app.entry);
  pt.map(infoBase, PAGE, { write: false, exec: false });

  return {
    entry: image.entry,
    stackPointer: image.stackPointer,
    pageTableRoot: pt.root,
    heap,
    virtual,
    stack,
    commandLineAddress,
    imageStart: image.start,
    gsBase: writeTeb(ram, 0, opts.mainThreadId, stack),
    threadStart,
    windows,
    sregs: (cpu) => bootSregs(cpu, pt.root),
  };
}

/** The System V initial process stack, built downward from `top`. */
function writeInitialStack(
  mem: DataView,
  top: number,
  argv: readonly string[],
  envp: readonly string[],
  auxv: [number, number][],
  random: Uint8Array,
): number {
  const enc = new TextEncoder();
  let sp = top;
  const push = (bytes: Uint8Array) => {
    sp -= bytes.length;
    new Uint8Array(mem.buffer, mem.byteOffset + sp, bytes.length).set(bytes);
    return sp;
  };
  const randomAt = push(random);
  const strAt = (s: string) => push(enc.encode(s + "\0"));
  const argvAt = argv.map(strAt);
  const envpAt = envp.map(strAt);
  const words = [
    argv.length,
    ...argvAt,
    0,
    ...envpAt,
    0,
    ...auxv.flat(),
    AT_RANDOM,
    randomAt,
    AT_NULL,
    0,
  ];
  // argc must sit at a 16-byte boundary (System V ABI).
  sp = alignDown(sp - words.length * 8, 16);
  if (sp < top - stackSize / 2) throw new Error("arguments and environment take more than half the guest stack");
  words.forEach((w, i) => mem.setBigUint64(sp + 8 * i, BigInt(w), true));
  return sp;
}
