// A Windows console program in a pvx guest: the exe and the DLLs it ships are
// loaded and relocated, every kernel32 import the ABI knows is bound to a
// thunk that turns the Windows x64 calling convention into a hypercall, every
// other import to a stub that names itself and stops the app, and an entry
// trampoline runs DllMain and TLS callbacks before the exe's entry point.

import { Reg } from "./x86.ts";
import { bindImports, loadPe, nearestPeSymbol, parsePe, type PeImage, type PeImport } from "./pe.ts";
import type { PageTables } from "./paging.ts";
import { appBase, PAGE, pebBase, thunksBase, thunksSize } from "./memory_map.ts";
import { type CallDef, callsByName } from "../abi/calls.ts";
import type { ModuleTable } from "../abi/handlers/modules.ts";
import { callsOf, type ThunkWriter } from "./thunks.ts";
import { kernel32Routine, type RuntimeName, runtimeRoutines, SHADOW_SPACE } from "./runtime.ts";

/** The DLL whose functions are hypercalls. Its name is all an app sees of it. */
export const KERNEL32 = "kernel32.dll";
const DLL_PROCESS_ATTACH = 1;
/** Where DLLs go: Windows reserves address space in 64 KiB units. */
const ALLOCATION_GRANULARITY = 0x10000;

export interface LoadedModule {
  name: string;
  base: number;
  image: PeImage;
}

export interface WindowsApp {
  /** The trampoline: where vCPU 0 starts. */
  entry: number;
  /** [start, end) holds every module; the heap begins above it. */
  start: number;
  end: number;
  modules: LoadedModule[];
  /** "DLL!name" of each import bound to a missing-import stub, by the index the stub reports. */
  missingImports: string[];
  /** Where threads the app creates start (guest/runtime.ts), if it can create any. */
  threadStart?: number;
  /** What GetModuleHandleW and GetProcAddress answer from. */
  moduleTable: ModuleTable;
}

/** What pvx can give each import of an app: a hypercall, a guest runtime routine, a function in a shipped DLL, or nothing. */
export type ImportResolution =
  | { kind: "call"; call: CallDef }
  | { kind: "routine"; routine: RuntimeName }
  | { kind: "dll"; dll: string }
  | { kind: "missing" };

const fold = (name: string) => name.toLowerCase();
const baseName = (path: string) => path.slice(path.lastIndexOf("/") + 1);

/** How one import would be bound, given the DLLs shipped in `files` (the analyser's view too). */
export function resolveImport(imp: PeImport, shipped: ReadonlySet<string>): ImportResolution {
  if (fold(imp.dll) === KERNEL32) {
    const routine = kernel32Routine(imp.name);
    if (routine) return { kind: "routine", routine };
    const call = imp.name === undefined ? undefined : callsByName.get(imp.name);
    return call && !call.name.startsWith("Pvx") ? { kind: "call", call } : { kind: "missing" };
  }
  return shipped.has(fold(imp.dll)) ? { kind: "dll", dll: fold(imp.dll) } : { kind: "missing" };
}

/** The hypercalls an import resolved this way lets the app make. */
export function callsOfImport(r: ImportResolution): string[] {
  if (r.kind === "call") return callsOf(r.call);
  if (r.kind === "routine") return [...runtimeRoutines[r.routine].calls];
  return [];
}

export function shippedDlls(files: ReadonlyMap<string, Uint8Array>): Map<string, string> {
  return new Map([...files.keys()].filter((p) => fold(p).endsWith(".dll")).map((p) => [fold(baseName(p)), p]));
}

function importLabel(imp: PeImport): string {
  return `${imp.dll}!${imp.name ?? `#${imp.ordinal}`}`;
}

