// The PE loader against real mingw output (checked against objdump and nm),
// hand-corrupted copies of it, and fuzzing: whatever the bytes, parsePe and
// loadPe may only succeed or throw PeError.

import assert from "node:assert/strict";
import fc from "fast-check";
import { parsePe } from "../guest/pe.ts";
import { PeError, type PeExport, type PeImage, type PeImport } from "../guest/pe_image.ts";
import { writePe, writtenPe } from "../guest/pe_writer.ts";
import { bindImports, loadPe, nearestPeSymbol } from "../guest/pe_loader.ts";
import { appBase, MiB, PAGE } from "../abi/memory_map.ts";
import { PageTables } from "../guest/paging.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const consoleSource = `#include <windows.h>
long initialized[4] = {1, 2, 3, 4};
long tally[2] = {5, 6};
char zeroed[8192];
void start(void) {
  HANDLE h = GetStdHandle(STD_OUTPUT_HANDLE);
  DWORD n;
  zeroed[initialized[1]] = (char)tally[0];
  WriteFile(h, "hi\\n", 3, &n, 0);
  ExitProcess(3);
}
`;
const librarySource = `
__declspec(dllexport) int add(int a, int b) { return a + b; }
__declspec(dllexport) int mul(int a, int b) { return a * b; }
__declspec(dllexport) int counter = 7;
`;
// The .def file adds what dllexport cannot say: an export by ordinal only and a forwarder.
const libraryDef = `LIBRARY lib.dll
EXPORTS
  add
  mul @5 NONAME
  counter DATA
  HeapAllocFwd = NTDLL.RtlAllocateHeap
