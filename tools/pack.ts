// Turning an app into a bundle: an ELF built against pvx.h, or a Windows exe
// with the DLLs beside it, packed with a manifest that allows exactly the calls
// it uses; and the cache of bundles that `pvx run app.exe` packs on the fly.

import { basename, dirname, join, resolve } from "../abi/host_path.ts";
import { DEFAULT_MEMORY_MIB, encodeBundle, isPe, type Manifest, writeBundle } from "../hv/bundle.ts";
import { parseElf } from "../guest/elf.ts";
import { parsePe } from "../guest/pe.ts";
import { ABI_VERSION, callsByName } from "../abi/calls.ts";
import { analysePe, callsUsedByElf } from "./analyse.ts";
import { apiSetHost, importSources, isPvxDll, RUNTIME_DLL } from "../guest/windows.ts";
import { win32Runtime } from "./win32_runtime.ts";
import { cacheRoot } from "./cache_dir.ts";
import type { SpecialCallPolicy } from "../abi/special_calls.ts";
import { callsOfProcs, mergeTrace, namedInCode, noDynamicImports, readTrace } from "./dynamic_imports.ts";
import { hexBytes } from "../abi/hex.ts";

export interface PackOptions {
  name?: string;
  memoryMiB: number;
  /** Extra files: "host path" or "host path:bundle path". */
  files: readonly string[];
  args: readonly string[];
  allowMissing: boolean;
  /** Where system DLLs come from (default WINE_DLL_DIR). */
  dllDir?: string;
  /** A Windows app's special-call policy (default deny). */
  specialCalls?: SpecialCallPolicy;
  /** Trace files of runs of the app (`pvx run --trace`), merged into what its manifest lets it reach. */
  traces?: readonly string[];
}

/** What `pvx pack` does without options, and what `pvx run app.exe` packs with. */
export const defaultPackOptions: PackOptions = {
  memoryMiB: DEFAULT_MEMORY_MIB,
  files: [],
  args: [],
  allowMissing: false,
};

/** Where system DLLs come from by default: the PE DLLs of Debian's wine64 package. */
export const WINE_DLL_DIR = "/usr/lib/x86_64-linux-gnu/wine/x86_64-windows";

export interface BundledDll {
  path: string;
  bytes: Uint8Array<ArrayBuffer>;
  /** The host file it was taken from. */
  from: string;
  /** Beside the exe (the app's own) or from the DLL source (a system DLL). */
  source: "app" | "system";
}

/** File names in `dir` by folded name; none when it does not exist. */
async function dllNames(dir: string): Promise<Map<string, string>> {
  const present = new Map<string, string>();
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && /\.dll$/i.test(e.name)) present.set(e.name.toLowerCase(), e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return present;
}

/**
 * The DLLs a Windows exe needs, the transitive closure of its imports: each
 * from beside the exe when it is there (Windows looks there first), else from
 * the DLL source; then pvx's runtime DLL. kernel32, ntdll and the core API
 * sets are pvx's own and never taken. `loaded`: DLLs the app loads by name,
 * taken with their closures when a source has them.
 */
export async function windowsDlls(
  exePath: string,
  exe: Uint8Array,
  dllDir = WINE_DLL_DIR,
  loaded: Iterable<string> = [],
): Promise<BundledDll[]> {
  const dirs = [
    { dir: dirname(exePath), names: await dllNames(dirname(exePath)), source: "app" as const },
    { dir: dllDir, names: await dllNames(dllDir), source: "system" as const },
  ];
  const found: BundledDll[] = [];
  const queue = [parsePe(exe, exePath).imports.map((i) => i.dll), [...loaded]];
  while (queue.length) {
    for (const dll of queue.pop()!) {
      const wanted = apiSetHost(dll);
      if (isPvxDll(wanted) || found.some((f) => f.path.toLowerCase() === wanted)) continue;
      const at = dirs.find((d) => d.names.has(wanted));
      if (!at) continue; // the analysis reports it missing
      const name = at.names.get(wanted)!;
      const from = resolve(at.dir, name);
      const bytes = await Deno.readFile(from);
      found.push({ path: name, bytes, from, source: at.source });
      queue.push(parsePe(bytes, from).imports.map((i) => i.dll));
    }
  }
  found.push({ path: RUNTIME_DLL, bytes: await win32Runtime(), from: "pvx (guest/win32rt)", source: "system" });
  return found;
}

