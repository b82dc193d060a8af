// Open files as Windows shares them: one set of data per file for all its handles, share modes that
// decide who may join, and mandatory byte-range locks.

import { win32Constants as W, win32Errors as E } from "./win32.ts";
import type { DiskQuota } from "./disk_quota.ts";
import { charge, FileViewError, hostCall } from "./drive_errors.ts";

export interface OpenFile {
  /** Full guest path, case as stored, e.g. "C:\\Data\\a.txt". */
  readonly path: string;
  readonly isDirectory: boolean;
  /** Bytes read; 0 at or past the end. */
  read(into: Uint8Array, position: number): number;
  /** Writing past the end zero-fills the gap. */
  write(from: Uint8Array, position: number): number;
  size(): number;
  /** SetEndOfFile */
  setSize(size: number): void;
  /** SetFileTime: the times to set, each null to leave as it is. */
  setTimes(access: Date | null, write: Date | null): void;
  /**
   * LockFile and LockFileEx: `length` bytes from `offset`. An exclusive lock holds against every other handle's
   * reads, writes and locks; a shared one against every handle's writes (its own too) and exclusive locks, and
   * against other handles' shared locks not at all.
   */
  lock(range: LockRange): void;
  /** UnlockFile: exactly a range this handle locked. */
  unlock(range: ByteRange): void;
  /** The ranges this handle holds, in the order it locked them: what a snapshot keeps. */
  locks(): LockRange[];
  flush(): void;
  /** Releases this handle's share of the file; the last close of a DELETE_ON_CLOSE file deletes it. */
  close(): void;
}

/** Byte offsets up to 2^64, as Windows locks take them, so bigint. */
export interface ByteRange {
  offset: bigint;
  length: bigint;
}

/** A locked range; LockFile's are exclusive, LockFileEx's either. */
export interface LockRange extends ByteRange {
  shared?: boolean;
}

function readAt(file: Deno.FsFile, into: Uint8Array, position: number): number {
  file.seekSync(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < into.length) {
    const n = file.readSync(into.subarray(done));
    if (n === null) break;
    done += n;
  }
  return done;
}

function writeAt(file: Deno.FsFile, from: Uint8Array, position: number): number {
  file.seekSync(position, Deno.SeekMode.Start);
  for (let done = 0; done < from.length;) done += file.writeSync(from.subarray(done));
  return from.length;
}

export interface Access {
  readonly read: boolean;
  readonly write: boolean;
  readonly delete: boolean;
}

export const SHARE_ALL = W.FILE_SHARE_READ | W.FILE_SHARE_WRITE | W.FILE_SHARE_DELETE;
/** DeleteFileW, RemoveDirectoryW and MoveFileExW open their source like this. */
export const DELETING: Access = { read: false, write: false, delete: true };

function usesData(access: Access): boolean {
  return access.read || access.write || access.delete;
}

function sharePermits(share: number, access: Access): boolean {
  return (!access.read || (share & W.FILE_SHARE_READ) !== 0) &&
    (!access.write || (share & W.FILE_SHARE_WRITE) !== 0) &&
    (!access.delete || (share & W.FILE_SHARE_DELETE) !== 0);
}

/** Where the bytes a lock may cover end: 2^64, past the last offset Windows has. */
const LOCK_SPACE_END = 1n << 64n;

/**
 * Whether two ranges share a byte, or a range of no bytes lies inside the other: Windows' rule, by which
 * a lock of no bytes conflicts with a lock around it but not with one that starts at its offset.
 */
function overlaps(a: ByteRange, b: ByteRange): boolean {
  return a.offset < b.offset + b.length && b.offset < a.offset + a.length;
}

/** One file or directory as all its handles see it: shared data, so every handle sees every write. */
class OpenNode {
  readonly handles = new Set<Handle>();
  /** Byte-range locks, each held by one handle. */
  readonly locks: { owner: Handle; range: LockRange }[] = [];
  deleteOnClose = false;
  #bytes?: Uint8Array;
  #host?: { file: Deno.FsFile; writable: boolean; quota?: DiskQuota };

