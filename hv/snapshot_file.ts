// The pvx snapshot, format v1: a VM's state at one instant in one file. A JSON
// manifest, opaque sections the caller names (CPU and host state, the file
// overlay, ...) and guest RAM laid out so that restoring maps the file instead
// of reading it. Layout and rationale are in docs/snapshot.md. Every byte is
// header, hashed manifest, a hashed section or memory extent, or a byte that
// must read as zero, so a reader never trusts a number that nothing checks.

import { describeValue } from "./describe_value.ts";
import { manifestFields, manifestJson } from "./manifest_json.ts";
import { createHash } from "node:crypto";
import { writeAll, writeFileAtomically } from "./atomic_file.ts";
import {
  check,
  cString,
  ENXIO,
  lastErrno,
  libc,
  O_CLOEXEC,
  O_RDONLY,
  SEEK_DATA,
  SEEK_END,
  SEEK_HOLE,
  SysError,
} from "../ffi/libc.ts";
import { PAGE } from "../abi/memory_map.ts";
import { type GuestRam, mapGuestRamFromFile, overlayGuestRamFromFile, unmapGuestRam } from "./memory.ts";

export const MAGIC = new TextEncoder().encode("PVXSNAP\0");
export const FORMAT_VERSION = 1;
export const HEADER_SIZE = 48;
/** The unit of presence in a snapshot and of mmap: guest RAM is stored, mapped and overlaid in whole pages. */
/**
 * The manifest is parsed as JSON in one piece, so its size bounds that work. It lists one extent per run of
 * present pages, and 32 MiB leaves room for 1 GiB of guest RAM in the worst case (every other page present).
 */
export const MAX_MANIFEST_BYTES = 32 << 20;
/** Every size and offset stays below this, so that sums of them are exact in a JS number. */
export const MAX_FILE_BYTES = 2 ** 48;

const VERSION_OFFSET = 8;
const MANIFEST_LENGTH_OFFSET = 12;
const MANIFEST_HASH_OFFSET = 16;
/** Memory is copied, hashed and read in pieces of this size, which bounds the buffers whatever the guest's size. */
const CHUNK_BYTES = 4 << 20;
const KINDS = ["full", "diff"] as const;
const SECTION_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/;
const CREATED_AT_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** Stands in for hashes not yet computed: as long as any real one, so the manifest's length is known in advance. */
const PLACEHOLDER_SHA256 = "0".repeat(64);

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

function alignUp(offset: number): number {
  return Math.ceil(offset / PAGE) * PAGE;
}

