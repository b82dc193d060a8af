// The structures a PE32+ image reaches through its data directories (imports, exports, base relocations,
// TLS), read through the image's address space as the loader lays it out, each checked to lie in
// file-backed bytes before it is trusted. Headers and sections are guest/pe.ts's.

import type { BinaryReader as Reader } from "./binary_reader.ts";
import {
  DIRECTORY,
  EXPORT_DIRECTORY,
  IMAGE_REL_BASED_ABSOLUTE,
  IMAGE_REL_BASED_DIR64,
  IMPORT_DESCRIPTOR,
  OPT,
  TLS_DIRECTORY,
} from "./pe_format.ts";
import type { PeExport, PeImport, PeRelocation, PeSection, PeTls } from "./pe_image.ts";

// Real images stay far below these; anything bigger is a corrupt count,
// refused before it drives an allocation or a long walk.
const MAX_IMPORT_DLLS = 1000;
const MAX_IMPORTS = 10_000;
/** Ordinals are 16-bit, so no export table can hold more entries. */
const MAX_EXPORTS = 0x10000;
const MAX_RELOCATIONS = 1_000_000;
const MAX_TLS_CALLBACKS = 1000;

const hex = (n: number) => `0x${n.toString(16)}`;

/** What of the headers the image's address space is laid out from. */
export interface ImageLayout {
  /** File offset of the optional header, where the data directories are. */
  optional: number;
  imageBase: number;
  sizeOfImage: number;
  sizeOfHeaders: number;
  directoryCount: number;
}

export interface DataDirectory {
  /** File offset of the directory entry. */
  at: number;
  name: string;
  rva: number;
  size: number;
}

/** A stretch of the loaded image and the file bytes behind its start. */
interface Region {
  name: string;
  rva: number;
  virtualSize: number;
  rawOffset: number;
  rawSize: number;
}

/**
 * The image as the loader lays it out: the headers at RVA 0, then the
 * sections. Structures reached through data directories are read from the
 * file bytes behind their RVAs, so each must lie in file-backed bytes of one
 * region; linkers never put them in the zero-filled tail of a section.
 */
export class ImageSpace {
  readonly #regions: Region[];

  constructor(readonly r: Reader, readonly h: ImageLayout, readonly sections: readonly PeSection[]) {
    const headers = { name: "headers", rva: 0, virtualSize: h.sizeOfHeaders, rawOffset: 0, rawSize: h.sizeOfHeaders };
    this.#regions = [headers, ...sections];
  }

