// The PE32+ layout: field offsets and flag values of the headers and data-directory structures that
// pvx reads and writes, declared once for the parser (guest/pe.ts), the writer and the loader.

export const IMAGE_FILE_MACHINE_AMD64 = 0x8664;
export const IMAGE_FILE_MACHINE_I386 = 0x14c;
export const PE32_MAGIC = 0x10b, PE32_PLUS_MAGIC = 0x20b;
export const IMAGE_FILE_RELOCS_STRIPPED = 0x1, IMAGE_FILE_EXECUTABLE_IMAGE = 0x2, IMAGE_FILE_DLL = 0x2000;
export const IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE = 0x40;
export const SUBSYSTEM_WINDOWS_GUI = 2, SUBSYSTEM_WINDOWS_CUI = 3;
export const IMAGE_SCN_MEM_EXECUTE = 0x2000_0000, IMAGE_SCN_MEM_READ = 0x4000_0000, IMAGE_SCN_MEM_WRITE = 0x8000_0000;
export const IMAGE_REL_BASED_ABSOLUTE = 0, IMAGE_REL_BASED_DIR64 = 10;
export const IMAGE_SYM_CLASS_EXTERNAL = 2, IMAGE_SYM_CLASS_STATIC = 3;
export const IMAGE_SYM_DTYPE_FUNCTION = 0x20;

/** Field offsets in the DOS header, the COFF file header and the PE32+ optional header. */
export const DOS = { magic: 0, lfanew: 0x3c, size: 64 } as const;
export const COFF = {
  machine: 0,
  numberOfSections: 2,
  pointerToSymbolTable: 8,
  numberOfSymbols: 12,
  sizeOfOptionalHeader: 16,
  characteristics: 18,
  size: 20,
} as const;
export const OPT = {
  magic: 0,
  entry: 16,
  imageBase: 24,
  sectionAlignment: 32,
  fileAlignment: 36,
  sizeOfImage: 56,
  sizeOfHeaders: 60,
  subsystem: 68,
  dllCharacteristics: 70,
  stackReserve: 72,
  stackCommit: 80,
  heapReserve: 88,
  heapCommit: 96,
  numberOfRvaAndSizes: 108,
  dataDirectories: 112,
} as const;
export const SEC = { virtualSize: 8, rva: 12, rawSize: 16, rawOffset: 20, characteristics: 36, size: 40 } as const;
export const SYM = { value: 8, section: 12, type: 14, storageClass: 16, auxCount: 17, size: 18 } as const;
export const IMPORT_DESCRIPTOR = { lookupTable: 0, name: 12, addressTable: 16, size: 20 } as const;
export const EXPORT_DIRECTORY = {
  name: 12,
  ordinalBase: 16,
  functionCount: 20,
  nameCount: 24,
  addressTable: 28,
  namePointers: 32,
  ordinalTable: 36,
  size: 40,
} as const;
export const TLS_DIRECTORY = { start: 0, end: 8, index: 16, callbacks: 24, zeroFill: 32, size: 40 } as const;
export const DIRECTORY = {
  export: 0,
  import: 1,
  exception: 3,
  baseRelocation: 5,
  tls: 9,
  count: 16,
  entrySize: 8,
} as const;
