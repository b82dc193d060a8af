// The merged namespace of the guest's C: drive and its storage. Three layers: the app bundle
// (read-only, in memory), a per-instance overlay directory that takes every change copy-on-write,
// and host directories the user shared explicitly. Guest names are resolved one component at a
// time inside those roots and are never handed to the host as a path, so nothing else on the host
// is reachable.

import { win32Constants as W, win32Errors as E } from "./win32.ts";
import { fold, foldPath, guestPathString } from "./guest_names.ts";
import { joinHost, listDir, pickEntry, writeFileAtomic } from "./host_files.ts";
import { Overlay } from "./overlay.ts";
import { type DiskQuota, filesBytes } from "./disk_quota.ts";
import { attributesMode, modeAttributes } from "./file_attributes.ts";
import { fileSystemSpace } from "../ffi/libc.ts";
import { charge, FileViewError, quote } from "./drive_errors.ts";
import { filetime } from "./filetime.ts";
import { isGuestName, isInside } from "./guest_path.ts";
import { Share, type ShareNode, type ShareSpec } from "./share.ts";

interface BundleEntry {
  name: string;
  bytes?: Uint8Array;
  children?: Map<string, BundleEntry>;
}

/** The bundle as a directory tree; directories are implied by the `/`-separated paths. */
function indexBundle(files: ReadonlyMap<string, Uint8Array>): BundleEntry {
  const root: BundleEntry = { name: "", children: new Map() };
  const conflict = (path: string) =>
    new Error(
      `bundle path ${quote(path)} collides with another entry (names are case-insensitive, files are not dirs)`,
    );
  for (const [path, bytes] of files) {
    const names = path.split("/").filter((name) => name !== "");
    if (names.length === 0) throw new Error(`bundle path ${quote(path)} names no file`);
    let dir = root;
    for (const name of names.slice(0, -1)) {
      let sub = dir.children!.get(fold(name));
      if (!sub) dir.children!.set(fold(name), sub = { name, children: new Map() });
      if (!sub.children) throw conflict(path);
      dir = sub;
    }
    const name = names.at(-1)!;
    if (dir.children!.has(fold(name))) throw conflict(path);
    dir.children!.set(fold(name), { name, bytes });
  }
  return root;
}

/** Linux always reports a mode. */
function hostMode(path: string): number {
  return Deno.statSync(path).mode!;
}

/** An existing file or directory on the merged drive. */
export type Node = DriveNode | ShareNode;

export interface DriveNode {
  readonly layer: "drive";
  /** The guest path, case as stored. */
  readonly names: readonly string[];
  readonly isDir: boolean;
  /** The overlay's copy, if it has one. */
  readonly overlay?: string;
  /** The bundle's entry, unless whited out or shadowed by a different kind of overlay entry. */
  readonly bundle?: BundleEntry;
}

export type Lookup =
  | { found: true; node: Node }
  /** `parent` is undefined when a directory on the way is missing or is a file. */
  | { found: false; parent?: Node; name: string };

/**
 * The merged namespace and its storage: which layer holds what, copy-up, whiteouts, and moving
 * data between layers. Win32 semantics (sharing, dispositions, error choice) are FileView's.
 */
export class Drive {
  readonly #bundle: BundleEntry;
  readonly #overlay: Overlay;
  readonly #shares = new Map<string, Share>();
  /** Directories above mount points: they exist whatever the layers say, and stay. */
  readonly #mountAncestors = new Map<string, string>();
  /** Per directory, the mount points and mount ancestors directly in it. */
  readonly #pinnedChildren = new Map<string, string[]>();

