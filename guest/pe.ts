// PE32+ (x86-64 Windows) parsing, for console executables and DLLs: the headers, the section table and the
// COFF symbols here, what the data directories reach in guest/pe_directories.ts, the result's shape in
// guest/pe_image.ts; loading is guest/pe_loader.ts's. The file comes from the user, so every header field and every
// structure reached through a data directory is checked before it is trusted:
// a corrupt image ends in a PeError naming the file offset of the offending
// field, never in a RangeError from deep inside or in writes outside the image.

import { BinaryReader as Reader } from "./binary_reader.ts";
import { guestAddressLimit, MiB, PAGE } from "../abi/memory_map.ts";
import { PeError, type PeImage, type PeSection, type PeSymbol } from "./pe_image.ts";
import { ImageSpace, readExports, readImports, readRelocations, readTls } from "./pe_directories.ts";
import {
  COFF,
  DIRECTORY,
  DOS,
  EXPORT_DIRECTORY,
  IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE,
  IMAGE_FILE_DLL,
  IMAGE_FILE_EXECUTABLE_IMAGE,
  IMAGE_FILE_MACHINE_AMD64,
  IMAGE_FILE_MACHINE_I386,
  IMAGE_FILE_RELOCS_STRIPPED,
  IMAGE_SCN_MEM_EXECUTE,
  IMAGE_SCN_MEM_READ,
  IMAGE_SCN_MEM_WRITE,
  IMAGE_SYM_CLASS_EXTERNAL,
  IMAGE_SYM_CLASS_STATIC,
  IMAGE_SYM_DTYPE_FUNCTION,
  OPT,
  PE32_MAGIC,
  PE32_PLUS_MAGIC,
  SEC,
  SUBSYSTEM_WINDOWS_CUI,
  SUBSYSTEM_WINDOWS_GUI,
  SYM,
  TLS_DIRECTORY,
} from "./pe_format.ts";
import { hex } from "../abi/hex.ts";

// Real images stay far below these; anything bigger is a corrupt count,
// refused before it drives an allocation or a long walk.
const MAX_SECTIONS = 96;
const MAX_IMAGE_BYTES = 1024 * MiB;
const IMAGE_BASE_ALIGNMENT = 0x10000;

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;
const utf8 = new TextDecoder("utf-8");

/** An 8-byte COFF name field (section or symbol), NUL-padded unless all 8 bytes are used. */
function inlineName(r: Reader, at: number): string {
  const raw = r.bytes.subarray(at, at + 8);
  const nul = raw.indexOf(0);
  return utf8.decode(nul < 0 ? raw : raw.subarray(0, nul));
}

interface Headers {
  coff: number;
  optional: number;
  sectionTable: number;
  sectionCount: number;
  characteristics: number;
  imageBase: number;
  sectionAlignment: number;
  fileAlignment: number;
  sizeOfImage: number;
  sizeOfHeaders: number;
  directoryCount: number;
}

interface SectionHeader extends PeSection {
  /** File offset of the section header, for error reports. */
  at: number;
}

/** Where the COFF string table lies; it follows the symbol table and holds long section and symbol names. */
interface StringTable {
  start: number;
  size: number;
}