  #region(rva: number): Region | undefined {
    return this.#regions.find((region) => rva >= region.rva && rva < region.rva + region.virtualSize);
  }

  executable(rva: number): boolean {
    return this.sections.some((s) => s.exec && rva >= s.rva && rva < s.rva + s.virtualSize);
  }

  /** Refuses [rva, rva+size) unless it lies inside the image. */
  requireInImage(rva: number, size: number, declaredAt: number, what: string): void {
    if (rva + size > this.h.sizeOfImage) {
      this.r.fail(
        declaredAt,
        `${what} [${hex(rva)}, ${hex(rva + size)}) lies outside the image (SizeOfImage ${hex(this.h.sizeOfImage)})`,
      );
    }
  }

  /** The file offset of the bytes at [rva, rva+size), which must all be file-backed in one region. */
  fileOffset(rva: number, size: number, declaredAt: number, what: string): number {
    this.requireInImage(rva, size, declaredAt, what);
    const region = this.#region(rva);
    if (!region) this.r.fail(declaredAt, `${what} at RVA ${hex(rva)} lies in no section`);
    if (rva + size > region.rva + region.rawSize) {
      this.r.fail(
        declaredAt,
        `${what} [${hex(rva)}, ${hex(rva + size)}) runs past the file data of ${region.name} ` +
          `(which ends at RVA ${hex(region.rva + region.rawSize)})`,
      );
    }
    return region.rawOffset + rva - region.rva;
  }

  /** The NUL-terminated string at `rva`, which must end inside the file data of its region. */
  string(rva: number, declaredAt: number, what: string): string {
    const start = this.fileOffset(rva, 1, declaredAt, what);
    const region = this.#region(rva)!;
    const text = this.r.cString(
      start,
      region.rawOffset + region.rawSize,
      declaredAt,
      `${what} at RVA ${hex(rva)} is not NUL-terminated inside the file data of ${region.name}`,
    );
    if (text === "") this.r.fail(declaredAt, `${what} at RVA ${hex(rva)} is empty`);
    return text;
  }

  /** A data directory's entry if the image has it (non-zero RVA), checked to lie inside the image. */
  directory(index: number, name: string, minimumSize: number): DataDirectory | undefined {
    if (index >= this.h.directoryCount) return undefined;
    const at = this.h.optional + OPT.dataDirectories + index * DIRECTORY.entrySize;
    const rva = this.r.u32(at), size = this.r.u32(at + 4);
    if (rva === 0) return undefined;
    if (size < minimumSize) {
      this.r.fail(at + 4, `${name} directory size ${size} is smaller than its ${minimumSize}-byte header`);
    }
    this.requireInImage(rva, size, at, `${name} directory`);
    return { at, name, rva, size };
  }

  /** Converts a VA field (absolute, for the preferred ImageBase) to an RVA of `size` bytes inside the image. */
  rvaOfVa(fieldAt: number, size: number, what: string): number {
    const va = this.r.u64(fieldAt);
    const rva = va - this.h.imageBase;
    if (rva < 0 || rva + size > this.h.sizeOfImage) {
      this.r.fail(
        fieldAt,
        `${what} VA ${hex(va)} is not inside the image ` +
          `[${hex(this.h.imageBase)}, ${hex(this.h.imageBase + this.h.sizeOfImage)})`,
      );
    }
    return rva;
  }
}

export function readImports(space: ImageSpace, directory: DataDirectory): PeImport[] {
  const r = space.r;
  const imports: PeImport[] = [];
  for (let index = 0;; index++) {
    const at = space.fileOffset(
      directory.rva + index * IMPORT_DESCRIPTOR.size,
      IMPORT_DESCRIPTOR.size,
      directory.at,
      `import descriptor ${index}`,
    );
    if (r.bytes.subarray(at, at + IMPORT_DESCRIPTOR.size).every((b) => b === 0)) return imports;
    if (index >= MAX_IMPORT_DLLS) r.fail(at, `more than ${MAX_IMPORT_DLLS} import descriptors`);
    const nameRva = r.u32(at + IMPORT_DESCRIPTOR.name);
    const addressTable = r.u32(at + IMPORT_DESCRIPTOR.addressTable);
    if (nameRva === 0) r.fail(at + IMPORT_DESCRIPTOR.name, `import descriptor ${index} has no DLL name (Name is 0)`);
    if (addressTable === 0) {
      r.fail(at + IMPORT_DESCRIPTOR.addressTable, `import descriptor ${index} has no IAT (FirstThunk is 0)`);
    }
    const dll = space.string(nameRva, at + IMPORT_DESCRIPTOR.name, `import descriptor ${index} DLL name`);
    // The lookup table names the imports; old linkers leave it 0 and name them in the IAT itself.
    const lookupTable = r.u32(at + IMPORT_DESCRIPTOR.lookupTable) || addressTable;
    const lookupField = at + (lookupTable === addressTable ? IMPORT_DESCRIPTOR.addressTable : 0);
    for (let i = 0;; i++) {
      const entry = space.fileOffset(lookupTable + 8 * i, 8, lookupField, `import lookup entry ${i} of ${dll}`);
      const low = r.u32(entry), high = r.u32(entry + 4);
      if (low === 0 && high === 0) break;
      if (imports.length >= MAX_IMPORTS) r.fail(entry, `more than ${MAX_IMPORTS} imports`);
      const iatRva = addressTable + 8 * i;
      space.requireInImage(iatRva, 8, at + IMPORT_DESCRIPTOR.addressTable, `IAT slot ${i} of ${dll}`);
      if (high & 0x8000_0000) {
        if (high !== 0x8000_0000 || low > 0xffff) {
          r.fail(entry, `import ${i} of ${dll} is by ordinal but sets reserved bits 16-62`);
        }
        imports.push({ dll, ordinal: low, iatRva });
      } else {
        if (high !== 0 || low & 0x8000_0000) {
          r.fail(entry, `import ${i} of ${dll} is by name but sets reserved bits 31-62`);
        }
        const hint = r.u16(space.fileOffset(low, 2, entry, `hint/name entry of import ${i} of ${dll}`));
        const name = space.string(low + 2, entry, `name of import ${i} of ${dll}`);
        imports.push({ dll, name, hint, iatRva });
      }
    }
  }
}