  constructor(
    bundle: ReadonlyMap<string, Uint8Array>,
    overlay: Overlay,
    shares: readonly ShareSpec[],
    readonly quota?: DiskQuota,
  ) {
    this.#bundle = indexBundle(bundle);
    this.#overlay = overlay;
    for (const share of shares.map((spec) => new Share(spec))) {
      const clash = [...this.#shares.values()].find((other) =>
        isInside(share.mount, other.mount) || isInside(other.mount, share.mount)
      );
      if (clash) {
        throw new Error(`shares at ${guestPathString(share.mount)} and ${guestPathString(clash.mount)} overlap`);
      }
      this.#shares.set(foldPath(share.mount), share);
      share.mount.forEach((name, i) => {
        const parent = foldPath(share.mount.slice(0, i));
        const siblings = this.#pinnedChildren.get(parent) ?? [];
        this.#pinnedChildren.set(parent, [...siblings, name]);
        if (i < share.mount.length - 1) this.#mountAncestors.set(foldPath(share.mount.slice(0, i + 1)), name);
      });
    }
  }

  root(): DriveNode {
    return { layer: "drive", names: [], isDir: true, overlay: this.#overlay.files, bundle: this.#bundle };
  }

  resolve(names: readonly string[]): Lookup {
    let node: Node = this.root();
    for (const [i, name] of names.entries()) {
      const child = this.child(node, name);
      if (!child) return { found: false, parent: i === names.length - 1 && node.isDir ? node : undefined, name };
      node = child;
    }
    return { found: true, node };
  }

  /** `overlayEntries` saves listing the overlay directory again for each child of a listing. */
  child(dir: Node, name: string, overlayEntries?: readonly Deno.DirEntry[]): Node | undefined {
    if (!dir.isDir) return undefined;
    if (dir.layer === "share") return dir.share.child(dir, name);
    const names = [...dir.names, name];
    const key = foldPath(names);
    const share = this.#shares.get(key);
    if (share) return share.mountNode();
    const pinned = this.#mountAncestors.get(key);
    const entry = dir.overlay ? pickEntry(overlayEntries ?? listDir(dir.overlay), name) : undefined;
    // A guest can only make files and directories; anything else in the overlay was put there by someone else.
    const overlay = entry?.isFile || entry?.isDirectory ? entry : undefined;
    const inBundle = dir.bundle?.children?.get(fold(name));
    const bundle = inBundle && !this.#overlay.whiteouts.hides(names) ? inBundle : undefined;
    if (pinned === undefined && !overlay && !bundle) return undefined;
    const isDir = pinned !== undefined || (overlay ? overlay.isDirectory : bundle!.children !== undefined);
    return {
      layer: "drive",
      names: [...dir.names, pinned ?? overlay?.name ?? bundle!.name],
      isDir,
      overlay: overlay && overlay.isDirectory === isDir ? joinHost(dir.overlay!, overlay.name) : undefined,
      bundle: bundle && (bundle.children !== undefined) === isDir ? bundle : undefined,
    };
  }

  children(dir: Node): Node[] {
    if (dir.layer === "share") return dir.share.children(dir);
    const entries = dir.overlay ? listDir(dir.overlay) : [];
    const candidates = new Set([
      ...entries.map((entry) => entry.name),
      ...[...dir.bundle?.children?.values() ?? []].map((entry) => entry.name),
      ...this.#pinnedChildren.get(foldPath(dir.names)) ?? [],
    ]);
    const merged = new Map<string, Node>();
    for (const name of candidates) {
      if (merged.has(fold(name)) || !isGuestName(name)) continue;
      const node = this.child(dir, name, entries);
      if (node) merged.set(fold(name), node);
    }
    return [...merged.values()];
  }

  stat(node: Node): { size: number; lastWrite: bigint } {
    const host = node.layer === "share" ? node.real : node.overlay;
    if (!host) return { size: node.layer === "drive" ? node.bundle?.bytes?.length ?? 0 : 0, lastWrite: filetime(null) };
    const info = Deno.statSync(host);
    return { size: node.isDir ? 0 : info.size, lastWrite: filetime(info.mtime) };
  }

  /** The attributes a file keeps (abi/file_attributes.ts): a bundle file is archived only, a directory keeps none. */
  keptAttributes(node: Node): number {
    if (node.isDir) return 0;
    if (node.layer === "drive") return node.overlay ? modeAttributes(hostMode(node.overlay)) : W.FILE_ATTRIBUTE_ARCHIVE;
    return modeAttributes(hostMode(node.real), true) | (node.share.readOnly ? W.FILE_ATTRIBUTE_READONLY : 0);
  }

  /** SetFileAttributes: a bundle file is copied up first, for the overlay to hold them; a directory keeps none. */
  setKeptAttributes(node: Node, attributes: number): void {
    if (node.isDir) return this.checkWritable(node);
    const path = this.#writablePath(node), mode = hostMode(path);
    const wanted = attributesMode(mode, attributes, node.layer === "share");
    if (wanted !== (mode & 0o7777)) Deno.chmodSync(path, wanted);
  }

  /**
   * The space a directory's files may take, in bytes: the host filesystem
   * under it (its share's, or the overlay's), and for the overlay no more than
   * its quota leaves.
   */
  freeSpace(dir: Node): { available: number; total: number; free: number } {
    let { available, total, free } = fileSystemSpace(dir.layer === "share" ? dir.real : this.#overlay.files);
    if (dir.layer !== "share" && this.quota) {
      const left = Math.max(0, this.quota.limit - this.quota.used);
      available = Math.min(available, left);
      free = Math.min(free, left);
      total = Math.min(total, this.quota.limit);
    }
    return { available, total, free };
  }

  /** When the file was last read, as the host keeps it; a bundle file was never, and reports the Unix epoch too. */
  lastAccess(node: Node): bigint {
    const host = node.layer === "share" ? node.real : node.overlay;
    return filetime(host ? Deno.statSync(host).atime : null);
  }

  /** The root, mount points and the directories above them cannot be removed or renamed. */
  isPinned(node: Node): boolean {
    return node.layer === "share"
      ? node.names.length === node.share.mount.length
      : node.names.length === 0 || this.#mountAncestors.has(foldPath(node.names));
  }

  /** Names the file, not the path: a share file reached through a symlink is the same file as its target. */
  identity(node: Node): string {
    return node.layer === "share" ? `host:${node.real}` : `drive:${node.names.map((n) => `/${fold(n)}`).join("")}`;
  }

  checkWritable(node: Node): void {
    if (node.layer === "share" && node.share.readOnly) {
      throw new FileViewError(E.ERROR_ACCESS_DENIED, `${guestPathString(node.names)} is in a read-only share`);
    }
  }

  /** Where to create entries inside `dir` on the host. */
  #hostDirFor(dir: Node): string {
    this.checkWritable(dir);
    return dir.layer === "share" ? dir.real : this.#overlay.ensureDir(dir.names);
  }

  /** Creates an empty file, or a copy of `from`'s content. */
  createFile(dir: Node, name: string, from?: Node): Node {
    const path = joinHost(this.#hostDirFor(dir), name);
    if (from && dir.layer === "drive") charge(this.quota, this.stat(from).size, guestPathString([...dir.names, name]));
    // createNew also refuses to follow a symlink someone put at `path` after the lookup.
    Deno.openSync(path, { write: true, createNew: true }).close();
    const source = from && (from.layer === "share" ? from.real : from.overlay);
    if (source) Deno.copyFileSync(source, path);
    else if (from?.layer === "drive") Deno.writeFileSync(path, from.bundle!.bytes!);
    return this.#created(dir, name, path, false);
  }

  createDirectory(dir: Node, name: string): Node {
    const path = joinHost(this.#hostDirFor(dir), name);
    Deno.mkdirSync(path);
    return this.#created(dir, name, path, true);
  }

  #created(dir: Node, name: string, path: string, isDir: boolean): Node {
    const names = [...dir.names, name];
    return dir.layer === "share"
      ? { layer: "share", names, isDir, share: dir.share, host: path, real: path }
      : { layer: "drive", names, isDir, overlay: path };
  }

  /** The host file `node`'s writes go to: a bundle file is copied up to the overlay first. */
  #writablePath(node: Node): string {
    this.checkWritable(node);
    if (node.layer === "share") return node.real;
    if (node.overlay) return node.overlay;
    const path = joinHost(this.#overlay.ensureDir(node.names.slice(0, -1)), node.names.at(-1)!);
    charge(this.quota, node.bundle!.bytes!.length, guestPathString(node.names));
    writeFileAtomic(path, node.bundle!.bytes!, this.#overlay.temp);
    return path;
  }

  /** A file's content for reading: bundle bytes straight from memory, or the host file. */
  openForReading(node: Node): Uint8Array | Deno.FsFile {
    if (node.layer === "drive" && !node.overlay) return node.bundle!.bytes!;
    return this.#openHost(node, node.layer === "share" ? node.real : node.overlay!, false);
  }

  openForWriting(node: Node): Deno.FsFile {
    return this.#openHost(node, this.#writablePath(node), true);
  }

  #openHost(node: Node, path: string, write: boolean): Deno.FsFile {
    const file = Deno.openSync(path, { read: true, write });
    if (node.layer === "share") node.share.verifyOpened(file, node);
    return file;
  }

  /** Removes a file or directory with all it holds; FileView decides whether it may. */
  remove(node: Node): void {
    this.checkWritable(node);
    if (node.layer === "share") {
      // One entry at a time, so host entries the guest cannot see make the removal fail instead of vanishing.
      const isLink = node.host !== node.real;
      if (node.isDir && !isLink) { for (const child of this.children(node)) this.remove(child); }
      Deno.removeSync(node.host);
      return;
    }
    // Whiteout first: a crash in between leaves the overlay copy visible, not the stale bundle one.
    if (node.bundle) this.#overlay.whiteouts.add(node.names);
    if (node.overlay) {
      const freed = this.quota ? filesBytes(node.overlay) : 0;
      Deno.removeSync(node.overlay, { recursive: node.isDir });
      this.quota?.give(freed);
    }
  }

  /**
   * Moves `node` to `dir\name`, which must not exist (unless it is `node` in another case).
   * True when that was a host rename, so open handles still refer to the moved file.
   */
  move(node: Node, dir: Node, name: string): boolean {
    if (node.layer === "share" && dir.layer === "share" && node.share === dir.share) {
      this.checkWritable(node);
      Deno.renameSync(node.host, joinHost(dir.real, name));
      return true;
    }
    if (node.layer === "drive" && dir.layer === "drive") {
      const from = node.isDir ? this.#copyUpTree(node) : this.#writablePath(node);
      const to = joinHost(this.#overlay.ensureDir(dir.names), name);
      if (node.bundle) this.#overlay.whiteouts.add(node.names);
      Deno.renameSync(from, to);
      return true;
    }
    // Layers live in different host directories, maybe different filesystems: copy, then delete.
    this.#copy(node, dir, name);
    this.remove(node);
    return false;
  }

  #copy(node: Node, dir: Node, name: string): void {
    if (!node.isDir) {
      this.createFile(dir, name, node);
      return;
    }
    const copy = this.createDirectory(dir, name);
    for (const child of this.children(node)) this.#copy(child, copy, child.names.at(-1)!);
  }

  /** Copies up everything of a directory the bundle still contributes, so the overlay directory is all of it. */
  #copyUpTree(dir: Node): string {
    const path = this.#overlay.ensureDir(dir.names);
    for (const child of this.children(dir)) {
      if (child.isDir) this.#copyUpTree(child);
      else this.#writablePath(child);
    }
    return path;
  }

  whiteouts(): string[] {
    return this.#overlay.whiteouts.list();
  }
}