export function parsePe(bytes: Uint8Array, file: string): PeImage {
  const r = new Reader(bytes, file, PeError);
  const h = readHeaders(r);
  const strings = readStringTable(r, h);
  const sections = readSections(r, h, strings);
  const space = new ImageSpace(r, h, sections);
  const o = h.optional;
  const isDll = (h.characteristics & IMAGE_FILE_DLL) !== 0;

  const entryRva = r.u32(o + OPT.entry);
  if (!(isDll && entryRva === 0) && !space.executable(entryRva)) {
    r.fail(o + OPT.entry, `entry point RVA ${hex(entryRva)} is not inside an executable section`);
  }
  const exportDirectory = space.directory(DIRECTORY.export, "export", EXPORT_DIRECTORY.size);
  const importDirectory = space.directory(DIRECTORY.import, "import", 0);
  const relocationDirectory = space.directory(DIRECTORY.baseRelocation, "base relocation", 0);
  const tlsDirectory = space.directory(DIRECTORY.tls, "TLS", TLS_DIRECTORY.size);
  const exceptionDirectory = space.directory(DIRECTORY.exception, "exception", 0);
  const exports = exportDirectory ? readExports(space, exportDirectory) : undefined;
  return {
    file,
    isDll,
    machine: r.u16(h.coff + COFF.machine),
    subsystem: r.u16(o + OPT.subsystem),
    imageBase: h.imageBase,
    sizeOfImage: h.sizeOfImage,
    sizeOfHeaders: h.sizeOfHeaders,
    entryRva,
    sectionAlignment: h.sectionAlignment,
    fileAlignment: h.fileAlignment,
    stackReserve: r.u64(o + OPT.stackReserve),
    stackCommit: r.u64(o + OPT.stackCommit),
    heapReserve: r.u64(o + OPT.heapReserve),
    heapCommit: r.u64(o + OPT.heapCommit),
    dynamicBase: (r.u16(o + OPT.dllCharacteristics) & IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE) !== 0,
    relocationsStripped: (h.characteristics & IMAGE_FILE_RELOCS_STRIPPED) !== 0,
    sections: sections.map(({ at: _, ...section }) => section),
    imports: importDirectory ? readImports(space, importDirectory) : [],
    exports: exports?.exports ?? [],
    ...(exports?.dllName !== undefined && { exportDllName: exports.dllName }),
    relocations: relocationDirectory ? readRelocations(space, relocationDirectory) : [],
    ...(tlsDirectory && { tls: readTls(space, tlsDirectory) }),
    ...(exceptionDirectory && { functionTable: { rva: exceptionDirectory.rva, size: exceptionDirectory.size } }),
    symbols: readSymbols(r, h, sections, strings),
  };
}