export function readExports(space: ImageSpace, directory: DataDirectory): { exports: PeExport[]; dllName?: string } {
  const r = space.r;
  const E = EXPORT_DIRECTORY;
  const at = space.fileOffset(directory.rva, E.size, directory.at, "export directory");
  const nameRva = r.u32(at + E.name);
  const dllName = nameRva === 0 ? undefined : space.string(nameRva, at + E.name, "export DLL name");
  const ordinalBase = r.u32(at + E.ordinalBase);
  const functionCount = r.u32(at + E.functionCount), nameCount = r.u32(at + E.nameCount);
  if (functionCount > MAX_EXPORTS) r.fail(at + E.functionCount, `${functionCount} exported functions exceed 65536`);
  if (nameCount > MAX_EXPORTS) r.fail(at + E.nameCount, `${nameCount} exported names exceed 65536`);
  if (functionCount > 0 && ordinalBase + functionCount - 1 > 0xffff) {
    r.fail(at + E.ordinalBase, `ordinals ${ordinalBase}..${ordinalBase + functionCount - 1} do not fit in 16 bits`);
  }
  const table = (field: number, entrySize: number, count: number, what: string) =>
    count === 0 ? 0 : space.fileOffset(r.u32(at + field), count * entrySize, at + field, what);
  const addresses = table(E.addressTable, 4, functionCount, "export address table");
  const namePointers = table(E.namePointers, 4, nameCount, "export name pointer table");
  const ordinals = table(E.ordinalTable, 2, nameCount, "export ordinal table");

  const namesByIndex = new Map<number, string[]>();
  for (let i = 0; i < nameCount; i++) {
    const name = space.string(r.u32(namePointers + 4 * i), namePointers + 4 * i, `export name ${i}`);
    const index = r.u16(ordinals + 2 * i);
    if (index >= functionCount) {
      r.fail(
        ordinals + 2 * i,
        `export "${name}" has ordinal index ${index}, beyond the ${functionCount}-entry export address table`,
      );
    }
    namesByIndex.set(index, [...namesByIndex.get(index) ?? [], name]);
  }

  const exports: PeExport[] = [];
  for (let index = 0; index < functionCount; index++) {
    const field = addresses + 4 * index;
    const rva = r.u32(field);
    const ordinal = ordinalBase + index;
    const names = namesByIndex.get(index) ?? [];
    if (rva === 0) {
      // A hole in the ordinal range; only a name pointing at it is an error.
      if (names.length) r.fail(field, `export "${names[0]}" (ordinal ${ordinal}) has address 0`);
      continue;
    }
    const isForwarder = rva >= directory.rva && rva < directory.rva + directory.size;
    if (!isForwarder) space.requireInImage(rva, 1, field, `export ordinal ${ordinal}`);
    const target = isForwarder ? { forwarder: readForwarder(space, rva, field, ordinal) } : { rva };
    if (names.length === 0) exports.push({ ordinal, ...target });
    for (const name of names) exports.push({ name, ordinal, ...target });
  }
  return { exports, dllName };
}

