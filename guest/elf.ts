// ELF64 parsing and loading for static x86-64 executables. The file comes from
// the user, so every field is checked before it is trusted: a corrupt image
// ends in an ElfError naming the offending byte offset, never in a RangeError
// from deep inside the loader or in writes where the guest did not ask for them.

import { BinaryReader as Reader } from "./binary_reader.ts";
import { appBase, MiB, PAGE, pageDown, pageUp } from "../abi/memory_map.ts";
import type { PageTables } from "./paging.ts";
import type { Protection } from "../abi/address_space.ts";
import { upperBound } from "./symbol_search.ts";

export class ElfError extends Error {
  constructor(readonly file: string, readonly offset: number, readonly reason: string) {
    super(`${file}: offset 0x${offset.toString(16)}: ${reason}`);
    this.name = "ElfError";
  }
}

export interface LoadSegment {
  vaddr: number;
  memsz: number;
  fileOffset: number;
  filesz: number;
  write: boolean;
  exec: boolean;
}

export interface ElfSymbol {
  name: string;
  address: number;
  size: number;
}

export interface ElfSection {
  name: string;
  offset: number;
  size: number;
}

export interface ElfImage {
  file: string;
  entry: number;
  /** Sorted by vaddr, non-overlapping, none empty. */
  segments: LoadSegment[];
  /** FUNC and OBJECT symbols, sorted by address. */
  symbols: ElfSymbol[];
  /** Named sections whose bytes lie in the file (SHT_NOBITS ones have none). */
  sections: ElfSection[];
  /** Where the program headers lie in the file, for AT_PHDR/AT_PHENT/AT_PHNUM. */
  phdr: { offset: number; entsize: number; count: number };
  /** pageDown(lowest vaddr). */
  start: number;
  /** pageUp(highest vaddr + memsz). */
  end: number;
}

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const ELFCLASS64 = 2, ELFDATA2LSB = 1, EV_CURRENT = 1;
const ET_EXEC = 2, ET_DYN = 3;
const EM_X86_64 = 62;
const PT_LOAD = 1, PT_DYNAMIC = 2, PT_INTERP = 3;
const PF_X = 1, PF_W = 2, PF_R = 4;
const SHT_SYMTAB = 2, SHT_STRTAB = 3;
const STT_OBJECT = 1, STT_FUNC = 2;
const SHN_UNDEF = 0;

/** Field offsets in the ELF header, program header, section header and symbol. */
const EH = {
  class: 4,
  data: 5,
  identVersion: 6,
  type: 16,
  machine: 18,
  version: 20,
  entry: 24,
  phoff: 32,
  shoff: 40,
  phentsize: 54,
  phnum: 56,
  shentsize: 58,
  shnum: 60,
  shstrndx: 62,
  size: 64,
} as const;
const PH = { type: 0, flags: 4, offset: 8, vaddr: 16, filesz: 32, memsz: 40, align: 48, size: 56 } as const;
const SH = { name: 0, type: 4, offset: 24, size: 32, link: 40, entsize: 56, entrySize: 64 } as const;
const SHT_NOBITS = 8;
const SYM = { name: 0, info: 4, shndx: 6, value: 8, size: 16, entrySize: 24 } as const;

// Real static executables have around ten program headers and stay far below
// these sizes; anything bigger is a corrupt header, refused before allocating.
const MAX_PHDRS = 64;
const MAX_IMAGE_BYTES = 1024 * MiB;
/** Guest pointers travel in 32-bit hypercall arguments, so the image must stay below 4 GiB. */
const ADDRESS_LIMIT = 2 ** 32;

const hex = (n: number) => `0x${n.toString(16)}`;
const utf8 = new TextDecoder("utf-8");

