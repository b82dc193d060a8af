// The pvx snapshot, format v1: a VM's state at one instant in one file. A JSON
// manifest, opaque sections the caller names (CPU and host state, the file
// overlay, ...) and guest RAM laid out so that restoring maps the file instead
// of reading it. Layout and rationale are in docs/snapshot.md. Every byte is
// header, hashed manifest, a hashed section or memory extent, or a byte that
// must read as zero, so a reader never trusts a number that nothing checks.
// This module is the format: its constants, its manifest and the rules a
// manifest must keep; hv/snapshot_file.ts reads snapshots, hv/snapshot_writer.ts
// writes them.

import { createHash } from "node:crypto";
import { describeValue } from "./describe_value.ts";
import { manifestFields } from "./manifest_json.ts";
import { PAGE } from "../abi/memory_map.ts";
import { HEADER_SIZE, type HeaderRules } from "./file_header.ts";

export const MAGIC = new TextEncoder().encode("PVXSNAP\0");
export const FORMAT_VERSION = 1;
/**
 * The manifest is parsed as JSON in one piece, so its size bounds that work. It lists one extent per run of
 * present pages, and 32 MiB leaves room for 1 GiB of guest RAM in the worst case (every other page present).
 */
export const MAX_MANIFEST_BYTES = 32 << 20;
export const HEADER_RULES: HeaderRules = {
  magic: MAGIC,
  kind: "a pvx snapshot",
  versions: [FORMAT_VERSION],
  maxManifestBytes: MAX_MANIFEST_BYTES,
};
/** Every size and offset stays below this, so that sums of them are exact in a JS number. */
export const MAX_FILE_BYTES = 2 ** 48;

/** Memory is copied, hashed and read in pieces of this size, which bounds the buffers whatever the guest's size. */
export const CHUNK_BYTES = 4 << 20;
const KINDS = ["full", "diff"] as const;
const SECTION_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/;
const CREATED_AT_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export interface MemoryExtent {
  /** Guest address, page aligned; the bytes are at file offset `memory.fileOffset + start`. */
  start: number;
  /** A positive multiple of PAGE. */
  length: number;
  /** Lowercase hex SHA-256 of the extent's guest bytes. */
  sha256: string;
}

export interface SectionEntry {
  name: string;
  /** File offset, always where the previous section ends (the first starts right after the manifest). */
  offset: number;
  length: number;
  sha256: string;
}

export interface SnapshotManifest {
  format: 1;
  /** A full snapshot holds all of guest RAM; a diff only the pages that differ from its parent. */
  kind: (typeof KINDS)[number];
  /** The parent snapshot's id for a diff, null for a full snapshot. */
  parent: string | null;
  /** The .pvx bundle the VM runs, referenced by hash and never copied in. */
  bundle: { sha256: string };
  /** When the snapshot was written, as Date.prototype.toISOString spells it. */
  createdAt: string;
  /** Whatever the caller chose to describe the snapshot with; only its being an object is checked. */
  meta: Record<string, unknown>;
  memory: {
    /** Guest RAM bytes, a positive multiple of PAGE. */
    size: number;
    /** Page-aligned start of the memory region: guest byte `a` is at file offset `fileOffset + a`. */
    fileOffset: number;
    /** Present pages: sorted, apart (never adjacent), inside `size`. */
    extents: MemoryExtent[];
  };
  /** In the order their bytes follow the manifest. */
  sections: SectionEntry[];
}

/** A snapshot that is malformed, corrupt or inconsistent, and where the problem was found. */
export class SnapshotError extends Error {
  constructor(readonly file: string, readonly offset: number, readonly reason: string) {
    super(`${file}: offset ${offset}: ${reason}`);
    this.name = "SnapshotError";
  }
}

const MANIFEST_FIELDS = ["format", "kind", "parent", "bundle", "createdAt", "meta", "memory", "sections"];
const BUNDLE_FIELDS = ["sha256"];
const MEMORY_FIELDS = ["size", "fileOffset", "extents"];
const EXTENT_FIELDS = ["start", "length", "sha256"];
const SECTION_FIELDS = ["name", "offset", "length", "sha256"];

