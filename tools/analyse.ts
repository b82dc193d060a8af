// What an app needs from the hypercall ABI. A C guest built against abi/pvx.h
// records every call it really uses in its .pvx_calls section (see PVX_USES).

import { ElfError, parseElf } from "../guest/elf.ts";

export function callsUsedByElf(bytes: Uint8Array, file: string): string[] {
  const section = parseElf(bytes, file).sections.find((s) => s.name === ".pvx_calls");
  if (!section) {
    throw new ElfError(
      file,
      0,
      "no .pvx_calls section: the app was not built against abi/pvx.h, so pvx cannot tell which calls it needs",
    );
  }
  const text = new TextDecoder().decode(bytes.subarray(section.offset, section.offset + section.size));
  return [...new Set(text.split("\0").filter(Boolean))].sort();
}
