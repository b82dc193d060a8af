// The guest's C: drive as Win32 sees it: CreateFileW's dispositions, deletes, moves, directories,
// attributes and FindFirstFileW over the merged drive (abi/drive.ts), with Windows' sharing
// rules (abi/open_files.ts) and its choice of error for each refusal.

import { win32Constants as W, win32Errors as E } from "./win32.ts";
import { compareNames, foldPath, guestPathString } from "./guest_names.ts";
import { Overlay } from "./overlay.ts";
import { DiskQuota } from "./disk_quota.ts";
import { FileViewError, hostCall, quote } from "./drive_errors.ts";
import { isInside, parseGuestPath, wildcardMatcher } from "./guest_path.ts";
import type { ShareSpec } from "./share.ts";
import { Drive, type Lookup, type Node } from "./drive.ts";
import { type Access, DELETING, type OpenFile, OpenFiles, SHARE_ALL } from "./open_files.ts";

export interface OpenOptions {
  read: boolean;
  write: boolean;
  deleteAccess: boolean;
  /** CREATE_NEW .. TRUNCATE_EXISTING */
  disposition: 1 | 2 | 3 | 4 | 5;
  /** FILE_SHARE_* bits */
  share: number;
  attributes: number;
  /** FILE_FLAG_* bits, e.g. BACKUP_SEMANTICS, DELETE_ON_CLOSE */
  flags: number;
}

export interface FindEntry {
  name: string;
  attributes: number;
  size: number;
  /** FILETIME: 100 ns units since 1601. */
  lastWrite: bigint;
}

/** What GetFileInformationByHandle tells; `identity` names the file itself, so two handles to one file agree. */
export interface FileInformation extends FindEntry {
  lastAccess: bigint;
  identity: string;
}

export class FileView {
  readonly #drive: Drive;
  readonly #open: OpenFiles;
  #cwd: readonly string[] = [];

