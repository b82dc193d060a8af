// The ELF loader against real gcc output (checked against readelf and nm),
// hand-corrupted copies of it, and fuzzing: whatever the bytes, parseElf and
// loadElf may only succeed or throw ElfError.

import assert from "node:assert/strict";
import fc from "fast-check";
import { codeAddress, ElfError, type ElfImage, loadElf, nearestSymbol, parseElf, writeElf } from "../guest/elf.ts";
import { appBase, MiB, PAGE, pageUp } from "../abi/memory_map.ts";
import { PageTables } from "../guest/paging.ts";

const fuzzRuns = Number(Deno.env.get("PVX_FUZZ_RUNS") ?? "200");
if (!Number.isInteger(fuzzRuns) || fuzzRuns < 1) {
  throw new Error(`PVX_FUZZ_RUNS must be a positive integer, got "${Deno.env.get("PVX_FUZZ_RUNS")}"`);
}

const staticSource = `
long initialized[4] = {1, 2, 3, 4};
volatile long counter;
char big[1 << 20];
void _start(void) { for (;;) counter += initialized[0] + big[counter & 0xfffff]; }
`;
const dynamicSource = `
int puts(const char *);
int main(void) { puts("hello"); return 0; }
`;

async function run(command: string, ...args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(command, { args }).output();
  const decoder = new TextDecoder();
  if (!success) throw new Error(`${command} ${args.join(" ")} failed:\n${decoder.decode(stderr)}`);
  return decoder.decode(stdout);
}

interface ReadelfPhdr {
  /** File offset of the program header itself. */
  at: number;
  type: string;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
  flags: string;
}

/** What readelf says about a file's headers: an oracle independent of guest/elf.ts. */
interface ReadelfLayout {
  entry: number;
  /** In table order. */
  phdrs: ReadelfPhdr[];
  shoff: number;
  shnum: number;
  /** File offsets of the .symtab section header and of the first defined FUNC or OBJECT symbol. */
  symtab: { at: number; firstSymbolAt: number };
}

const numberField = (text: string, pattern: RegExp) => Number(pattern.exec(text)![1]);