function readHeaders(r: Reader): Headers {
  if (r.length < DOS.size) r.fail(0, `file is ${r.length} bytes, shorter than the ${DOS.size}-byte DOS header`);
  if (r.u16(DOS.magic) !== 0x5a4d) r.fail(DOS.magic, `bad magic: not an MZ executable`);
  const lfanew = r.u32(DOS.lfanew);
  if (lfanew < DOS.size) r.fail(DOS.lfanew, `e_lfanew ${hex(lfanew)} points inside the ${DOS.size}-byte DOS header`);
  if (lfanew % 4 !== 0) r.fail(DOS.lfanew, `e_lfanew ${hex(lfanew)} is not 4-byte aligned`);
  r.requireInFile(lfanew, 4 + COFF.size, DOS.lfanew, "PE signature and COFF file header");
  if (r.u32(lfanew) !== 0x4550) r.fail(lfanew, `PE signature is not "PE\\0\\0": not a PE executable`);

  const coff = lfanew + 4;
  const machine = r.u16(coff + COFF.machine);
  if (machine !== IMAGE_FILE_MACHINE_AMD64) {
    const i386 = machine === IMAGE_FILE_MACHINE_I386 ? " (i386)" : "";
    r.fail(coff + COFF.machine, `Machine ${hex(machine)}${i386} is not AMD64 (0x8664); pvx runs x86-64 only`);
  }
  const sectionCount = r.u16(coff + COFF.numberOfSections);
  if (sectionCount === 0) r.fail(coff + COFF.numberOfSections, "NumberOfSections is 0: the image has no sections");
  if (sectionCount > MAX_SECTIONS) {
    r.fail(coff + COFF.numberOfSections, `NumberOfSections ${sectionCount} exceeds the PE limit of ${MAX_SECTIONS}`);
  }
  const characteristics = r.u16(coff + COFF.characteristics);
  if (!(characteristics & IMAGE_FILE_EXECUTABLE_IMAGE)) {
    r.fail(
      coff + COFF.characteristics,
      "Characteristics lack IMAGE_FILE_EXECUTABLE_IMAGE: an object file or a failed link, not an image",
    );
  }

  const optional = coff + COFF.size;
  const optionalSize = r.u16(coff + COFF.sizeOfOptionalHeader);
  if (optionalSize < OPT.dataDirectories) {
    r.fail(
      coff + COFF.sizeOfOptionalHeader,
      `SizeOfOptionalHeader ${optionalSize} is smaller than the ${OPT.dataDirectories}-byte PE32+ fixed part`,
    );
  }
  r.requireInFile(optional, optionalSize, coff + COFF.sizeOfOptionalHeader, "optional header");
  const magic = r.u16(optional + OPT.magic);
  if (magic === PE32_MAGIC) r.fail(optional + OPT.magic, "32-bit PE, pvx runs x86-64 only");
  if (magic !== PE32_PLUS_MAGIC) {
    r.fail(optional + OPT.magic, `optional header magic ${hex(magic)} is not PE32+ (0x20b)`);
  }
  const directoryCount = r.u32(optional + OPT.numberOfRvaAndSizes);
  if (directoryCount > DIRECTORY.count) {
    r.fail(
      optional + OPT.numberOfRvaAndSizes,
      `NumberOfRvaAndSizes ${directoryCount} exceeds the ${DIRECTORY.count} data directories PE defines`,
    );
  }
  if (OPT.dataDirectories + directoryCount * DIRECTORY.entrySize > optionalSize) {
    r.fail(
      coff + COFF.sizeOfOptionalHeader,
      `SizeOfOptionalHeader ${optionalSize} cannot hold the fixed part and ${directoryCount} data directories`,
    );
  }

  const sectionAlignment = r.u32(optional + OPT.sectionAlignment);
  const fileAlignment = r.u32(optional + OPT.fileAlignment);
  checkAlignments(r, optional, sectionAlignment, fileAlignment);
  const sizeOfImage = r.u32(optional + OPT.sizeOfImage);
  if (sizeOfImage === 0 || sizeOfImage % sectionAlignment !== 0) {
    r.fail(
      optional + OPT.sizeOfImage,
      `SizeOfImage ${hex(sizeOfImage)} is not a non-zero multiple of SectionAlignment ${hex(sectionAlignment)}`,
    );
  }
  if (sizeOfImage > MAX_IMAGE_BYTES) {
    r.fail(optional + OPT.sizeOfImage, `SizeOfImage ${hex(sizeOfImage)} exceeds ${MAX_IMAGE_BYTES / MiB} MiB`);
  }
  const imageBase = r.u64(optional + OPT.imageBase);
  if (imageBase % IMAGE_BASE_ALIGNMENT !== 0) {
    r.fail(optional + OPT.imageBase, `ImageBase ${hex(imageBase)} is not a multiple of 64 KiB`);
  }
  if (imageBase + sizeOfImage > guestAddressLimit) {
    r.fail(optional + OPT.imageBase, `ImageBase ${hex(imageBase)} puts the image beyond the 47-bit user address space`);
  }

  const sectionTable = optional + optionalSize;
  r.requireInFile(sectionTable, sectionCount * SEC.size, coff + COFF.numberOfSections, "section table");
  const sizeOfHeaders = r.u32(optional + OPT.sizeOfHeaders);
  const sectionTableEnd = sectionTable + sectionCount * SEC.size;
  if (sizeOfHeaders < sectionTableEnd) {
    r.fail(
      optional + OPT.sizeOfHeaders,
      `SizeOfHeaders ${hex(sizeOfHeaders)} does not cover the section table ending at ${hex(sectionTableEnd)}`,
    );
  }
  r.requireInFile(0, sizeOfHeaders, optional + OPT.sizeOfHeaders, "headers");
  if (sizeOfHeaders > sizeOfImage) {
    r.fail(optional + OPT.sizeOfHeaders, `SizeOfHeaders ${hex(sizeOfHeaders)} exceeds SizeOfImage ${hex(sizeOfImage)}`);
  }

  if (!(characteristics & IMAGE_FILE_DLL)) {
    const subsystem = r.u16(optional + OPT.subsystem);
    if (subsystem === SUBSYSTEM_WINDOWS_GUI) {
      r.fail(optional + OPT.subsystem, "GUI programs are not supported: pvx runs console apps");
    }
    if (subsystem !== SUBSYSTEM_WINDOWS_CUI) {
      r.fail(optional + OPT.subsystem, `Subsystem ${subsystem} is not the Windows console subsystem (3)`);
    }
  }
  return {
    coff,
    optional,
    sectionTable,
    sectionCount,
    characteristics,
    imageBase,
    sectionAlignment,
    fileAlignment,
    sizeOfImage,
    sizeOfHeaders,
    directoryCount,
  };
}