interface ProgramHeader {
  /** File offset of the header itself, for error reports. */
  at: number;
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

interface SectionHeader {
  at: number;
  name: string;
  type: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

export function parseElf(bytes: Uint8Array, file: string): ElfImage {
  const r = new Reader(bytes, file, ElfError);
  checkHeader(r);
  const phdrs = readProgramHeaders(r);
  checkStatic(r, phdrs);
  const segments = loadSegments(r, phdrs);
  const entry = r.u64(EH.entry);
  if (!segments.some((s) => s.exec && entry >= s.vaddr && entry < s.vaddr + s.memsz)) {
    r.fail(EH.entry, `entry point ${hex(entry)} is not inside an executable PT_LOAD segment`);
  }
  const last = segments[segments.length - 1];
  const sections = readSectionHeaders(r);
  return {
    file,
    entry,
    segments,
    symbols: readSymbols(r, sections),
    sections: sections.filter((s) => s.name && s.type !== SHT_NOBITS)
      .map(({ name, offset, size }) => ({ name, offset, size })),
    phdr: { offset: r.u64(EH.phoff), entsize: PH.size, count: phdrs.length },
    start: pageDown(segments[0].vaddr),
    end: pageUp(last.vaddr + last.memsz),
  };
}

/**
 * The smallest static executable: one read-execute PT_LOAD holding the headers and `code`,
 * entered at the code's first byte, which is `codeAddress(vaddr)`. For guests pvx makes itself.
 */
export function writeElf(code: Uint8Array, vaddr = appBase): Uint8Array {
  const codeAt = EH.size + PH.size;
  const bytes = new Uint8Array(codeAt + code.length);
  const v = new DataView(bytes.buffer);
  bytes.set(ELF_MAGIC);
  bytes.set([ELFCLASS64, ELFDATA2LSB, EV_CURRENT], EH.class);
  v.setUint16(EH.type, ET_EXEC, true);
  v.setUint16(EH.machine, EM_X86_64, true);
  v.setUint32(EH.version, EV_CURRENT, true);
  v.setBigUint64(EH.entry, BigInt(vaddr + codeAt), true);
  v.setBigUint64(EH.phoff, BigInt(EH.size), true);
  v.setUint16(EH.phentsize, PH.size, true);
  v.setUint16(EH.phnum, 1, true);
  v.setUint32(EH.size + PH.type, PT_LOAD, true);
  v.setUint32(EH.size + PH.flags, PF_R | PF_X, true);
  v.setBigUint64(EH.size + PH.vaddr, BigInt(vaddr), true);
  v.setBigUint64(EH.size + PH.filesz, BigInt(bytes.length), true);
  v.setBigUint64(EH.size + PH.memsz, BigInt(bytes.length), true);
  v.setBigUint64(EH.size + PH.align, BigInt(PAGE), true);
  bytes.set(code, codeAt);
  return bytes;
}

/** Where writeElf's code lies in the guest. */
export const codeAddress = (vaddr = appBase) => vaddr + EH.size + PH.size;

function checkHeader(r: Reader): void {
  if (r.length < EH.size) r.fail(0, `file is ${r.length} bytes, shorter than the ${EH.size}-byte ELF header`);
  if (!ELF_MAGIC.every((b, i) => r.u8(i) === b)) r.fail(0, "bad magic: not an ELF file");
  if (r.u8(EH.class) !== ELFCLASS64) {
    r.fail(EH.class, `EI_CLASS ${r.u8(EH.class)} is not ELFCLASS64; pvx runs 64-bit executables`);
  }
  if (r.u8(EH.data) !== ELFDATA2LSB) r.fail(EH.data, `EI_DATA ${r.u8(EH.data)} is not little-endian (ELFDATA2LSB)`);
  if (r.u8(EH.identVersion) !== EV_CURRENT) {
    r.fail(EH.identVersion, `EI_VERSION ${r.u8(EH.identVersion)} is not EV_CURRENT (1)`);
  }
  if (r.u16(EH.machine) !== EM_X86_64) r.fail(EH.machine, `e_machine ${r.u16(EH.machine)} is not EM_X86_64 (62)`);
  if (r.u32(EH.version) !== EV_CURRENT) r.fail(EH.version, `e_version ${r.u32(EH.version)} is not EV_CURRENT (1)`);
  const type = r.u16(EH.type);
  // ET_DYN passes here so that checkStatic can say why a dynamic executable is refused.
  if (type !== ET_EXEC && type !== ET_DYN) r.fail(EH.type, `e_type ${type} is not an executable (ET_EXEC)`);
  if (r.u16(EH.phentsize) !== PH.size) {
    r.fail(EH.phentsize, `e_phentsize ${r.u16(EH.phentsize)} is not the ELF64 program header size ${PH.size}`);
  }
}

function readProgramHeaders(r: Reader): ProgramHeader[] {
  const phoff = r.u64(EH.phoff), phnum = r.u16(EH.phnum);
  if (phnum > MAX_PHDRS) r.fail(EH.phnum, `${phnum} program headers; pvx accepts at most ${MAX_PHDRS}`);
  r.requireInFile(phoff, phnum * PH.size, EH.phoff, "program header table");
  return Array.from({ length: phnum }, (_, i) => {
    const at = phoff + i * PH.size;
    return {
      at,
      type: r.u32(at + PH.type),
      flags: r.u32(at + PH.flags),
      offset: r.u64(at + PH.offset),
      vaddr: r.u64(at + PH.vaddr),
      filesz: r.u64(at + PH.filesz),
      memsz: r.u64(at + PH.memsz),
      align: r.u64(at + PH.align),
    };
  });
}

function checkStatic(r: Reader, phdrs: ProgramHeader[]): void {
  const dynamic = phdrs.find((p) => p.type === PT_INTERP || p.type === PT_DYNAMIC);
  if (dynamic) r.fail(dynamic.at, "dynamically linked; pvx runs static executables (link with -static)");
  if (r.u16(EH.type) === ET_DYN) {
    r.fail(EH.type, "position-independent executable (ET_DYN); pvx loads at fixed addresses (link with -no-pie)");
  }
}

function loadSegments(r: Reader, phdrs: ProgramHeader[]): LoadSegment[] {
  const loads: ProgramHeader[] = [];
  let total = 0;
  for (const p of phdrs.filter((p) => p.type === PT_LOAD)) {
    if (p.filesz > p.memsz) {
      r.fail(p.at + PH.filesz, `PT_LOAD p_filesz ${hex(p.filesz)} exceeds p_memsz ${hex(p.memsz)}`);
    }
    r.requireInFile(p.offset, p.filesz, p.at + PH.offset, "PT_LOAD file range");
    if (p.vaddr + p.memsz > ADDRESS_LIMIT) {
      r.fail(p.at + PH.vaddr, `PT_LOAD [${hex(p.vaddr)}, ${hex(p.vaddr + p.memsz)}) extends beyond 4 GiB`);
    }
    // The loader copies rather than mmaps, but a segment whose page offsets
    // disagree is what a broken linker script produces: refuse it like Linux does.
    if (p.align >= PAGE && p.vaddr % PAGE !== p.offset % PAGE) {
      r.fail(
        p.at + PH.vaddr,
        `PT_LOAD p_vaddr ${hex(p.vaddr)} and p_offset ${hex(p.offset)} differ modulo the page size`,
      );
    }
    total += p.memsz;
    if (total > MAX_IMAGE_BYTES) {
      r.fail(p.at + PH.memsz, `PT_LOAD segments total more than ${MAX_IMAGE_BYTES / MiB} MiB`);
    }
    // An empty segment maps nothing; counting it would stretch [start, end) to wherever it claims to be.
    if (p.memsz > 0) loads.push(p);
  }
  if (loads.length === 0) r.fail(r.u64(EH.phoff), "no non-empty PT_LOAD segment");
  loads.sort((a, b) => a.vaddr - b.vaddr);
  for (let i = 1; i < loads.length; i++) {
    const prev = loads[i - 1], cur = loads[i];
    if (cur.vaddr < prev.vaddr + prev.memsz) {
      r.fail(
        cur.at + PH.vaddr,
        `PT_LOAD at ${hex(cur.vaddr)} overlaps the one at [${hex(prev.vaddr)}, ${hex(prev.vaddr + prev.memsz)})`,
      );
    }
  }
  return loads.map((p) => ({
    vaddr: p.vaddr,
    memsz: p.memsz,
    fileOffset: p.offset,
    filesz: p.filesz,
    write: (p.flags & PF_W) !== 0,
    exec: (p.flags & PF_X) !== 0,
  }));
}

/** The section header table with names from e_shstrndx; empty when the file has none. */
function readSectionHeaders(r: Reader): SectionHeader[] {
  const shoff = r.u64(EH.shoff), shnum = r.u16(EH.shnum);
  if (shoff === 0 || shnum === 0) return [];
  if (r.u16(EH.shentsize) !== SH.entrySize) {
    r.fail(EH.shentsize, `e_shentsize ${r.u16(EH.shentsize)} is not the ELF64 section header size ${SH.entrySize}`);
  }
  r.requireInFile(shoff, shnum * SH.entrySize, EH.shoff, "section header table");
  const headers = Array.from({ length: shnum }, (_, index): SectionHeader => {
    const at = shoff + index * SH.entrySize;
    const h = {
      at,
      name: "",
      type: r.u32(at + SH.type),
      offset: r.u64(at + SH.offset),
      size: r.u64(at + SH.size),
      link: r.u32(at + SH.link),
      entsize: r.u64(at + SH.entsize),
    };
    return h;
  });
  const shstrndx = r.u16(EH.shstrndx);
  if (shstrndx >= shnum) r.fail(EH.shstrndx, `e_shstrndx ${shstrndx} names no section (there are ${shnum})`);
  if (shstrndx !== 0) {
    const names = headers[shstrndx];
    r.requireInFile(names.offset, names.size, names.at, ".shstrtab");
    const table = r.bytes.subarray(names.offset, names.offset + names.size);
    for (const h of headers) {
      const start = r.u32(h.at + SH.name);
      const end = table.indexOf(0, start);
      if (end < 0) {
        r.fail(h.at + SH.name, `section name at .shstrtab+${hex(start)} is not NUL-terminated inside .shstrtab`);
      }
      h.name = utf8.decode(table.subarray(start, end));
    }
  }
  headers.forEach((h, index) => {
    if (h.type !== SHT_NOBITS) {
      r.requireInFile(h.offset, h.size, h.at, h.name ? `section ${h.name}` : `section ${index}`);
    }
  });
  return headers;
}

function readSymbols(r: Reader, sections: SectionHeader[]): ElfSymbol[] {
  const symtab = sections.find((s) => s.type === SHT_SYMTAB);
  if (!symtab) return [];
  if (symtab.entsize !== SYM.entrySize || symtab.size % SYM.entrySize !== 0) {
    r.fail(
      symtab.at,
      `.symtab entry size ${symtab.entsize} or size ${symtab.size} does not fit ${SYM.entrySize}-byte symbols`,
    );
  }
  if (symtab.link >= sections.length) {
    r.fail(symtab.at, `.symtab sh_link ${symtab.link} names no section (there are ${sections.length})`);
  }
  const strtab = sections[symtab.link];
  if (strtab.type !== SHT_STRTAB) {
    r.fail(strtab.at, `.symtab's string table has sh_type ${strtab.type}, not SHT_STRTAB`);
  }
  const names = r.bytes.subarray(strtab.offset, strtab.offset + strtab.size);

  const symbols: ElfSymbol[] = [];
  for (let at = symtab.offset; at < symtab.offset + symtab.size; at += SYM.entrySize) {
    const type = r.u8(at + SYM.info) & 0xf;
    if ((type !== STT_FUNC && type !== STT_OBJECT) || r.u16(at + SYM.shndx) === SHN_UNDEF) continue;
    const nameStart = r.u32(at + SYM.name);
    const nameEnd = names.indexOf(0, nameStart);
    if (nameEnd < 0) {
      r.fail(at + SYM.name, `symbol name at .strtab+${hex(nameStart)} is not NUL-terminated inside .strtab`);
    }
    symbols.push({
      name: utf8.decode(names.subarray(nameStart, nameEnd)),
      address: r.u64(at + SYM.value),
      size: r.u64(at + SYM.size),
    });
  }
  return symbols.sort((a, b) => a.address - b.address);
}

/**
 * Copies segments into guest memory, zeroes .bss, maps pages with the segment protections.
 * Throws ElfError if the image does not fit in [appBase, limit). Returns the guest address of
 * the program headers (for AT_PHDR) if they lie inside a loaded segment, else 0.
 * `bytes` must be the file `image` was parsed from.
 */
export function loadElf(
  image: ElfImage,
  bytes: Uint8Array,
  guestRam: Uint8Array,
  pageTables: PageTables,
  limit: number,
): { phdrAddress: number } {
  if (limit > guestRam.length) {
    throw new RangeError(`loadElf: limit ${hex(limit)} lies beyond the ${hex(guestRam.length)}-byte guest RAM`);
  }
  if (image.start < appBase || image.end > limit) {
    throw new ElfError(
      image.file,
      image.phdr.offset,
      `image [${hex(image.start)}, ${hex(image.end)}) does not fit in the app region [${hex(appBase)}, ${hex(limit)})`,
    );
  }
  // Zeroing the whole span first covers .bss, the slack around segments in
  // their first and last pages, and gaps between segments in one pass.
  guestRam.fill(0, image.start, image.end);
  for (const s of image.segments) guestRam.set(bytes.subarray(s.fileOffset, s.fileOffset + s.filesz), s.vaddr);
  for (const [page, protection] of pageProtections(image.segments)) pageTables.map(page, PAGE, protection);
  return { phdrAddress: phdrAddress(image) };
}

/**
 * Linkers without -z separate-code let adjacent segments share a page (text
 * ending where rodata or data begins); such a page gets the union of their
 * permissions, since a page can only carry one.
 */
function pageProtections(segments: LoadSegment[]): Map<number, Protection> {
  const pages = new Map<number, Protection>();
  for (const s of segments) {
    for (let page = pageDown(s.vaddr); page < s.vaddr + s.memsz; page += PAGE) {
      const other = pages.get(page);
      pages.set(page, { write: s.write || (other?.write ?? false), exec: s.exec || (other?.exec ?? false) });
    }
  }
  return pages;
}

function phdrAddress(image: ElfImage): number {
  const { offset, entsize, count } = image.phdr;
  const holder = image.segments.find((s) =>
    offset >= s.fileOffset && offset + entsize * count <= s.fileOffset + s.filesz
  );
  return holder ? holder.vaddr + (offset - holder.fileOffset) : 0;
}

/**
 * The symbol an address belongs to, for fault reports. An address past the
 * end of the closest preceding sized symbol (alignment padding, code without
 * symbols) yields undefined rather than blaming an unrelated function.
 */
export function nearestSymbol(image: ElfImage, address: number): { name: string; offset: number } | undefined {
  const { symbols } = image;
  const lo = upperBound(symbols, (s) => s.address, address);
  // Symbols sharing the closest address (aliases, a label inside an object): take one that covers `address`.
  for (let i = lo - 1; i >= 0 && symbols[i].address === symbols[lo - 1].address; i--) {
    const s = symbols[i];
    if (s.size === 0 || address < s.address + s.size) return { name: s.name, offset: address - s.address };
  }
  return undefined;
}