export function alignUp(offset: number): number {
  return Math.ceil(offset / PAGE) * PAGE;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Checks a parsed manifest against every rule of format v1 and returns a fresh copy of it. `manifestLength` is
 * the manifest's size in bytes, from which the section offsets and `memory.fileOffset` are derived: they are
 * stored for the reader's convenience but must equal the derived values, so the layout has one reading.
 * Unknown fields are refused: a reader that skipped a field a newer writer relies on would restore wrongly.
 */
export function validateManifest(value: unknown, file: string, manifestLength: number): SnapshotManifest {
  const fail = (field: string, problem: string): never => {
    throw new SnapshotError(file, HEADER_SIZE, `${field}: ${problem}`);
  };

  const { object, record, string, integer, array } = manifestFields(fail);

  const sha256 = (value: unknown, field: string): string => {
    const s = string(value, field);
    if (!SHA256_HEX_PATTERN.test(s)) fail(field, `must be 64 lowercase hex digits, got ${describeValue(s)}`);
    return s;
  };

  const pages = (value: unknown, field: string, min: number, max: number): number => {
    const n = integer(value, field, min, max);
    if (n % PAGE !== 0) fail(field, `must be a multiple of ${PAGE}, got ${n}`);
    return n;
  };

  const m = record(value, "manifest", MANIFEST_FIELDS);

  if (m.format !== FORMAT_VERSION) fail("manifest.format", `must be ${FORMAT_VERSION}, got ${describeValue(m.format)}`);

  const kind = m.kind as SnapshotManifest["kind"];
  if (!KINDS.includes(kind)) {
    fail("manifest.kind", `must be one of ${KINDS.map((k) => `"${k}"`).join(", ")}, got ${describeValue(kind)}`);
  }

  let parent: string | null = null;
  if (kind === "diff") parent = sha256(m.parent, "manifest.parent");
  else if (m.parent !== null) {
    fail("manifest.parent", `must be null for a full snapshot, got ${describeValue(m.parent)}`);
  }

  const bundle = record(m.bundle, "manifest.bundle", BUNDLE_FIELDS);
  const bundleSha256 = sha256(bundle.sha256, "manifest.bundle.sha256");

  const createdAt = string(m.createdAt, "manifest.createdAt");
  const time = Date.parse(createdAt);
  if (!CREATED_AT_PATTERN.test(createdAt) || Number.isNaN(time) || new Date(time).toISOString() !== createdAt) {
    fail(
      "manifest.createdAt",
      `must be a UTC time such as "2025-01-31T12:00:00.000Z", got ${describeValue(createdAt)}`,
    );
  }

  const meta = object(m.meta, "manifest.meta");

  let sectionsEnd = HEADER_SIZE + manifestLength;
  const names = new Map<string, number>();
  const sections = array(m.sections, "manifest.sections").map((entry, i): SectionEntry => {
    const field = `manifest.sections[${i}]`;
    const s = record(entry, field, SECTION_FIELDS);
    const name = string(s.name, `${field}.name`);
    if (!SECTION_NAME_PATTERN.test(name)) {
      fail(`${field}.name`, `must be 1..64 of [A-Za-z0-9._-], got ${describeValue(name)}`);
    }
    const twin = names.get(name);
    if (twin !== undefined) fail(`${field}.name`, `${describeValue(name)} repeats manifest.sections[${twin}].name`);
    names.set(name, i);
    const offset = integer(s.offset, `${field}.offset`, 0, MAX_FILE_BYTES);
    if (offset !== sectionsEnd) {
      const where = i === 0 ? "where the manifest ends" : `where manifest.sections[${i - 1}] ends`;
      fail(`${field}.offset`, `must be ${sectionsEnd} (${where}), got ${offset}`);
    }
    const length = integer(s.length, `${field}.length`, 0, MAX_FILE_BYTES - offset);
    sectionsEnd += length;
    return { name, offset, length, sha256: sha256(s.sha256, `${field}.sha256`) };
  });

  const memory = record(m.memory, "manifest.memory", MEMORY_FIELDS);
  const size = pages(memory.size, "manifest.memory.size", PAGE, MAX_FILE_BYTES);
  const fileOffset = integer(memory.fileOffset, "manifest.memory.fileOffset", 0, MAX_FILE_BYTES);
  if (fileOffset !== alignUp(sectionsEnd)) {
    fail(
      "manifest.memory.fileOffset",
      `must be ${alignUp(sectionsEnd)} (the first page boundary after the sections, which end at ${sectionsEnd}), ` +
        `got ${fileOffset}`,
    );
  }
  let extentsEnd = 0;
  const extents = array(memory.extents, "manifest.memory.extents").map((entry, i): MemoryExtent => {
    const field = `manifest.memory.extents[${i}]`;
    const e = record(entry, field, EXTENT_FIELDS);
    const start = pages(e.start, `${field}.start`, 0, size - PAGE);
    // Strictly greater: adjacent extents would be one run of pages with two spellings.
    if (i > 0 && start <= extentsEnd) {
      fail(
        `${field}.start`,
        `must be greater than ${extentsEnd}, where manifest.memory.extents[${i - 1}] ends ` +
          `(extents are sorted and never touch), got ${start}`,
      );
    }
    const length = pages(e.length, `${field}.length`, PAGE, size - start);
    extentsEnd = start + length;
    return { start, length, sha256: sha256(e.sha256, `${field}.sha256`) };
  });

  return {
    format: FORMAT_VERSION,
    kind,
    parent,
    bundle: { sha256: bundleSha256 },
    createdAt,
    meta,
    memory: { size, fileOffset, extents },
    sections,
  };
}

/** Word-sized reads are what make scanning all of guest RAM affordable. */
export function isZero(bytes: Uint8Array): boolean {
  if (bytes.byteOffset % 4 !== 0 || bytes.length % 4 !== 0) return bytes.every((b) => b === 0);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}