function checkAlignments(r: Reader, optional: number, sectionAlignment: number, fileAlignment: number): void {
  const sectionAt = optional + OPT.sectionAlignment, fileAt = optional + OPT.fileAlignment;
  if (!isPowerOfTwo(sectionAlignment)) {
    r.fail(sectionAt, `SectionAlignment ${hex(sectionAlignment)} is not a power of two`);
  }
  if (!isPowerOfTwo(fileAlignment)) r.fail(fileAt, `FileAlignment ${hex(fileAlignment)} is not a power of two`);
  if (sectionAlignment < fileAlignment) {
    r.fail(sectionAt, `SectionAlignment ${hex(sectionAlignment)} is below FileAlignment ${hex(fileAlignment)}`);
  }
  // Below the page size the file is its own memory image (sections at the
  // same offsets in both), which only works when the two alignments agree.
  if (sectionAlignment < PAGE) {
    if (fileAlignment !== sectionAlignment) {
      r.fail(
        fileAt,
        `FileAlignment ${hex(fileAlignment)} must equal SectionAlignment ${hex(sectionAlignment)} below the page size`,
      );
    }
  } else if (fileAlignment < 0x200 || fileAlignment > 0x10000) {
    r.fail(fileAt, `FileAlignment ${hex(fileAlignment)} is outside [0x200, 0x10000]`);
  }
}

function readStringTable(r: Reader, h: Headers): StringTable | undefined {
  const pointer = r.u32(h.coff + COFF.pointerToSymbolTable);
  if (pointer === 0) return undefined;
  const symbolCount = r.u32(h.coff + COFF.numberOfSymbols);
  const start = pointer + symbolCount * SYM.size;
  r.requireInFile(pointer, symbolCount * SYM.size + 4, h.coff + COFF.pointerToSymbolTable, "COFF symbol table");
  const size = r.u32(start);
  if (size < 4) r.fail(start, `COFF string table size ${size} is smaller than its own 4-byte size field`);
  r.requireInFile(start, size, start, "COFF string table");
  return { start, size };
}

function stringTableEntry(r: Reader, strings: StringTable, offset: number, declaredAt: number, what: string): string {
  if (offset < 4 || offset >= strings.size) {
    r.fail(declaredAt, `${what} at string table offset ${offset} lies outside the ${strings.size}-byte string table`);
  }
  return r.cString(
    strings.start + offset,
    strings.start + strings.size,
    declaredAt,
    `${what} at string table offset ${offset} is not NUL-terminated inside the string table`,
  );
}

function sectionName(r: Reader, at: number, strings: StringTable | undefined): string {
  const name = inlineName(r, at);
  // Names longer than 8 bytes (GNU ld's .debug_*) are "/<decimal offset>" into the string table.
  if (!name.startsWith("/")) return name;
  if (!/^\/\d+$/.test(name)) r.fail(at, `section name "${name}" is neither a short name nor /<string table offset>`);
  if (!strings) r.fail(at, `section name "${name}" refers to a string table, but the file has no symbol table`);
  return stringTableEntry(r, strings, Number(name.slice(1)), at, "section name");
}

