// A Windows console program in a pvx guest: the exe and the DLLs it ships are
// loaded and relocated, every kernel32 import the ABI knows is bound to a
// thunk that turns the Windows x64 calling convention into a hypercall, every
// other import to a stub that names itself and stops the app, and an entry
// trampoline runs DllMain and TLS callbacks before the exe's entry point.
// DLLs the app loads by name at run time are loaded at boot too.

import { Reg } from "./x86.ts";
import { parsePe } from "./pe.ts";
import { type PeImage, type PeImport } from "./pe_image.ts";
import { bindImports, loadPe, nearestPeSymbol } from "./pe_loader.ts";
import type { PageTables } from "./paging.ts";
import { appBase, PAGE, pebBase, thunksBase, thunksSize } from "../abi/memory_map.ts";
import { type CallDef, calls, callsByName } from "../abi/calls.ts";
import { writeWide } from "../abi/handlers/strings.ts";
import { PROCESS_HEAP } from "../abi/handles.ts";
import { FAULT_ENTRY_EXPORT, PEB_FAULT_ENTRY } from "./exception_frame.ts";
import type { ModuleTable } from "../abi/handler_context.ts";
import { callsOf, type ThunkWriter } from "./thunks.ts";
import { kernel32Routine, type RuntimeName, runtimeRoutines, SHADOW_SPACE } from "./runtime.ts";

/** The DLL whose functions are hypercalls. Its name is all an app sees of it. */
export const KERNEL32 = "kernel32.dll";
/** The DLLs pvx itself is: their functions are hypercalls, guest runtime routines or exports of RUNTIME_DLL. */
const PVX_DLLS = new Set([KERNEL32, "kernelbase.dll", "ntdll.dll"]);
export const isPvxDll = (dll: string) => PVX_DLLS.has(apiSetHost(dll));
/** pvx's Win32 userland (guest/win32rt), which a Windows app's bundle ships. */
export const RUNTIME_DLL = "pvxrt.dll";
const DLL_PROCESS_ATTACH = 1;
const STATUS_DLL_INIT_FAILED = 0xc0000142;
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
  | { kind: "runtime"; name: string }
  | { kind: "dll"; dll: string }
  | { kind: "missing" };

const fold = (name: string) => name.toLowerCase();
const baseName = (path: string) => path.slice(path.lastIndexOf("/") + 1);

/** The DLL an import really names: API sets resolve as Windows' schema resolves them for what pvx provides. */
export function apiSetHost(dll: string): string {
  const d = fold(dll);
  if (d.startsWith("api-ms-win-crt-")) return "ucrtbase.dll";
  if (d.startsWith("api-ms-win-core-")) return KERNEL32;
  return d;
}

/** What the DLLs of an app's bundle offer its imports. */
export interface ImportSources {
  /** Shipped DLLs by folded base name, each with its bundle path. */
  dlls: ReadonlyMap<string, string>;
  /** Names RUNTIME_DLL exports, when the bundle has it. */
  runtime: ReadonlySet<string>;
  /** Where in the bundle RUNTIME_DLL is. */
  runtimePath?: string;
}

export function importSources(files: ReadonlyMap<string, Uint8Array>): ImportSources {
  const dlls = new Map(
    [...files.keys()].filter((p) => fold(p).endsWith(".dll")).map((p) => [fold(baseName(p)), p]),
  );
  const runtimePath = dlls.get(RUNTIME_DLL);
  dlls.delete(RUNTIME_DLL);
  if (runtimePath === undefined) return { dlls, runtime: new Set() };
  const exports = parsePe(files.get(runtimePath)!, runtimePath).exports.flatMap((e) => e.name ? [e.name] : []);
  return { dlls, runtime: new Set(exports), runtimePath };
}

/**
 * How one import would be bound (the analyser's view too). A function pvx is
 * comes from the guest routines, then the runtime DLL, then the hypercalls;
 * the runtime DLL's own imports of kernel32 are the hypercalls beneath it.
 */
export function resolveImport(imp: PeImport, sources: ImportSources, importer?: string): ImportResolution {
  const dll = apiSetHost(imp.dll);
  if (PVX_DLLS.has(dll)) {
    const routine = kernel32Routine(imp.name);
    if (routine) return { kind: "routine", routine };
    if (imp.name !== undefined && importer !== RUNTIME_DLL && sources.runtime.has(imp.name)) {
      return { kind: "runtime", name: imp.name };
    }
    const call = imp.name === undefined ? undefined : callsByName.get(imp.name);
    // pvx's own calls are the runtime's to make, never an app's.
    const allowed = call && (importer === RUNTIME_DLL || !call.name.startsWith("Pvx"));
    return allowed ? { kind: "call", call } : { kind: "missing" };
  }
  return sources.dlls.has(dll) ? { kind: "dll", dll } : { kind: "missing" };
}

