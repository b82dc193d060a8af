// The smallest console executable, written for guests pvx makes itself (the warm process's stand-in app).

import { appBase, MiB, PAGE } from "../abi/memory_map.ts";
import {
  COFF,
  DIRECTORY,
  DOS,
  IMAGE_FILE_EXECUTABLE_IMAGE,
  IMAGE_FILE_MACHINE_AMD64,
  IMAGE_FILE_RELOCS_STRIPPED,
  IMAGE_SCN_MEM_EXECUTE,
  IMAGE_SCN_MEM_READ,
  IMAGE_SCN_MEM_WRITE,
  IMPORT_DESCRIPTOR,
  OPT,
  PE32_PLUS_MAGIC,
  SEC,
  SUBSYSTEM_WINDOWS_CUI,
} from "./pe_format.ts";

/** Where writePe's image lies: its code, and the import address table, one 8-byte slot per import in order. */
export const writtenPe = { imageBase: appBase, code: appBase + 0x1000, iat: appBase + 0x2000 } as const;

/**
 * The smallest console executable: a .text of `code` (at most 512 bytes), entered at its first byte, and an .idata
 * importing `imports` by name from `dll`. For guests pvx makes itself; it loads only at its ImageBase, where pvx
 * loads an exe.
 */
export function writePe(code: Uint8Array, dll: string, imports: string[]): Uint8Array {
  const FILE_ALIGNMENT = 0x200, headersSize = FILE_ALIGNMENT, text = 0x1000, idata = 0x2000;
  const bytes = new Uint8Array(headersSize + 2 * FILE_ALIGNMENT);
  const v = new DataView(bytes.buffer);
  const ascii = (at: number, text: string) => bytes.set(new TextEncoder().encode(text), at);
  if (code.length > FILE_ALIGNMENT) throw new RangeError(`writePe: ${code.length} bytes of code exceed 512`);

  // .idata: the IAT first, at a place that does not move, then the lookup table, descriptors and names.
  const slots = 8 * (imports.length + 1);
  const lookup = idata + slots, descriptors = lookup + slots, dllName = descriptors + 2 * IMPORT_DESCRIPTOR.size;
  let hints = dllName + dll.length + 1 + 1 & ~1;
  const raw = (rva: number) => headersSize + FILE_ALIGNMENT + rva - idata;
  for (const [i, name] of imports.entries()) {
    v.setBigUint64(raw(idata + 8 * i), BigInt(hints), true);
    v.setBigUint64(raw(lookup + 8 * i), BigInt(hints), true);
    ascii(raw(hints) + 2, name); // after its 2-byte hint, 0
    hints += 2 + name.length + 1 + 1 & ~1;
  }
  if (raw(hints) > bytes.length) throw new RangeError("writePe: the import names exceed 512 bytes");
  v.setUint32(raw(descriptors) + IMPORT_DESCRIPTOR.lookupTable, lookup, true);
  v.setUint32(raw(descriptors) + IMPORT_DESCRIPTOR.name, dllName, true);
  v.setUint32(raw(descriptors) + IMPORT_DESCRIPTOR.addressTable, idata, true);
  ascii(raw(dllName), dll);

  v.setUint16(DOS.magic, 0x5a4d, true);
  v.setUint32(DOS.lfanew, DOS.size, true);
  v.setUint32(DOS.size, 0x4550, true);
  const coff = DOS.size + 4, optional = coff + COFF.size;
  const optionalSize = OPT.dataDirectories + DIRECTORY.count * DIRECTORY.entrySize;
  v.setUint16(coff + COFF.machine, IMAGE_FILE_MACHINE_AMD64, true);
  v.setUint16(coff + COFF.numberOfSections, 2, true);
  v.setUint16(coff + COFF.sizeOfOptionalHeader, optionalSize, true);
  v.setUint16(coff + COFF.characteristics, IMAGE_FILE_RELOCS_STRIPPED | IMAGE_FILE_EXECUTABLE_IMAGE, true);
  v.setUint16(optional + OPT.magic, PE32_PLUS_MAGIC, true);
  v.setUint32(optional + OPT.entry, text, true);
  v.setBigUint64(optional + OPT.imageBase, BigInt(writtenPe.imageBase), true);
  v.setUint32(optional + OPT.sectionAlignment, PAGE, true);
  v.setUint32(optional + OPT.fileAlignment, FILE_ALIGNMENT, true);
  v.setUint32(optional + OPT.sizeOfImage, idata + PAGE, true);
  v.setUint32(optional + OPT.sizeOfHeaders, headersSize, true);
  v.setUint16(optional + OPT.subsystem, SUBSYSTEM_WINDOWS_CUI, true);
  v.setBigUint64(optional + OPT.stackReserve, BigInt(MiB), true);
  v.setBigUint64(optional + OPT.stackCommit, BigInt(PAGE), true);
  v.setBigUint64(optional + OPT.heapReserve, BigInt(MiB), true);
  v.setBigUint64(optional + OPT.heapCommit, BigInt(PAGE), true);
  v.setUint32(optional + OPT.numberOfRvaAndSizes, DIRECTORY.count, true);
  const importDirectory = optional + OPT.dataDirectories + DIRECTORY.import * DIRECTORY.entrySize;
  v.setUint32(importDirectory, descriptors, true);
  v.setUint32(importDirectory + 4, 2 * IMPORT_DESCRIPTOR.size, true);
  const sections = [
    { name: ".text", rva: text, flags: IMAGE_SCN_MEM_READ | IMAGE_SCN_MEM_EXECUTE },
    { name: ".idata", rva: idata, flags: IMAGE_SCN_MEM_READ | IMAGE_SCN_MEM_WRITE },
  ];
  for (const [i, section] of sections.entries()) {
    const at = optional + optionalSize + i * SEC.size;
    ascii(at, section.name);
    v.setUint32(at + SEC.virtualSize, FILE_ALIGNMENT, true);
    v.setUint32(at + SEC.rva, section.rva, true);
    v.setUint32(at + SEC.rawSize, FILE_ALIGNMENT, true);
    v.setUint32(at + SEC.rawOffset, headersSize + i * FILE_ALIGNMENT, true);
    v.setUint32(at + SEC.characteristics, section.flags, true);
  }
  bytes.set(code, headersSize);
  return bytes;
}
