// Builds pvx's Win32 userland (guest/win32rt/*.c) into the DLL that stands in
// for kernel32 and ntdll inside a Windows app's bundle. Built with mingw once
// per source change and kept in the cache; a bundle carries its own copy, so a
// host that runs it needs no compiler.

import { join } from "../abi/host_path.ts";
import { infoBase, maxVcpus, tebBase, tebSize } from "../abi/memory_map.ts";
import { infoFields } from "../guest/info.ts";
import { cacheRoot } from "./cache_dir.ts";
import { MODULE_TABLE_OFFSET, RUNTIME_DLL } from "../guest/windows.ts";
import { calls } from "../abi/calls.ts";
import { DOORBELL_BASE, DOORBELL_SIZE } from "../abi/doorbell.ts";
import { run } from "./guest_cc.ts";
import { hexBytes } from "../abi/hex.ts";

const sourceDir = new URL("../guest/win32rt/", import.meta.url).pathname;

const flags = [
  "-shared",
  "-nostdlib",
  "-ffreestanding",
  "-fno-builtin",
  "-fno-stack-protector",
  "-O2",
  "-Wall",
  "-Werror",
  "-Wl,--entry=0",
  "-Wl,--no-insert-timestamp",
  `-DPVX_TEB_BASE=${tebBase}`,
  `-DPVX_TEB_SIZE=${tebSize}`,
  `-DPVX_MAX_VCPUS=${maxVcpus}`,
  `-DPVX_PEB_MODULES=${MODULE_TABLE_OFFSET}`,
  `-DPVX_INFO_HEAP_START=${infoBase + 8 * infoFields.indexOf("heap_start")}`,
  `-DPVX_INFO_HEAP_END=${infoBase + 8 * infoFields.indexOf("heap_end")}`,
  `-DPVX_DOORBELL_BASE=${DOORBELL_BASE}ull`,
  `-DPVX_DOORBELL_SIZE=${DOORBELL_SIZE}`,
];

/**
 * What the runtime imports by name from beneath it, in .def form: pvx's own
 * calls (Pvx*), and the hypercalls beneath the runtime's own function of the
 * same name (ExitProcess, and GetEnvironmentVariableW until the app changes one).
 */
const hypercallImports = [
  ...calls.map((c) => c.name).filter((n) => n.startsWith("Pvx")),
  "pvx_exit_process == ExitProcess",
  "pvx_host_environment_variable == GetEnvironmentVariableW",
];

async function sources(): Promise<{ names: string[]; key: string }> {
  const names: string[] = [];
  for await (const e of Deno.readDir(sourceDir)) if (e.isFile && /\.[ch]$/.test(e.name)) names.push(e.name);
  names.sort();
  const parts = [flags.join(" "), hypercallImports.join(" ")];
  for (const n of names) parts.push(n, await Deno.readTextFile(join(sourceDir, n)));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(parts.join("\0"))));
  return { names, key: hexBytes(digest.subarray(0, 12)) };
}

/** The runtime DLL for this pvx, built on first use. */
export async function win32Runtime(): Promise<Uint8Array<ArrayBuffer>> {
  const { names, key } = await sources();
  const dir = join(cacheRoot(), "win32rt");
  const path = join(dir, `pvxrt-${key}.dll`);
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(dir, { recursive: true });
  // Built under its own name (the export directory records it), beside the cache so the rename is atomic.
  const temp = await Deno.makeTempDir({ dir });
  const cc = "x86_64-w64-mingw32-gcc";
  try {
    const c = names.filter((n) => n.endsWith(".c")).map((n) => join(sourceDir, n));
    const def = join(temp, "pvxcalls.def"), lib = join(temp, "libpvxcalls.a");
    await Deno.writeTextFile(def, `LIBRARY kernel32.dll\nEXPORTS\n${hypercallImports.join("\n")}\n`);
    await run("x86_64-w64-mingw32-dlltool", ["-d", def, "-l", lib]);
    // One compiler per source at once: each spends most of its second parsing <windows.h>.
    const objects = c.map((_, i) => join(temp, `${i}.o`));
    const built = await Promise.allSettled(c.map((source, i) => run(cc, [...flags, "-c", "-o", objects[i], source])));
    const failed = built.find((b) => b.status === "rejected");
    if (failed) throw failed.reason;
    await run(cc, [...flags, "-o", join(temp, RUNTIME_DLL), ...objects, lib, "-lkernel32"]);
    await Deno.rename(join(temp, RUNTIME_DLL), path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`building pvx's Win32 runtime needs ${cc} (deno task setup installs it)`);
    }
    throw e;
  } finally {
    await Deno.remove(temp, { recursive: true });
  }
  return await Deno.readFile(path);
}
