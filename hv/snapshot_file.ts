// Reading pvx snapshots (format in hv/snapshot_format.ts): opening one checks its
// header and manifest, its sections and memory are checked as they are read, and
// a chain of them maps as guest RAM.

import {
  CHUNK_BYTES,
  HEADER_RULES,
  isZero,
  MAX_FILE_BYTES,
  sha256Hex,
  SnapshotError,
  type SnapshotManifest,
  validateManifest,
} from "./snapshot_format.ts";
import { manifestJson } from "./manifest_json.ts";
import { checkHeader, checkManifestHash, HEADER_SIZE } from "./file_header.ts";
import { createHash } from "node:crypto";
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
import { type GuestRam, mapGuestRamFromFile, overlayGuestRamFromFile, unmapGuestRam } from "./memory.ts";

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

/** A snapshot's refusal at `offset` of `file`. */
const failIn = (file: string) => (offset: number, reason: string): never => {
  throw new SnapshotError(file, offset, reason);
};

/** Checks the manifest's hash (declared in `header`), encoding and schema: the snapshot's id and its manifest. */
function parseManifest(
  header: Uint8Array,
  manifestBytes: Uint8Array,
  file: string,
): { id: string; manifest: SnapshotManifest } {
  const fail = failIn(file);
  const id = checkManifestHash(header, manifestBytes, fail);
  const value = manifestJson(manifestBytes, (reason) => fail(HEADER_SIZE, reason));
  return { id, manifest: validateManifest(value, file, manifestBytes.length) };
}

function readManifest(fd: number, file: string): { id: string; manifest: SnapshotManifest } {
  const fail = failIn(file);

  const fileSize = check(`lseek ${file}`, Number(libc().lseek(fd, 0n, SEEK_END)));
  const header = readFully(fd, file, 0, new Uint8Array(Math.min(fileSize, HEADER_SIZE)));
  const { manifestLength } = checkHeader(header, fileSize, HEADER_RULES, fail);
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
    const { manifestLength } = checkHeader(head, MAX_FILE_BYTES, HEADER_RULES, failIn(this.file));
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
