// The Win32 test programs in tests/win32: each source builds two ways, as a
// pvx guest against abi/pvx.h and as a Windows PE with mingw against the real
// kernel32, so the same program can be run by pvx and by Wine.

import { compileGuest, run } from "../../tools/guest_cc.ts";

export const win32Dir = new URL("../win32/", import.meta.url).pathname;

export async function win32Programs(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(win32Dir)) {
    if (e.isFile && e.name.endsWith(".c") && e.name !== "mingw_start.c") names.push(e.name.slice(0, -2));
  }
  return names.sort();
}

/** Programs that must never run under Wine: they probe for ways out of pvx's sandbox, which Wine does not have. */
export const pvxOnly = new Set(["sandbox"]);

/** Lines where Wine departs from Windows (tests/win32/wine_divergences.md): Wine's line, then Windows'. */
export const wineDivergences: Record<string, [string, string][]> = {
  memory: [["VirtualFree release twice: error 87", "VirtualFree release twice: error 487"]],
};

/** What Windows would have printed, given what Wine printed. */
export function asWindows(name: string, wineOutput: string): string {
  let out = wineOutput;
  for (const [wine, windows] of wineDivergences[name] ?? []) out = out.replace(`${wine}\n`, `${windows}\n`);
  return out;
}

export async function buildPvxGuest(name: string, outDir: string): Promise<string> {
  const out = `${outDir}/${name}.elf`;
  await compileGuest(`${win32Dir}${name}.c`, out);
  return out;
}

const mingw = ["-O2", "-Wall", "-Werror", "-nostdlib", "-fno-builtin"];

/** Builds tests/win32/<name>.c, or `source` with `flags`, as a Windows exe with the few lines of runtime it needs. */
export async function buildWindowsExe(
  name: string,
  outDir: string,
  source = `${win32Dir}${name}.c`,
  flags: string[] = [],
): Promise<string> {
  const out = `${outDir}/${name}.exe`;
  await run("x86_64-w64-mingw32-gcc", [
    ...mingw,
    ...flags,
    "-e",
    "mainCRTStartup",
    "-o",
    out,
    source,
    `${win32Dir}mingw_start.c`,
    "-lkernel32",
  ]);
  return out;
}

/** tests/win32/dll: useadder.exe and the adder.dll it imports by name and by ordinal, side by side in `outDir`. */
export async function buildExeWithDll(outDir: string): Promise<string> {
  const src = `${win32Dir}dll/`;
  await run("x86_64-w64-mingw32-gcc", [
    ...mingw,
    "-shared",
    "-e",
    "DllMain",
    "-o",
    `${outDir}/adder.dll`,
    `${src}adder.c`,
    `${src}adder.def`,
    `-Wl,--out-implib,${outDir}/libadder.a`,
    "-lkernel32",
  ]);
  const exe = `${outDir}/useadder.exe`;
  await run("x86_64-w64-mingw32-gcc", [
    ...mingw,
    "-e",
    "mainCRTStartup",
    "-o",
    exe,
    `${src}useadder.c`,
    `${win32Dir}mingw_start.c`,
    `-L${outDir}`,
    "-ladder",
    "-lkernel32",
  ]);
  return exe;
}

/** A default mingw build: its CRT imports msvcrt.dll and kernel32 calls pvx does not implement. */
export async function buildCrtHello(outDir: string): Promise<string> {
  await Deno.writeTextFile(
    `${outDir}/crt_hello.c`,
    '#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }\n',
  );
  await run("x86_64-w64-mingw32-gcc", ["-O2", "-o", `${outDir}/crt_hello.exe`, `${outDir}/crt_hello.c`]);
  return `${outDir}/crt_hello.exe`;
}