/** An export RVA inside the export directory names another DLL's export instead of code. */
function readForwarder(space: ImageSpace, rva: number, field: number, ordinal: number): string {
  const forwarder = space.string(rva, field, `forwarder of export ordinal ${ordinal}`);
  if (!/^[^.]+\..+$/.test(forwarder)) {
    space.r.fail(field, `forwarder "${forwarder}" of export ordinal ${ordinal} is not of the form DLL.name`);
  }
  return forwarder;
}

export function readRelocations(space: ImageSpace, directory: DataDirectory): PeRelocation[] {
  const r = space.r;
  const relocations: PeRelocation[] = [];
  for (let offset = 0; offset < directory.size;) {
    const blockRva = directory.rva + offset;
    if (directory.size - offset < 8) {
      r.fail(
        directory.at + 4,
        `base relocation directory ends with ${directory.size - offset} bytes, too few for a block`,
      );
    }
    const at = space.fileOffset(blockRva, 8, directory.at, "base relocation block");
    const pageRva = r.u32(at), blockSize = r.u32(at + 4);
    if (blockSize < 8 || blockSize % 2 !== 0) {
      r.fail(at + 4, `base relocation SizeOfBlock ${blockSize} is not an even number of at least 8`);
    }
    if (offset + blockSize > directory.size) {
      r.fail(at + 4, `base relocation block of ${blockSize} bytes runs past the end of the directory`);
    }
    const count = (blockSize - 8) / 2;
    if (relocations.length + count > MAX_RELOCATIONS) r.fail(at + 4, `more than ${MAX_RELOCATIONS} base relocations`);
    const entries = space.fileOffset(blockRva + 8, blockSize - 8, at + 4, "base relocation entries");
    for (let i = 0; i < count; i++) {
      const entry = r.u16(entries + 2 * i);
      const type = entry >>> 12, rva = pageRva + (entry & 0xfff);
      if (type === IMAGE_REL_BASED_DIR64) {
        space.requireInImage(rva, 8, entries + 2 * i, "DIR64 relocation target");
      } else if (type !== IMAGE_REL_BASED_ABSOLUTE) {
        r.fail(
          entries + 2 * i,
          `base relocation type ${type} at RVA ${hex(rva)} is not supported: PE32+ images use DIR64 (10) only`,
        );
      }
      relocations.push({ rva, type });
    }
    offset += blockSize;
  }
  return relocations;
}

export function readTls(space: ImageSpace, directory: DataDirectory): PeTls {
  const r = space.r;
  const T = TLS_DIRECTORY;
  const at = space.fileOffset(directory.rva, T.size, directory.at, "TLS directory");
  const startRva = space.rvaOfVa(at + T.start, 0, "TLS StartAddressOfRawData");
  const endRva = space.rvaOfVa(at + T.end, 0, "TLS EndAddressOfRawData");
  if (endRva < startRva) r.fail(at + T.end, "TLS EndAddressOfRawData precedes StartAddressOfRawData");
  const indexRva = space.rvaOfVa(at + T.index, 4, "TLS AddressOfIndex");
  const callbackRvas: number[] = [];
  if (r.u64(at + T.callbacks) !== 0) {
    const array = space.rvaOfVa(at + T.callbacks, 8, "TLS AddressOfCallBacks");
    for (let i = 0;; i++) {
      const slot = space.fileOffset(array + 8 * i, 8, at + T.callbacks, `TLS callback ${i}`);
      if (r.u64(slot) === 0) break;
      if (i >= MAX_TLS_CALLBACKS) r.fail(slot, `more than ${MAX_TLS_CALLBACKS} TLS callbacks`);
      const rva = space.rvaOfVa(slot, 1, `TLS callback ${i}`);
      if (!space.executable(rva)) r.fail(slot, `TLS callback ${i} at RVA ${hex(rva)} is not in an executable section`);
      callbackRvas.push(rva);
    }
  }
  return { callbackRvas, indexRva, startRva, endRva, zeroFill: r.u32(at + T.zeroFill) };
}