/** The hypercalls an import resolved this way lets the app make (the runtime DLL's own are counted with its imports). */
export function callsOfImport(r: ImportResolution): string[] {
  if (r.kind === "call") return callsOf(r.call);
  if (r.kind === "routine") return [...runtimeRoutines[r.routine].calls];
  return [];
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
  /** DLLs the app loads by name (its manifest's special-call libraries): those it ships are loaded after the exe. */
  libraries: readonly string[] = [],
): WindowsApp {
  const sources = importSources(files);
  const runtime = sources.runtimePath;
  const modules: LoadedModule[] = [];
  /** Dependencies before the modules that import them, as Windows runs their initializers. */
  const initOrder: LoadedModule[] = [];
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
    bindImports(image, ram, base, (imp) => resolveTo(imp, name));
    initOrder.push(module);
    return module;
  };

  /** The address an export of `dll` stands for, following forwarders ("NTDLL.RtlAllocateHeap"). */
  const exportAddress = (dll: string, imp: PeImport, depth: number): number => {
    const module = load(dll);
    const ex = module.image.exports.find((e) =>
      imp.name !== undefined ? e.name === imp.name : e.ordinal === imp.ordinal
    );
    if (!ex) return thunks.missingImport(importLabel(imp));
    if (ex.forwarder && depth < 8) {
      const dot = ex.forwarder.lastIndexOf(".");
      const target = { dll: `${ex.forwarder.slice(0, dot)}.dll`, name: ex.forwarder.slice(dot + 1), iatRva: 0 };
      return resolveTo(target, dll, depth + 1);
    }
    return ex.rva === undefined ? thunks.missingImport(importLabel(imp)) : module.base + ex.rva;
  };

  const resolveTo = (imp: PeImport, importer: string, depth = 0): number => {
    const r = resolveImport(imp, sources, importer);
    if (r.kind === "call") return thunks.call(r.call);
    if (r.kind === "routine") return thunks.routine(r.routine);
    if (r.kind === "runtime") return exportAddress(RUNTIME_DLL, imp, depth);
    if (r.kind === "dll") return exportAddress(r.dll, imp, depth);
    return thunks.missingImport(importLabel(imp));
  };

  const load = (dll: string): LoadedModule => {
    const path = dll === RUNTIME_DLL ? runtime! : sources.dlls.get(dll)!;
    return byName.get(dll) ?? place(dll, files.get(path)!, path);
  };

  const exe = place(fold(baseName(entryPath)), files.get(entryPath)!, entryPath);
  // Always there when shipped, so GetProcAddress finds its functions whether or not an import named them.
  const runtimeModule = runtime === undefined ? undefined : load(RUNTIME_DLL);
  // pvx loads no code after boot: a LoadLibrary finds these already there, initialized with the rest.
  for (const dll of libraries) if (sources.dlls.has(dll)) load(dll);

  // Each module's TLS callbacks and DllMain, dependencies first, then the exe's entry. A DllMain that
  // fails ends the app as Windows does, with STATUS_DLL_INIT_FAILED.
  // The runtime's ExitProcess runs each DLL's DLL_PROCESS_DETACH first, as Windows does (guest/win32rt/process.c).
  const runtimeExit = runtimeModule?.image.exports.find((e) => e.name === "ExitProcess" && e.rva !== undefined);
  const exitProcess = runtimeExit
    ? runtimeModule!.base + runtimeExit.rva!
    : thunks.call(callsByName.get("ExitProcess")!);
  const asm = thunks.asm.alignTo(16);
  const entry = asm.here;
  asm.subRsp(SHADOW_SPACE);
  const callInitializer = (fn: number, module: number) => {
    asm.movImm64(Reg.rcx, BigInt(module)).movImm32(Reg.rdx, DLL_PROCESS_ATTACH).zero(Reg.r8);
    asm.movImm64(Reg.rax, BigInt(fn)).callReg(Reg.rax);
  };
  for (const m of initOrder) {
    for (const cb of m.image.tls?.callbackRvas ?? []) callInitializer(m.base + cb, m.base);
    if (m === exe || !m.image.entryRva) continue;
    callInitializer(m.base + m.image.entryRva, m.base);
    asm.test32(Reg.rax, Reg.rax).jcc("e", "entry.dllInitFailed");
  }
  asm.movImm64(Reg.rax, BigInt(exe.base + exe.image.entryRva)).callReg(Reg.rax);
  asm.movReg32(Reg.rcx, Reg.rax).label("entry.exit").movImm64(Reg.rax, BigInt(exitProcess)).callReg(Reg.rax).ud2();
  asm.label("entry.dllInitFailed").movImm32(Reg.rcx, STATUS_DLL_INIT_FAILED).jmp("entry.exit");
  const threadStart = thunks.usedCalls.includes("CreateThread") ? thunks.routine("PvxThreadStart") : undefined;
  const faultEntry = runtimeModule?.image.exports.find((e) => e.name === FAULT_ENTRY_EXPORT);
  const faultAt = faultEntry?.rva === undefined ? 0 : runtimeModule!.base + faultEntry.rva;
  writePeb(ram, pt, exe.base, entryPath, initOrder, faultAt);

  const dllExports = (m: LoadedModule): [string | null, number, number][] =>
    m.image.exports.filter((e) => e.rva !== undefined && !e.forwarder).map((
      e,
    ) => [e.name ?? null, e.ordinal, m.base + e.rva!]);
  thunks.exportEveryCall(calls);
  // A lookup finds what an import of the name would bind to: a routine, then the runtime's export, then the call.
  const pvxExports = [
    ...thunks.routineExports,
    ...runtimeModule ? dllExports(runtimeModule) : [],
    ...thunks.callExports,
  ];
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
        ...[...PVX_DLLS].map((name) => [name, thunksBase, pvxExports] as ModuleTable["modules"][number]),
        ...modules.map((m) => [m.name, m.base, dllExports(m)] as ModuleTable["modules"][number]),
      ],
    },
  };
}