export function loadWindowsApp(
  ram: Uint8Array,
  pt: PageTables,
  thunks: ThunkWriter,
  files: ReadonlyMap<string, Uint8Array>,
  entryPath: string,
  limit: number,
): WindowsApp {
  const dlls = shippedDlls(files);
  const shipped = new Set(dlls.keys());
  const modules: LoadedModule[] = [];
  const byName = new Map<string, LoadedModule>();
  let next = appBase;

  const place = (name: string, bytes: Uint8Array, path: string): LoadedModule => {
    const image = parsePe(bytes, path);
    // The preferred base when it fits where the app lives, else the next free slot (relocating).
    const preferred = image.imageBase >= next && image.imageBase + image.sizeOfImage <= limit;
    const base = preferred ? image.imageBase : next;
    loadPe(image, bytes, ram, pt, base, limit);
    next = Math.ceil((base + image.sizeOfImage) / ALLOCATION_GRANULARITY) * ALLOCATION_GRANULARITY;
    const module = { name, base, image };
    modules.push(module);
    byName.set(name, module);
    return module;
  };

  /** The address an export of `dll` stands for, following forwarders ("NTDLL.RtlAllocateHeap"). */
  const exportAddress = (dll: string, imp: PeImport, depth = 0): number => {
    const module = load(dll);
    const ex = module.image.exports.find((e) =>
      imp.name !== undefined ? e.name === imp.name : e.ordinal === imp.ordinal
    );
    if (!ex) return thunks.missingImport(importLabel(imp));
    if (ex.forwarder && depth < 8) {
      const dot = ex.forwarder.lastIndexOf(".");
      const target = { dll: `${ex.forwarder.slice(0, dot)}.dll`, name: ex.forwarder.slice(dot + 1), iatRva: 0 };
      return resolveTo(target, depth + 1);
    }
    return ex.rva === undefined ? thunks.missingImport(importLabel(imp)) : module.base + ex.rva;
  };

  const resolveTo = (imp: PeImport, depth = 0): number => {
    const r = resolveImport(imp, shipped);
    if (r.kind === "call") return thunks.call(r.call);
    if (r.kind === "routine") return thunks.routine(r.routine);
    if (r.kind === "dll") return exportAddress(r.dll, imp, depth);
    return thunks.missingImport(importLabel(imp));
  };

  const load = (dll: string): LoadedModule => {
    const loaded = byName.get(dll);
    if (loaded) return loaded;
    const path = dlls.get(dll)!;
    const module = place(dll, files.get(path)!, path);
    bindImports(module.image, ram, module.base, (imp) => resolveTo(imp));
    return module;
  };

  const exe = place(fold(baseName(entryPath)), files.get(entryPath)!, entryPath);
  bindImports(exe.image, ram, exe.base, (imp) => resolveTo(imp));

  // DllMain of every loaded DLL (dependencies loaded first), then the exe's TLS callbacks, then its entry.
  const exitProcess = thunks.call(callsByName.get("ExitProcess")!);
  const initializers: [number, number][] = [];
  for (const m of modules) {
    for (const cb of m.image.tls?.callbackRvas ?? []) initializers.push([m.base + cb, m.base]);
    if (m !== exe && m.image.entryRva) initializers.push([m.base + m.image.entryRva, m.base]);
  }
  const asm = thunks.asm.alignTo(16);
  const entry = asm.here;
  asm.subRsp(SHADOW_SPACE);
  for (const [fn, module] of initializers) {
    asm.movImm64(Reg.rcx, BigInt(module)).movImm32(Reg.rdx, DLL_PROCESS_ATTACH).zero(Reg.r8);
    asm.movImm64(Reg.rax, BigInt(fn)).callReg(Reg.rax);
  }
  asm.movImm64(Reg.rax, BigInt(exe.base + exe.image.entryRva)).callReg(Reg.rax);
  asm.movReg32(Reg.rcx, Reg.rax).movImm64(Reg.rax, BigInt(exitProcess)).callReg(Reg.rax).ud2();
  const threadStart = thunks.usedCalls.includes("CreateThread") ? thunks.routine("PvxThreadStart") : undefined;
  writePeb(ram, pt, exe.base);

  const dllExports = (m: LoadedModule): [string | null, number, number][] =>
    m.image.exports.filter((e) => e.rva !== undefined && !e.forwarder).map((
      e,
    ) => [e.name ?? null, e.ordinal, m.base + e.rva!]);
  return {
    entry,
    start: appBase,
    end: next,
    modules,
    missingImports: thunks.missing,
    threadStart,
    moduleTable: {
      exe: exe.base,
      modules: [
        [KERNEL32, thunksBase, thunks.exports],
        ...modules.map((m) => [m.name, m.base, dllExports(m)] as ModuleTable["modules"][number]),
      ],
    },
  };
}

/** The PEB field Windows code reads without asking kernel32 (TEBs: guest/teb.ts). */
function writePeb(ram: Uint8Array, pt: PageTables, imageBase: number): void {
  new DataView(ram.buffer, ram.byteOffset, ram.byteLength).setBigUint64(pebBase + 0x10, BigInt(imageBase), true); // ImageBaseAddress
  pt.map(pebBase, PAGE, { write: true, exec: false });
}

/** Names a guest address as `<module!symbol+offset>` from the loaded images' COFF symbols. */
export function windowsSymbolizer(app: Pick<WindowsApp, "modules">): (address: number) => string {
  return (address) => {
    const m = app.modules.find((m) => address >= m.base && address < m.base + m.image.sizeOfImage);
    if (!m) return address >= thunksBase && address < thunksBase + thunksSize ? "<pvx kernel32 thunk>" : "<no symbol>";
    const s = nearestPeSymbol(m.image, m.base, address);
    return s ? `<${m.name}!${s.name}+0x${s.offset.toString(16)}>` : `<${m.name}+0x${(address - m.base).toString(16)}>`;
  };
}
