// Lays out a whole guest in fresh RAM: kernel, app image, heap, stack with
// argc/argv/envp/auxv, the info page; returns what the vCPU needs to start.

import { type ElfImage, loadElf } from "./elf.ts";
import { bootSregs, writeKernel } from "./kernel.ts";
import { PageTables } from "./paging.ts";
import { ABI_VERSION } from "../abi/calls.ts";
import { INFO_MAGIC, writeInfo } from "./info.ts";
import { infoBase, maxMemory, MiB, minMemory, PAGE, stackSize } from "./memory_map.ts";

const alignDown = (a: number, n: number) => Math.floor(a / n) * n;
/** VirtualAlloc reserves in 64 KiB units, as on Windows. */
const ALLOCATION_GRANULARITY = 0x10000;
import type { Sregs } from "../hv/vcpu.ts";
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

export function bootElf(
  ram: Uint8Array,
  elf: ElfImage,
  elfBytes: Uint8Array,
  opts: { argv: readonly string[]; envp: readonly string[]; commandLine: string; cpus: number },
): BootPlan {
  checkMemorySize(ram.byteLength);
  const mem = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  const pt = new PageTables(ram);
  writeKernel(ram, pt, opts.cpus);

  const stack = { start: ram.byteLength - stackSize, end: ram.byteLength };
  // One unmapped guard page below the stack and one between heap and stack guard.
  const { phdrAddress } = loadElf(elf, elfBytes, ram, pt, stack.start - 2 * PAGE);
  // Free RAM between the image and the stack guard: the heap below, VirtualAlloc's region above.
  const free = { start: elf.end + PAGE, end: stack.start - PAGE };
  const split = Math.max(free.start, alignDown(free.start + (free.end - free.start) / 2, ALLOCATION_GRANULARITY));
  const heap = { start: free.start, end: split };
  const virtual = { start: split, end: Math.max(split, free.end) };
  if (heap.end > heap.start) pt.map(heap.start, heap.end - heap.start, { write: true, exec: false });
  if (virtual.end > virtual.start) pt.reserveTables(virtual.start, virtual.end - virtual.start);
  pt.map(stack.start, stackSize, { write: true, exec: false });

  writeInfo(mem, {
    magic: INFO_MAGIC,
    abi_version: BigInt(ABI_VERSION),
    memory_size: BigInt(ram.byteLength),
    image_start: BigInt(elf.start),
    image_end: BigInt(elf.end),
    heap_start: BigInt(heap.start),
    heap_end: BigInt(Math.max(heap.start, heap.end)),
    stack_start: BigInt(stack.start),
    stack_end: BigInt(stack.end),
  });
  pt.map(infoBase, PAGE, { write: false, exec: false });

  const random = crypto.getRandomValues(new Uint8Array(16));
  const commandLine = encodeWide(opts.commandLine);
  const commandLineAddress = alignDown(stack.end - commandLine.length, 16);
  ram.set(commandLine, commandLineAddress);
  const stackPointer = writeInitialStack(
    mem,
    commandLineAddress,
    opts.argv,
    opts.envp,
    [
      [AT_PHDR, phdrAddress],
      [AT_PHENT, elf.phdr.entsize],
      [AT_PHNUM, elf.phdr.count],
      [AT_PAGESZ, PAGE],
      [AT_ENTRY, elf.entry],
    ],
    random,
    AT_RANDOM,
    AT_NULL,
  );

  return {
    entry: elf.entry,
    stackPointer,
    pageTableRoot: pt.root,
    heap,
    virtual,
    stack,
    commandLineAddress,
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
  atRandom: number,
  atNull: number,
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
    atRandom,
    randomAt,
    atNull,
    0,
  ];
  // argc must sit at a 16-byte boundary (System V ABI).
  sp = alignDown(sp - words.length * 8, 16);
  if (sp < top - stackSize / 2) throw new Error("arguments and environment take more than half the guest stack");
  words.forEach((w, i) => mem.setBigUint64(sp + 8 * i, BigInt(w), true));
  return sp;
}
