// The guest's C: drive. Three layers: the app bundle (read-only, in memory), a per-instance
// overlay directory that takes every change copy-on-write, and host directories the user
// shared explicitly. Guest names are resolved one component at a time inside those roots and
// are never handed to the host as a path, so nothing else on the host is reachable.

import { Win32Error } from "./dispatch.ts";
import { win32Constants as W, win32Errors as E } from "./win32.ts";
import {
  compareNames,
  fold,
  foldPath,
  guestPathString,
  isWithin,
  joinHost,
  listDir,
  Overlay,
  OverlayError,
  pickEntry,
  writeFileAtomic,
} from "./overlay.ts";
import { DiskQuota, filesBytes } from "./disk_quota.ts";
import { attributesMode, modeAttributes } from "./file_attributes.ts";
import { fileSystemSpace } from "../ffi/libc.ts";

/**
 * A call on the drive failed the Win32 way; `code` is what GetLastError returns. It is a
 * Win32Error so the dispatcher hands the code to the guest without each handler catching it.
 */
export class FileViewError extends Win32Error {
  constructor(code: number, message: string) {
    super(code, message);
    this.name = "FileViewError";
  }
}

export interface ShareSpec {
  guestPath: string;
  hostPath: string;
  readOnly: boolean;
}

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
  /** LockFile: `length` bytes from `offset`, held against every other handle's reads, writes and locks. */
  lock(range: ByteRange): void;
  /** UnlockFile: exactly a range this handle locked. */
  unlock(range: ByteRange): void;
  /** The ranges this handle holds, in the order it locked them: what a snapshot keeps. */
  locks(): ByteRange[];
  flush(): void;
  /** Releases this handle's share of the file; the last close of a DELETE_ON_CLOSE file deletes it. */
  close(): void;
}