  constructor(public key: string, public path: string, readonly isDirectory: boolean) {}

  /** Windows' rule: each side's access must be allowed by the other side's share mode. */
  admits(access: Access, share: number): boolean {
    return !usesData(access) ||
      [...this.handles].every((h) =>
        !usesData(h.access) || (sharePermits(h.share, access) && sharePermits(share, h.access))
      );
  }

  load(source: () => Uint8Array | Deno.FsFile): void {
    if (this.#bytes || this.#host) return;
    const data = source();
    if (data instanceof Uint8Array) this.#bytes = data;
    else this.#host = { file: data, writable: false };
  }

  /**
   * Switches every handle to a writable host file, e.g. the copy a bundle file just got in the overlay;
   * `quota` is the overlay's, when that is where the file is.
   */
  makeWritable(open: () => Deno.FsFile, quota?: DiskQuota): void {
    if (this.#host?.writable) return;
    const file = open();
    this.#host?.file.close();
    this.#host = { file, writable: true, quota };
    this.#bytes = undefined;
  }

  /**
   * Runs `action` on the writable file, which it leaves `size` bytes long, or with `grows` at least as long
   * as it was. The overlay's quota is charged the difference first, and what did not happen is given back.
   */
  resize<T>(size: number, grows: boolean, where: string, action: (file: Deno.FsFile) => T): T {
    const file = this.writableFile(), quota = this.#host!.quota;
    if (!quota) return action(file);
    const before = file.statSync().size;
    const after = grows ? Math.max(before, size) : size;
    charge(quota, after - before, where);
    try {
      return action(file);
    } finally {
      quota.take(file.statSync().size - after);
    }
  }

  read(into: Uint8Array, position: number): number {
    if (this.#host) return readAt(this.#host.file, into, position);
    const bytes = this.#bytes!.subarray(Math.min(position, this.#bytes!.length), position + into.length);
    into.set(bytes);
    return bytes.length;
  }

  size(): number {
    return this.#host ? this.#host.file.statSync().size : this.#bytes!.length;
  }

  /** Handles with write access exist only after makeWritable, so this is the writable host file. */
  writableFile(): Deno.FsFile {
    if (!this.#host?.writable) throw new Error(`internal: ${this.path} is written without a writable host file`);
    return this.#host.file;
  }

  /**
   * The lock that keeps `handle` from reading or (`write`) writing `range`, if any: another handle's exclusive
   * lock, or for a write any shared lock, its own too. A lock of no bytes guards no data.
   */
  lockAgainst(handle: Handle, range: ByteRange, write: boolean): LockRange | undefined {
    return this.locks.find((l) =>
      (l.range.shared ? write : l.owner !== handle) && l.range.length > 0n && overlaps(l.range, range)
    )?.range;
  }

  /** True when that was the last handle, and the data is let go. */
  release(handle: Handle): boolean {
    this.handles.delete(handle);
    // Windows lets a closed handle's locks go, whoever else still has the file open.
    for (let i = this.locks.length - 1; i >= 0; i--) if (this.locks[i].owner === handle) this.locks.splice(i, 1);
    if (this.handles.size > 0) return false;
    this.closeData();
    return true;
  }

  closeData(): void {
    this.#host?.file.close();
    this.#host = this.#bytes = undefined;
  }
}

class Handle implements OpenFile {
  #closed = false;
  readonly #node: OpenNode;
  readonly #onClose: () => void;

  constructor(node: OpenNode, readonly access: Access, readonly share: number, onClose: () => void) {
    this.#node = node;
    this.#onClose = onClose;
  }

  get path(): string {
    return this.#node.path;
  }

  get isDirectory(): boolean {
    return this.#node.isDirectory;
  }

  /**
   * Data I/O on a directory handle fails with ERROR_INVALID_FUNCTION, as on Windows, where NTFS
   * answers STATUS_INVALID_DEVICE_REQUEST; a handle without the access gets ERROR_ACCESS_DENIED.
   */
  #io<T>(operation: string, needs: keyof Access, action: () => T): T {
    this.#checkOpen(operation);
    const where = `${operation} ${this.path}`;
    if (this.isDirectory) throw new FileViewError(E.ERROR_INVALID_FUNCTION, `${where}: it is a directory`);
    if (!this.access[needs]) {
      throw new FileViewError(E.ERROR_ACCESS_DENIED, `${where}: the handle was not opened for ${needs} access`);
    }
    return hostCall(where, action);
  }

  read(into: Uint8Array, position: number): number {
    return this.#io("ReadFile", "read", () => {
      const at = this.#unlockedPosition("ReadFile", position, into.length, false);
      return this.#node.read(into, at);
    });
  }

  write(from: Uint8Array, position: number): number {
    return this.#io("WriteFile", "write", () => {
      const at = this.#unlockedPosition("WriteFile", position, from.length, true);
      return this.#node.resize(at + from.length, true, `WriteFile ${this.path}`, (f) => writeAt(f, from, at));
    });
  }

  /** Windows' locks are mandatory: I/O through this handle may not touch a range a lock keeps it from. */
  #unlockedPosition(operation: string, position: number, length: number, write: boolean): number {
    const at = checkedPosition(position, length);
    const range = { offset: BigInt(at), length: BigInt(length) };
    const lock = length > 0 ? this.#node.lockAgainst(this, range, write) : undefined;
    if (lock) {
      throw new FileViewError(
        E.ERROR_LOCK_VIOLATION,
        `${operation} ${this.path}: bytes ${at}..${at + length} meet ${describeRange(lock)}, ${
          lock.shared ? "locked shared" : "locked through another handle"
        }`,
      );
    }
    return at;
  }

  size(): number {
    this.#checkOpen("GetFileSize");
    return this.isDirectory ? 0 : hostCall(`GetFileSize ${this.path}`, () => this.#node.size());
  }

  setSize(size: number): void {
    this.#io("SetEndOfFile", "write", () => {
      const to = checkedPosition(size, 0);
      this.#node.resize(to, false, `SetEndOfFile ${this.path}`, (f) => f.truncateSync(to));
    });
  }

  flush(): void {
    this.#io("FlushFileBuffers", "write", () => this.#node.writableFile().syncSync());
  }

  setTimes(access: Date | null, write: Date | null): void {
    this.#io("SetFileTime", "write", () => {
      const file = this.#node.writableFile(), now = file.statSync();
      file.utimeSync(access ?? now.atime ?? new Date(), write ?? now.mtime ?? new Date());
    });
  }

  /**
   * An exclusive lock overlaps no other, its own handle's neither; a shared one may overlap any but another
   * handle's exclusive lock, as a handle may read what it locked itself (NTFS, and Wine).
   */
  lock(range: LockRange): void {
    this.#checkLockable("LockFile");
    const where = `LockFile ${this.path} ${describeRange(range)}`;
    if (range.offset < 0n || range.length < 0n || range.offset + range.length > LOCK_SPACE_END) {
      throw new FileViewError(E.ERROR_INVALID_PARAMETER, `${where}: the range ends past byte 2^64`);
    }
    const held = this.#node.locks.find((l) =>
      overlaps(l.range, range) && (!range.shared || (!l.range.shared && l.owner !== this))
    );
    if (held) {
      const whose = held.owner === this ? "this handle" : "another handle";
      throw new FileViewError(E.ERROR_LOCK_VIOLATION, `${where}: ${describeRange(held.range)} is locked by ${whose}`);
    }
    this.#node.locks.push({
      owner: this,
      range: { offset: range.offset, length: range.length, ...(range.shared ? { shared: true } : {}) },
    });
  }

  unlock(range: ByteRange): void {
    this.#checkLockable("UnlockFile");
    const i = this.#node.locks.findIndex((l) =>
      l.owner === this && l.range.offset === range.offset && l.range.length === range.length
    );
    if (i < 0) {
      throw new FileViewError(
        E.ERROR_NOT_LOCKED,
        `UnlockFile ${this.path} ${describeRange(range)}: this handle holds no lock of exactly that range`,
      );
    }
    this.#node.locks.splice(i, 1);
  }

  locks(): LockRange[] {
    return this.#node.locks.filter((l) => l.owner === this).map((l) => ({ ...l.range }));
  }

  /** NTFS locks data: a handle that can neither read nor write it cannot lock it. */
  #checkLockable(operation: string): void {
    this.#checkOpen(operation);
    if (this.isDirectory) {
      throw new FileViewError(E.ERROR_INVALID_FUNCTION, `${operation} ${this.path}: it is a directory`);
    }
    if (!this.access.read && !this.access.write) {
      throw new FileViewError(
        E.ERROR_ACCESS_DENIED,
        `${operation} ${this.path}: the handle has neither read nor write access`,
      );
    }
  }

  close(): void {
    this.#checkOpen("CloseHandle");
    this.#closed = true;
    this.#onClose();
  }

  #checkOpen(operation: string): void {
    if (this.#closed) throw new FileViewError(E.ERROR_INVALID_HANDLE, `${operation} on closed handle ${this.path}`);
  }
}

