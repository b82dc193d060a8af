// What parsing a PE32+ file yields (guest/pe.ts), and the error a malformed one ends in.

export class PeError extends Error {
  constructor(readonly file: string, readonly offset: number, readonly reason: string) {
    super(`${file}: offset 0x${offset.toString(16)}: ${reason}`);
    this.name = "PeError";
  }
}

export interface PeSection {
  name: string;
  rva: number;
  /** Bytes the section occupies in memory (SizeOfRawData when the header's VirtualSize is 0). */
  virtualSize: number;
  rawOffset: number;
  /** Bytes copied from the file: SizeOfRawData is padded to FileAlignment, so it is capped at virtualSize. */
  rawSize: number;
  read: boolean;
  write: boolean;
  exec: boolean;
}

export interface PeImport {
  /** As written in the import descriptor, e.g. "KERNEL32.dll". */
  dll: string;
  name?: string;
  ordinal?: number;
  hint?: number;
  /** RVA of the IAT slot the loader fills. */
  iatRva: number;
}

export interface PeExport {
  name?: string;
  ordinal: number;
  rva?: number;
  /** "NTDLL.RtlAllocateHeap": the export lives in another DLL. */
  forwarder?: string;
}

export interface PeRelocation {
  rva: number;
  /** ABSOLUTE (0, block padding, skipped) or DIR64 (10); parsePe refuses every other type. */
  type: number;
}

export interface PeTls {
  callbackRvas: number[];
  indexRva: number;
  startRva: number;
  endRva: number;
  zeroFill: number;
}

export interface PeSymbol {
  name: string;
  rva: number;
}

export interface PeImage {
  file: string;
  isDll: boolean;
  machine: number;
  subsystem: number;
  imageBase: number;
  sizeOfImage: number;
  sizeOfHeaders: number;
  /** 0 for a DLL without an entry point. */
  entryRva: number;
  sectionAlignment: number;
  fileAlignment: number;
  stackReserve: number;
  stackCommit: number;
  heapReserve: number;
  heapCommit: number;
  /** IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE */
  dynamicBase: boolean;
  /** IMAGE_FILE_RELOCS_STRIPPED: the image can only load at imageBase. */
  relocationsStripped: boolean;
  /** In section table order, which parsePe requires to be ascending and non-overlapping. */
  sections: PeSection[];
  imports: PeImport[];
  /** One entry per exported name, plus one per ordinal exported without a name; by ordinal. */
  exports: PeExport[];
  exportDllName?: string;
  /** Base relocations in directory order. */
  relocations: PeRelocation[];
  tls?: PeTls;
  /** The exception directory: .pdata's RUNTIME_FUNCTION entries, which the guest's unwinder searches. */
  functionTable?: { rva: number; size: number };
  /** External symbols and static functions from the COFF symbol table (empty when stripped), sorted by rva. */
  symbols: PeSymbol[];
}
