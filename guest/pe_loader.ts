// A parsed PE32+ image (guest/pe.ts) put into guest memory: sections copied, base relocations applied,
// pages mapped with their protections, imports bound; and the symbol a fault address belongs to.

import { appBase, PAGE, pageDown } from "../abi/memory_map.ts";
import type { PageTables } from "./paging.ts";
import type { Protection } from "../abi/address_space.ts";
import { PeError, type PeImage, type PeImport } from "./pe_image.ts";
import { COFF, DOS, IMAGE_REL_BASED_DIR64, OPT } from "./pe_format.ts";
import { upperBound } from "./symbol_search.ts";
import { hex } from "../abi/hex.ts";

/**
 * Copies headers and sections to [base, base+sizeOfImage) in guest memory,
 * zero-fills the rest, applies base relocations when base differs from the
 * preferred ImageBase, and maps headers read-only and each section's pages
 * with its protections. Throws PeError if the image does not fit in
 * [appBase, limit) or cannot move to `base`. `bytes` must be the file `image`
 * was parsed from.
 */
export function loadPe(
  image: PeImage,
  bytes: Uint8Array,
  guestRam: Uint8Array,
  pageTables: PageTables,
  base: number,
  limit: number,
): void {
  if (limit > guestRam.length) {
    throw new RangeError(`loadPe: limit ${hex(limit)} lies beyond the ${hex(guestRam.length)}-byte guest RAM`);
  }
  if (base % PAGE !== 0) throw new RangeError(`loadPe: base ${hex(base)} is not page aligned`);
  // Errors name the header field that decides; PeImage keeps values, not where they were read from.
  const lfanew = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(DOS.lfanew, true);
  const coff = lfanew + 4, optional = coff + COFF.size;
  const end = base + image.sizeOfImage;
  if (base < appBase || end > limit) {
    throw new PeError(
      image.file,
      optional + OPT.sizeOfImage,
      `image [${hex(base)}, ${hex(end)}) does not fit in the app region [${hex(appBase)}, ${hex(limit)})`,
    );
  }
  if (base !== image.imageBase && image.relocationsStripped) {
    throw new PeError(
      image.file,
      coff + COFF.characteristics,
      `relocations are stripped (IMAGE_FILE_RELOCS_STRIPPED): the image loads only at its ImageBase ` +
        `${hex(image.imageBase)}, not at ${hex(base)}`,
    );
  }
  // Zeroing the whole span first covers each section's tail beyond its file
  // data and the alignment gaps between sections in one pass.
  guestRam.fill(0, base, end);
  guestRam.set(bytes.subarray(0, image.sizeOfHeaders), base);
  for (const s of image.sections) guestRam.set(bytes.subarray(s.rawOffset, s.rawOffset + s.rawSize), base + s.rva);
  if (base !== image.imageBase) relocate(image, guestRam, base);
  for (const [page, protection] of pageProtections(image, base)) pageTables.map(page, PAGE, protection);
}

function relocate(image: PeImage, guestRam: Uint8Array, base: number): void {
  const view = new DataView(guestRam.buffer, guestRam.byteOffset, guestRam.byteLength);
  const delta = BigInt(base) - BigInt(image.imageBase);
  for (const { rva, type } of image.relocations) {
    if (type !== IMAGE_REL_BASED_DIR64) continue;
    const at = base + rva;
    view.setBigUint64(at, BigInt.asUintN(64, view.getBigUint64(at, true) + delta), true);
  }
}

/**
 * x86 has no execute-or-write-only pages, so a section without
 * IMAGE_SCN_MEM_READ is still readable. With SectionAlignment below the page
 * size, sections (and the headers) can share a page, which then gets the union
 * of their permissions since a page carries only one.
 */
function pageProtections(image: PeImage, base: number): Map<number, Protection> {
  const pages = new Map<number, Protection>();
  const regions = [{ rva: 0, virtualSize: image.sizeOfHeaders, write: false, exec: false }, ...image.sections];
  for (const region of regions) {
    const start = base + region.rva, end = start + region.virtualSize;
    for (let page = pageDown(start); page < end; page += PAGE) {
      const other = pages.get(page);
      pages.set(page, { write: region.write || (other?.write ?? false), exec: region.exec || (other?.exec ?? false) });
    }
  }
  return pages;
}

/**
 * Writes each import's resolved guest address into its IAT slot. The IAT may
 * sit in a read-only section (MSVC puts it in .rdata), so this writes guest
 * RAM directly rather than through the guest's page tables.
 */
export function bindImports(
  image: PeImage,
  guestRam: Uint8Array,
  base: number,
  resolve: (imp: PeImport) => number,
): void {
  if (base + image.sizeOfImage > guestRam.length) {
    throw new RangeError(
      `bindImports: image at ${hex(base)} extends beyond the ${hex(guestRam.length)}-byte guest RAM`,
    );
  }
  const view = new DataView(guestRam.buffer, guestRam.byteOffset, guestRam.byteLength);
  for (const imp of image.imports) {
    const address = resolve(imp);
    if (!Number.isSafeInteger(address) || address < 0) {
      throw new RangeError(`bindImports: ${imp.dll}!${imp.name ?? `#${imp.ordinal}`} resolved to ${address}`);
    }
    view.setBigUint64(base + imp.iatRva, BigInt(address), true);
  }
}

/**
 * The symbol an address belongs to, for fault reports. COFF symbols carry no
 * size, so the closest preceding symbol only counts if it is in the same
 * section as the address: a fault in .data is not blamed on the last function.
 */
export function nearestPeSymbol(
  image: PeImage,
  base: number,
  address: number,
): { name: string; offset: number } | undefined {
  const rva = address - base;
  const section = image.sections.find((s) => rva >= s.rva && rva < s.rva + s.virtualSize);
  if (!section) return undefined;
  const { symbols } = image;
  const symbol = symbols[upperBound(symbols, (s) => s.rva, rva) - 1];
  if (!symbol || symbol.rva < section.rva) return undefined;
  return { name: symbol.name, offset: rva - symbol.rva };
}
