// What an app needs from the hypercall ABI. A C guest built against abi/pvx.h
// records every call it really uses in its .pvx_calls section (see PVX_USES);
// a Windows exe names them in its import table (and its DLLs' tables).

import { ElfError, parseElf } from "../guest/elf.ts";
import { parsePe } from "../guest/pe.ts";
import { type PeImage } from "../guest/pe_image.ts";
import { callsOfImport, importSources, isPvxDll, resolveImport, RUNTIME_DLL } from "../guest/windows.ts";

export function callsUsedByElf(bytes: Uint8Array, file: string): string[] {
  const section = parseElf(bytes, file).sections.find((s) => s.name === ".pvx_calls");
  if (!section) {
    throw new ElfError(
      file,
      0,
      "no .pvx_calls section: the app was not built against abi/pvx.h, so pvx cannot tell which calls it needs",
    );
  }
  const text = new TextDecoder().decode(bytes.subarray(section.offset, section.offset + section.size));
  return [...new Set(text.split("\0").filter(Boolean))].sort();
}

export interface ImportEntry {
  /** The module that imports, e.g. "app.exe" or "helper.dll". */
  importer: string;
  dll: string;
  name: string;
  status: "implemented" | "shipped" | "missing";
}

export interface PeAnalysis {
  imports: ImportEntry[];
  /** kernel32 calls the app can reach: its manifest's allowed calls. */
  usedCalls: string[];
  missing: ImportEntry[];
}

/** Static imports of an exe, of every DLL it ships and of pvx's runtime DLL, each marked as pvx would bind it. */
export function analysePe(files: ReadonlyMap<string, Uint8Array>, entry: string): PeAnalysis {
  const sources = importSources(files);
  const imports: ImportEntry[] = [];
  const used = new Set<string>(["ExitProcess"]); // the entry trampoline ends every app with it
  const seen = new Set<string>();
  const parsed = new Map<string, PeImage>();
  const image = (path: string) => {
    let i = parsed.get(path);
    if (!i) parsed.set(path, i = parsePe(files.get(path)!, path));
    return i;
  };
  const visit = (path: string, importer: string) => {
    if (seen.has(importer)) return;
    seen.add(importer);
    for (const imp of image(path).imports) {
      const r = resolveImport(imp, sources, importer);
      const name = imp.name ?? `#${imp.ordinal}`;
      let status: ImportEntry["status"] = r.kind === "dll"
        ? "shipped"
        : r.kind === "missing"
        ? "missing"
        : "implemented";
      for (const call of callsOfImport(r)) used.add(call);
      if (r.kind === "dll") {
        const exports = image(sources.dlls.get(r.dll)!).exports;
        if (!exports.some((e) => imp.name !== undefined ? e.name === imp.name : e.ordinal === imp.ordinal)) {
          status = "missing";
        }
        visit(sources.dlls.get(r.dll)!, r.dll);
      }
      imports.push({ importer, dll: imp.dll, name, status });
    }
  };
  visit(entry, entry.slice(entry.lastIndexOf("/") + 1).toLowerCase());
  if (sources.runtimePath !== undefined) visit(sources.runtimePath, RUNTIME_DLL);
  return { imports, usedCalls: [...used].sort(), missing: imports.filter((i) => i.status === "missing") };
}

/** How much of what the app and its DLLs import from kernel32, kernelbase and ntdll pvx implements. */
export function coverage(a: PeAnalysis): string {
  const own = a.imports.filter((i) => isPvxDll(i.dll) && i.importer !== RUNTIME_DLL);
  const done = own.filter((i) => i.status === "implemented").length;
  const percent = own.length ? (100 * done / own.length).toFixed(1) : "100.0";
  return `kernel32/ntdll coverage: ${done} of ${own.length} imports implemented (${percent}%)`;
}

export function describeAnalysis(a: PeAnalysis): string {
  const lines: string[] = [];
  const byDll = new Map<string, ImportEntry[]>();
  for (const i of a.imports) {
    const key = `${i.importer} imports ${i.dll}`;
    byDll.set(key, [...byDll.get(key) ?? [], i]);
  }
  for (const [key, entries] of byDll) {
    lines.push(`${key}:`);
    for (const e of entries) lines.push(`  ${e.status.padEnd(11)} ${e.name}`);
  }
  lines.push(coverage(a));
  // Several of the app's DLLs may import one missing function; it is one thing to implement.
  const missing = [...new Set(a.missing.map((m) => `${m.dll}!${m.name}`))];
  lines.push(
    missing.length ? `${missing.length} import(s) missing: ${missing.join(", ")}` : "every import is available",
  );
  return lines.join("\n");
}
