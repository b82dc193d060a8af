// The overlay as bytes, for snapshots: packed from an overlay directory no instance is using,
// and unpacked into a new one. Apart from overlay.ts so that a vCPU thread, which serves the
// guest's file calls, loads none of it nor node:crypto.
//
// All integers little-endian. One encoding per overlay (entries and whiteouts sorted, none
// repeated), so equal overlays give equal bytes and a snapshot's hash means something.
//   magic "PVXOVLY\0" | u32 version 2 | u32 entry count | u32 whiteout count
//   entry:    u8 kind (1 directory, 2 file) | path | i64 mtime (ms since 1970) | file: u8 attributes, u64 size, bytes
//   (attributes: FILE_ATTRIBUTE_READONLY, HIDDEN, SYSTEM and ARCHIVE bits; version 1, still read, has none,
//   and its files are archived)
//   whiteout: path
//   path:     u16 component count (>= 1) | per component: u8 length (>= 1) + UTF-8
//   SHA-256 of all bytes before it
// Entries come in comparePaths order, so a directory precedes what it holds.

import { createHash } from "node:crypto";
import { attributesMode, KEPT_ATTRIBUTES } from "./file_attributes.ts";
import { win32Constants } from "./win32.ts";
import { dirname } from "./host_path.ts";
import { comparePaths, foldPath, guestPathString, nameProblem } from "./guest_names.ts";
import { joinHost, listDir, mtimeOf, syncDir, writeAll } from "./host_files.ts";
import { type Entry, Overlay, OverlayError, readOverlay } from "./overlay.ts";

/** A packed overlay is truncated or malformed: `where` names the bytes, `offset` the spot. */
export class OverlayArchiveError extends OverlayError {
  constructor(readonly where: string, readonly offset: number, readonly reason: string) {
    super(`${where}: offset ${offset}: ${reason}`);
    this.name = "OverlayArchiveError";
  }
}

const ARCHIVE_MAGIC = new TextEncoder().encode("PVXOVLY\0");
const ARCHIVE_VERSION = 2;
/** Before files kept their attributes. */
const ARCHIVE_VERSION_WITHOUT_ATTRIBUTES = 1;
const FILE_ATTRIBUTE_ARCHIVE = win32Constants.FILE_ATTRIBUTE_ARCHIVE;
const KIND_DIR = 1;
const KIND_FILE = 2;
const MAX_DEPTH = 0xffff;
const HASH_BYTES = 32;
/** What a JavaScript Date can hold, which is what the host gets its times through. */
const MAX_TIME_MS = 8.64e15;

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

class ArchiveWriter {
  readonly #chunks: Uint8Array[] = [];
  #length = 0;

  bytes(bytes: Uint8Array): void {
    this.#chunks.push(bytes);
    this.#length += bytes.length;
  }

  #number(size: number, set: (view: DataView) => void): void {
    const bytes = new Uint8Array(size);
    set(new DataView(bytes.buffer));
    this.bytes(bytes);
  }

  u8(value: number): void {
    this.#number(1, (v) => v.setUint8(0, value));
  }
  u16(value: number): void {
    this.#number(2, (v) => v.setUint16(0, value, true));
  }
  u32(value: number): void {
    this.#number(4, (v) => v.setUint32(0, value, true));
  }
  i64(value: number): void {
    this.#number(8, (v) => v.setBigInt64(0, BigInt(value), true));
  }
  u64(value: number): void {
    this.#number(8, (v) => v.setBigUint64(0, BigInt(value), true));
  }

  path(names: readonly string[], where: string): void {
    if (names.length > MAX_DEPTH) throw new OverlayError(`${where} is more than ${MAX_DEPTH} directories deep`);
    this.u16(names.length);
    for (const name of names) {
      const bytes = new TextEncoder().encode(name);
      this.u8(bytes.length);
      this.bytes(bytes);
    }
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.#length + HASH_BYTES);
    let offset = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    out.set(sha256(out.subarray(0, offset)), offset);
    return out;
  }
}

/** The overlay at `dir` as one deterministic archive: files with names, bytes and times, directories, whiteouts. */
export function packOverlay(dir: string): Uint8Array {
  const content = readOverlay(dir);
  const walk = (entry: Entry): Entry[] => entry.children.flatMap((child) => [child, ...walk(child)]);
  const entries = walk(content.root);
  const w = new ArchiveWriter();
  w.bytes(ARCHIVE_MAGIC);
  w.u32(ARCHIVE_VERSION);
  w.u32(entries.length);
  w.u32(content.whiteouts.length);
  for (const entry of entries) {
    w.u8(entry.isDir ? KIND_DIR : KIND_FILE);
    w.path(entry.names, entry.host);
    w.i64(entry.mtime);
    if (entry.isDir) continue;
    w.u8(entry.attributes);
    // What was read is what is described, even if the file changed since it was listed.
    const bytes = Deno.readFileSync(entry.host);
    w.u64(bytes.length);
    w.bytes(bytes);
  }
  for (const names of content.whiteouts) w.path(names, `whiteout ${guestPathString(names)}`);
  return w.finish();
}