  /** `overlayQuotaBytes` caps the overlay's files (abi/disk_quota.ts); past it the guest gets ERROR_DISK_FULL. */
  constructor(
    opts: {
      bundleFiles: ReadonlyMap<string, Uint8Array>;
      overlayDir: string;
      shares: readonly ShareSpec[];
      overlayQuotaBytes?: number;
    },
  ) {
    const overlay = new Overlay(opts.overlayDir);
    const quota = opts.overlayQuotaBytes === undefined
      ? undefined
      : new DiskQuota(opts.overlayQuotaBytes, overlay.files);
    this.#drive = new Drive(opts.bundleFiles, overlay, opts.shares, quota);
    this.#open = new OpenFiles((path, isDirectory) => {
      // CloseHandle cannot report a failed delete-on-close (say, a directory that filled up); Windows drops it too.
      try {
        if (isDirectory) this.removeDirectory(path);
        else this.delete(path);
      } catch (e) {
        if (!(e instanceof FileViewError)) throw e;
      }
    });
  }

  get currentDirectory(): string {
    return guestPathString(this.#cwd);
  }

  setCurrentDirectory(path: string): void {
    hostCall(`SetCurrentDirectory ${quote(path)}`, () => {
      const node = this.#existing(path);
      if (!node.isDir) throw new FileViewError(E.ERROR_DIRECTORY, `${guestPathString(node.names)} is not a directory`);
      this.#cwd = node.names;
    });
  }

  fullPath(path: string): string {
    return guestPathString(parseGuestPath(path, this.#cwd));
  }

  open(path: string, o: OpenOptions): { file: OpenFile; existed: boolean } {
    return hostCall(`CreateFile ${quote(path)}`, () => {
      const refuse = (code: number, why: string) => new FileViewError(code, `CreateFile ${quote(path)}: ${why}`);
      if (!(o.disposition >= W.CREATE_NEW && o.disposition <= W.TRUNCATE_EXISTING)) {
        throw refuse(E.ERROR_INVALID_PARAMETER, `creation disposition ${o.disposition} is not 1..5`);
      }
      if (o.disposition === W.TRUNCATE_EXISTING && !o.write) {
        throw refuse(E.ERROR_INVALID_PARAMETER, "TRUNCATE_EXISTING needs write access");
      }
      const truncates = o.disposition === W.CREATE_ALWAYS || o.disposition === W.TRUNCATE_EXISTING;
      const deleteOnClose = (o.flags & W.FILE_FLAG_DELETE_ON_CLOSE) !== 0;
      const access: Access = { read: o.read, write: o.write, delete: o.deleteAccess || deleteOnClose };
      const names = parseGuestPath(path, this.#cwd);
      const lookup = this.#drive.resolve(names);
      let node: Node;
      if (lookup.found) {
        node = lookup.node;
        if (o.disposition === W.CREATE_NEW) throw refuse(E.ERROR_FILE_EXISTS, "it already exists");
        if (node.isDir && !(o.flags & W.FILE_FLAG_BACKUP_SEMANTICS)) {
          throw refuse(E.ERROR_ACCESS_DENIED, "it is a directory; opening one needs FILE_FLAG_BACKUP_SEMANTICS");
        }
        if (node.isDir && truncates) throw refuse(E.ERROR_ACCESS_DENIED, "a directory cannot be truncated");
        const kept = this.#drive.keptAttributes(node);
        if (access.write || access.delete || truncates) {
          this.#drive.checkWritable(node);
          if (kept & W.FILE_ATTRIBUTE_READONLY) throw refuse(E.ERROR_ACCESS_DENIED, "the file is read-only");
        }
        const hidden = kept & (W.FILE_ATTRIBUTE_HIDDEN | W.FILE_ATTRIBUTE_SYSTEM);
        if (o.disposition === W.CREATE_ALWAYS && (hidden & ~o.attributes) !== 0) {
          throw refuse(E.ERROR_ACCESS_DENIED, "CREATE_ALWAYS of a hidden or system file must ask for those attributes");
        }
      } else {
        const mustExist = o.disposition === W.OPEN_EXISTING || o.disposition === W.TRUNCATE_EXISTING;
        if (mustExist || !lookup.parent) throw this.#missing(lookup, path);
        node = this.#drive.createFile(lookup.parent, lookup.name);
      }
      const file = this.#open.open(
        this.#drive.identity(node),
        guestPathString(node.names),
        node.isDir,
        access,
        o.share,
        deleteOnClose,
        (shared) => {
          if (node.isDir) return;
          // Truncating needs the host file writable even through a read-only handle (CREATE_ALWAYS + GENERIC_READ).
          const quota = node.layer === "drive" ? this.#drive.quota : undefined;
          if (access.write || truncates) shared.makeWritable(() => this.#drive.openForWriting(node), quota);
          else shared.load(() => this.#drive.openForReading(node));
          if (truncates && lookup.found) shared.resize(0, false, `CreateFile ${quote(path)}`, (f) => f.truncateSync(0));
        },
      );
      // A new file takes the attributes asked for, so does one CREATE_ALWAYS replaces; the handle that made a
      // read-only file may still write it. The node is looked up again: the open may have copied it up.
      if (!node.isDir && (!lookup.found || o.disposition === W.CREATE_ALWAYS)) {
        const opened = this.#drive.resolve(names);
        if (opened.found) this.#drive.setKeptAttributes(opened.node, o.attributes | W.FILE_ATTRIBUTE_ARCHIVE);
      }
      return { file, existed: lookup.found };
    });
  }

  delete(path: string): void {
    hostCall(`DeleteFile ${quote(path)}`, () => {
      const node = this.#existing(path);
      if (node.isDir) {
        throw new FileViewError(
          E.ERROR_ACCESS_DENIED,
          `${guestPathString(node.names)} is a directory; RemoveDirectory removes those`,
        );
      }
      this.#remove(node);
    });
  }

  /**
   * Same-layer moves are host renames (open handles follow); moves between layers copy and
   * delete. A directory with anything open inside cannot move (ERROR_ACCESS_DENIED), and one
   * cannot move into itself (ERROR_SHARING_VIOLATION, which is what Windows reports).
   */
  move(from: string, to: string, replaceExisting: boolean): void {
    hostCall(`MoveFileEx ${quote(from)} -> ${quote(to)}`, () => {
      const source = this.#existing(from);
      const targetNames = parseGuestPath(to, this.#cwd);
      const refuse = (code: number, why: string) =>
        new FileViewError(
          code,
          `MoveFileEx ${guestPathString(source.names)} -> ${guestPathString(targetNames)}: ${why}`,
        );
      if (this.#drive.isPinned(source)) throw refuse(E.ERROR_ACCESS_DENIED, "the source is the root or holds a share");
      // Windows opens the source for DELETE before it looks at the target: sharing fails first.
      this.#checkRemovable(source);
      if (targetNames.length === 0) throw refuse(E.ERROR_ACCESS_DENIED, "the target is the root");
      const sameEntry = foldPath(source.names) === foldPath(targetNames);
      if (source.isDir && !sameEntry && isInside(targetNames, source.names)) {
        throw refuse(E.ERROR_SHARING_VIOLATION, "a directory cannot move into itself");
      }
      const parent = this.#drive.resolve(targetNames.slice(0, -1));
      if (!parent.found || !parent.node.isDir) {
        throw refuse(E.ERROR_PATH_NOT_FOUND, "the target's directory is missing");
      }
      const name = targetNames.at(-1)!;
      const existing = sameEntry ? undefined : this.#drive.child(parent.node, name);
      if (existing && !replaceExisting) throw refuse(E.ERROR_ALREADY_EXISTS, "the target exists");
      if (existing && (existing.isDir || source.isDir)) {
        throw refuse(E.ERROR_ACCESS_DENIED, "MoveFileEx replaces files only, not directories");
      }
      // NTFS will not replace a file anyone has open, whatever the share mode.
      if (existing && this.#open.isOpen(this.#drive.identity(existing))) {
        throw refuse(E.ERROR_ACCESS_DENIED, "the target is open");
      }
      if (source.isDir && (this.#open.anyInside(this.#drive.identity(source)) || isInside(this.#cwd, source.names))) {
        throw refuse(E.ERROR_ACCESS_DENIED, "something inside the directory is open or is the current directory");
      }
      if (existing) this.#remove(existing);
      const key = this.#drive.identity(source);
      const renamed = this.#drive.move(source, parent.node, name);
      const moved = this.#drive.resolve(targetNames);
      if (renamed && moved.found) {
        this.#open.rekey(key, this.#drive.identity(moved.node), guestPathString(moved.node.names));
      } else this.#open.detach(key);
    });
  }

  createDirectory(path: string): void {
    hostCall(`CreateDirectory ${quote(path)}`, () => {
      const lookup = this.#drive.resolve(parseGuestPath(path, this.#cwd));
      if (lookup.found) {
        throw new FileViewError(E.ERROR_ALREADY_EXISTS, `${guestPathString(lookup.node.names)} already exists`);
      }
      if (!lookup.parent) throw this.#missing(lookup, path);
      this.#drive.createDirectory(lookup.parent, lookup.name);
    });
  }

  removeDirectory(path: string): void {
    hostCall(`RemoveDirectory ${quote(path)}`, () => {
      const node = this.#existing(path);
      const where = guestPathString(node.names);
      if (!node.isDir) throw new FileViewError(E.ERROR_DIRECTORY, `${where} is not a directory`);
      if (this.#drive.isPinned(node)) {
        throw new FileViewError(E.ERROR_ACCESS_DENIED, `${where} is the root or holds a share`);
      }
      this.#drive.checkWritable(node);
      if (this.#drive.children(node).length > 0) {
        throw new FileViewError(E.ERROR_DIR_NOT_EMPTY, `${where} is not empty`);
      }
      // The process holds its current directory open without FILE_SHARE_DELETE.
      if (isInside(this.#cwd, node.names)) {
        throw new FileViewError(E.ERROR_SHARING_VIOLATION, `${where} is the current directory`);
      }
      this.#remove(node);
    });
  }

  /** SetFileAttributes: READONLY, HIDDEN, SYSTEM and ARCHIVE stay with a file (abi/file_attributes.ts); the rest do not. */
  setAttributes(path: string, attributes: number): void {
    hostCall(`SetFileAttributes ${quote(path)}`, () => this.#drive.setKeptAttributes(this.#existing(path), attributes));
  }

  /** The attributes a file keeps (NORMAL when it has none), or DIRECTORY for a directory. */
  attributes(path: string): number {
    return hostCall(`GetFileAttributes ${quote(path)}`, () => this.#attributesOf(this.#existing(path)));
  }

  /** What GetFileInformationByHandle tells of an open file, found by its path. */
  fileInformation(path: string): FileInformation {
    return hostCall(`GetFileInformationByHandle ${quote(path)}`, () => {
      const node = this.#existing(path);
      return {
        ...this.#findEntry(node.names.at(-1) ?? "", node),
        lastAccess: this.#drive.lastAccess(node),
        identity: this.#drive.identity(node),
      };
    });
  }

  /** GetDiskFreeSpaceEx of the directory `path` names, or of the current one. */
  freeSpace(path: string | null): { available: number; total: number; free: number } {
    return hostCall(`GetDiskFreeSpaceEx ${path === null ? "(current directory)" : quote(path)}`, () => {
      const node = this.#existing(path ?? ".");
      if (!node.isDir) throw new FileViewError(E.ERROR_DIRECTORY, `${path} is a file, not a directory`);
      return this.#drive.freeSpace(node);
    });
  }

  find(pattern: string): FindEntry[] {
    return hostCall(`FindFirstFile ${quote(pattern)}`, () => {
      const names = parseGuestPath(pattern, this.#cwd, true);
      const noMatch = () => new FileViewError(E.ERROR_FILE_NOT_FOUND, `nothing matches ${quote(pattern)}`);
      // "dir\" is an empty pattern in dir, and the root has no entry of its own to match.
      const emptyPattern = names.length === 0 || /[\\/]$/.test(pattern);
      const dirNames = emptyPattern ? names : names.slice(0, -1);
      const lookup = this.#drive.resolve(dirNames);
      if (!lookup.found || !lookup.node.isDir) {
        throw new FileViewError(E.ERROR_PATH_NOT_FOUND, `${guestPathString(dirNames)} is not a directory`);
      }
      if (emptyPattern) throw noMatch();
      const dir = lookup.node;
      const matches = wildcardMatcher(names.at(-1)!);
      const entries = this.#drive.children(dir).map((node) => this.#findEntry(node.names.at(-1)!, node))
        .filter((entry) => matches(entry.name))
        .sort((a, b) => compareNames(a.name, b.name));
      if (dir.names.length > 0) {
        const parent = this.#drive.resolve(dir.names.slice(0, -1));
        const dots = [this.#findEntry(".", dir), this.#findEntry("..", parent.found ? parent.node : dir)];
        entries.unshift(...dots.filter((entry) => matches(entry.name)));
      }
      if (entries.length === 0) throw noMatch();
      return entries;
    });
  }

  /** For snapshots and reports: plain data describing layers, cwd and open files. */
  describe(): { currentDirectory: string; openFiles: string[]; whiteouts: string[] } {
    return {
      currentDirectory: this.currentDirectory,
      openFiles: this.#open.paths(),
      whiteouts: this.#drive.whiteouts(),
    };
  }

  #existing(path: string): Node {
    const lookup = this.#drive.resolve(parseGuestPath(path, this.#cwd));
    if (!lookup.found) throw this.#missing(lookup, path);
    return lookup.node;
  }

  #missing(lookup: Lookup & { found: false }, path: string): FileViewError {
    return lookup.parent
      ? new FileViewError(E.ERROR_FILE_NOT_FOUND, `${quote(path)} does not exist`)
      : new FileViewError(E.ERROR_PATH_NOT_FOUND, `a directory on the way to ${quote(path)} does not exist`);
  }

  /** What DeleteFileW and RemoveDirectoryW check beyond the kind of entry, then the removal. */
  #remove(node: Node): void {
    this.#checkRemovable(node);
    if (this.#drive.keptAttributes(node) & W.FILE_ATTRIBUTE_READONLY) {
      throw new FileViewError(E.ERROR_ACCESS_DENIED, `${guestPathString(node.names)} is read-only`);
    }
    const key = this.#drive.identity(node);
    this.#drive.remove(node);
    this.#open.detach(key);
  }

  #checkRemovable(node: Node): void {
    this.#drive.checkWritable(node);
    this.#open.checkAdmits(this.#drive.identity(node), DELETING, SHARE_ALL, guestPathString(node.names));
  }

  /** A file with none of the attributes is NORMAL, as Windows reports it. */
  #attributesOf(node: Node): number {
    return node.isDir ? W.FILE_ATTRIBUTE_DIRECTORY : this.#drive.keptAttributes(node) || W.FILE_ATTRIBUTE_NORMAL;
  }

  #findEntry(name: string, node: Node): FindEntry {
    return { name, attributes: this.#attributesOf(node), ...this.#drive.stat(node) };
  }
}