/**
 * Where, in the PEB's page past Windows' fields, the process parameters, the
 * exe's path and the table of loaded images go; the runtime's unwinder finds
 * each image's function table through the last (guest/win32rt/seh.c).
 */
const PROCESS_PARAMETERS = pebBase + 0xa00, IMAGE_PATH = pebBase + 0xa80, MODULE_TABLE = pebBase + 0xc90;
export const MODULE_TABLE_OFFSET = MODULE_TABLE - pebBase;
const MODULE_ENTRY = 24, MAX_MODULES = Math.floor((PAGE - MODULE_TABLE_OFFSET - 8) / MODULE_ENTRY);
const PEB_IMAGE_BASE = 0x10, PEB_PROCESS_PARAMETERS = 0x20, PEB_PROCESS_HEAP = 0x30, PARAMETERS_IMAGE_PATH_NAME = 0x60;
const MAX_IMAGE_PATH = 260;

/** The PEB fields Windows code and pvx's runtime read without asking the host (TEBs: guest/teb.ts). */
function writePeb(
  ram: Uint8Array,
  pt: PageTables,
  imageBase: number,
  entryPath: string,
  /** In the order their initializers ran: the runtime detaches them in reverse. */
  modules: LoadedModule[],
  /** The runtime's fault dispatcher, or 0 (guest/exception_frame.ts). */
  faultEntry: number,
): void {
  const dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  if (modules.length > MAX_MODULES) {
    throw new Error(`${entryPath}: ${modules.length} images to load; pvx keeps at most ${MAX_MODULES}`);
  }
  dv.setUint32(MODULE_TABLE, modules.length, true);
  modules.forEach((m, i) => {
    const at = MODULE_TABLE + 8 + i * MODULE_ENTRY; // { u64 base; u32 size, function table rva, its size, entry rva }
    dv.setBigUint64(at, BigInt(m.base), true);
    dv.setUint32(at + 8, m.image.sizeOfImage, true);
    dv.setUint32(at + 12, m.image.functionTable?.rva ?? 0, true);
    dv.setUint32(at + 16, m.image.functionTable?.size ?? 0, true);
    dv.setUint32(at + 20, m.image.entryRva, true);
  });
  dv.setBigUint64(pebBase + PEB_IMAGE_BASE, BigInt(imageBase), true);
  dv.setBigUint64(pebBase + PEB_PROCESS_PARAMETERS, BigInt(PROCESS_PARAMETERS), true);
  dv.setBigUint64(pebBase + PEB_PROCESS_HEAP, BigInt(PROCESS_HEAP), true);
  dv.setBigUint64(pebBase + PEB_FAULT_ENTRY, BigInt(faultEntry), true);
  // The bundle is the root of C:, so the exe's bundle path is its path there.
  const path = `C:\\${entryPath.replaceAll("/", "\\")}`.slice(0, MAX_IMAGE_PATH - 1);
  writeWide(ram, IMAGE_PATH, path);
  const name = PROCESS_PARAMETERS + PARAMETERS_IMAGE_PATH_NAME; // UNICODE_STRING
  dv.setUint16(name, 2 * path.length, true);
  dv.setUint16(name + 2, 2 * path.length + 2, true);
  dv.setBigUint64(name + 8, BigInt(IMAGE_PATH), true);
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