interface ArchiveEntry {
  names: string[];
  mtime: number;
  attributes: number;
  /** undefined for a directory */
  bytes?: Uint8Array;
}

class ArchiveReader {
  offset = 0;
  readonly #view: DataView;

  constructor(readonly bytes: Uint8Array, readonly where: string) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(offset: number, reason: string): never {
    throw new OverlayArchiveError(this.where, offset, reason);
  }

  take(length: number, what: string): Uint8Array {
    const remaining = this.bytes.length - this.offset;
    if (length > remaining) this.fail(this.offset, `truncated: ${what} needs ${length} bytes, ${remaining} remain`);
    const bytes = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return bytes;
  }

  #number<T>(size: number, what: string, get: (view: DataView, at: number) => T): T {
    const at = this.offset;
    this.take(size, what);
    return get(this.#view, at);
  }

  u8(what: string): number {
    return this.#number(1, what, (v, at) => v.getUint8(at));
  }
  u16(what: string): number {
    return this.#number(2, what, (v, at) => v.getUint16(at, true));
  }
  u32(what: string): number {
    return this.#number(4, what, (v, at) => v.getUint32(at, true));
  }
  i64(what: string): bigint {
    return this.#number(8, what, (v, at) => v.getBigInt64(at, true));
  }
  u64(what: string): bigint {
    return this.#number(8, what, (v, at) => v.getBigUint64(at, true));
  }

  path(what: string): string[] {
    const at = this.offset;
    const count = this.u16(`${what}'s component count`);
    if (count === 0) this.fail(at, `${what} has no components`);
    const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    return Array.from({ length: count }, (_, i) => {
      const nameAt = this.offset;
      const length = this.u8(`${what}'s component ${i} length`);
      const bytes = this.take(length, `${what}'s component ${i}`);
      let name: string;
      try {
        name = decoder.decode(bytes);
      } catch {
        return this.fail(nameAt, `${what}'s component ${i} is not valid UTF-8`);
      }
      const problem = nameProblem(name);
      if (problem) this.fail(nameAt, `${what}'s component ${i}: ${problem}`);
      return name;
    });
  }
}

/** Everything of an archive, checked before anything is written; file bytes are views into `bytes`. */
function parseArchive(bytes: Uint8Array, where: string): { entries: ArchiveEntry[]; whiteouts: string[][] } {
  const r = new ArchiveReader(bytes, where);
  const magic = r.take(ARCHIVE_MAGIC.length, "the magic");
  if (magic.some((b, i) => b !== ARCHIVE_MAGIC[i])) r.fail(0, "bad magic: not a packed overlay");
  const version = r.u32("the version");
  if (version !== ARCHIVE_VERSION && version !== ARCHIVE_VERSION_WITHOUT_ATTRIBUTES) {
    r.fail(
      8,
      `version ${version} is not supported (this reader knows ${ARCHIVE_VERSION_WITHOUT_ATTRIBUTES} and ${ARCHIVE_VERSION})`,
    );
  }
  const entryCount = r.u32("the entry count");
  const whiteoutCount = r.u32("the whiteout count");

  /** Each entry by its case-folded path: its kind, and its path as spelled. */
  const earlier = new Map<string, { kind: number; path: string }>();
  const entries: ArchiveEntry[] = [];
  let previous: string[] = [];
  const inOrder = (at: number, what: string, names: string[]) => {
    const shown = guestPathString(names);
    if (previous.length > 0 && comparePaths(previous, names) >= 0) {
      r.fail(at, `${what} ${shown} is not after ${guestPathString(previous)}: they must be sorted and unique`);
    }
    previous = names;
    return shown;
  };
  for (let i = 0; i < entryCount; i++) {
    const at = r.offset;
    const what = `entry ${i}`;
    const kind = r.u8(`${what}'s kind`);
    if (kind !== KIND_DIR && kind !== KIND_FILE) {
      r.fail(at, `${what}: kind ${kind} is neither 1 (directory) nor 2 (file)`);
    }
    const names = r.path(what);
    const shown = inOrder(at, what, names);
    if (earlier.has(foldPath(names))) r.fail(at, `${what} ${shown} has the name of an earlier entry, ignoring case`);
    if (names.length > 1) {
      const directory = earlier.get(foldPath(names.slice(0, -1)));
      if (directory?.kind !== KIND_DIR) r.fail(at, `${what} ${shown}: its directory is not an earlier directory entry`);
      // The host's names are case-sensitive: a path that spells its directory otherwise would not land in it.
      if (directory!.path !== names.slice(0, -1).join("/")) {
        r.fail(at, `${what} ${shown}: its directory is spelled ${directory!.path} in its own entry`);
      }
    }
    earlier.set(foldPath(names), { kind, path: names.join("/") });
    const timeAt = r.offset;
    const mtime = r.i64(`${what}'s time`);
    if (mtime > MAX_TIME_MS || mtime < -MAX_TIME_MS) {
      r.fail(timeAt, `${what} ${shown}: time ${mtime} ms is out of range`);
    }
    if (kind === KIND_DIR) {
      entries.push({ names, mtime: Number(mtime), attributes: 0 });
      continue;
    }
    const attributesAt = r.offset;
    const attributes = version === ARCHIVE_VERSION_WITHOUT_ATTRIBUTES
      ? FILE_ATTRIBUTE_ARCHIVE
      : r.u8(`${what}'s attributes`);
    if (attributes & ~KEPT_ATTRIBUTES) {
      r.fail(
        attributesAt,
        `${what} ${shown}: attributes 0x${attributes.toString(16)} hold more than READONLY, HIDDEN, SYSTEM and ARCHIVE`,
      );
    }
    const sizeAt = r.offset;
    const size = r.u64(`${what}'s size`);
    const remaining = bytes.length - r.offset;
    if (size > BigInt(remaining)) r.fail(sizeAt, `truncated: ${what} ${shown} has ${size} bytes, ${remaining} remain`);
    entries.push({ names, mtime: Number(mtime), attributes, bytes: r.take(Number(size), `${what}'s bytes`) });
  }

  const whiteouts: string[][] = [];
  const hidden = new Set<string>();
  previous = [];
  for (let i = 0; i < whiteoutCount; i++) {
    const at = r.offset;
    const what = `whiteout ${i}`;
    const names = r.path(what);
    const shown = inOrder(at, what, names);
    if (names.some((_, depth) => hidden.has(foldPath(names.slice(0, depth + 1))))) {
      r.fail(at, `${what} ${shown} repeats or is under an earlier whiteout`);
    }
    hidden.add(foldPath(names));
    whiteouts.push(names);
  }

  const bodyEnd = r.offset;
  const declared = r.take(HASH_BYTES, "the SHA-256");
  if (!sha256(bytes.subarray(0, bodyEnd)).every((b, i) => b === declared[i])) {
    r.fail(bodyEnd, "SHA-256 mismatch: the archive is corrupt");
  }
  if (r.offset !== bytes.length) r.fail(r.offset, `${bytes.length - r.offset} bytes after the SHA-256`);
  return { entries, whiteouts };
}

