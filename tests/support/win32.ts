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

/**
 * Programs Wine cannot judge on this machine, so their exes are held to what Windows documents (the .expected
 * file) instead. file_attributes: Wine maps READONLY to the Unix write bit, which root, who runs the tests, writes
 * through anyway. system_info: Wine reports whichever Windows version its prefix is set to (a new prefix of
 * Debian's Wine 8 says 6.1.7601, Windows 7 SP1), where Windows 10 tells an app without a manifest 6.2.9200.
 */
export const notJudgedByWine = new Set(["file_attributes", "system_info"]);

/** Programs that call what pvx's Win32 runtime (guest/win32rt) gives Windows exes and abi/pvx.h does not. */
export const windowsOnly = new Set([
  "copy_file",
  "delay_load",
  "duplicate_handle",
  "file_attributes",
  "file_info",
  "lock_file_ex",
  "named_objects",
  "ntdll_format",
  "process_handle",
  "slim_sync",
  "suspend_terminate",
  "system_info",
  "thread_info",
  "threadpool",
]);

/** Lines where Wine departs from Windows (tests/win32/wine_divergences.md): Wine's line, then Windows'. */
export const wineDivergences: Record<string, [string, string][]> = {
  memory: [["VirtualFree release twice: error 87", "VirtualFree release twice: error 487"]],
  sync: [["ReleaseSemaphore 0: ok", "ReleaseSemaphore 0: error 87"]],
  file_info: [["SetFileTime through a read-only handle: ok", "SetFileTime through a read-only handle: error 5"]],
  lock_file_ex: [
    ...[
      "a writes 0..4, its own shared lock",
      "c writes 12..14, b's shared lock",
      "b reads 20..24, a's exclusive lock",
    ].map((line): [string, string] => [`${line}: ok`, `${line}: error 33`]),
    ["a unlocks 0..10 again: error 33", "a unlocks 0..10 again: error 158"],
  ],
  lock_file: [
    ...[
      "b reads 12..16",
      "b writes 18..22, across the lock's end",
      "a writes 22..24, b's lock",
      "a third handle reads 25..27, b's lock",
    ].map((line): [string, string] => [`${line}: ok`, `${line}: error 33`]),
    ...[
      "UnlockFile 10..15 through a, part of a lock",
      "UnlockFile 10..20 through b, a's lock",
      "UnlockFile 10..20 through a again",
    ].map((line): [string, string] => [`${line}: error 33`, `${line}: error 158`]),
  ],
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

/** A -nostdlib exe that imports absent.dll!Frobnicate, a DLL found neither beside it nor in any DLL source. */
export async function buildExeImportingAbsentDll(outDir: string): Promise<string> {
  await Deno.writeTextFile(`${outDir}/absent.def`, "LIBRARY absent.dll\nEXPORTS\nFrobnicate\n");
  await run("x86_64-w64-mingw32-dlltool", ["-d", `${outDir}/absent.def`, "-l", `${outDir}/libabsent.a`]);
  await Deno.writeTextFile(
    `${outDir}/absent.c`,
    "#include <windows.h>\nvoid WINAPI Frobnicate(void);\nint main(void) { GetLastError(); Frobnicate(); return 0; }\n",
  );
  const exe = `${outDir}/absent.exe`;
  await run("x86_64-w64-mingw32-gcc", [
    ...mingw,
    "-e",
    "mainCRTStartup",
    "-o",
    exe,
    `${outDir}/absent.c`,
    `${win32Dir}mingw_start.c`,
    `${outDir}/libabsent.a`,
    "-lkernel32",
  ]);
  return exe;
}

/**
 * What an MSVC build imports from VCRUNTIME140.dll rather than the Universal
 * CRT: the memory and string primitives, setjmp/longjmp and the SEH handlers.
 */
const vcruntimeImports = [
  "memchr",
  "memcmp",
  "memcpy",
  "memmove",
  "memset",
  "strchr",
  "strrchr",
  "strstr",
  "wcschr",
  "wcsrchr",
  "wcsstr",
  "_setjmp",
  "longjmp",
  "__C_specific_handler",
  "__current_exception",
  "__current_exception_context",
];

/**
 * Builds a C or C++ source the default way, as a user would: mingw's own
 * start-up code and msvcrt, or (C only) the Universal CRT that MSVC builds
 * use, imported through its api-ms-win-crt-* API sets, with or without
 * VCRUNTIME140.dll beside it, as MSVC links.
 */
export async function buildDefaultMingw(
  source: string,
  outDir: string,
  crt: "msvcrt" | "ucrt" | "vcruntime" = "msvcrt",
): Promise<string> {
  const name = source.slice(source.lastIndexOf("/") + 1).replace(/\.[^.]+$/, "");
  const cxx = /\.(cc|cpp)$/.test(source);
  const out = `${outDir}/${name}${crt === "msvcrt" ? "" : `_${crt}`}.exe`;
  const libs = ["-nodefaultlibs", "-lmingw32", "-lmingwex", "-lucrt", "-lkernel32", "-lgcc"];
  if (crt === "vcruntime") {
    // First on the line, so these come from VCRUNTIME140.dll and not from the API sets.
    await Deno.writeTextFile(
      `${outDir}/vcruntime140.def`,
      `LIBRARY VCRUNTIME140.dll\nEXPORTS\n${vcruntimeImports.join("\n")}\n`,
    );
    await run("x86_64-w64-mingw32-dlltool", ["-d", `${outDir}/vcruntime140.def`, "-l", `${outDir}/libvcruntime140.a`]);
    libs.splice(3, 0, `-L${outDir}`, "-lvcruntime140");
  }
  await run(cxx ? "x86_64-w64-mingw32-g++" : "x86_64-w64-mingw32-gcc", [
    "-O2",
    "-Wall",
    "-Werror",
    ...(cxx ? ["-static-libgcc", "-static-libstdc++"] : []),
    ...(crt === "msvcrt" ? [] : ["-D_UCRT"]),
    "-o",
    out,
    source,
    ...(crt === "msvcrt" ? [] : libs),
  ]);
  return out;
}
