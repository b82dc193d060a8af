// What a Windows app reaches besides its static imports: the functions and
// DLLs its code names (an identifier among its strings that some other
// module exports, a "*.dll" string), and what a traced run looked up
// (`pvx run --trace`, `pvx analyse --trace`). The packer writes the union into
// the manifest's specialCalls; at run time anything outside it goes through
// the special call (abi/special_calls.ts).

import type { TraceEvent } from "../abi/special_calls.ts";
import { parsePe } from "../guest/pe.ts";
import { type ImportSources, KERNEL32, RUNTIME_DLL } from "../guest/windows.ts";
import { callsByName } from "../abi/calls.ts";
import { kernel32Routine } from "../guest/runtime.ts";

export interface DynamicImports {
  /** "module!function", pvx's DLLs all as kernel32.dll (GetProcAddress names a module by its first name). */
  procs: Set<string>;
  libraries: Set<string>;
  files: Set<string>;
}

export const noDynamicImports = (): DynamicImports => ({ procs: new Set(), libraries: new Set(), files: new Set() });

const MIN_NAME = 3, MAX_NAME = 255;
const isNameByte = (b: number) =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f || b === 0x2e ||
  b === 0x2d || b === 0x40 || b === 0x3f || b === 0x24;

/** NUL-terminated strings of name characters in `bytes`, as 8-bit and as UTF-16LE text. */
function namesIn(bytes: Uint8Array): Set<string> {
  const found = new Set<string>();
  for (const unit of [1, 2]) {
    for (let phase = 0; phase < unit; phase++) {
      let chars = "";
      for (let at = phase; at + unit <= bytes.length; at += unit) {
        const b = bytes[at];
        const wide = unit === 2 ? bytes[at + 1] : 0;
        if (b === 0 && wide === 0) {
          if (chars.length >= MIN_NAME && chars.length <= MAX_NAME) found.add(chars);
          chars = "";
        } else if (wide === 0 && isNameByte(b)) {
          chars += String.fromCharCode(b);
        } else chars = "";
      }
    }
  }
  return found;
}

/** The names kernel32 answers a lookup with: what an import of each would bind to (guest/windows.ts). */
function pvxExportNames(sources: ImportSources): Set<string> {
  const names = new Set(sources.runtime);
  for (const name of callsByName.keys()) if (!name.startsWith("Pvx")) names.add(name);
  return names;
}

/**
 * What the bundled modules name in their code: for each identifier that a
 * module other than the one holding it exports, "exporter!identifier"; and
 * every "*.dll" name. A module's own export names are in its export table, so
 * they never count for it (nor kernel32's for pvx's runtime, which is part of it).
 */
export function namedInCode(files: ReadonlyMap<string, Uint8Array>, sources: ImportSources): DynamicImports {
  const found = noDynamicImports();
  const modules = [...files].filter(([path, bytes]) =>
    bytes[0] === 0x4d && bytes[1] === 0x5a && /\.(exe|dll)$/i.test(path)
  );
  const exporters = new Map<string, string[]>();
  const addExporter = (name: string, module: string) => exporters.set(name, [...exporters.get(name) ?? [], module]);
  for (const name of pvxExportNames(sources)) addExporter(name, KERNEL32);
  for (const [dll, path] of sources.dlls) {
    for (const e of parsePe(files.get(path)!, path).exports) if (e.name) addExporter(e.name, dll);
  }
  for (const [path, bytes] of modules) {
    const self = path.slice(path.lastIndexOf("/") + 1).toLowerCase();
    for (const name of namesIn(bytes)) {
      if (/\.dll$/i.test(name)) found.libraries.add(name.toLowerCase());
      for (const exporter of exporters.get(name) ?? []) {
        if (exporter !== self && !(self === RUNTIME_DLL && exporter === KERNEL32)) {
          found.procs.add(`${exporter}!${name}`);
        }
      }
    }
  }
  return found;
}

/** The hypercalls that the kernel32 functions in `procs` are (those a routine or the runtime does not answer). */
export function callsOfProcs(procs: Iterable<string>, sources: ImportSources): string[] {
  const calls: string[] = [];
  for (const proc of procs) {
    const [module, name] = [proc.slice(0, proc.indexOf("!")), proc.slice(proc.indexOf("!") + 1)];
    if (module !== KERNEL32 || kernel32Routine(name) || sources.runtime.has(name)) continue;
    const call = callsByName.get(name);
    if (call && !name.startsWith("Pvx")) calls.push(call.name, ...call.implies ?? []);
  }
  return calls;
}

/** A trace file that is not one, and where. */
export class TraceError extends Error {}

/** A trace file's events, each line checked; an error names the file and line. */
export async function readTrace(path: string): Promise<TraceEvent[]> {
  const text = await Deno.readTextFile(path);
  const events: TraceEvent[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `${path}:${i + 1}`;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line);
    } catch (err) {
      throw new TraceError(`${where}: not a JSON trace line: ${(err as Error).message}`);
    }
    const str = (key: string) => {
      if (typeof e[key] !== "string" || e[key] === "") {
        throw new TraceError(`${where}: "${key}" must be a non-empty string`);
      }
      return e[key] as string;
    };
    const bool = (key: string) => {
      if (typeof e[key] !== "boolean") throw new TraceError(`${where}: "${key}" must be true or false`);
      return e[key] as boolean;
    };
    switch (e?.kind) {
      case "proc":
        events.push({ kind: "proc", module: str("module").toLowerCase(), name: str("name"), found: bool("found") });
        break;
      case "library":
        events.push({ kind: "library", name: str("name").toLowerCase(), found: bool("found") });
        break;
      case "call":
        events.push({ kind: "call", name: str("name") });
        break;
      case "file":
        events.push({ kind: "file", path: str("path"), write: bool("write") });
        break;
      default:
        throw new TraceError(`${where}: "kind" must be proc, library, call or file`);
    }
  });
  return events;
}

/** Adds what a trace saw to `into`: lookups that found something, every DLL asked for, every file opened. */
export function mergeTrace(into: DynamicImports, events: readonly TraceEvent[], calls: Set<string>): void {
  for (const e of events) {
    if (e.kind === "proc" && e.found) into.procs.add(`${e.module}!${e.name}`);
    else if (e.kind === "library") into.libraries.add(e.name);
    else if (e.kind === "file") into.files.add(e.path);
    else if (e.kind === "call" && callsByName.has(e.name)) calls.add(e.name);
  }
}

/** The lines `pvx analyse --trace` prints of a trace. */
export function describeTrace(events: readonly TraceEvent[]): string {
  const lines = (title: string, items: string[]) =>
    items.length ? [`${title}:`, ...[...new Set(items)].sort().map((i) => `  ${i}`)] : [`${title}: none`];
  return [
    ...lines(
      "looked up at run time",
      events.flatMap((e) => e.kind === "proc" ? [`${e.module}!${e.name}${e.found ? "" : " (not found)"}`] : []),
    ),
    ...lines(
      "loaded by name",
      events.flatMap((e) => e.kind === "library" ? [`${e.name}${e.found ? "" : " (not in the bundle)"}`] : []),
    ),
    ...lines("opened", events.flatMap((e) => e.kind === "file" ? [`${e.path}${e.write ? " (write)" : ""}`] : [])),
    ...lines("calls beyond the manifest", events.flatMap((e) => e.kind === "call" ? [e.name] : [])),
  ].join("\n");
}