function sha256Hex(bytes: Uint8Array): string {
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

/** An open snapshot file. Its memory is read only when verified or mapped; sections only when asked for. */
export interface Snapshot {
  readonly path: string;
  /** SHA-256 hex of the manifest bytes, which hold every other hash: it names the whole snapshot. */
  readonly id: string;
  readonly manifest: SnapshotManifest;
  /**
   * The open file, for mmap of the memory region at `manifest.memory.fileOffset`. It is the file that was
   * checked, even if a new snapshot has since been renamed over `path`.
   */
  readonly fd: number;
  /** The named section's bytes, read now and checked against their hash. */
  section(name: string): Uint8Array;
  /**
   * Checks every extent against its hash, and that the memory region holds nothing but zeros outside extents.
   * Reads the extents and whatever data the filesystem stores between them (nothing, for a file pvx wrote,
   * which leaves holes there), so its cost follows the pages present, not the size of guest RAM.
   */
  verifyMemory(): void;
  /**
   * The snapshot's packed form, in pieces: the file without its holes, i.e. every byte before the memory region,
   * then each extent's bytes in manifest order; `packedLength(manifest)` bytes in all. SnapshotUnpacker lays
   * it out again. Nothing is checked on the way: the unpacked file is checked when it is opened.
   */
  packed(): Generator<Uint8Array<ArrayBuffer>>;
  close(): void;
  [Symbol.dispose](): void;
}

/** How long a snapshot's packed form (Snapshot.packed) is. */
export function packedLength(manifest: SnapshotManifest): number {
  return manifest.memory.extents.reduce((sum, e) => sum + e.length, manifest.memory.fileOffset);
}

/** Fills `into` from `offset` of `fd`; a file that ends first has changed since it was checked. */
function readFully<T extends Uint8Array>(fd: number, file: string, offset: number, into: T): T {
  for (let done = 0; done < into.length;) {
    const n = check(
      `pread ${file}`,
      Number(libc().pread(fd, into.subarray(done), BigInt(into.length - done), BigInt(offset + done))),
    );
    if (n === 0) {
      throw new SnapshotError(file, offset + done, `truncated: ${into.length - done} more bytes were expected`);
    }
    done += n;
  }
  return into;
}

/** Word-sized reads are what make scanning all of guest RAM affordable. */
function isZero(bytes: Uint8Array): boolean {
  if (bytes.byteOffset % 4 !== 0 || bytes.length % 4 !== 0) return bytes.every((b) => b === 0);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/**
 * Checks a snapshot's header, its first HEADER_SIZE bytes (fewer if the file is shorter): magic, version, and a
 * manifest length within bounds and within `fileSize`, the length of the file. Returns the manifest's length.
 */
function checkHeader(header: Uint8Array, file: string, fileSize: number): number {
  const fail = (offset: number, reason: string): never => {
    throw new SnapshotError(file, offset, reason);
  };
  if (header.subarray(0, MAGIC.length).some((b, i) => b !== MAGIC[i])) fail(0, "bad magic: not a pvx snapshot");
  if (fileSize < HEADER_SIZE) {
    fail(fileSize, `truncated: the header needs ${HEADER_SIZE} bytes, file has ${fileSize}`);
  }
  const view = new DataView(header.buffer, header.byteOffset, HEADER_SIZE);
  const version = view.getUint32(VERSION_OFFSET, true);
  if (version !== FORMAT_VERSION) {
    fail(VERSION_OFFSET, `format version ${version} is not supported (this reader knows ${FORMAT_VERSION})`);
  }
  const manifestLength = view.getUint32(MANIFEST_LENGTH_OFFSET, true);
  if (manifestLength > MAX_MANIFEST_BYTES) {
    fail(MANIFEST_LENGTH_OFFSET, `manifest length ${manifestLength} exceeds the ${MAX_MANIFEST_BYTES}-byte limit`);
  }
  const manifestEnd = HEADER_SIZE + manifestLength;
  if (fileSize < manifestEnd) {
    fail(fileSize, `truncated: the ${manifestLength}-byte manifest at offset ${HEADER_SIZE} ends at ${manifestEnd}`);
  }
  return manifestLength;
}

/** Checks the manifest's hash (stored in `header`), encoding and schema: the snapshot's id and its manifest. */
function parseManifest(
  header: Uint8Array,
  manifestBytes: Uint8Array,
  file: string,
): { id: string; manifest: SnapshotManifest } {
  const fail = (offset: number, reason: string): never => {
    throw new SnapshotError(file, offset, reason);
  };
  const declared = Array.from(
    header.subarray(MANIFEST_HASH_OFFSET, HEADER_SIZE),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const id = sha256Hex(manifestBytes);
  if (id !== declared) {
    fail(MANIFEST_HASH_OFFSET, `manifest sha256 mismatch: header says ${declared}, manifest bytes hash to ${id}`);
  }

  const value = manifestJson(manifestBytes, (reason) => fail(HEADER_SIZE, reason));
  return { id, manifest: validateManifest(value, file, manifestBytes.length) };
}

function readManifest(fd: number, file: string): { id: string; manifest: SnapshotManifest } {
  const fail = (offset: number, reason: string): never => {
    throw new SnapshotError(file, offset, reason);
  };

  const fileSize = check(`lseek ${file}`, Number(libc().lseek(fd, 0n, SEEK_END)));
  const header = readFully(fd, file, 0, new Uint8Array(Math.min(fileSize, HEADER_SIZE)));
  const manifestLength = checkHeader(header, file, fileSize);
  const manifestEnd = HEADER_SIZE + manifestLength;
  const manifestBytes = readFully(fd, file, HEADER_SIZE, new Uint8Array(manifestLength));
  const { id, manifest } = parseManifest(header, manifestBytes, file);

  const { size, fileOffset } = manifest.memory;
  const end = fileOffset + size;
  if (fileSize < end) {
    const cut = manifest.sections.find((s) => fileSize < s.offset + s.length);
    fail(
      fileSize,
      cut
        ? `truncated: section ${JSON.stringify(cut.name)} at offset ${cut.offset} needs ${cut.length} bytes, ` +
          `only ${fileSize - cut.offset} remain`
        : `truncated: the memory region at offset ${fileOffset} (${size} bytes) ends at ${end}, the file at ${fileSize}`,
    );
  }
  if (fileSize > end) fail(end, `${fileSize - end} trailing bytes after the memory region`);

  const sectionsEnd = manifest.sections.reduce((at, s) => at + s.length, manifestEnd);
  const padding = readFully(fd, file, sectionsEnd, new Uint8Array(fileOffset - sectionsEnd));
  const stray = padding.findIndex((b) => b !== 0);
  if (stray >= 0) fail(sectionsEnd + stray, "the padding before the memory region is not zero");

  return { id, manifest };
}

class OpenSnapshot implements Snapshot {
  #fd: number;

  constructor(readonly path: string, fd: number, readonly id: string, readonly manifest: SnapshotManifest) {
    this.#fd = fd;
  }

  get fd(): number {
    // A closed descriptor's number is soon reused by some other file, which must not be read as this one.
    if (this.#fd < 0) throw new Error(`${this.path}: the snapshot is closed`);
    return this.#fd;
  }

  section(name: string): Uint8Array {
    const entry = this.manifest.sections.find((s) => s.name === name);
    if (!entry) {
      const present = this.manifest.sections.map((s) => JSON.stringify(s.name)).join(", ") || "none";
      throw new SnapshotError(
        this.path,
        HEADER_SIZE,
        `manifest.sections: no section named ${JSON.stringify(name)} (present: ${present})`,
      );
    }
    const bytes = readFully(this.fd, this.path, entry.offset, new Uint8Array(entry.length));
    const actual = sha256Hex(bytes);
    if (actual !== entry.sha256) {
      throw new SnapshotError(
        this.path,
        entry.offset,
        `section ${JSON.stringify(name)} at offset ${entry.offset} (length ${entry.length}): sha256 is ${actual}, ` +
          `manifest says ${entry.sha256}`,
      );
    }
    return bytes;
  }

  verifyMemory(): void {
    const { fileOffset, size, extents } = this.manifest.memory;
    const scratch = new Uint8Array(CHUNK_BYTES);
    for (const e of extents) {
      const hash = createHash("sha256");
      for (let at = e.start; at < e.start + e.length; at += CHUNK_BYTES) {
        const piece = scratch.subarray(0, Math.min(CHUNK_BYTES, e.start + e.length - at));
        hash.update(readFully(this.fd, this.path, fileOffset + at, piece));
      }
      const actual = hash.digest("hex");
      if (actual !== e.sha256) {
        throw new SnapshotError(
          this.path,
          fileOffset + e.start,
          `memory extent at guest address ${e.start} (${e.length} bytes): sha256 is ${actual}, ` +
            `manifest says ${e.sha256}`,
        );
      }
    }
    let gapStart = 0;
    for (const e of [...extents, { start: size, length: 0 }]) {
      this.#checkZero(fileOffset + gapStart, fileOffset + e.start, scratch);
      gapStart = e.start + e.length;
    }
  }

  /** Throws unless [from, to) reads as zero; only the data the filesystem stores there is read. */
  #checkZero(from: number, to: number, scratch: Uint8Array): void {
    for (let at = from; at < to;) {
      const data = Number(libc().lseek(this.fd, BigInt(at), SEEK_DATA));
      if (data === -1) {
        const errno = lastErrno();
        if (errno === ENXIO) return;
        throw new SysError(`lseek ${this.path}`, errno);
      }
      if (data >= to) return;
      const hole = check(`lseek ${this.path}`, Number(libc().lseek(this.fd, BigInt(data), SEEK_HOLE)));
      const stop = Math.min(hole, to);
      for (let p = data; p < stop; p += CHUNK_BYTES) {
        const piece = readFully(this.fd, this.path, p, scratch.subarray(0, Math.min(CHUNK_BYTES, stop - p)));
        if (isZero(piece)) continue;
        const offset = p + piece.findIndex((b) => b !== 0);
        throw new SnapshotError(
          this.path,
          offset,
          `guest byte ${offset - this.manifest.memory.fileOffset} is not zero, but no memory extent covers it`,
        );
      }
      at = stop;
    }
  }

  *packed(): Generator<Uint8Array<ArrayBuffer>> {
    const { fileOffset, extents } = this.manifest.memory;
    for (const [from, length] of [[0, fileOffset], ...extents.map((e) => [fileOffset + e.start, e.length])]) {
      for (let at = from; at < from + length; at += CHUNK_BYTES) {
        yield readFully(this.fd, this.path, at, new Uint8Array(Math.min(CHUNK_BYTES, from + length - at)));
      }
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    check(`close ${this.path}`, libc().close(this.#fd));
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens a snapshot and checks everything but the memory extents' and sections' contents: header, manifest hash
 * and schema, layout, file size and padding. Its cost does not depend on the size of guest RAM.
 */
export function openSnapshot(path: string): Snapshot {
  const fd = check(`open ${path}`, libc().open(cString(path), O_RDONLY | O_CLOEXEC, 0));
  try {
    const { id, manifest } = readManifest(fd, path);
    return new OpenSnapshot(path, fd, id, manifest);
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/**
 * Opens and checks the snapshot in `fd` as openSnapshot does, for a file that has no path worth naming (a memfd);
 * `file` names it in errors. The snapshot owns `fd` from here on, and it is closed if the check fails.
 */
export function openSnapshotFd(fd: number, file: string): Snapshot {
  try {
    const { id, manifest } = readManifest(fd, file);
    return new OpenSnapshot(file, fd, id, manifest);
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/**
 * Lays a snapshot's packed form (Snapshot.packed) out in `out`, an empty file, as the snapshot file it came
 * from: bytes before the memory region where they were, each extent's bytes at its guest address, holes
 * elsewhere. The manifest, read from the first bytes, says where each byte goes; open the file afterwards to
 * check the rest.
 */
export class SnapshotUnpacker {
  #head: Uint8Array[] = [];
  #headBytes = 0;
  #layout?: { manifest: SnapshotManifest; ends: number[]; total: number };
  /** How many bytes of the packed form have been placed. */
  #at = 0;

  constructor(readonly out: Deno.FsFile, readonly file: string) {}

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#layout) return await this.#place(bytes);
    this.#head.push(bytes.slice());
    this.#headBytes += bytes.length;
    if (this.#headBytes < HEADER_SIZE) return;
    const head = new Uint8Array(this.#headBytes);
    let at = 0;
    for (const piece of this.#head) head.set(piece, (at += piece.length) - piece.length);
    // Nothing about the file's length is known yet: only the header's own fields are checked here.
    const manifestLength = checkHeader(head, this.file, MAX_FILE_BYTES);
    if (this.#headBytes < HEADER_SIZE + manifestLength) {
      this.#head = [head];
      return;
    }
    const { manifest } = parseManifest(head, head.subarray(HEADER_SIZE, HEADER_SIZE + manifestLength), this.file);
    let end = manifest.memory.fileOffset;
    const ends = manifest.memory.extents.map((e) => end += e.length);
    this.#layout = { manifest, ends, total: packedLength(manifest) };
    this.#head = [];
    await this.#place(head);
  }

  /** Ends the file where its memory region does; refuses a packed form that stopped short. */
  async finish(): Promise<void> {
    const total = this.#layout?.total;
    if (total === undefined || this.#at < total) {
      throw new SnapshotError(
        this.file,
        this.#layout ? this.#at : this.#headBytes,
        `truncated: the packed snapshot ends after ${this.#layout ? this.#at : this.#headBytes} bytes` +
          (total === undefined ? ", before its manifest does" : `, its manifest needs ${total}`),
      );
    }
    const { fileOffset, size } = this.#layout!.manifest.memory;
    await this.out.truncate(fileOffset + size);
  }

  async #place(bytes: Uint8Array): Promise<void> {
    const { manifest: { memory: { fileOffset, extents } }, ends, total } = this.#layout!;
    if (this.#at + bytes.length > total) {
      throw new SnapshotError(
        this.file,
        total,
        `the packed snapshot is longer than the ${total} bytes its manifest needs`,
      );
    }
    for (let done = 0; done < bytes.length;) {
      const at = this.#at;
      // Before the memory region the packed form is the file itself; after it, extents follow one another.
      const k = at < fileOffset ? -1 : ends.findIndex((end) => at < end);
      const runEnd = k < 0 ? fileOffset : ends[k];
      const target = k < 0 ? at : fileOffset + extents[k].start + at - (runEnd - extents[k].length);
      const n = Math.min(bytes.length - done, runEnd - at);
      await this.out.seek(target, Deno.SeekMode.Start);
      const piece = bytes.subarray(done, done + n);
      for (let written = 0; written < n;) written += await this.out.write(piece.subarray(written));
      done += n;
      this.#at += n;
    }
  }
}

/** Throws unless `parent` is the snapshot `diff` was taken against. */
export function checkParent(diff: Snapshot, parent: Snapshot): void {
  const fail = (field: string, problem: string): never => {
    throw new SnapshotError(diff.path, HEADER_SIZE, `${field}: ${problem}`);
  };
  if (diff.manifest.kind !== "diff") {
    fail("manifest.kind", `snapshot ${diff.id} is full, so it has no parent (offered ${parent.id})`);
  }
  if (diff.manifest.parent !== parent.id) {
    fail(
      "manifest.parent",
      `diff ${diff.id} was taken against snapshot ${diff.manifest.parent}, not ${parent.id} (${parent.path})`,
    );
  }
  if (diff.manifest.memory.size !== parent.manifest.memory.size) {
    fail(
      "manifest.memory.size",
      `diff ${diff.id} has ${diff.manifest.memory.size} bytes of guest RAM, its parent ${parent.id} ` +
        `${parent.manifest.memory.size}`,
    );
  }
  if (diff.manifest.bundle.sha256 !== parent.manifest.bundle.sha256) {
    fail(
      "manifest.bundle.sha256",
      `diff ${diff.id} runs bundle ${diff.manifest.bundle.sha256}, its parent ${parent.id} ` +
        `${parent.manifest.bundle.sha256}`,
    );
  }
}

/**
 * Guest RAM as the last snapshot of `chain` has it: the full snapshot `chain[0]` mapped, then each diff's extents
 * mapped over it in order, each diff's parent being the snapshot before it. Pages are read from the files when
 * first touched and guest writes never reach them. Nothing is verified here, since that would read every present
 * page: call verifyMemory first where integrity matters more than the time to restore.
 */
export function mapSnapshotChain(chain: readonly [Snapshot, ...Snapshot[]]): GuestRam {
  const [base, ...diffs] = chain;
  if (base.manifest.kind !== "full") {
    throw new SnapshotError(
      base.path,
      HEADER_SIZE,
      `manifest.kind: a chain starts with a full snapshot, but ${base.id} is a diff of ${base.manifest.parent}`,
    );
  }
  diffs.forEach((diff, i) => checkParent(diff, chain[i]));
  const ram = mapGuestRamFromFile(base.fd, base.manifest.memory.fileOffset, base.manifest.memory.size);
  try {
    for (const diff of diffs) {
      overlayGuestRamFromFile(ram, diff.fd, diff.manifest.memory.fileOffset, diff.manifest.memory.extents);
    }
  } catch (e) {
    unmapGuestRam(ram);
    throw e;
  }
  return ram;
}

interface CommonInput {
  bundleSha256: string;
  meta: Record<string, unknown>;
  /** Stored in this order; names are 1..64 of [A-Za-z0-9._-]. */
  sections: Record<string, Uint8Array>;
}

export type SnapshotInput =
  & CommonInput
  & (
    | {
      kind: "full";
      parent: null;
      /** `bytes` is all of guest RAM; `pages` defaults to every page that is not all zeros. */
      memory: { bytes: Uint8Array; pages?: Iterable<number> };
    }
    | {
      kind: "diff";
      /** The id of the snapshot this one is laid over. */
      parent: string;
      /** `bytes` is all of guest RAM; exactly the listed pages are stored, zero ones included. */
      memory: { bytes: Uint8Array; pages: Iterable<number> };
    }
  );

export interface WrittenSnapshot {
  id: string;
  /** Bytes written to the file: holes, which the filesystem need not store, are not counted. */
  fileBytes: number;
  /** Pages in the snapshot's extents. */
  pages: number;
}

/** Runs of page indices as extents, without hashes yet. */
function extentsOf(pages: Iterable<number>, pageCount: number): { start: number; length: number }[] {
  const extents: { start: number; length: number }[] = [];
  for (const page of [...new Set(pages)].sort((a, b) => a - b)) {
    if (!Number.isSafeInteger(page) || page < 0 || page >= pageCount) {
      throw new RangeError(`memory.pages: ${describeValue(page)} is not a page of guest RAM (0..${pageCount - 1})`);
    }
    const last = extents.at(-1);
    if (last && last.start + last.length === page * PAGE) last.length += PAGE;
    else extents.push({ start: page * PAGE, length: PAGE });
  }
  return extents;
}

function nonZeroPages(ram: Uint8Array): number[] {
  const pages: number[] = [];
  for (let page = 0; page * PAGE < ram.length; page++) {
    if (!isZero(ram.subarray(page * PAGE, (page + 1) * PAGE))) pages.push(page);
  }
  return pages;
}

/**
 * Writes a snapshot to `path`, replacing it atomically: readers see the old file or the whole new one, even if
 * the writer is killed or the machine dies part-way. Guest RAM must not change while this runs (pause the
 * vCPUs); each piece is copied before it is hashed and written, so a change is at worst a torn but
 * self-consistent snapshot, never one that fails its own hashes. `progress` gets the bytes of sections and
 * present pages done so far and their total.
 */
export async function writeSnapshot(
  path: string,
  input: SnapshotInput,
  progress?: (doneBytes: number, totalBytes: number) => void,
): Promise<WrittenSnapshot> {
  return await writeFileAtomically(path, (out) => writeSnapshotInto(out, path, input, progress));
}

/**
 * Writes a snapshot into `out`, an empty file opened for writing, as writeSnapshot does but in place: nothing
 * is synced or renamed. For files no reader can see until they are complete, such as a memfd (see
 * hv/sealed_snapshot.ts). `file` names it in errors.
 */
export async function writeSnapshotInto(
  out: Deno.FsFile,
  file: string,
  input: SnapshotInput,
  progress?: (doneBytes: number, totalBytes: number) => void,
): Promise<WrittenSnapshot> {
  const ram = input.memory.bytes;
  if (ram.length === 0 || ram.length % PAGE !== 0) {
    throw new RangeError(
      `memory.bytes: guest RAM must be a positive multiple of ${PAGE} bytes, got ${ram.length}`,
    );
  }
  const pages = input.kind === "diff" ? input.memory.pages : input.memory.pages ?? nonZeroPages(ram);
  const extents = extentsOf(pages, ram.length / PAGE);
  const sections = Object.entries(input.sections);
  const createdAt = new Date().toISOString();

  const manifestFor = (manifestLength: number, extentHashes: string[], sectionHashes: string[]) => {
    let offset = HEADER_SIZE + manifestLength;
    const entries = sections.map(([name, bytes], i): SectionEntry => {
      const entry = { name, offset, length: bytes.length, sha256: sectionHashes[i] };
      offset += bytes.length;
      return entry;
    });
    return {
      format: FORMAT_VERSION,
      kind: input.kind,
      parent: input.parent,
      bundle: { sha256: input.bundleSha256 },
      createdAt,
      meta: input.meta,
      memory: {
        size: ram.length,
        fileOffset: alignUp(offset),
        extents: extents.map((e, i): MemoryExtent => ({ ...e, sha256: extentHashes[i] })),
      },
      sections: entries,
    };
  };
  const encode = (manifest: unknown) => new TextEncoder().encode(JSON.stringify(manifest));

  // The offsets are in the manifest and depend on its length. Longer numbers only ever lengthen it, so this
  // settles after a step or two; hashes are all 64 digits, so the real ones will not change the length.
  const extentPlaceholders = extents.map(() => PLACEHOLDER_SHA256);
  const sectionPlaceholders = sections.map(() => PLACEHOLDER_SHA256);
  let manifestLength = 0;
  for (;;) {
    const length = encode(manifestFor(manifestLength, extentPlaceholders, sectionPlaceholders)).length;
    if (length > MAX_MANIFEST_BYTES) {
      throw new SnapshotError(
        file,
        MANIFEST_LENGTH_OFFSET,
        `manifest length ${length} exceeds the ${MAX_MANIFEST_BYTES}-byte limit (${extents.length} extents)`,
      );
    }
    if (length === manifestLength) break;
    manifestLength = length;
  }
  // Checked before anything is written, so a bad input leaves no file behind and errors show the caller's values.
  const layout = validateManifest(
    manifestFor(manifestLength, extentPlaceholders, sectionPlaceholders),
    file,
    manifestLength,
  );
  const { fileOffset } = layout.memory;

  const totalBytes = sections.reduce((sum, [, bytes]) => sum + bytes.length, 0) +
    extents.reduce((sum, e) => sum + e.length, 0);
  let doneBytes = 0;
  let fileBytes = 0;
  const place = async (bytes: Uint8Array, offset: number) => {
    await out.seek(offset, Deno.SeekMode.Start);
    await writeAll(out, bytes);
    fileBytes += bytes.length;
  };

  const sectionHashes: string[] = [];
  for (const [i, [, bytes]] of sections.entries()) {
    const copy = bytes.slice();
    sectionHashes.push(sha256Hex(copy));
    await place(copy, layout.sections[i].offset);
    doneBytes += copy.length;
    progress?.(doneBytes, totalBytes);
  }

  const scratch = new Uint8Array(CHUNK_BYTES);
  const extentHashes: string[] = [];
  for (const e of extents) {
    const hash = createHash("sha256");
    for (let at = e.start; at < e.start + e.length; at += CHUNK_BYTES) {
      const piece = scratch.subarray(0, Math.min(CHUNK_BYTES, e.start + e.length - at));
      piece.set(ram.subarray(at, at + piece.length));
      hash.update(piece);
      // Zero pages are skipped, not written: they stay holes, which read as zero and take no space.
      const pageAt = (i: number) => piece.subarray(i * PAGE, (i + 1) * PAGE);
      const count = piece.length / PAGE;
      for (let first = 0; first < count;) {
        if (isZero(pageAt(first))) {
          first++;
          continue;
        }
        let end = first + 1;
        while (end < count && !isZero(pageAt(end))) end++;
        await place(piece.subarray(first * PAGE, end * PAGE), fileOffset + at + first * PAGE);
        first = end;
      }
      doneBytes += piece.length;
      progress?.(doneBytes, totalBytes);
    }
    extentHashes.push(hash.digest("hex"));
  }
  // Extends the file over trailing zero pages as a hole, so it ends where guest RAM does.
  await out.truncate(fileOffset + ram.length);

  // The header goes last: until then the file starts with zeros, so a temp file left by a killed writer is
  // refused as "bad magic" rather than read as a snapshot with missing pages.
  const manifestBytes = encode(manifestFor(manifestLength, extentHashes, sectionHashes));
  const header = new Uint8Array(HEADER_SIZE + manifestBytes.length);
  const view = new DataView(header.buffer);
  header.set(MAGIC, 0);
  view.setUint32(VERSION_OFFSET, FORMAT_VERSION, true);
  view.setUint32(MANIFEST_LENGTH_OFFSET, manifestBytes.length, true);
  header.set(createHash("sha256").update(manifestBytes).digest(), MANIFEST_HASH_OFFSET);
  header.set(manifestBytes, HEADER_SIZE);
  await place(header, 0);
  const id = sha256Hex(manifestBytes);
  return { id, fileBytes, pages: extents.reduce((sum, e) => sum + e.length, 0) / PAGE };
}