`;
const importerSource = `#include <windows.h>
int add(int, int);
int mul(int, int);
void start(void) { ExitProcess(add(1, 2) + mul(2, 3)); }
`;
const helloSource = `#include <stdio.h>
int main(void) { printf("hello %d\\n", 42); return 0; }
`;

const decoder = new TextDecoder();

async function run(dir: string, command: string, ...args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(command, { args, cwd: dir }).output();
  if (!success) throw new Error(`${command} ${args.join(" ")} failed:\n${decoder.decode(stderr)}`);
  return decoder.decode(stdout);
}

const dir = await Deno.makeTempDir({ prefix: "pvx_pe_test_" });
const gcc = (...args: string[]) => run(dir, "x86_64-w64-mingw32-gcc", "-O1", ...args);
await Deno.writeTextFile(`${dir}/a.c`, consoleSource);
await Deno.writeTextFile(`${dir}/lib.c`, librarySource);
await Deno.writeTextFile(`${dir}/lib.def`, libraryDef);
await Deno.writeTextFile(`${dir}/use.c`, importerSource);
await Deno.writeTextFile(`${dir}/hello.c`, helloSource);
// Without a CRT the DLL has no DllMainCRTStartup, so ld leaves its entry point 0.
await gcc("-shared", "-nostdlib", "-o", "lib.dll", "lib.c", "lib.def", "-Wl,--out-implib,liblib.a");
await Promise.all([
  gcc("-nostdlib", "-e", "start", "-o", "a.exe", "a.c", "-lkernel32"),
  gcc("-nostdlib", "-e", "start", "-o", "use.exe", "use.c", "-L.", "-llib", "-lkernel32"),
  gcc("-o", "hello.exe", "hello.c"),
  // Linked to sit inside a small guest RAM, so it can load at its own ImageBase.
  gcc("-o", "hello_low.exe", "hello.c", "-Wl,--image-base=0x1000000"),
  gcc("-s", "-o", "hello_fixed.exe", "hello.c", "-Wl,--disable-dynamicbase", "-Wl,--disable-reloc-section"),
]);

/** What objdump and nm say about a file: an oracle independent of guest/pe.ts. */
interface Oracle {
  path: string;
  bytes: Uint8Array;
  headers: Map<string, string>;
  characteristics: string;
  dllCharacteristics: string;
  sections: { name: string; rva: number; size: number; fileOffset: number; flags: string }[];
  imports: PeImport[];
  exports: PeExport[];
  exportDllName?: string;
  relocations: { rva: number; type: number }[];
  /** nm: symbol name → VA (the last definition wins; the tests only ask about unique ones). */
  symbols: Map<string, number>;
  /** nm: every "name@VA" pair. */
  symbolPairs: Set<string>;
}

async function oracle(name: string): Promise<Oracle> {
  const path = `${dir}/${name}`;
  const privateHeaders = await run(dir, "x86_64-w64-mingw32-objdump", "-p", path);
  const sectionHeaders = await run(dir, "x86_64-w64-mingw32-objdump", "-h", path);
  const nm = await run(dir, "x86_64-w64-mingw32-nm", path).catch(() => "");
  const headers = new Map(
    [...privateHeaders.matchAll(/^(\w+)\s+([0-9a-f]+)\b/gm)].map((m) => [m[1], m[2]]),
  );
  const imageBase = Number("0x" + headers.get("ImageBase"));
  const sections = [
    ...sectionHeaders.matchAll(
      /^\s+\d+ (\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+2\*\*\d+\n\s+(.*)$/gm,
    ),
  ].map((m) => ({
    name: m[1],
    size: Number("0x" + m[2]),
    rva: Number("0x" + m[3]) - imageBase,
    fileOffset: Number("0x" + m[4]),
    flags: m[5],
  }));
  const symbols = new Map<string, number>(), symbolPairs = new Set<string>();
  for (const m of nm.matchAll(/^([0-9a-f]+) \w (\S+)$/gm)) {
    symbols.set(m[2], Number("0x" + m[1]));
    symbolPairs.add(`${m[2]}@${Number("0x" + m[1])}`);
  }
  return {
    path,
    bytes: await Deno.readFile(path),
    headers,
    characteristics: /^Characteristics 0x[0-9a-f]+\n((?:\t.*\n)*)/m.exec(privateHeaders)![1],
    dllCharacteristics: /^DllCharacteristics\s+[0-9a-f]+\n((?:\t+.*\n)*)/m.exec(privateHeaders)![1],
    sections,
    imports: objdumpImports(privateHeaders),
    ...objdumpExports(privateHeaders),
    relocations: [...privateHeaders.matchAll(/^\treloc\s+\d+ offset\s+[0-9a-f]+ \[([0-9a-f]+)\] (\w+)$/gm)]
      .map((m) => ({ rva: Number("0x" + m[1]), type: { ABSOLUTE: 0, DIR64: 10 }[m[2]] ?? -1 })),
    symbols,
    symbolPairs,
  };
}

function objdumpImports(text: string): PeImport[] {
  const imports: PeImport[] = [];
  const blocks = text.matchAll(
    /^ [0-9a-f]{8}\t[0-9a-f]{8} [0-9a-f]{8} [0-9a-f]{8} [0-9a-f]{8} ([0-9a-f]{8})\n\n\tDLL Name: (\S+)\n.*\n((?:\t[0-9a-f]+\t.*\n)*)/gm,
  );
  for (const [, firstThunk, dll, rows] of blocks) {
    for (const [i, row] of [...rows.matchAll(/^\t[0-9a-f]+\t\s*(\d+)\s+(\S+)/gm)].entries()) {
      const iatRva = Number("0x" + firstThunk) + 8 * i;
      imports.push(
        row[2] === "<none>"
          ? { dll, ordinal: Number(row[1]), iatRva }
          : { dll, name: row[2], hint: Number(row[1]), iatRva },
      );
    }
  }
  return imports;
}

function objdumpExports(text: string): { exports: PeExport[]; exportDllName?: string } {
  const dllName = /^Name \t+[0-9a-f]+ (\S+)$/m.exec(text)?.[1];
  const names = new Map<number, string[]>();
  const nameTable = text.split("[Ordinal/Name Pointer] Table")[1] ?? "";
  for (const m of nameTable.matchAll(/^\t\[\s*(\d+)\] (\S+)$/gm)) {
    names.set(Number(m[1]), [...names.get(Number(m[1])) ?? [], m[2]]);
  }
  const exports: PeExport[] = [];
  for (
    const m of text.matchAll(/^\t\[\s*(\d+)\] \+base\[\s*(\d+)\] ([0-9a-f]+) (?:Export RVA|Forwarder RVA -- (\S+))$/gm)
  ) {
    const ordinal = Number(m[2]);
    const target = m[4] ? { forwarder: m[4] } : { rva: Number("0x" + m[3]) };
    const entryNames = names.get(Number(m[1])) ?? [];
    if (entryNames.length === 0) exports.push({ ordinal, ...target });
    for (const name of entryNames) exports.push({ name, ordinal, ...target });
  }
  return { exports, ...(dllName && { exportDllName: dllName }) };
}

const [consoleExe, library, importer, hello, helloLow, helloFixed] = await Promise.all(
  ["a.exe", "lib.dll", "use.exe", "hello.exe", "hello_low.exe", "hello_fixed.exe"].map(oracle),
);
await Deno.remove(dir, { recursive: true });

const hexField = (o: Oracle, name: string) => Number("0x" + o.headers.get(name));

/** Header offsets straight from the format's fixed layout. */
function layout(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lfanew = view.getUint32(0x3c, true);
  const coff = lfanew + 4, optional = coff + 20;
  const sectionTable = optional + view.getUint16(coff + 16, true);
  return {
    lfanew,
    coff,
    optional,
    sectionTable,
    section: (i: number) => sectionTable + 40 * i,
    directory: (i: number) => optional + 112 + 8 * i,
    directoryRva: (i: number) => view.getUint32(optional + 112 + 8 * i, true),
    symbolTable: view.getUint32(coff + 8, true),
    symbolCount: view.getUint32(coff + 12, true),
  };
}

/** The file offset of an RVA, by objdump's section table. */
function fileOffset(o: Oracle, rva: number): number {
  const s = o.sections.find((s) => rva >= s.rva && rva < s.rva + s.size && s.flags.includes("CONTENTS"));
  if (!s) throw new Error(`${o.path}: RVA 0x${rva.toString(16)} has no file bytes`);
  return s.fileOffset + rva - s.rva;
}

/** The memory image objdump's section table describes: headers and section contents at their RVAs, zeros elsewhere. */
function expectedMemory(o: Oracle): Uint8Array {
  const memory = new Uint8Array(hexField(o, "SizeOfImage"));
  memory.set(o.bytes.subarray(0, hexField(o, "SizeOfHeaders")));
  for (const s of o.sections.filter((s) => s.flags.includes("CONTENTS"))) {
    memory.set(o.bytes.subarray(s.fileOffset, s.fileOffset + s.size), s.rva);
  }
  return memory;
}

/** One guest RAM reused by every load; PageTables re-zeroes each table it allocates. */
const ram = new Uint8Array(64 * MiB);
const ramView = new DataView(ram.buffer);

function load(image: PeImage, bytes: Uint8Array, base: number, limit = ram.length): PageTables {
  const pageTables = new PageTables(ram);
  loadPe(image, bytes, ram, pageTables, base, limit);
  return pageTables;
}

/** A copy of `source` with `change` applied to it. */
function corrupt(source: Oracle, change: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
  const bytes = source.bytes.slice();
  change(new DataView(bytes.buffer), bytes);
  return bytes;
}

function expectPeError(action: () => unknown, offset: number, reason: RegExp): void {
  let error: unknown;
  try {
    action();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof PeError, `expected a PeError, got ${error}`);
  assert.equal(error.offset, offset, `wrong offset in: ${error.message}`);
  assert.match(error.reason, reason);
  assert.equal(error.message, `${error.file}: offset 0x${offset.toString(16)}: ${error.reason}`);
}

function checkAgainstObjdump(o: Oracle, image: PeImage): void {
  assert.equal(image.machine, 0x8664);
  assert.equal(image.imageBase, hexField(o, "ImageBase"));
  assert.equal(image.entryRva, hexField(o, "AddressOfEntryPoint"));
  assert.equal(image.sizeOfImage, hexField(o, "SizeOfImage"));
  assert.equal(image.sizeOfHeaders, hexField(o, "SizeOfHeaders"));
  assert.equal(image.sectionAlignment, hexField(o, "SectionAlignment"));
  assert.equal(image.fileAlignment, hexField(o, "FileAlignment"));
  assert.equal(image.subsystem, hexField(o, "Subsystem"));
  assert.equal(image.stackReserve, hexField(o, "SizeOfStackReserve"));
  assert.equal(image.stackCommit, hexField(o, "SizeOfStackCommit"));
  assert.equal(image.heapReserve, hexField(o, "SizeOfHeapReserve"));
  assert.equal(image.heapCommit, hexField(o, "SizeOfHeapCommit"));
  assert.equal(image.isDll, o.characteristics.includes("DLL"));
  assert.equal(image.relocationsStripped, o.characteristics.includes("relocations stripped"));
  assert.equal(image.dynamicBase, o.dllCharacteristics.includes("DYNAMIC_BASE"));
  assert.deepEqual(
    image.sections.map((s) => ({ name: s.name, rva: s.rva, size: s.virtualSize, fileOffset: s.rawOffset })),
    o.sections.map(({ name, rva, size, fileOffset }) => ({ name, rva, size, fileOffset })),
  );
  for (const [i, s] of image.sections.entries()) {
    assert.equal(s.exec, o.sections[i].flags.includes("CODE"), `${s.name} exec`);
    assert.equal(s.write, !o.sections[i].flags.includes("READONLY"), `${s.name} write`);
  }
  assert.deepEqual(image.imports, o.imports);
  assert.deepEqual(image.exports, o.exports);
  assert.equal(image.exportDllName, o.exportDllName);
  assert.deepEqual(image.relocations, o.relocations);
  for (const s of image.symbols) {
    assert.ok(o.symbolPairs.has(`${s.name}@${image.imageBase + s.rva}`), `nm does not list ${s.name} at that address`);
  }
  const rvas = image.symbols.map((s) => s.rva);
  assert.deepEqual(rvas, rvas.toSorted((a, b) => a - b));
}

Deno.test("writePe makes a console exe that objdump and parsePe read alike: its code, and its imports by name", async () => {
  const code = new Uint8Array([0x0f, 0x0b]); // ud2
  const bytes = writePe(code, "KERNEL32.dll", ["GetStdHandle", "ExitProcess"]);
  const path = await Deno.makeTempFile({ suffix: ".exe" });
  await Deno.writeFile(path, bytes);
  const text = await run("/", "x86_64-w64-mingw32-objdump", "-p", path).finally(() => Deno.remove(path));
  assert.match(text, /^ImageBase\s+0+400000$/m);
  assert.match(text, /^Subsystem\s+0+3\s/m);
  const expected = ["GetStdHandle", "ExitProcess"].map((name, i) => ({
    dll: "KERNEL32.dll",
    name,
    hint: 0,
    iatRva: writtenPe.iat - appBase + 8 * i,
  }));
  assert.deepEqual(objdumpImports(text), expected);
  const image = parsePe(bytes, "written.exe");
  assert.deepEqual(image.imports, expected);
  assert.equal(image.imageBase + image.entryRva, writtenPe.code);
  assert.deepEqual(image.sections.map((s) => [s.name, s.read, s.write, s.exec]), [
    [".text", true, false, true],
    [".idata", true, true, false],
  ]);
});

Deno.test("parsePe agrees with objdump and nm on a -nostdlib console executable", () => {
  const image = parsePe(consoleExe.bytes, "a.exe");
  checkAgainstObjdump(consoleExe, image);
  assert.equal(image.file, "a.exe");
  assert.equal(image.isDll, false);
  assert.equal(image.subsystem, 3);
  assert.deepEqual(
    image.imports.map((i) => `${i.dll}!${i.name}`),
    ["KERNEL32.dll!ExitProcess", "KERNEL32.dll!GetStdHandle", "KERNEL32.dll!WriteFile"],
  );
  assert.equal(image.tls, undefined);
  assert.ok(image.sections.some((s) => s.name === ".bss" && s.rawSize === 0 && s.virtualSize === 8192));
  for (const name of ["start", "initialized", "tally", "zeroed"]) {
    assert.equal(
      image.imageBase + image.symbols.find((s) => s.name === name)!.rva,
      consoleExe.symbols.get(name),
      name,
    );
  }
});

Deno.test("parsePe reads a DLL's exports: by name, by ordinal only, data and forwarders", () => {
  const image = parsePe(library.bytes, "lib.dll");
  checkAgainstObjdump(library, image);
  assert.equal(image.isDll, true);
  assert.equal(image.entryRva, 0, "a DLL without an entry point is accepted");
  assert.equal(image.exportDllName, "lib.dll");
  const text = image.sections.find((s) => s.name === ".text")!;
  const data = image.sections.find((s) => s.name === ".data")!;
  assert.deepEqual(image.exports, [
    { name: "HeapAllocFwd", ordinal: 2, forwarder: "NTDLL.RtlAllocateHeap" },
    { name: "add", ordinal: 3, rva: text.rva },
    { name: "counter", ordinal: 4, rva: data.rva },
    { ordinal: 5, rva: image.exports.find((e) => e.ordinal === 5)!.rva },
  ]);
  assert.ok(image.exports[3].rva! > text.rva && image.exports[3].rva! < text.rva + text.virtualSize);
});

Deno.test("parsePe reads imports by name with hints and by ordinal", () => {
  const image = parsePe(importer.bytes, "use.exe");
  checkAgainstObjdump(importer, image);
  const fromLibrary = image.imports.filter((i) => i.dll === "lib.dll");
  assert.deepEqual(fromLibrary.map(({ name, ordinal }) => ({ name, ordinal })), [
    { name: "add", ordinal: undefined },
    { name: undefined, ordinal: 5 },
  ]);
  assert.equal(fromLibrary[0].hint, 3, "the hint is add's index in lib.dll's sorted name table");
});

Deno.test("parsePe reads a CRT hello world: msvcrt and kernel32 imports, TLS callbacks, relocations", () => {
  const image = parsePe(hello.bytes, "hello.exe");
  checkAgainstObjdump(hello, image);
  assert.deepEqual(new Set(image.imports.map((i) => i.dll)), new Set(["KERNEL32.dll", "msvcrt.dll"]));
  assert.ok(image.imports.length > 30, `only ${image.imports.length} imports`);
  assert.ok(image.relocations.filter((r) => r.type === 10).length > 20, "too few DIR64 relocations");
  assert.ok(image.sections.some((s) => s.name === ".debug_info"), "long section names come from the string table");
  // mingw's tlssup.c: _tls_used = { &_tls_start, &_tls_end, &_tls_index, &__xl_a + 1, 0, 0 } and
  // the callbacks between __xl_a and __xl_z are __dyn_tls_init (.CRT$XLC) and __dyn_tls_dtor (.CRT$XLD).
  const rva = (name: string) => hello.symbols.get(name)! - image.imageBase;
  assert.deepEqual(image.tls, {
    callbackRvas: [rva("__dyn_tls_init"), rva("__dyn_tls_dtor")],
    indexRva: rva("_tls_index"),
    startRva: rva("_tls_start"),
    endRva: rva("_tls_end"),
    zeroFill: 0,
  });
  assert.equal(image.symbols.find((s) => s.name === "main")?.rva, rva("main"));
});

Deno.test("a stripped image has no symbols and may be marked relocations-stripped", () => {
  const image = parsePe(helloFixed.bytes, "hello_fixed.exe");
  checkAgainstObjdump(helloFixed, image);
  assert.deepEqual(image.symbols, []);
  assert.deepEqual(image.relocations, []);
  assert.equal(image.relocationsStripped, true);
  assert.equal(image.dynamicBase, false);
});

Deno.test("nearestPeSymbol names the function or object an address lies in", () => {
  const image = parsePe(consoleExe.bytes, "a.exe");
  const base = 0x400000;
  const rva = (name: string) => consoleExe.symbols.get(name)! - image.imageBase;
  // ld defines a dozen ___crt_* labels at the start of .text too; the function wins.
  assert.deepEqual(nearestPeSymbol(image, base, base + image.entryRva + 3), { name: "start", offset: 3 });
  assert.deepEqual(nearestPeSymbol(image, base, base + rva("tally") + 8), { name: "tally", offset: 8 });
  assert.equal(nearestPeSymbol(image, base, base + 0x10), undefined, "headers hold no symbol");
  assert.equal(nearestPeSymbol(image, base, base + image.sizeOfImage), undefined);
  assert.equal(nearestPeSymbol(image, base, base - 1), undefined);
});

Deno.test("loadPe at ImageBase lays out the image as objdump describes it and maps section protections", () => {
  const image = parsePe(helloLow.bytes, "hello_low.exe");
  const base = image.imageBase;
  ram.fill(0xaa);
  const pageTables = load(image, helloLow.bytes, base);
  const expected = expectedMemory(helloLow);
  const loaded = ram.subarray(base, base + image.sizeOfImage);
  const mismatch = loaded.findIndex((b, i) => b !== expected[i]);
  assert.equal(mismatch, -1, `byte at RVA 0x${mismatch.toString(16)} differs from the file image`);
  assert.equal(ram[base - 1], 0xaa, "loadPe wrote below the image");
  assert.equal(ram[base + image.sizeOfImage], 0xaa, "loadPe wrote above the image");

  const bss = image.sections.find((s) => s.name === ".bss")!;
  assert.ok(loaded.subarray(bss.rva, bss.rva + bss.virtualSize).every((b) => b === 0), ".bss is zero-filled");
  const text = image.sections.find((s) => s.name === ".text")!;
  assert.ok(loaded.subarray(text.rva + text.virtualSize, text.rva + text.virtualSize + 16).every((b) => b === 0));

  assert.deepEqual(pageTables.lookup(base), { write: false, exec: false }, "headers are read-only");
  for (const s of image.sections) {
    for (let a = base + s.rva; a < base + s.rva + s.virtualSize; a += PAGE) {
      assert.deepEqual(pageTables.lookup(a), { write: s.write, exec: s.exec }, `${s.name} page 0x${a.toString(16)}`);
    }
  }
  assert.deepEqual(pageTables.lookup(base + text.rva), { write: false, exec: true });
  assert.deepEqual(pageTables.lookup(base + bss.rva), { write: true, exec: false });
  assert.equal(pageTables.lookup(base + image.sizeOfImage), undefined);
});

Deno.test("loadPe elsewhere applies DIR64 relocations: each slot moves by the delta, nothing else changes", () => {
  const image = parsePe(helloLow.bytes, "hello_low.exe");
  const delta = 0x100000;
  load(image, helloLow.bytes, image.imageBase);
  const atImageBase = ram.slice(image.imageBase, image.imageBase + image.sizeOfImage);
  const base = image.imageBase + delta;
  load(image, helloLow.bytes, base);
  const moved = new DataView(ram.buffer, base, image.sizeOfImage);
  const original = new DataView(atImageBase.buffer);

  const slots = helloLow.relocations.filter((r) => r.type === 10).map((r) => r.rva);
  assert.ok(slots.length > 20);
  const inSlot = new Uint8Array(image.sizeOfImage);
  for (const rva of slots) {
    assert.equal(
      moved.getBigUint64(rva, true) - original.getBigUint64(rva, true),
      BigInt(delta),
      `slot 0x${rva.toString(16)}`,
    );
    inSlot.fill(1, rva, rva + 8);
  }
  for (let rva = 0; rva < image.sizeOfImage; rva++) {
    if (!inSlot[rva] && moved.getUint8(rva) !== atImageBase[rva]) {
      assert.fail(`byte at RVA 0x${rva.toString(16)} changed though no relocation covers it`);
    }
  }
});

Deno.test("a realistic image above 4 GiB loads relocated into the app region", () => {
  const image = parsePe(hello.bytes, "hello.exe");
  assert.ok(image.imageBase >= 2 ** 32);
  load(image, hello.bytes, appBase);
  const delta = BigInt(appBase) - BigInt(image.imageBase);
  const original = new DataView(expectedMemory(hello).buffer);
  for (const { rva } of hello.relocations.filter((r) => r.type === 10)) {
    const value = ramView.getBigUint64(appBase + rva, true);
    assert.equal(value, BigInt.asUintN(64, original.getBigUint64(rva, true) + delta));
    assert.ok(value >= appBase && value < appBase + image.sizeOfImage, `slot 0x${rva.toString(16)} points outside`);
  }
});

Deno.test("loadPe refuses images outside [appBase, limit) and moving a relocations-stripped image", () => {
  const image = parsePe(consoleExe.bytes, "a.exe");
  const { optional, coff } = layout(consoleExe.bytes);
  expectPeError(
    () => load(image, consoleExe.bytes, appBase - PAGE * 16),
    optional + 56,
    /image \[0x3f0000, 0x3f9000\) does not fit in the app region \[0x400000, /,
  );
  expectPeError(
    () => load(image, consoleExe.bytes, appBase, appBase + image.sizeOfImage - PAGE),
    optional + 56,
    /does not fit in the app region/,
  );
  const fixed = parsePe(helloFixed.bytes, "hello_fixed.exe");
  expectPeError(
    () => load(fixed, helloFixed.bytes, appBase),
    coff + 18,
    /relocations are stripped .* loads only at its ImageBase 0x140000000, not at 0x400000/,
  );
  assert.throws(() => load(image, consoleExe.bytes, appBase + 8), RangeError);
  assert.throws(() => loadPe(image, consoleExe.bytes, ram, new PageTables(ram), appBase, ram.length + 1), RangeError);
});

Deno.test("bindImports writes the resolved addresses into exactly the IAT slots", () => {
  const image = parsePe(helloLow.bytes, "hello_low.exe");
  const base = 0x800000;
  load(image, helloLow.bytes, base);
  const before = ram.slice(base, base + image.sizeOfImage);
  const addressOf = (imp: PeImport) => 0x7000_0000 + 16 * image.imports.indexOf(imp);
  bindImports(image, ram, base, addressOf);

  assert.deepEqual(image.imports.map((i) => i.iatRva), helloLow.imports.map((i) => i.iatRva));
  const inSlot = new Uint8Array(image.sizeOfImage);
  for (const imp of image.imports) {
    assert.equal(ramView.getBigUint64(base + imp.iatRva, true), BigInt(addressOf(imp)), `${imp.dll}!${imp.name}`);
    inSlot.fill(1, imp.iatRva, imp.iatRva + 8);
  }
  for (let rva = 0; rva < image.sizeOfImage; rva++) {
    if (!inSlot[rva] && ram[base + rva] !== before[rva]) assert.fail(`bindImports changed RVA 0x${rva.toString(16)}`);
  }
  assert.throws(() => bindImports(image, ram, base, () => -1), RangeError);
});

/**
 * a.exe with its one import descriptor pointed at a lookup table of `count`
 * copies of its first entry, placed in a grown .idata; the file ends there,
 * so the symbol table is dropped.
 */
function withManyImports(count: number): Uint8Array {
  const o = consoleExe;
  const { optional, coff, section, directoryRva } = layout(o.bytes);
  const idataIndex = o.sections.findIndex((s) => s.name === ".idata");
  const idata = o.sections[idataIndex];
  const descriptor = fileOffset(o, directoryRva(1));
  const extraRva = idata.rva + 0x100;
  const rawSize = 0x100 + 8 * (count + 1);
  const bytes = new Uint8Array(idata.fileOffset + rawSize);
  bytes.set(o.bytes.subarray(0, idata.fileOffset + idata.size));
  const view = new DataView(bytes.buffer);
  view.setUint32(coff + 8, 0, true); // the symbol table was cut off with the rest of the file
  view.setUint32(section(idataIndex) + 8, rawSize, true);
  view.setUint32(section(idataIndex) + 16, rawSize, true);
  view.setUint32(optional + 56, Math.ceil((idata.rva + rawSize) / PAGE) * PAGE, true);
  const firstThunk = view.getBigUint64(fileOffset(o, view.getUint32(descriptor, true)), true);
  for (let i = 0; i < count; i++) view.setBigUint64(idata.fileOffset + 0x100 + 8 * i, firstThunk, true);
  view.setUint32(descriptor, extraRva, true);
  return bytes;
}

Deno.test("malformed headers are refused with the offending offset", () => {
  const a = consoleExe;
  const { lfanew, coff, optional: opt, section } = layout(a.bytes);
  const data = a.sections.findIndex((s) => s.name === ".data");
  const last = a.sections.length - 1;
  const cases: [string, Uint8Array, number, RegExp][] = [
    ["truncated", a.bytes.slice(0, 40), 0, /40 bytes, shorter than the 64-byte DOS header/],
    ["MZ magic", corrupt(a, (_, b) => b[0] = 0x4e), 0, /bad magic: not an MZ executable/],
    ["e_lfanew in DOS header", corrupt(a, (v) => v.setUint32(0x3c, 0x20, true)), 0x3c, /inside the 64-byte DOS/],
    ["e_lfanew unaligned", corrupt(a, (v) => v.setUint32(0x3c, lfanew + 2, true)), 0x3c, /not 4-byte aligned/],
    [
      "e_lfanew past EOF",
      corrupt(a, (v) => v.setUint32(0x3c, (a.bytes.length - 8) & ~3, true)),
      0x3c,
      /PE signature and COFF file header .* outside the \d+-byte file/,
    ],
    ["PE signature", corrupt(a, (_, b) => b[lfanew + 1] = 0x58), lfanew, /PE signature is not "PE\\0\\0"/],
    [
      "i386",
      corrupt(a, (v) => v.setUint16(coff, 0x14c, true)),
      coff,
      /Machine 0x14c \(i386\) is not AMD64 \(0x8664\); pvx runs x86-64 only/,
    ],
    ["no sections", corrupt(a, (v) => v.setUint16(coff + 2, 0, true)), coff + 2, /NumberOfSections is 0/],
    ["97 sections", corrupt(a, (v) => v.setUint16(coff + 2, 97, true)), coff + 2, /97 exceeds the PE limit of 96/],
    ["section table past EOF", a.bytes.slice(0, 0x200), coff + 2, /section table .* outside the 512-byte file/],
    [
      "object file",
      corrupt(a, (v) => v.setUint16(coff + 18, v.getUint16(coff + 18, true) & ~2, true)),
      coff + 18,
      /lack IMAGE_FILE_EXECUTABLE_IMAGE/,
    ],
    [
      "optional header too small",
      corrupt(a, (v) => v.setUint16(coff + 16, 100, true)),
      coff + 16,
      /SizeOfOptionalHeader 100 is smaller than the 112-byte PE32\+ fixed part/,
    ],
    [
      "optional header too small for its directories",
      corrupt(a, (v) => v.setUint16(coff + 16, 200, true)),
      coff + 16,
      /SizeOfOptionalHeader 200 cannot hold the fixed part and 16 data directories/,
    ],
    [
      "optional header past EOF",
      corrupt(a, (v) => v.setUint16(coff + 16, 0xfff0, true)),
      coff + 16,
      /optional header .* outside the/,
    ],
    ["PE32", corrupt(a, (v) => v.setUint16(opt, 0x10b, true)), opt, /32-bit PE, pvx runs x86-64 only/],
    ["ROM magic", corrupt(a, (v) => v.setUint16(opt, 0x107, true)), opt, /magic 0x107 is not PE32\+/],
    ["17 directories", corrupt(a, (v) => v.setUint32(opt + 108, 17, true)), opt + 108, /17 exceeds the 16 data/],
    [
      "SectionAlignment not a power of two",
      corrupt(a, (v) => v.setUint32(opt + 32, 0x1001, true)),
      opt + 32,
      /SectionAlignment 0x1001 is not a power of two/,
    ],
    [
      "FileAlignment not a power of two",
      corrupt(a, (v) => v.setUint32(opt + 36, 0x201, true)),
      opt + 36,
      /FileAlignment 0x201 is not a power of two/,
    ],
    [
      "SectionAlignment below FileAlignment",
      corrupt(a, (v) => v.setUint32(opt + 36, 0x2000, true)),
      opt + 32,
      /SectionAlignment 0x1000 is below FileAlignment 0x2000/,
    ],
    [
      "FileAlignment below 512",
      corrupt(a, (v) => v.setUint32(opt + 36, 0x100, true)),
      opt + 36,
      /FileAlignment 0x100 is outside \[0x200, 0x10000\]/,
    ],
    [
      "small alignments that differ",
      corrupt(a, (v) => {
        v.setUint32(opt + 32, 0x200, true);
        v.setUint32(opt + 36, 0x100, true);
      }),
      opt + 36,
      /FileAlignment 0x100 must equal SectionAlignment 0x200 below the page size/,
    ],
    [
      "SizeOfImage unaligned",
      corrupt(a, (v) => v.setUint32(opt + 56, 0x9001, true)),
      opt + 56,
      /SizeOfImage 0x9001 is not a non-zero multiple of SectionAlignment 0x1000/,
    ],
    [
      "SizeOfImage over 1 GiB",
      corrupt(a, (v) => v.setUint32(opt + 56, 0x4000_1000, true)),
      opt + 56,
      /SizeOfImage 0x40001000 exceeds 1024 MiB/,
    ],
    [
      "ImageBase unaligned",
      corrupt(a, (v) => v.setBigUint64(opt + 24, 0x1_4000_1000n, true)),
      opt + 24,
      /ImageBase 0x140001000 is not a multiple of 64 KiB/,
    ],
    [
      "ImageBase beyond user space",
      corrupt(a, (v) => v.setBigUint64(opt + 24, 1n << 47n, true)),
      opt + 24,
      /beyond the 47-bit user address space/,
    ],
    [
      "SizeOfHeaders below the section table",
      corrupt(a, (v) => v.setUint32(opt + 60, 0x100, true)),
      opt + 60,
      /SizeOfHeaders 0x100 does not cover the section table ending at 0x/,
    ],
    [
      "SizeOfHeaders past EOF",
      corrupt(a, (v) => v.setUint32(opt + 60, 0x10000, true)),
      opt + 60,
      /headers \[0x0, 0x10000\) lies outside the \d+-byte file/,
    ],
    [
      "SizeOfHeaders beyond SizeOfImage",
      corrupt(a, (v) => {
        v.setUint32(opt + 56, 0x1000, true);
        v.setUint32(opt + 60, 0x1200, true);
      }),
      opt + 60,
      /SizeOfHeaders 0x1200 exceeds SizeOfImage 0x1000/,
    ],
    [
      "GUI subsystem",
      corrupt(a, (v) => v.setUint16(opt + 68, 2, true)),
      opt + 68,
      /GUI programs are not supported: pvx runs console apps/,
    ],
    [
      "native subsystem",
      corrupt(a, (v) => v.setUint16(opt + 68, 1, true)),
      opt + 68,
      /Subsystem 1 is not the Windows console subsystem/,
    ],
    [
      "section RVA unaligned",
      corrupt(a, (v) => v.setUint32(section(1) + 12, a.sections[1].rva + 8, true)),
      section(1) + 12,
      /section \.data RVA 0x2008 is not a multiple of SectionAlignment/,
    ],
    [
      "section over the headers",
      corrupt(a, (v) => v.setUint32(section(0) + 12, 0, true)),
      section(0) + 12,
      /section \.text RVA 0x0 overlaps the headers/,
    ],
    [
      "sections out of order",
      corrupt(a, (v) => v.setUint32(section(1) + 12, a.sections[0].rva, true)),
      section(1) + 12,
      /section \.data at RVA 0x1000 overlaps or precedes section \.text/,
    ],
    [
      "section beyond SizeOfImage",
      corrupt(a, (v) => v.setUint32(section(last) + 8, 0x10000, true)),
      section(last) + 8,
      /section \.idata \[0x8000, 0x18000\) extends beyond SizeOfImage 0x9000/,
    ],
    [
      "raw data past EOF",
      corrupt(a, (v) => v.setUint32(section(0) + 20, Math.ceil(a.bytes.length / 0x200) * 0x200, true)),
      section(0) + 20,
      /section \.text raw data .* outside the \d+-byte file/,
    ],
    [
      "raw data unaligned",
      corrupt(a, (v) => v.setUint32(section(0) + 20, a.sections[0].fileOffset + 4, true)),
      section(0) + 20,
      /PointerToRawData 0x404 is not a multiple of FileAlignment/,
    ],
    [
      "long section name outside the string table",
      corrupt(a, (_, b) => b.set(new TextEncoder().encode("/999999\0"), section(0))),
      section(0),
      /section name at string table offset 999999 lies outside the \d+-byte string table/,
    ],
    [
      "long section name without a string table",
      corrupt(hello, (v) => v.setUint32(layout(hello.bytes).coff + 8, 0, true)),
      layout(hello.bytes).section(hello.sections.findIndex((s) => s.name === ".debug_aranges")),
      /refers to a string table, but the file has no symbol table/,
    ],
    [
      "entry outside code",
      corrupt(a, (v) => v.setUint32(opt + 16, a.sections[data].rva, true)),
      opt + 16,
      /entry point RVA 0x2000 is not inside an executable section/,
    ],
    [
      "exe without entry point",
      corrupt(a, (v) => v.setUint32(opt + 16, 0, true)),
      opt + 16,
      /entry point RVA 0x0 is not inside an executable section/,
    ],
  ];
  checkCases(cases);
});

Deno.test("malformed import tables are refused with the offending offset", () => {
  const a = consoleExe;
  const { directory, directoryRva } = layout(a.bytes);
  const importRva = directoryRva(1);
  const descriptor = fileOffset(a, importRva);
  const lookupRva = new DataView(a.bytes.buffer).getUint32(descriptor, true);
  const lookup = fileOffset(a, lookupRva);
  const idata = a.sections.find((s) => s.name === ".idata")!;
  const idataIndex = a.sections.indexOf(idata);
  const dllName = fileOffset(a, new DataView(a.bytes.buffer).getUint32(descriptor + 12, true));
  const cases: [string, Uint8Array, number, RegExp][] = [
    [
      "directory outside the image",
      corrupt(a, (v) => v.setUint32(directory(1), 0x8ff0, true)),
      directory(1),
      /import directory \[0x8ff0, 0x90a0\) lies outside the image \(SizeOfImage 0x9000\)/,
    ],
    [
      "directory between headers and sections",
      corrupt(a, (v) => v.setUint32(directory(1), 0x800, true)),
      directory(1),
      /import descriptor 0 at RVA 0x800 lies in no section/,
    ],
    [
      "directory in .bss",
      corrupt(a, (v) => v.setUint32(directory(1), a.sections.find((s) => s.name === ".bss")!.rva, true)),
      directory(1),
      /import descriptor 0 \[0x6000, 0x6014\) runs past the file data of \.bss/,
    ],
    [
      "descriptor without a name",
      corrupt(a, (v) => v.setUint32(descriptor + 12, 0, true)),
      descriptor + 12,
      /import descriptor 0 has no DLL name/,
    ],
    [
      "descriptor without an IAT",
      corrupt(a, (v) => v.setUint32(descriptor + 16, 0, true)),
      descriptor + 16,
      /import descriptor 0 has no IAT/,
    ],
    [
      "DLL name not NUL-terminated",
      corrupt(a, (_, b) => b.fill(0x41, dllName, idata.fileOffset + idata.size)),
      descriptor + 12,
      /DLL name at RVA 0x[0-9a-f]+ is not NUL-terminated inside the file data of \.idata/,
    ],
    [
      "thunk array not terminated",
      corrupt(a, (v, b) => {
        // Put a one-entry lookup table at the end of .idata's file data, with zero-filled memory after it.
        v.setUint32(layout(b).section(idataIndex) + 8, idata.size + 16, true);
        v.setUint32(layout(b).section(idataIndex) + 16, idata.size + 8, true);
        v.setBigUint64(idata.fileOffset + idata.size, v.getBigUint64(lookup, true), true);
        v.setUint32(descriptor, idata.rva + idata.size, true);
      }),
      descriptor,
      /import lookup entry 1 of KERNEL32\.dll \[0x[0-9a-f]+, 0x[0-9a-f]+\) runs past the file data of \.idata/,
    ],
    [
      "ordinal with reserved bits",
      corrupt(a, (v) => v.setBigUint64(lookup, 0x8000_0001_0000_0005n, true)),
      lookup,
      /import 0 of KERNEL32\.dll is by ordinal but sets reserved bits 16-62/,
    ],
    [
      "name with reserved bits",
      corrupt(a, (v) => v.setUint32(lookup + 4, 1, true)),
      lookup,
      /import 0 of KERNEL32\.dll is by name but sets reserved bits 31-62/,
    ],
    [
      "hint/name entry outside the image",
      corrupt(a, (v) => v.setUint32(lookup, 0x7fff_fff0, true)),
      lookup,
      /hint\/name entry of import 0 of KERNEL32\.dll \[0x7ffffff0, 0x7ffffff2\) lies outside the image/,
    ],
    [
      "IAT slot outside the image",
      corrupt(a, (v) => v.setUint32(descriptor + 16, 0x8ffc, true)),
      descriptor + 16,
      /IAT slot 0 of KERNEL32\.dll \[0x8ffc, 0x9004\) lies outside the image/,
    ],
    [
      "10001 imports",
      withManyImports(10_001),
      consoleExe.sections.find((s) => s.name === ".idata")!.fileOffset + 0x100 + 8 * 10_000,
      /more than 10000 imports/,
    ],
  ];
  checkCases(cases);
  assert.equal(parsePe(withManyImports(10_000), "many").imports.length, 10_000);
});

Deno.test("malformed export tables are refused with the offending offset", () => {
  const d = library;
  const { directory, directoryRva } = layout(d.bytes);
  const exportDirectory = fileOffset(d, directoryRva(0));
  const field = (offset: number) => new DataView(d.bytes.buffer).getUint32(exportDirectory + offset, true);
  const addresses = fileOffset(d, field(28));
  const namePointers = fileOffset(d, field(32));
  const ordinals = fileOffset(d, field(36));
  // "NTDLL.RtlAllocateHeap", the forwarder of ordinal 2 (the first address table entry).
  const forwarderDot = fileOffset(d, new DataView(d.bytes.buffer).getUint32(addresses, true)) + "NTDLL".length;
  const cases: [string, Uint8Array, number, RegExp][] = [
    [
      "directory smaller than its header",
      corrupt(d, (v) => v.setUint32(directory(0) + 4, 20, true)),
      directory(0) + 4,
      /export directory size 20 is smaller than its 40-byte header/,
    ],
    [
      "too many functions",
      corrupt(d, (v) => v.setUint32(exportDirectory + 20, 0x10001, true)),
      exportDirectory + 20,
      /65537 exported functions exceed 65536/,
    ],
    [
      "too many names",
      corrupt(d, (v) => v.setUint32(exportDirectory + 24, 0x10001, true)),
      exportDirectory + 24,
      /65537 exported names exceed 65536/,
    ],
    [
      "ordinals beyond 16 bits",
      corrupt(d, (v) => v.setUint32(exportDirectory + 16, 0xfffe, true)),
      exportDirectory + 16,
      /ordinals 65534\.\.65537 do not fit in 16 bits/,
    ],
    [
      "address table outside the image",
      corrupt(d, (v) => v.setUint32(exportDirectory + 28, 0xffff_fff0, true)),
      exportDirectory + 28,
      /export address table .* lies outside the image/,
    ],
    [
      "name pointer outside the image",
      corrupt(d, (v) => v.setUint32(namePointers, 0x7fff_0000, true)),
      namePointers,
      /export name 0 .* lies outside the image/,
    ],
    [
      "ordinal index beyond the address table",
      corrupt(d, (v) => v.setUint16(ordinals, 99, true)),
      ordinals,
      /export "HeapAllocFwd" has ordinal index 99, beyond the 4-entry export address table/,
    ],
    [
      "export outside the image",
      corrupt(d, (v) => v.setUint32(addresses + 4, 0x7fff_0000, true)),
      addresses + 4,
      /export ordinal 3 \[0x7fff0000, 0x7fff0001\) lies outside the image/,
    ],
    [
      "named export at address 0",
      corrupt(d, (v) => v.setUint32(addresses + 4, 0, true)),
      addresses + 4,
      /export "add" \(ordinal 3\) has address 0/,
    ],
    [
      "forwarder without a dot",
      corrupt(d, (_, b) => b[forwarderDot] = 0x5f),
      addresses,
      /forwarder "NTDLL_RtlAllocateHeap" of export ordinal 2 is not of the form DLL\.name/,
    ],
  ];
  checkCases(cases);
});

Deno.test("malformed base relocations, TLS directories and symbol tables are refused with the offending offset", () => {
  const h = hello;
  const { directory, directoryRva, symbolTable, symbolCount, coff } = layout(h.bytes);
  const relocations = fileOffset(h, directoryRva(5));
  const relocationSize = new DataView(h.bytes.buffer).getUint32(directory(5) + 4, true);
  const tls = fileOffset(h, directoryRva(9));
  const callbacksVa = new DataView(h.bytes.buffer).getBigUint64(tls + 24, true);
  const callbacks = fileOffset(h, Number(callbacksVa) - hexField(h, "ImageBase"));
  const dataRva = h.sections.find((s) => s.name === ".data")!.rva;
  const stringTable = symbolTable + 18 * symbolCount;
  const primarySymbols = primarySymbolOffsets(h.bytes, symbolTable, symbolCount);
  const lastSymbol = primarySymbols[primarySymbols.length - 1];
  const firstExternal = primarySymbols.find((at) => {
    const section = new DataView(h.bytes.buffer).getUint16(at + 12, true);
    return h.bytes[at + 16] === 2 && section > 0 && section < 0x8000;
  })!;
  const opt = layout(h.bytes).optional;
  const imageEnd = hexField(h, "ImageBase") + hexField(h, "SizeOfImage");
  const cases: [string, Uint8Array, number, RegExp][] = [
    [
      "SizeOfBlock below 8",
      corrupt(h, (v) => v.setUint32(relocations + 4, 4, true)),
      relocations + 4,
      /SizeOfBlock 4 is not an even number of at least 8/,
    ],
    [
      "odd SizeOfBlock",
      corrupt(h, (v) => v.setUint32(relocations + 4, 13, true)),
      relocations + 4,
      /SizeOfBlock 13 is not an even number/,
    ],
    [
      "block past the directory",
      corrupt(h, (v) => v.setUint32(relocations + 4, relocationSize + 8, true)),
      relocations + 4,
      /base relocation block of \d+ bytes runs past the end of the directory/,
    ],
    [
      "trailing bytes in the directory",
      corrupt(h, (v) => v.setUint32(directory(5) + 4, relocationSize + 4, true)),
      directory(5) + 4,
      /base relocation directory ends with 4 bytes, too few for a block/,
    ],
    [
      "HIGHLOW relocation",
      corrupt(h, (v) => v.setUint16(relocations + 8, (3 << 12) | (v.getUint16(relocations + 8, true) & 0xfff), true)),
      relocations + 8,
      /base relocation type 3 at RVA 0x[0-9a-f]+ is not supported/,
    ],
    [
      "relocation target outside the image",
      corrupt(h, (v) => v.setUint32(relocations, hexField(h, "SizeOfImage") - 4, true)),
      relocations + 8,
      /DIR64 relocation target .* lies outside the image/,
    ],
    [
      "more than a million relocations",
      corrupt(h, (v) => {
        v.setUint32(opt + 56, 0x40_0000, true);
        v.setUint32(directory(5) + 4, 0x30_0000, true);
        v.setUint32(relocations + 4, 8 + 2 * 1_000_001, true);
      }),
      relocations + 4,
      /more than 1000000 base relocations/,
    ],
    [
      "TLS directory too small",
      corrupt(h, (v) => v.setUint32(directory(9) + 4, 24, true)),
      directory(9) + 4,
      /TLS directory size 24 is smaller than its 40-byte header/,
    ],
    [
      "TLS template outside the image",
      corrupt(h, (v) => v.setBigUint64(tls, 0n, true)),
      tls,
      new RegExp(
        `TLS StartAddressOfRawData VA 0x0 is not inside the image \\[0x140000000, 0x${imageEnd.toString(16)}\\)`,
      ),
    ],
    [
      "TLS template ends before it starts",
      corrupt(h, (v) => v.setBigUint64(tls + 8, v.getBigUint64(tls, true) - 1n, true)),
      tls + 8,
      /TLS EndAddressOfRawData precedes StartAddressOfRawData/,
    ],
    [
      "TLS index outside the image",
      corrupt(h, (v) => v.setBigUint64(tls + 16, BigInt(imageEnd - 2), true)),
      tls + 16,
      new RegExp(`TLS AddressOfIndex VA 0x${(imageEnd - 2).toString(16)} is not inside the image`),
    ],
    [
      "TLS callback in data",
      corrupt(h, (v) => v.setBigUint64(callbacks, BigInt(hexField(h, "ImageBase") + dataRva), true)),
      callbacks,
      new RegExp(`TLS callback 0 at RVA 0x${dataRva.toString(16)} is not in an executable section`),
    ],
    [
      "symbol table past EOF",
      corrupt(h, (v) => v.setUint32(coff + 8, h.bytes.length - 18, true)),
      coff + 8,
      /COFF symbol table .* outside the \d+-byte file/,
    ],
    [
      "string table size too small",
      corrupt(h, (v) => v.setUint32(stringTable, 2, true)),
      stringTable,
      /COFF string table size 2 is smaller than its own 4-byte size field/,
    ],
    [
      "auxiliary records past the symbol table",
      corrupt(h, (v) => v.setUint8(lastSymbol + 17, 1)),
      lastSymbol + 17,
      /symbol \d+'s auxiliary records run past the \d+-entry symbol table/,
    ],
    [
      "symbol in a section that does not exist",
      corrupt(h, (v) => v.setUint16(firstExternal + 12, 50, true)),
      firstExternal + 12,
      /symbol \d+ is in section 50, but there are 19/,
    ],
    [
      "symbol beyond its section",
      corrupt(h, (v) => v.setUint32(firstExternal + 8, 0x100000, true)),
      firstExternal + 8,
      /symbol \d+ value 0x100000 lies beyond the end of section/,
    ],
    [
      "long symbol name outside the string table",
      corrupt(h, (v) => {
        v.setUint32(firstExternal, 0, true);
        v.setUint32(firstExternal + 4, 0x7fff_ffff, true);
      }),
      firstExternal + 4,
      /symbol \d+ name at string table offset 2147483647 lies outside/,
    ],
  ];
  checkCases(cases);
});

/** File offsets of the symbol records that are not auxiliary records, walking the raw table. */
function primarySymbolOffsets(bytes: Uint8Array, table: number, count: number): number[] {
  const offsets: number[] = [];
  for (let i = 0; i < count; i += 1 + bytes[table + 18 * i + 17]) offsets.push(table + 18 * i);
  return offsets;
}

function checkCases(cases: [string, Uint8Array, number, RegExp][]): void {
  for (const [name, bytes, offset, reason] of cases) {
    try {
      expectPeError(() => parsePe(bytes, name), offset, reason);
    } catch (e) {
      throw new Error(`case "${name}": ${(e as Error).message}`, { cause: e });
    }
  }
}

Deno.test("a DLL's subsystem is not checked, and its entry point may be 0", () => {
  const { optional } = layout(library.bytes);
  const gui = corrupt(library, (v) => v.setUint16(optional + 68, 2, true));
  assert.equal(parsePe(gui, "gui.dll").subsystem, 2);
  const data = library.sections.find((s) => s.name === ".data")!;
  const withEntry = corrupt(library, (v) => v.setUint32(optional + 16, data.rva, true));
  expectPeError(
    () => parsePe(withEntry, "lib.dll"),
    optional + 16,
    new RegExp(`entry point RVA 0x${data.rva.toString(16)} is not inside an executable`),
  );
});

/** Parse, and load and bind if parsing succeeded: any step may refuse the input, but only with a PeError. */
function parseAndLoadRefuseOnlyWithPeError(bytes: Uint8Array): void {
  let image: PeImage;
  try {
    image = parsePe(bytes, "fuzz");
  } catch (e) {
    if (e instanceof PeError) return;
    throw e;
  }
  for (const [i, s] of image.sections.entries()) {
    assert.ok(s.rawSize <= s.virtualSize && s.rawOffset + s.rawSize <= bytes.length, `section ${i} escapes the file`);
    assert.ok(s.rva + s.virtualSize <= image.sizeOfImage, `section ${i} escapes the image`);
    if (i > 0) {
      const previous = image.sections[i - 1];
      assert.ok(previous.rva + previous.virtualSize <= s.rva, `section ${i} overlaps`);
    }
  }
  const executable = (rva: number) => image.sections.some((s) => s.exec && rva >= s.rva && rva < s.rva + s.virtualSize);
  assert.ok(executable(image.entryRva) || (image.isDll && image.entryRva === 0), "entry point outside code");
  assert.ok(image.imports.every((i) => i.iatRva + 8 <= image.sizeOfImage), "IAT slot outside the image");
  assert.ok(image.relocations.every((r) => r.type === 0 || (r.type === 10 && r.rva + 8 <= image.sizeOfImage)));
  assert.ok(image.tls?.callbackRvas.every(executable) ?? true, "TLS callback outside code");
  assert.ok(image.sizeOfImage <= 1024 * MiB);

  const inRam = image.imageBase >= appBase && image.imageBase + image.sizeOfImage <= ram.length;
  const base = inRam ? image.imageBase : appBase;
  try {
    load(image, bytes, base);
  } catch (e) {
    if (e instanceof PeError) return;
    throw e;
  }
  bindImports(image, ram, base, (imp) => 0x10_0000 + image.imports.indexOf(imp));
  nearestPeSymbol(image, base, base + image.entryRva);
}

/** File offsets of the words parsePe interprets: headers, section table and the start of each data directory. */
function interpretedWords(o: Oracle): number[] {
  const { coff, sectionTable, directory, directoryRva } = layout(o.bytes);
  const words = (start: number, length: number) => Array.from({ length: length / 4 }, (_, i) => start + 4 * i);
  const structures = [0, 1, 5, 9].filter((i) => directoryRva(i) !== 0).flatMap((i) => {
    const start = fileOffset(o, directoryRva(i));
    return words(
      start,
      Math.min(Math.floor(new DataView(o.bytes.buffer).getUint32(directory(i) + 4, true) / 4) * 4, 64),
    );
  });
  return [0x3c, ...words(coff, sectionTable - coff + 40 * o.sections.length), ...structures];
}

function fuzzMutations(o: Oracle): void {
  const original = o.bytes;
  const image = parsePe(original, o.path);
  const headersEnd = image.sizeOfHeaders;
  // Most of a file is code and data the parser never interprets, so aim most
  // mutations at the headers and the directory structures; noBias spreads them
  // instead of piling them onto the first bytes.
  const interpreted = interpretedWords(o);
  const byteMutation = fc.tuple(
    fc.oneof(
      fc.noBias(fc.nat({ max: headersEnd - 1 })),
      fc.noBias(fc.constantFrom(...interpreted)).chain((at) => fc.integer({ min: at, max: at + 3 })),
      fc.noBias(fc.nat({ max: original.length - 1 })),
    ),
    fc.integer({ min: 1, max: 255 }),
    fc.constant(1),
    fc.boolean(),
  );
  const boundaryValues = [
    0,
    1,
    2,
    8,
    0x20b,
    0x8664,
    PAGE,
    0x200,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    original.length,
    image.sizeOfImage,
    image.sizeOfImage - 1,
    image.sizeOfImage - 8,
    image.imageBase % 2 ** 32,
  ];
  const wordMutation = fc.tuple(
    fc.noBias(fc.constantFrom(...interpreted)),
    fc.oneof(fc.constantFrom(...boundaryValues), fc.nat()),
    fc.constant(4),
    fc.constant(false),
  );
  fc.assert(
    fc.property(
      fc.array(fc.oneof(byteMutation, { arbitrary: wordMutation, weight: 2 }), { minLength: 1, maxLength: 4 }),
      // One case in five truncates; truncating more would mostly exercise the symbol table check at the end.
      fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, fc.nat({ max: original.length })),
      (mutations, truncateTo) => {
        const bytes = original.slice(0, truncateTo ?? original.length);
        for (const [at, value, width, flip] of mutations) {
          for (let i = 0; i < width && at + i < bytes.length; i++) {
            const byte = (value >>> (8 * i)) & 0xff;
            bytes[at + i] = flip ? bytes[at + i] ^ byte : byte;
          }
        }
        parseAndLoadRefuseOnlyWithPeError(bytes);
      },
    ),
    { numRuns: fuzzRuns },
  );
}

for (const o of [consoleExe, library, importer, hello, helloLow]) {
  const name = o.path.slice(dir.length + 1);
  Deno.test(`fuzz: mutated and truncated ${name} only ever fails with PeError`, () => fuzzMutations(o));
}

Deno.test("fuzz: random bytes behind a valid MZ/PE prefix only ever fail with PeError", () => {
  // Random bytes never get past "MZ"; borrow real prefixes so the parser reaches
  // the COFF header, the optional header, or the sections and directories.
  const { coff, optional, sectionTable } = layout(consoleExe.bytes);
  const prefixes = [coff + 20, optional + 2, sectionTable, sectionTable + 40 * consoleExe.sections.length]
    .map((end) => consoleExe.bytes.subarray(0, end));
  const withPrefix = fc.tuple(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 4096 })).map(
    ([prefix, random]) => {
      const bytes = new Uint8Array(prefix.length + random.length);
      bytes.set(prefix);
      bytes.set(random, prefix.length);
      return bytes;
    },
  );
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 1024 }), withPrefix), parseAndLoadRefuseOnlyWithPeError),
    { numRuns: fuzzRuns },
  );
});