/**
 * Rebuilds the overlay packed in `bytes` at `dir`, which must be missing or an empty directory.
 * The archive is checked in full first (an OverlayArchiveError names `where`, offset and reason);
 * the overlay is then built beside `dir` and renamed into place, so a crash or a failure leaves
 * `dir` as it was. Names are single checked components, so nothing lands outside `dir`.
 */
export function unpackOverlay(bytes: Uint8Array, dir: string, where: string): void {
  const archive = parseArchive(bytes, where);
  const refuse = (why: string) => new OverlayError(`${where}: cannot unpack into ${dir}: ${why}`);
  try {
    const info = Deno.lstatSync(dir);
    if (!info.isDirectory) throw refuse(`it is a ${info.isSymlink ? "symbolic link" : "file"}`);
    if (listDir(dir).length > 0) throw refuse("it is not empty");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    Deno.mkdirSync(dirname(dir), { recursive: true });
  }
  const building = `${dir.replace(/\/+$/, "")}.pvx-unpack-${crypto.randomUUID()}`;
  Deno.mkdirSync(building);
  try {
    const overlay = new Overlay(building);
    const hostPath = (entry: ArchiveEntry) => joinHost(overlay.files, entry.names.join("/"));
    // A filesystem clamps times outside its range without an error; the rebuild would not be exact. One that keeps
    // whole seconds only (9p in the nested accelerator's VM, ext3) truncates: that is its precision, not an error.
    const setTime = (entry: ArchiveEntry) => {
      Deno.utimeSync(hostPath(entry), new Date(entry.mtime), new Date(entry.mtime));
      const kept = mtimeOf(Deno.lstatSync(hostPath(entry)));
      if (kept > entry.mtime || entry.mtime - kept >= 1000) {
        throw refuse(
          `the filesystem keeps the time of ${guestPathString(entry.names)}, ${entry.mtime} ms, as ${kept} ms`,
        );
      }
    };
    for (const entry of archive.entries) {
      if (!entry.bytes) {
        Deno.mkdirSync(hostPath(entry));
        continue;
      }
      using file = Deno.openSync(hostPath(entry), { write: true, createNew: true });
      writeAll(file, entry.bytes);
      Deno.chmodSync(hostPath(entry), attributesMode(file.statSync().mode!, entry.attributes));
      file.syncSync();
      setTime(entry);
    }
    // Filling a directory changes its time, so times are set deepest first, after everything is in.
    for (const entry of archive.entries.toReversed()) {
      if (entry.bytes) continue;
      syncDir(hostPath(entry));
      setTime(entry);
    }
    syncDir(overlay.files);
    overlay.whiteouts.add(...archive.whiteouts);
    syncDir(building);
    // rename(2) replaces an empty directory, so `dir` goes from empty to complete in one step.
    Deno.renameSync(building, dir);
    syncDir(dirname(dir));
  } catch (e) {
    Deno.removeSync(building, { recursive: true });
    throw e;
  }
}