/** Builds a bundle from an ELF built against pvx.h or a Windows exe; the manifest allows exactly the calls it uses. */
export async function packApp(entryPath: string, o: PackOptions): Promise<Uint8Array> {
  const entryBytes = await Deno.readFile(entryPath);
  const entry = basename(entryPath);
  const files = [{ path: entry, bytes: entryBytes }];
  for (const spec of o.files) {
    const colon = spec.indexOf(":");
    const host = colon < 0 ? spec : spec.slice(0, colon);
    files.push({ path: colon < 0 ? basename(spec) : spec.slice(colon + 1), bytes: await Deno.readFile(host) });
  }
  let allowedCalls: string[];
  let windows: Pick<Manifest, "dlls" | "specialCalls"> | undefined;
  const kind = isPe(entryBytes) ? "pe" : "elf";
  if (kind === "pe") {
    const traced = noDynamicImports(), tracedCalls = new Set<string>();
    for (const trace of o.traces ?? []) mergeTrace(traced, await readTrace(trace), tracedCalls);
    const dlls = await windowsDlls(entryPath, entryBytes, o.dllDir, traced.libraries);
    files.push(...dlls.filter((d) => !files.some((f) => f.path === d.path)));
    const byPath = new Map(files.map((f) => [f.path, f.bytes]));
    const analysis = analysePe(byPath, entry);
    // A system DLL imports far more than an app calls: only the app's own missing imports refuse the pack.
    const system = new Set(dlls.filter((d) => d.source === "system").map((d) => d.path.toLowerCase()));
    const missing = analysis.missing.filter((m) => !system.has(m.importer));
    if (missing.length) {
      const list = missing.map((m) => `${m.dll}!${m.name}`).join(", ");
      if (!o.allowMissing) {
        throw new MissingImportsError(
          `${entryPath}: needs imports pvx does not implement: ${list} (--allow-missing runs it anyway; a call to one stops the app)`,
        );
      }
      console.error(`pvx: warning: ${entryPath}: missing imports stop the app if called: ${list}`);
    }
    const sources = importSources(byPath);
    const named = namedInCode(byPath, sources);
    const procs = new Set([...named.procs, ...traced.procs]);
    allowedCalls = [...new Set([...analysis.usedCalls, ...callsOfProcs(procs, sources), ...tracedCalls])].sort();
    windows = {
      dlls: dlls.map((d) => ({ path: d.path, from: d.from })),
      specialCalls: {
        policy: o.specialCalls ?? "deny",
        procs: [...procs].sort(),
        libraries: [...new Set([...named.libraries, ...traced.libraries])].sort(),
        files: [...traced.files].sort(),
      },
    };
  } else {
    parseElf(entryBytes, entryPath);
    allowedCalls = callsUsedByElf(entryBytes, entryPath);
    for (const name of allowedCalls) {
      if (!callsByName.has(name)) {
        throw new Error(`${entryPath}: uses hypercall ${name}, which ABI v${ABI_VERSION} lacks`);
      }
    }
  }
  const name = o.name ?? entry.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
  return encodeBundle({
    name,
    entry,
    kind,
    memoryMiB: o.memoryMiB,
    abiVersion: ABI_VERSION,
    allowedCalls,
    args: [...o.args],
    ...windows,
  }, files);
}

export class MissingImportsError extends Error {}

/**
 * Where `pvx run app.exe` keeps the bundles it packs on the fly, keyed by the
 * content of everything packed, so a second run of the same app reuses one.
 */
export function bundleCacheDir(): string {
  return Deno.env.get("PVX_CACHE_DIR") ?? join(cacheRoot(), "bundles");
}

export async function cachedBundle(entryPath: string, o: PackOptions): Promise<string> {
  const packed = await packApp(entryPath, o);
  // The key covers the packed bytes: a rebuilt exe, a new DLL or a new pvx all give new bundles.
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", packed.slice()));
  const key = hexBytes(digest.subarray(0, 16));
  const path = join(bundleCacheDir(), `${key}.pvx`);
  try {
    await Deno.stat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    await Deno.mkdir(bundleCacheDir(), { recursive: true });
    await writeBundle(path, packed);
  }
  return path;
}
