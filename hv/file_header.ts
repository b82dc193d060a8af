// The 48-byte header both of pvx's container files (the .pvx bundle and the snapshot) start with: their
// magic (8 bytes), the format version (u32 LE at 8), the manifest's length (u32 LE at 12) and its SHA-256
// (32 bytes at 16). The JSON manifest follows, and says where everything else in the file is.

import { createHash } from "node:crypto";
import { hexBytes } from "../abi/hex.ts";

export const HEADER_SIZE = 48;
export const VERSION_OFFSET = 8;
export const MANIFEST_LENGTH_OFFSET = 12;
export const MANIFEST_HASH_OFFSET = 16;

/** What one kind of file's header must hold. */
export interface HeaderRules {
  magic: Uint8Array;
  /** What the file is, for "bad magic: not <kind>". */
  kind: string;
  /** The format versions a reader knows, oldest first. */
  versions: readonly [number, ...number[]];
  maxManifestBytes: number;
}

type Fail = (offset: number, reason: string) => never;

/**
 * Checks `header`, the first HEADER_SIZE bytes of a file of `fileSize` bytes (fewer if it is shorter): its magic,
 * a known version, and a manifest length within the limit and within the file.
 */
export function checkHeader(
  header: Uint8Array,
  fileSize: number,
  rules: HeaderRules,
  fail: Fail,
): { version: number; manifestLength: number } {
  const { magic, versions, maxManifestBytes } = rules;
  if (header.subarray(0, magic.length).some((b, i) => b !== magic[i])) fail(0, `bad magic: not ${rules.kind}`);
  if (fileSize < HEADER_SIZE) fail(fileSize, `truncated: the header needs ${HEADER_SIZE} bytes, file has ${fileSize}`);
  const view = new DataView(header.buffer, header.byteOffset, HEADER_SIZE);
  const version = view.getUint32(VERSION_OFFSET, true);
  if (!versions.includes(version)) {
    const known = versions.length === 1 ? `${versions[0]}` : `${versions[0]}..${versions.at(-1)}`;
    fail(VERSION_OFFSET, `format version ${version} is not supported (this reader knows ${known})`);
  }
  const manifestLength = view.getUint32(MANIFEST_LENGTH_OFFSET, true);
  if (manifestLength > maxManifestBytes) {
    fail(MANIFEST_LENGTH_OFFSET, `manifest length ${manifestLength} exceeds the ${maxManifestBytes}-byte limit`);
  }
  const manifestEnd = HEADER_SIZE + manifestLength;
  if (fileSize < manifestEnd) {
    fail(fileSize, `truncated: the ${manifestLength}-byte manifest at offset ${HEADER_SIZE} ends at ${manifestEnd}`);
  }
  return { version, manifestLength };
}

/** The manifest's SHA-256 in hex, once it matches the one `header` declares. */
export function checkManifestHash(header: Uint8Array, manifestBytes: Uint8Array, fail: Fail): string {
  const declared = hexBytes(header.subarray(MANIFEST_HASH_OFFSET, HEADER_SIZE));
  const actual = createHash("sha256").update(manifestBytes).digest("hex");
  if (actual !== declared) {
    fail(MANIFEST_HASH_OFFSET, `manifest sha256 mismatch: header says ${declared}, manifest bytes hash to ${actual}`);
  }
  return actual;
}

/** The header for `manifestBytes`, followed by them, with `extra` bytes of zeros after for what follows. */
export function headerWithManifest(
  magic: Uint8Array,
  version: number,
  manifestBytes: Uint8Array,
  extra = 0,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(HEADER_SIZE + manifestBytes.length + extra);
  const view = new DataView(out.buffer);
  out.set(magic, 0);
  view.setUint32(VERSION_OFFSET, version, true);
  view.setUint32(MANIFEST_LENGTH_OFFSET, manifestBytes.length, true);
  out.set(createHash("sha256").update(manifestBytes).digest(), MANIFEST_HASH_OFFSET);
  out.set(manifestBytes, HEADER_SIZE);
  return out;
}
