// Turning an app into a bundle: an ELF built against pvx.h, or a Windows exe
// with the DLLs beside it, packed with a manifest that allows exactly the calls
// it uses; and the cache of bundles that `pvx run app.exe` packs on the fly.

import { basename, dirname, join } from "node:path";
import { DEFAULT_MEMORY_MIB, encodeBundle, isPe, writeBundle } from "./bundle.ts";
import { parseElf } from "../guest/elf.ts";
import { parsePe } from "../guest/pe.ts";
import { ABI_VERSION, callsByName } from "../abi/calls.ts";
import { analysePe, callsUsedByElf } from "./analyse.ts";
import { cacheRoot } from "./cache_dir.ts";

export interface PackOptions {
  name?: string;
  memoryMiB: number;
  /** Extra files: "host path" or "host path:bundle path". */
  files: readonly string[];
  args: readonly string[];
  allowMissing: boolean;
}

/** What `pvx pack` does without options, and what `pvx run app.exe` packs with. */
export const defaultPackOptions: PackOptions = {
  memoryMiB: DEFAULT_MEMORY_MIB,
  files: [],
  args: [],
  allowMissing: false,
};

/** DLLs the exe (and those DLLs) import that sit beside it: Windows would load them from there first. */
export async function dllsBeside(
  exePath: string,
  exe: Uint8Array,
): Promise<{ path: string; bytes: Uint8Array<ArrayBuffer> }[]> {
  const dir = dirname(exePath);
  const present = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && /\.dll$/i.test(e.name)) present.set(e.name.toLowerCase(), e.name);
  }
  const found: { path: string; bytes: Uint8Array<ArrayBuffer> }[] = [];
  const queue = [parsePe(exe, exePath)];
  while (queue.length) {
    for (const imp of queue.pop()!.imports) {
      const name = present.get(imp.dll.toLowerCase());
      if (!name || found.some((f) => f.path === name)) continue;
      const bytes = await Deno.readFile(join(dir, name));
      found.push({ path: name, bytes });
      queue.push(parsePe(bytes, join(dir, name)));
    }
  }
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
  const kind = isPe(entryBytes) ? "pe" : "elf";
  if (kind === "pe") {
    files.push(...(await dllsBeside(entryPath, entryBytes)).filter((d) => !files.some((f) => f.path === d.path)));
    const analysis = analysePe(new Map(files.map((f) => [f.path, f.bytes])), entry);
    if (analysis.missing.length) {
      const list = analysis.missing.map((m) => `${m.dll}!${m.name}`).join(", ");
      if (!o.allowMissing) {
        throw new MissingImportsError(
          `${entryPath}: needs imports pvx does not implement: ${list} (--allow-missing runs it anyway; a call to one stops the app)`,
        );
      }
      console.error(`pvx: warning: ${entryPath}: missing imports stop the app if called: ${list}`);
    }
    allowedCalls = analysis.usedCalls;
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
  const key = [...digest.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
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