/** Byte offsets up to 2^64, as Windows locks take them, so bigint. */
export interface ByteRange {
  offset: bigint;
  length: bigint;
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

// ---------------------------------------------------------------------------------------------
// Guest paths

const MAX_NAME_LENGTH = 255;
const MAX_PATH_LENGTH = 32767;
/** Win32 maps these to devices in every directory, whatever the extension; superscript digits count too. */
const DEVICE_NAMES = new Set([
  "con",
  "prn",
  "aux",
  "nul",
  "conin$",
  "conout$",
  ...["com", "lpt"].flatMap((port) => [..."123456789¹²³"].map((digit) => port + digit)),
]);

/** Guest strings can be 32K characters of control codes; messages show a readable, bounded form. */
function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

function nameError(name: string, wildcards: boolean): FileViewError | undefined {
  for (const ch of name) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || '<>:"|'.includes(ch) || (!wildcards && (ch === "*" || ch === "?"))) {
      const code = `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
      return new FileViewError(E.ERROR_INVALID_NAME, `character ${code} is not allowed in the name ${quote(name)}`);
    }
  }
  if (name.length > MAX_NAME_LENGTH) {
    return new FileViewError(E.ERROR_FILENAME_EXCED_RANGE, `the name ${quote(name)} is longer than ${MAX_NAME_LENGTH}`);
  }
  if (DEVICE_NAMES.has(fold(name.split(".")[0].replace(/ +$/, "")))) {
    return new FileViewError(E.ERROR_ACCESS_DENIED, `${quote(name)} is a reserved device name`);
  }
  return undefined;
}

/** Host or bundle names a guest could not have typed back (Windows strips trailing dots and spaces) stay hidden. */
function isGuestName(name: string): boolean {
  return name !== "" && !/[. ]$/.test(name) && nameError(name, false) === undefined;
}

/**
 * The components of the absolute guest path `input` names, resolved lexically against `cwd`.
 * With `pattern`, the last component may hold FindFirstFileW wildcards and is kept verbatim,
 * because a trailing dot is meaningful there ("*." means "no extension").
 */
function parseGuestPath(input: string, cwd: readonly string[], pattern = false): string[] {
  const refuse = (code: number, why: string) => new FileViewError(code, `path ${quote(input)}: ${why}`);
  if (input === "") throw refuse(E.ERROR_PATH_NOT_FOUND, "the path is empty");
  if (input.length > MAX_PATH_LENGTH) throw refuse(E.ERROR_FILENAME_EXCED_RANGE, "longer than 32767 characters");
  let rest = input.replaceAll("/", "\\");
  if (rest.startsWith("\\\\")) {
    throw /^\\\\[.?](\\|$)/.test(rest)
      ? refuse(E.ERROR_ACCESS_DENIED, "device namespaces are not reachable")
      : refuse(E.ERROR_BAD_NETPATH, "network paths are not reachable");
  }
  const drive = /^([A-Za-z]):/.exec(rest);
  if (drive) {
    if (fold(drive[1]) !== "c") throw refuse(E.ERROR_PATH_NOT_FOUND, `there is no drive ${drive[1].toUpperCase()}:`);
    rest = rest.slice(2);
  }
  const names = rest.startsWith("\\") ? [] : [...cwd];
  const parts = rest.split("\\").filter((part) => part !== "");
  parts.forEach((part, i) => {
    if (part === ".") return;
    // As in Windows, ".." at the root stays there (C:\..\x is C:\x): the drive has no way up.
    if (part === "..") {
      names.pop();
      return;
    }
    const isPattern = pattern && i === parts.length - 1 && /[*?]/.test(part);
    const name = isPattern ? part : part.replace(/[. ]+$/, "");
    const problem = nameError(name, isPattern);
    if (problem) throw refuse(problem.code, problem.message);
    if (name !== "") names.push(name);
  });
  if (guestPathString(names).length > MAX_PATH_LENGTH) {
    throw refuse(E.ERROR_FILENAME_EXCED_RANGE, "the full path is longer than 32767 characters");
  }
  return names;
}

/** The components of a share's mount point; plain Errors, since shares are host configuration. */
function mountNames(guestPath: string): string[] {
  let names: string[];
  try {
    names = parseGuestPath(guestPath, []);
  } catch (e) {
    if (e instanceof FileViewError) throw new Error(`share guest path ${quote(guestPath)}: ${e.message}`);
    throw e;
  }
  if (names.length === 0) {
    throw new Error(`share guest path ${quote(guestPath)} is the drive root; a share must be a directory below it`);
  }
  return names;
}

/**
 * Parses the CLI form "hostdir:guestdir[:ro]", e.g. "/srv/data:C:\\data:ro". The host part is the
 * shortest prefix that leaves a guest path, so a drive letter's colon stays with the guest path.
 */
export function parseShareSpec(spec: string): ShareSpec {
  const readOnly = spec.endsWith(":ro");
  const body = readOnly ? spec.slice(0, -":ro".length) : spec;
  const parts = /^(.+?):((?:[A-Za-z]:)?[\\/].*)$/s.exec(body);
  if (!parts) throw new Error(`share ${quote(spec)} is not "hostdir:guestdir[:ro]", e.g. "/srv/data:C:\\data:ro"`);
  const [, hostPath, guestPath] = parts;
  if (!hostPath.startsWith("/")) throw new Error(`share host directory ${quote(hostPath)} must be an absolute path`);
  const share = new Share({ hostPath, guestPath, readOnly });
  return { hostPath, guestPath: guestPathString(share.mount), readOnly };
}

// ---------------------------------------------------------------------------------------------
// Wildcards

type WildcardToken = "*" | "dosStar" | "dosQm" | "dosDot" | { literal: string };

/**
 * FindFirstFileW's matching: kernel32 turns `?` into DOS_QM, a `*` before a dot into DOS_STAR
 * and a dot before a wildcard or at the end into DOS_DOT, which is why "*.*" also matches names
 * without a dot and "*." matches exactly those.
 */
function wildcardMatcher(pattern: string): (name: string) => boolean {
  const chars = [...fold(pattern)];
  const tokens: WildcardToken[] = chars.map((ch, i) => {
    const next = chars[i + 1];
    if (ch === "?") return "dosQm";
    if (ch === "*") return next === "." ? "dosStar" : "*";
    if (ch === "." && (next === undefined || next === "*" || next === "?")) return "dosDot";
    return { literal: ch };
  });
  return (original) => {
    const name = [...fold(original)];
    const lastDot = name.lastIndexOf(".");
    const memo = new Map<number, boolean>();
    const match = (t: number, n: number): boolean => {
      const key = t * (name.length + 1) + n;
      const known = memo.get(key);
      if (known !== undefined) return known;
      const token = tokens[t];
      const ch = name[n]; // undefined at the end of the name
      let result: boolean;
      switch (token) {
        case undefined:
          result = ch === undefined;
          break;
        case "*":
          result = match(t + 1, n) || (ch !== undefined && match(t, n + 1));
          break;
        case "dosStar": // anything up to, but not including, the name's last dot
          result = match(t + 1, n) || (ch !== undefined && n !== lastDot && match(t, n + 1));
          break;
        case "dosQm": // one character, or nothing at a dot or the end (so "????.txt" fits "a.txt")
          result = ch === undefined || ch === "." ? match(t + 1, n) : match(t + 1, n + 1);
          break;
        case "dosDot": // a dot, or nothing at the end
          result = ch === undefined ? match(t + 1, n) : ch === "." && match(t + 1, n + 1);
          break;
        default:
          result = ch === token.literal && match(t + 1, n + 1);
      }
      memo.set(key, result);
      return result;
    };
    return match(0, 0);
  };
}

// ---------------------------------------------------------------------------------------------
// Host helpers

/** Which Win32 error a host errno becomes; anything unlisted is refused as ACCESS_DENIED. */
const HOST_ERRORS: Record<string, number> = {
  ENOENT: E.ERROR_FILE_NOT_FOUND,
  ENOTDIR: E.ERROR_PATH_NOT_FOUND,
  EEXIST: E.ERROR_ALREADY_EXISTS,
  ENOTEMPTY: E.ERROR_DIR_NOT_EMPTY,
  EROFS: E.ERROR_WRITE_PROTECT,
  ENOSPC: E.ERROR_DISK_FULL,
  EDQUOT: E.ERROR_DISK_FULL,
  EFBIG: E.ERROR_DISK_FULL,
  ENAMETOOLONG: E.ERROR_FILENAME_EXCED_RANGE,
  EMFILE: E.ERROR_TOO_MANY_OPEN_FILES,
  ENFILE: E.ERROR_TOO_MANY_OPEN_FILES,
  EBUSY: E.ERROR_BUSY,
  EINVAL: E.ERROR_INVALID_PARAMETER,
  EXDEV: E.ERROR_NOT_SAME_DEVICE,
};

/** Runs host I/O for `where`, turning host errors into FileViewErrors; bugs (no errno) still surface as themselves. */
function hostCall<T>(where: string, action: () => T): T {
  try {
    return action();
  } catch (e) {
    // The overlay is pvx's own; what is wrong in it is someone else's doing, so the guest is refused.
    if (e instanceof OverlayError) throw new FileViewError(E.ERROR_ACCESS_DENIED, e.message);
    const errno = (e as { code?: unknown } | null)?.code;
    if (e instanceof FileViewError || typeof errno !== "string") throw e;
    throw new FileViewError(HOST_ERRORS[errno] ?? E.ERROR_ACCESS_DENIED, `${where}: ${(e as Error).message}`);
  }
}

/** Takes `bytes` of the overlay's quota for `where`, or refuses the guest as a full disk would. */
function charge(quota: DiskQuota | undefined, bytes: number, where: string): void {
  if (quota && !quota.take(bytes)) {
    throw new FileViewError(
      E.ERROR_DISK_FULL,
      `${where}: the overlay's quota of ${quota.limit} bytes is full (${quota.used} used, ${bytes} more needed)`,
    );
  }
}