function readSections(r: Reader, h: Headers, strings: StringTable | undefined): SectionHeader[] {
  const sections: SectionHeader[] = [];
  for (let i = 0; i < h.sectionCount; i++) {
    const at = h.sectionTable + i * SEC.size;
    const name = sectionName(r, at, strings);
    const rva = r.u32(at + SEC.rva);
    const declaredRawSize = r.u32(at + SEC.rawSize);
    const rawOffset = r.u32(at + SEC.rawOffset);
    const characteristics = r.u32(at + SEC.characteristics);
    // The Windows loader takes a VirtualSize of 0 to mean SizeOfRawData.
    const virtualSize = r.u32(at + SEC.virtualSize) || declaredRawSize;
    if (rva % h.sectionAlignment !== 0) {
      r.fail(at + SEC.rva, `section ${name} RVA ${hex(rva)} is not a multiple of SectionAlignment`);
    }
    if (rva < h.sizeOfHeaders) {
      r.fail(
        at + SEC.rva,
        `section ${name} RVA ${hex(rva)} overlaps the headers (SizeOfHeaders ${hex(h.sizeOfHeaders)})`,
      );
    }
    const previous = sections[i - 1];
    if (previous && rva < previous.rva + previous.virtualSize) {
      r.fail(
        at + SEC.rva,
        `section ${name} at RVA ${hex(rva)} overlaps or precedes section ${previous.name} ` +
          `[${hex(previous.rva)}, ${hex(previous.rva + previous.virtualSize)}): sections must be sorted and disjoint`,
      );
    }
    if (rva + virtualSize > h.sizeOfImage) {
      r.fail(
        at + SEC.virtualSize,
        `section ${name} [${hex(rva)}, ${hex(rva + virtualSize)}) extends beyond SizeOfImage ${hex(h.sizeOfImage)}`,
      );
    }
    if (declaredRawSize > 0) {
      // Windows rounds a misaligned PointerToRawData down, reading bytes the
      // header does not name; refusing is better than guessing which were meant.
      if (rawOffset % h.fileAlignment !== 0) {
        r.fail(
          at + SEC.rawOffset,
          `section ${name} PointerToRawData ${hex(rawOffset)} is not a multiple of FileAlignment`,
        );
      }
      r.requireInFile(rawOffset, declaredRawSize, at + SEC.rawOffset, `section ${name} raw data`);
    }
    sections.push({
      at,
      name,
      rva,
      virtualSize,
      // Without raw data PointerToRawData means nothing (and is often stale); do not pass it on.
      rawOffset: declaredRawSize > 0 ? rawOffset : 0,
      rawSize: Math.min(declaredRawSize, virtualSize),
      read: (characteristics & IMAGE_SCN_MEM_READ) !== 0,
      write: (characteristics & IMAGE_SCN_MEM_WRITE) !== 0,
      exec: (characteristics & IMAGE_SCN_MEM_EXECUTE) !== 0,
    });
  }
  return sections;
}

function readSymbols(
  r: Reader,
  h: Headers,
  sections: SectionHeader[],
  strings: StringTable | undefined,
): PeSymbol[] {
  if (!strings) return [];
  const table = r.u32(h.coff + COFF.pointerToSymbolTable);
  const count = r.u32(h.coff + COFF.numberOfSymbols);
  const symbols: (PeSymbol & { isFunction: boolean })[] = [];
  for (let i = 0, auxCount = 0; i < count; i += 1 + auxCount) {
    const at = table + i * SYM.size;
    auxCount = r.u8(at + SYM.auxCount);
    if (i + auxCount >= count) {
      r.fail(at + SYM.auxCount, `symbol ${i}'s auxiliary records run past the ${count}-entry symbol table`);
    }
    // Section numbers 0, -1 and -2 (0xffff, 0xfffe) mean undefined, absolute and debug: no place in the image.
    const sectionNumber = r.u16(at + SYM.section);
    if (sectionNumber === 0 || sectionNumber >= 0x8000) continue;
    const storageClass = r.u8(at + SYM.storageClass);
    const isFunction = (r.u16(at + SYM.type) & 0x30) === IMAGE_SYM_DTYPE_FUNCTION;
    // Static non-functions are section symbols and local labels: noise in a fault report.
    if (storageClass !== IMAGE_SYM_CLASS_EXTERNAL && !(storageClass === IMAGE_SYM_CLASS_STATIC && isFunction)) continue;
    if (sectionNumber > sections.length) {
      r.fail(at + SYM.section, `symbol ${i} is in section ${sectionNumber}, but there are ${sections.length}`);
    }
    const section = sections[sectionNumber - 1];
    const value = r.u32(at + SYM.value);
    if (value > section.virtualSize) {
      r.fail(at + SYM.value, `symbol ${i} value ${hex(value)} lies beyond the end of section ${section.name}`);
    }
    symbols.push({ name: symbolName(r, at, strings, i), rva: section.rva + value, isFunction });
  }
  // nearestPeSymbol takes the last of the symbols sharing an address: put
  // functions there, ahead of the linker's labels (___crt_xc_end__ and kin) that often share it.
  return symbols.sort((a, b) => a.rva - b.rva || Number(a.isFunction) - Number(b.isFunction))
    .map(({ name, rva }) => ({ name, rva }));
}

function symbolName(r: Reader, at: number, strings: StringTable, index: number): string {
  // A name of up to 8 bytes is stored inline; longer ones are a zero word and a string table offset.
  if (r.u32(at) === 0) return stringTableEntry(r, strings, r.u32(at + 4), at + 4, `symbol ${index} name`);
  return inlineName(r, at);
}