function describeRange(range: ByteRange): string {
  return `bytes ${range.offset}..${range.offset + range.length}`;
}

function checkedPosition(position: number, length: number): number {
  if (!Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(position + length)) {
    throw new FileViewError(E.ERROR_INVALID_PARAMETER, `file position ${position} is out of range`);
  }
  return position;
}

/** Everything open, by file identity; Windows sharing rules decide who may join. */
export class OpenFiles {
  readonly #nodes = new Map<string, OpenNode>();

  /** Called after the last handle of a DELETE_ON_CLOSE file closes, while its path still names it. */
  constructor(readonly deleteOnClose: (path: string, isDirectory: boolean) => void) {}

  /** `prepare` readies the shared data for this access; if it throws, nothing was opened. */
  open(
    key: string,
    path: string,
    isDirectory: boolean,
    access: Access,
    share: number,
    deleteOnClose: boolean,
    prepare: (node: OpenNode) => void,
  ): Handle {
    this.checkAdmits(key, access, share, path);
    const node = this.#nodes.get(key) ?? new OpenNode(key, path, isDirectory);
    try {
      prepare(node);
    } catch (e) {
      if (node.handles.size === 0) node.closeData();
      throw e;
    }
    this.#nodes.set(key, node);
    node.deleteOnClose ||= deleteOnClose;
    const handle: Handle = new Handle(node, access, share, () => this.#closed(node, handle));
    node.handles.add(handle);
    return handle;
  }

  checkAdmits(key: string, access: Access, share: number, path: string): void {
    if (this.#nodes.get(key)?.admits(access, share) === false) {
      throw new FileViewError(
        E.ERROR_SHARING_VIOLATION,
        `${path} is open with a sharing mode that excludes this access, or this sharing mode excludes its access`,
      );
    }
  }

  /** Whether anything strictly inside directory `key` is open. */
  anyInside(key: string): boolean {
    const prefix = key.endsWith("/") ? key : `${key}/`;
    return [...this.#nodes.keys()].some((k) => k.startsWith(prefix));
  }

  isOpen(key: string): boolean {
    return this.#nodes.has(key);
  }

  /** The file is gone: its handles keep working on what they had, new opens start afresh. */
  detach(key: string): void {
    this.#nodes.delete(key);
  }

  /** The file was renamed and its handles follow it. */
  rekey(from: string, to: string, path: string): void {
    const node = this.#nodes.get(from);
    if (!node) return;
    this.#nodes.delete(from);
    node.key = to;
    node.path = path;
    this.#nodes.set(to, node);
  }

  paths(): string[] {
    return [...this.#nodes.values()].flatMap((node) => [...node.handles].map(() => node.path)).sort();
  }

  #closed(node: OpenNode, handle: Handle): void {
    if (!node.release(handle) || this.#nodes.get(node.key) !== node) return;
    this.#nodes.delete(node.key);
    if (node.deleteOnClose) this.deleteOnClose(node.path, node.isDirectory);
  }
}