const UNIX_EPOCH_FILETIME = 116444736000000000n;

/** Bundle entries have no timestamp; they report the Unix epoch so listings stay deterministic. */
function filetime(mtime: Date | null): bigint {
  const t = UNIX_EPOCH_FILETIME + BigInt(mtime?.getTime() ?? 0) * 10000n;
  return t < 0n ? 0n : t;
}

/** A FILETIME as a Date, to the millisecond the host filesystem keeps. */
export function filetimeDate(t: bigint): Date {
  return new Date(Number((t - UNIX_EPOCH_FILETIME) / 10000n));
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

// ---------------------------------------------------------------------------------------------
// Layers

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

/** A shared host directory mounted on the drive. */
class Share {
  readonly mount: readonly string[];
  readonly root: string;

  constructor(readonly spec: ShareSpec) {
    this.mount = mountNames(spec.guestPath);
    try {
      this.root = Deno.realPathSync(spec.hostPath);
    } catch (e) {
      throw new Error(`share host directory ${quote(spec.hostPath)}: ${(e as Error).message}`);
    }
    if (!Deno.statSync(this.root).isDirectory) {
      throw new Error(`share host path ${quote(spec.hostPath)} is not a directory`);
    }
  }

  get readOnly(): boolean {
    return this.spec.readOnly;
  }

  /** Re-resolved every time, so swapping the share directory (or a parent) for a symlink is noticed. */
  mountNode(): ShareNode {
    if (Deno.realPathSync(this.spec.hostPath) !== this.root) {
      throw new FileViewError(
        E.ERROR_ACCESS_DENIED,
        `share ${guestPathString(this.mount)}: host directory was replaced`,
      );
    }
    return { layer: "share", names: this.mount, isDir: true, share: this, host: this.root, real: this.root };
  }

  child(dir: ShareNode, name: string): ShareNode | undefined {
    const entry = pickEntry(listDir(dir.real), name);
    if (!entry) return undefined;
    const node = this.#entryNode(dir, entry);
    if (node instanceof FileViewError) throw node;
    return node;
  }

  /** Entries the guest may not use (escaping links, devices, unnameable names) are left out. */
  children(dir: ShareNode): ShareNode[] {
    return listDir(dir.real).filter((entry) => isGuestName(entry.name))
      .map((entry) => this.#entryNode(dir, entry))
      .filter((node): node is ShareNode => !(node instanceof FileViewError));
  }

  /**
   * Every step resolves from the real path of its parent, so only a symlink can lead elsewhere,
   * and a symlink is followed only if its realpath stays under the share root. A race remains
   * (TOCTOU): a host process could swap a checked component for a symlink before the open. Only
   * processes with write access to the shared directory can do that, i.e. the user's own, who
   * can reach the host anyway; the guest cannot create symlinks. verifyOpened narrows the window
   * further for file opens.
   */
  #entryNode(dir: ShareNode, entry: Deno.DirEntry): ShareNode | FileViewError {
    const names = [...dir.names, entry.name];
    const refuse = (why: string) => new FileViewError(E.ERROR_ACCESS_DENIED, `${guestPathString(names)}: ${why}`);
    const host = joinHost(dir.real, entry.name);
    let real = host;
    if (entry.isSymlink) {
      try {
        real = Deno.realPathSync(host);
      } catch {
        return refuse("a symbolic link whose target is missing or unreadable");
      }
      if (!isWithin(real, this.root)) return refuse("a symbolic link that leads outside the share");
    }
    const info = Deno.statSync(real);
    // A FIFO or device would block the vCPU thread or reach hardware.
    if (!info.isFile && !info.isDirectory) return refuse("neither a file nor a directory");
    return { layer: "share", names, isDir: info.isDirectory, share: this, host, real };
  }

  /** Closes the race in #entryNode for everything but a swap and swap back between these two checks. */
  verifyOpened(file: Deno.FsFile, node: ShareNode): void {
    const opened = file.statSync();
    const real = Deno.realPathSync(node.real);
    const now = Deno.statSync(real);
    if (!isWithin(real, this.root) || now.ino !== opened.ino || now.dev !== opened.dev) {
      file.close();
      throw new FileViewError(
        E.ERROR_ACCESS_DENIED,
        `${guestPathString(node.names)} changed on the host while opening`,
      );
    }
  }
}

/** Linux always reports a mode. */
function hostMode(path: string): number {
  return Deno.statSync(path).mode!;
}

/** An existing file or directory on the merged drive. */
type Node = DriveNode | ShareNode;

interface DriveNode {
  readonly layer: "drive";
  /** The guest path, case as stored. */
  readonly names: readonly string[];
  readonly isDir: boolean;
  /** The overlay's copy, if it has one. */
  readonly overlay?: string;
  /** The bundle's entry, unless whited out or shadowed by a different kind of overlay entry. */
  readonly bundle?: BundleEntry;
}

interface ShareNode {
  readonly layer: "share";
  readonly names: readonly string[];
  readonly isDir: boolean;
  readonly share: Share;
  /** The host entry itself, which a delete or rename acts on (a symlink stays a symlink). */
  readonly host: string;
  /** Its realpath, inside the share root, which reads and writes go to. */
  readonly real: string;
}

type Lookup =
  | { found: true; node: Node }
  /** `parent` is undefined when a directory on the way is missing or is a file. */
  | { found: false; parent?: Node; name: string };

/**
 * The merged namespace and its storage: which layer holds what, copy-up, whiteouts, and moving
 * data between layers. Win32 semantics (sharing, dispositions, error choice) are FileView's.
 */
class Drive {
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

// ---------------------------------------------------------------------------------------------
// Open files and sharing

interface Access {
  readonly read: boolean;
  readonly write: boolean;
  readonly delete: boolean;
}

const SHARE_ALL = W.FILE_SHARE_READ | W.FILE_SHARE_WRITE | W.FILE_SHARE_DELETE;
/** DeleteFileW, RemoveDirectoryW and MoveFileExW open their source like this. */
const DELETING: Access = { read: false, write: false, delete: true };

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
  /** Byte-range locks, each held by one handle against all the others. */
  readonly locks: { owner: Handle; range: ByteRange }[] = [];
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

  /** The lock that keeps `handle` from reading or writing `range`, if any; a lock of no bytes guards no data. */
  lockAgainst(handle: Handle, range: ByteRange): ByteRange | undefined {
    return this.locks.find((l) => l.owner !== handle && l.range.length > 0n && overlaps(l.range, range))?.range;
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
      const at = this.#unlockedPosition("ReadFile", position, into.length);
      return this.#node.read(into, at);
    });
  }

  write(from: Uint8Array, position: number): number {
    return this.#io("WriteFile", "write", () => {
      const at = this.#unlockedPosition("WriteFile", position, from.length);
      return this.#node.resize(at + from.length, true, `WriteFile ${this.path}`, (f) => writeAt(f, from, at));
    });
  }

  /** Windows' locks are mandatory: I/O through this handle may not touch a range another handle locked. */
  #unlockedPosition(operation: string, position: number, length: number): number {
    const at = checkedPosition(position, length);
    const lock = length > 0 ? this.#node.lockAgainst(this, { offset: BigInt(at), length: BigInt(length) }) : undefined;
    if (lock) {
      throw new FileViewError(
        E.ERROR_LOCK_VIOLATION,
        `${operation} ${this.path}: bytes ${at}..${at + length} meet ${
          describeRange(lock)
        }, locked through another handle`,
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

  lock(range: ByteRange): void {
    this.#checkLockable("LockFile");
    const where = `LockFile ${this.path} ${describeRange(range)}`;
    if (range.offset < 0n || range.length < 0n || range.offset + range.length > LOCK_SPACE_END) {
      throw new FileViewError(E.ERROR_INVALID_PARAMETER, `${where}: the range ends past byte 2^64`);
    }
    const held = this.#node.locks.find((l) => overlaps(l.range, range));
    if (held) {
      const whose = held.owner === this ? "this handle" : "another handle";
      throw new FileViewError(E.ERROR_LOCK_VIOLATION, `${where}: ${describeRange(held.range)} is locked by ${whose}`);
    }
    this.#node.locks.push({ owner: this, range: { ...range } });
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

  locks(): ByteRange[] {
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
class OpenFiles {
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

// ---------------------------------------------------------------------------------------------
// The drive as Win32 sees it

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

/** Whether guest path `names` is `dir` or inside it. */
function isInside(names: readonly string[], dir: readonly string[]): boolean {
  return names.length >= dir.length && foldPath(names.slice(0, dir.length)) === foldPath(dir);
}