async function readelfLayout(path: string): Promise<ReadelfLayout> {
  const header = await run("readelf", "-hW", path);
  const phoff = numberField(header, /Start of program headers:\s+(\d+)/);
  const shoff = numberField(header, /Start of section headers:\s+(\d+)/);
  const rows = (await run("readelf", "-lW", path)).matchAll(
    /^\s+(\w+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+([RWE ]+?)\s+0x[0-9a-f]+$/gm,
  );
  const symtab = /^\s+\[\s*(\d+)\]\s+\.symtab\s+SYMTAB\s+[0-9a-f]+\s+([0-9a-f]+)/m.exec(
    await run("readelf", "-SW", path),
  );
  const firstSymbol = /^\s+(\d+):\s+[0-9a-f]+\s+\S+\s+(?:FUNC|OBJECT)\s+\S+\s+\S+\s+\d+\s/m.exec(
    await run("readelf", "-sW", path),
  );
  if (!symtab || !firstSymbol) throw new Error(`${path}: readelf lists no .symtab or no defined symbol in it`);
  return {
    entry: numberField(header, /Entry point address:\s+(0x[0-9a-f]+)/),
    phdrs: [...rows].map((m, i) => ({
      at: phoff + i * 56,
      type: m[1],
      offset: Number(m[2]),
      vaddr: Number(m[3]),
      filesz: Number(m[4]),
      memsz: Number(m[5]),
      flags: m[6],
    })),
    shoff,
    shnum: numberField(header, /Number of section headers:\s+(\d+)/),
    symtab: {
      at: shoff + Number(symtab[1]) * 64,
      firstSymbolAt: Number("0x" + symtab[2]) + Number(firstSymbol[1]) * 24,
    },
  };
}

async function compile(dir: string, name: string, source: string, flags: string[]): Promise<string> {
  await Deno.writeTextFile(`${dir}/${name}.c`, source);
  await run("gcc", ...flags, "-o", `${dir}/${name}`, `${dir}/${name}.c`);
  return `${dir}/${name}`;
}

const dir = await Deno.makeTempDir({ prefix: "pvx_elf_test_" });
const staticFlags = ["-static", "-nostdlib", "-ffreestanding", "-fno-pie", "-no-pie", "-O1"];
const guestPath = await compile(dir, "guest", staticSource, staticFlags);
// Tiny page sizes and no separate code make ld start data on the page where text ends.
const sharedPath = await compile(dir, "shared", staticSource, [
  ...staticFlags,
  "-Wl,-z,noseparate-code",
  "-Wl,-z,max-page-size=0x10",
  "-Wl,-z,common-page-size=0x10",
]);
const dynamicPath = await compile(dir, "dyn", dynamicSource, []);
const guest = await Deno.readFile(guestPath);
const shared = await Deno.readFile(sharedPath);
const dynamic = await Deno.readFile(dynamicPath);
const layout = await readelfLayout(guestPath);
const dynamicPhdrs = (await readelfLayout(dynamicPath)).phdrs;
const nmStart = Number("0x" + /^([0-9a-f]+) T _start$/m.exec(await run("nm", guestPath))![1]);
await Deno.remove(dir, { recursive: true });

const guestPhdrs = layout.phdrs;
const guestLoads = guestPhdrs.filter((p) => p.type === "LOAD");
const textLoad = guestLoads.find((p) => p.flags.includes("E"))!;
const dataLoad = guestLoads.find((p) => p.flags.includes("W"))!;

/** One 16 MiB guest RAM reused by every load; PageTables re-zeroes each table it allocates. */
const ram = new Uint8Array(16 * MiB);

function load(image: ElfImage, bytes: Uint8Array, limit = ram.length) {
  const pageTables = new PageTables(ram);
  return { pageTables, ...loadElf(image, bytes, ram, pageTables, limit) };
}

/** A copy of the compiled guest with `change` applied to it. */
function corrupt(change: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
  const bytes = guest.slice();
  change(new DataView(bytes.buffer), bytes);
  return bytes;
}

function expectElfError(action: () => unknown, offset: number, reason: RegExp): void {
  let error: unknown;
  try {
    action();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ElfError, `expected an ElfError, got ${error}`);
  assert.equal(error.offset, offset, `wrong offset in: ${error.message}`);
  assert.match(error.reason, reason);
  assert.equal(error.message, `${error.file}: offset 0x${offset.toString(16)}: ${error.reason}`);
}

Deno.test("parseElf agrees with readelf and nm on a gcc static executable", () => {
  assert.ok(textLoad && dataLoad, "gcc produced no separate text and data segments");
  const image = parseElf(guest, "guest");
  assert.equal(image.file, "guest");
  assert.equal(image.entry, layout.entry);
  assert.deepEqual(
    image.segments,
    guestLoads.map((p) => ({
      vaddr: p.vaddr,
      memsz: p.memsz,
      fileOffset: p.offset,
      filesz: p.filesz,
      write: p.flags.includes("W"),
      exec: p.flags.includes("E"),
    })),
  );
  assert.deepEqual(image.phdr, { offset: guestPhdrs[0].at, entsize: 56, count: guestPhdrs.length });
  assert.equal(image.start, guestLoads[0].vaddr);
  assert.equal(image.end, pageUp(dataLoad.vaddr + dataLoad.memsz));

  const start = image.symbols.find((s) => s.name === "_start");
  assert.equal(start?.address, nmStart);
  assert.ok(image.symbols.some((s) => s.name === "big" && s.size === 1 << 20));
  assert.ok(image.symbols.some((s) => s.name === "initialized" && s.size === 32));
  const addresses = image.symbols.map((s) => s.address);
  assert.deepEqual(addresses, addresses.toSorted((a, b) => a - b));
});

Deno.test("writeElf makes an executable that readelf and parseElf read alike: one R E segment, entered at its code", async () => {
  const code = new Uint8Array([0x0f, 0x0b]); // ud2
  const path = await Deno.makeTempFile({ suffix: ".elf" });
  try {
    await Deno.writeFile(path, writeElf(code));
    const headers = await run("readelf", "-hlW", path);
    assert.equal(numberField(headers, /Entry point address:\s+(0x[0-9a-f]+)/), codeAddress());
    const loads = [...headers.matchAll(/^\s+LOAD\s+\S+\s+(0x[0-9a-f]+)\s+.*\s(R E)\s+0x1000$/gm)];
    assert.deepEqual(loads.map((m) => [Number(m[1]), m[2]]), [[appBase, "R E"]], headers);
    const image = parseElf(writeElf(code), "made");
    assert.equal(image.entry, codeAddress());
    assert.deepEqual(image.segments.map((s) => [s.vaddr, s.exec, s.write]), [[appBase, true, false]]);
    assert.deepEqual(writeElf(code).subarray(codeAddress() - appBase), code);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("nearestSymbol names the function an address lies in", () => {
  const image = parseElf(guest, "guest");
  assert.ok(image.symbols.find((s) => s.name === "_start")!.size > 3, "_start too small for the test");
  assert.deepEqual(nearestSymbol(image, image.entry + 3), { name: "_start", offset: 3 });
  assert.deepEqual(nearestSymbol(image, image.entry), { name: "_start", offset: 0 });
  assert.equal(nearestSymbol(image, 0x1000), undefined);
});

Deno.test("loadElf copies file data, zeroes the rest and maps pages with segment permissions", () => {
  const image = parseElf(guest, "guest");
  ram.fill(0xaa);
  const { pageTables, phdrAddress } = load(image, guest);

  for (let a = image.start; a < image.end; a++) {
    const s = image.segments.find((s) => a >= s.vaddr && a < s.vaddr + s.filesz);
    const expected = s ? guest[s.fileOffset + a - s.vaddr] : 0;
    if (ram[a] !== expected) assert.fail(`guest byte at 0x${a.toString(16)} is 0x${ram[a].toString(16)}`);
  }
  assert.equal(ram[image.start - 1], 0xaa, "loadElf wrote below the image");
  assert.equal(ram[image.end], 0xaa, "loadElf wrote above the image");

  for (let a = textLoad.vaddr; a < textLoad.vaddr + textLoad.memsz; a += PAGE) {
    assert.deepEqual(pageTables.lookup(a), { write: false, exec: true }, `text page 0x${a.toString(16)}`);
  }
  for (let a = dataLoad.vaddr; a < dataLoad.vaddr + dataLoad.memsz; a += PAGE) {
    assert.deepEqual(pageTables.lookup(a), { write: true, exec: false }, `data page 0x${a.toString(16)}`);
  }
  assert.equal(pageTables.lookup(image.end), undefined);
  assert.equal(phdrAddress, guestLoads[0].vaddr + guestPhdrs[0].at, "program headers sit in the first segment");
});

Deno.test("a page shared by two segments gets the union of their permissions", () => {
  const image = parseElf(shared, "shared");
  const [text, data] = image.segments;
  assert.ok(text.exec && data.write && data.vaddr < pageUp(text.vaddr + text.memsz), "gcc laid out no shared page");
  const { pageTables } = load(image, shared);
  assert.deepEqual(pageTables.lookup(data.vaddr), { write: true, exec: true });
  assert.deepEqual(pageTables.lookup(pageUp(data.vaddr)), { write: true, exec: false });
});

Deno.test("malformed ELF headers are refused with the offending offset", () => {
  const load0 = guestLoads[0];
  const cases: [string, Uint8Array, number, RegExp][] = [
    ["truncated header", guest.slice(0, 40), 0, /40 bytes, shorter than the 64-byte ELF header/],
    ["bad magic", corrupt((_, b) => b[1] = 0x58), 0, /bad magic/],
    ["32-bit class", corrupt((_, b) => b[4] = 1), 4, /not ELFCLASS64/],
    ["big-endian", corrupt((_, b) => b[5] = 2), 5, /not little-endian/],
    ["bad EI_VERSION", corrupt((_, b) => b[6] = 0), 6, /EI_VERSION 0/],
    ["wrong machine", corrupt((v) => v.setUint16(18, 3, true)), 18, /e_machine 3 is not EM_X86_64/],
    ["relocatable object", corrupt((v) => v.setUint16(16, 1, true)), 16, /e_type 1 is not an executable/],
    ["phentsize", corrupt((v) => v.setUint16(54, 32, true)), 54, /e_phentsize 32/],
    ["phdrs past EOF", corrupt((v) => v.setBigUint64(32, BigInt(guest.length - 8), true)), 32, /program header table/],
    ["too many phdrs", corrupt((v) => v.setUint16(56, 0xffff, true)), 56, /65535 program headers/],
    [
      "filesz > memsz",
      corrupt((v) => v.setBigUint64(dataLoad.at + 32, BigInt(dataLoad.memsz + 1), true)),
      dataLoad.at + 32,
      /p_filesz .* exceeds p_memsz/,
    ],
    [
      "segment outside file",
      corrupt((v) => v.setBigUint64(textLoad.at + 8, BigInt(pageUp(guest.length) + textLoad.vaddr % PAGE), true)),
      textLoad.at + 8,
      /PT_LOAD file range .* outside the \d+-byte file/,
    ],
    [
      "segment beyond 4 GiB",
      corrupt((v) => v.setBigUint64(dataLoad.at + 16, 0xffff_f000n, true)),
      dataLoad.at + 16,
      /beyond 4 GiB/,
    ],
    [
      "vaddr/offset misaligned",
      corrupt((v) => v.setBigUint64(textLoad.at + 16, BigInt(textLoad.vaddr + 8), true)),
      textLoad.at + 16,
      /differ modulo the page size/,
    ],
    [
      "overlapping segments",
      corrupt((v) => v.setBigUint64(load0.at + 40, BigInt(guestLoads[1].vaddr - load0.vaddr + 1), true)),
      guestLoads[1].at + 16,
      /overlaps/,
    ],
    [
      "no PT_LOAD",
      corrupt((v) => guestLoads.forEach((p) => v.setUint32(p.at, 6, true))),
      guestPhdrs[0].at,
      /no non-empty PT_LOAD/,
    ],
    [
      "entry outside text",
      corrupt((v) => v.setBigUint64(24, BigInt(dataLoad.vaddr), true)),
      24,
      /entry point .* not inside an executable/,
    ],
    [
      ".symtab outside file",
      corrupt((v) => v.setBigUint64(layout.symtab.at + 24, BigInt(guest.length), true)),
      layout.symtab.at,
      /\.symtab .* outside the \d+-byte file/,
    ],
    [
      ".symtab linked to no section",
      corrupt((v) => v.setUint32(layout.symtab.at + 40, 999, true)),
      layout.symtab.at,
      /sh_link 999 names no section/,
    ],
    [
      "symbol name outside .strtab",
      corrupt((v) => v.setUint32(layout.symtab.firstSymbolAt, 0xffff_ffff, true)),
      layout.symtab.firstSymbolAt,
      /symbol name .* not NUL-terminated inside \.strtab/,
    ],
    [
      "section headers past EOF",
      corrupt((v) => v.setBigUint64(40, BigInt(guest.length), true)),
      40,
      /section header table/,
    ],
  ];
  for (const [name, bytes, offset, reason] of cases) {
    try {
      expectElfError(() => parseElf(bytes, name), offset, reason);
    } catch (e) {
      throw new Error(`case "${name}": ${(e as Error).message}`, { cause: e });
    }
  }
});

Deno.test("a dynamically linked executable is refused at its PT_INTERP header", () => {
  const interp = dynamicPhdrs.find((p) => p.type === "INTERP" || p.type === "DYNAMIC")!;
  expectElfError(() => parseElf(dynamic, "dyn"), interp.at, /dynamically linked; .*link with -static/);
});

Deno.test("an ELF without section headers has no symbols", () => {
  const stripped = corrupt((v) => v.setBigUint64(40, 0n, true));
  assert.deepEqual(parseElf(stripped, "stripped").symbols, []);
});

Deno.test("loadElf refuses images outside [appBase, limit)", () => {
  const low = corrupt((v) => {
    for (const p of guestLoads) v.setBigUint64(p.at + 16, BigInt(p.vaddr - appBase), true);
    v.setBigUint64(24, BigInt(layout.entry - appBase), true);
  });
  const lowImage = parseElf(low, "low");
  expectElfError(() => load(lowImage, low), guestPhdrs[0].at, /image \[0x0, .*\) does not fit in the app region/);

  const image = parseElf(guest, "guest");
  const limit = image.end - PAGE;
  expectElfError(
    () => load(image, guest, limit),
    guestPhdrs[0].at,
    new RegExp(`does not fit in the app region \\[0x${appBase.toString(16)}, 0x${limit.toString(16)}\\)`),
  );
});

/** Parse, and load if parsing succeeded: either may refuse the input, but only with an ElfError. */
function parseAndLoadRefuseOnlyWithElfError(bytes: Uint8Array): void {
  let image: ElfImage;
  try {
    image = parseElf(bytes, "fuzz");
  } catch (e) {
    if (e instanceof ElfError) return;
    throw e;
  }
  for (const [i, s] of image.segments.entries()) {
    assert.ok(s.filesz <= s.memsz && s.fileOffset + s.filesz <= bytes.length, `segment ${i} escapes the file`);
    if (i > 0) assert.ok(image.segments[i - 1].vaddr + image.segments[i - 1].memsz <= s.vaddr, `segment ${i} overlaps`);
  }
  assert.ok(image.segments.some((s) => s.exec && s.vaddr <= image.entry && image.entry < s.vaddr + s.memsz));
  try {
    load(image, bytes);
  } catch (e) {
    if (!(e instanceof ElfError)) throw e;
  }
}

Deno.test("fuzz: mutated and truncated real executables only ever fail with ElfError", () => {
  const headersEnd = guestPhdrs[guestPhdrs.length - 1].at + 56;
  const loadedEnd = Math.max(...guestLoads.map((p) => p.offset + p.filesz));
  // Most of the file is code and data the parser never interprets, so aim
  // most mutations at the ELF and program headers and at what follows the
  // loaded bytes: symbol, string and section header tables.
  // fast-check favours small values, which would pile mutations onto the
  // first bytes and first headers; noBias spreads them evenly.
  const structureOffset = fc.noBias(fc.oneof(
    fc.nat({ max: headersEnd - 1 }),
    fc.integer({ min: loadedEnd, max: guest.length - 1 }),
  ));
  // [offset, value, width in bytes, xor instead of overwrite]
  const byteMutation = fc.tuple(
    fc.oneof(structureOffset, fc.noBias(fc.nat({ max: guest.length - 1 }))),
    fc.integer({ min: 1, max: 255 }),
    fc.constant(1),
    fc.boolean(),
  );
  const fieldWords = (table: number, entrySize: number, count: number, words: number[]) =>
    Array.from({ length: count }, (_, i) => words.map((word) => table + i * entrySize + word)).flat();
  // The 4-byte words holding the fields the parser interprets (types, flags,
  // offsets, addresses, sizes, counts), to overwrite with values single-byte
  // changes rarely make.
  const interpretedWords = [
    ...fieldWords(0, 64, 1, [16, 20, 24, 28, 32, 36, 40, 44, 52, 56, 60]),
    ...fieldWords(guestPhdrs[0].at, 56, guestPhdrs.length, [0, 4, 8, 12, 16, 20, 32, 36, 40, 44, 48, 52]),
    ...fieldWords(layout.shoff, 64, layout.shnum, [4, 24, 28, 32, 36, 40, 56, 60]),
  ];
  const wordMutation = fc.tuple(
    fc.noBias(fc.constantFrom(...interpretedWords)),
    fc.oneof(fc.constantFrom(0, 1, PAGE, guest.length, 0x7fff_ffff, 0xffff_ffff), fc.nat()),
    fc.constant(4),
    fc.constant(false),
  );
  fc.assert(
    fc.property(
      fc.array(fc.oneof(byteMutation, { arbitrary: wordMutation, weight: 2 }), { minLength: 1, maxLength: 4 }),
      fc.option(fc.nat({ max: guest.length }), { freq: 5 }),
      (mutations, truncateTo) => {
        const bytes = guest.slice(0, truncateTo ?? guest.length);
        for (const [at, value, width, flip] of mutations) {
          for (let i = 0; i < width && at + i < bytes.length; i++) {
            const byte = (value >>> (8 * i)) & 0xff;
            bytes[at + i] = flip ? bytes[at + i] ^ byte : byte;
          }
        }
        parseAndLoadRefuseOnlyWithElfError(bytes);
      },
    ),
    { numRuns: fuzzRuns },
  );
});

Deno.test("fuzz: random bytes only ever fail with ElfError", () => {
  // Random bytes almost never start with a valid identification; half the
  // inputs borrow the real one so the parser gets past the first checks.
  const validStart = guest.subarray(0, 24);
  const random = fc.uint8Array({ maxLength: 1024 });
  const withValidStart = fc.uint8Array({ minLength: 64, maxLength: 1024 }).map((b) => {
    b.set(validStart);
    return b;
  });
  fc.assert(fc.property(fc.oneof(random, withValidStart), parseAndLoadRefuseOnlyWithElfError), { numRuns: fuzzRuns });
});
