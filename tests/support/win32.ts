// The Win32 test programs in tests/win32: each source builds two ways, as a
// pvx guest against abi/pvx.h and as a Windows PE with mingw against the real
// kernel32, so the same program can be run by pvx and by Wine.

import { compileGuest, run } from "../../tools/guest_cc.ts";

export const win32Dir = new URL("../win32/", import.meta.url).pathname;
const includeDir = new URL("../../abi/include/", import.meta.url).pathname;

export async function win32Programs(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(win32Dir)) {
    if (e.name.endsWith(".c") && e.name !== "mingw_start.c") names.push(e.name.slice(0, -2));
  }
  return names.sort();
}

export async function buildPvxGuest(name: string, outDir: string): Promise<string> {
  const out = `${outDir}/${name}.elf`;
  await compileGuest(`${win32Dir}${name}.c`, out, ["-I", includeDir]);
  return out;
}

export async function buildWindowsExe(name: string, outDir: string): Promise<string> {
  const out = `${outDir}/${name}.exe`;
  await run("x86_64-w64-mingw32-gcc", [
    "-O2",
    "-Wall",
    "-Werror",
    "-nostdlib",
    "-fno-builtin",
    "-e",
    "mainCRTStartup",
    "-o",
    out,
    `${win32Dir}${name}.c`,
    `${win32Dir}mingw_start.c`,
    "-lkernel32",
  ]);
  return out;
}
