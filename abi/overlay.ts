// The copy-on-write overlay: where an instance's changes to its drive live on the host, and
// how they travel when no instance is using the overlay: merged into another session's
// overlay, synced to plain host files, reset, or packed into the bytes a snapshot carries.
//
// Layout of an overlay directory:
//   files/          guest content, names in their stored case (the guest compares them ignoring case)
//   whiteouts.json  {"version":1,"whiteouts":[[name,...],...]}: bundle paths the guest deleted or renamed away
//   tmp/            where atomic writes start; anything left there is debris of an interrupted write
// A whiteout hides only the bundle, never files/: a guest that deletes a bundle file and makes a
// new one in its place leaves both the whiteout and the new file.
//
// An overlay records state, not history: a file the guest made and deleted again leaves no
// trace, so merging or syncing cannot delete a copy an earlier merge or sync made of it.
// Packing into a snapshot's bytes is overlay_archive.ts.

import { modeAttributes } from "./file_attributes.ts";
import { compareNames, comparePaths, fold, foldPath, guestPathString, nameProblem } from "./guest_names.ts";
import { dirname } from "./host_path.ts";
import {
  isWithin,
  joinHost,
  listDir,
  mtimeOf,
  pickEntry,
  replaceAtomic,
  syncDir,
  writeAll,
  writeFileAtomic,
} from "./host_files.ts";

/** An overlay directory or its content is not what pvx writes; the message names the path and the problem. */
export class OverlayError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OverlayError";
  }
}

/** A directory ends in "\" in reports, so a script can tell the kinds apart. */
function displayPath(names: readonly string[], isDir: boolean): string {
  return guestPathString(names) + (isDir && names.length > 0 ? "\\" : "");
}

// ---------------------------------------------------------------------------------------------
// The layout

/** Bundle paths the guest deleted or renamed away; they hide the bundle at and below them, across restarts. */
export class Whiteouts {
  readonly #paths = new Map<string, readonly string[]>();

  constructor(readonly file: string, readonly tempDir: string) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new OverlayError(`overlay metadata ${file}: ${(e as Error).message}`);
    }
    const valid = data?.version === 1 && Array.isArray(data.whiteouts) &&
      data.whiteouts.every((p: unknown) => Array.isArray(p) && p.every((n) => typeof n === "string"));
    if (!valid) throw new OverlayError(`overlay metadata ${file} is not {"version":1,"whiteouts":[[name,...],...]}`);
    for (const names of data.whiteouts as string[][]) this.#paths.set(foldPath(names), names);
  }

  hides(names: readonly string[]): boolean {
    return this.#paths.has(foldPath(names));
  }

  /** Saves once, atomically, and only if that hides something not hidden already. */
  add(...paths: readonly (readonly string[])[]): void {
    let changed = false;
    for (const names of paths) {
      const key = foldPath(names);
      if (this.#hiddenAbove(names) || this.#paths.has(key)) continue;
      // Whiteouts below this one are now redundant.
      for (const other of this.#paths.keys()) if (other.startsWith(`${key}\\`)) this.#paths.delete(other);
      this.#paths.set(key, names);
      changed = true;
    }
    if (!changed) return;
    const json = JSON.stringify({ version: 1, whiteouts: [...this.#paths.values()] });
    writeFileAtomic(this.file, new TextEncoder().encode(json), this.tempDir);
  }

  list(): string[] {
    return [...this.#paths.values()].map(guestPathString).sort();
  }

  /** Each whiteout that matters (none below another), in comparePaths order: what archives and merges carry. */
  paths(): string[][] {
    return [...this.#paths.values()].filter((names) => !this.#hiddenAbove(names)).map((names) => [...names])
      .sort(comparePaths);
  }

  #hiddenAbove(names: readonly string[]): boolean {
    return names.some((_, i) => i > 0 && this.#paths.has(foldPath(names.slice(0, i))));
  }
}

/**
 * The overlay directory: guest content under files/, so metadata beside it (whiteouts.json, tmp/)
 * has no guest name at all.
 */
export class Overlay {
  readonly files: string;
  readonly temp: string;
  readonly whiteouts: Whiteouts;

  constructor(dir: string) {
    this.files = `${dir}/files`;
    this.temp = `${dir}/tmp`;
    Deno.mkdirSync(this.files, { recursive: true });
    Deno.mkdirSync(this.temp, { recursive: true });
    // Anything left in tmp/ is from a write a crash interrupted; its target still holds the old content.
    for (const entry of listDir(this.temp)) Deno.removeSync(joinHost(this.temp, entry.name), { recursive: true });
    this.whiteouts = new Whiteouts(`${dir}/whiteouts.json`, this.temp);
  }

  /** The overlay directory for guest directory `names`, created with the stored case where missing. */
  ensureDir(names: readonly string[]): string {
    let dir = this.files;
    for (const [i, name] of names.entries()) {
      const entry = pickEntry(listDir(dir), name);
      if (entry && !entry.isDirectory) {
        throw new OverlayError(
          `the overlay holds a non-directory where ${guestPathString(names.slice(0, i + 1))} must be one`,
        );
      }
      dir = joinHost(dir, entry?.name ?? name);
      if (!entry) Deno.mkdirSync(dir);
    }
    return dir;
  }
}

/** The paths of an existing overlay; refuses, before anything is touched, a directory that is not one. */
function overlayPaths(dir: string): { files: string; temp: string; whiteouts: string } {
  const paths = { files: `${dir}/files`, temp: `${dir}/tmp`, whiteouts: `${dir}/whiteouts.json` };
  const kind = (path: string) => {
    try {
      const info = Deno.lstatSync(path);
      return info.isDirectory ? "directory" : info.isSymlink ? "symbolic link" : "file";
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return "missing";
      throw e;
    }
  };
  if (kind(dir) !== "directory") throw new OverlayError(`${dir} is not a directory`);
  const files = kind(paths.files);
  if (files !== "directory") {
    throw new OverlayError(
      `${dir} is not an overlay: its files/ is ${files === "missing" ? "missing" : `a ${files}, not a directory`}`,
    );
  }
  const temp = kind(paths.temp);
  if (temp !== "missing" && temp !== "directory") throw new OverlayError(`${dir}: its tmp/ is a ${temp}`);
  return paths;
}

/** A file or directory of an overlay, as read before anything changes. */
export interface Entry {
  /** The guest path, case as stored; empty for files/ itself. */
  names: string[];
  host: string;
  isDir: boolean;
  /** Milliseconds since 1970, what Deno reports and sets. */
  mtime: number;
  /** A file's kept DOS attributes, from its mode (abi/file_attributes.ts). */
  attributes: number;
  size: number;
  /** In compareNames order; empty for a file. */
  children: Entry[];
}

interface OverlayContent {
  root: Entry;
  whiteouts: string[][];
}

/** All of an overlay, checked: anything a guest could not have made there is refused, naming it. */
export function readOverlay(dir: string): OverlayContent {
  const paths = overlayPaths(dir);
  const whiteouts = new Whiteouts(paths.whiteouts, paths.temp).paths();
  for (const names of whiteouts) {
    const problem = names.length === 0 ? "names no path" : names.map(nameProblem).find((p) => p !== undefined);
    if (problem) throw new OverlayError(`${paths.whiteouts}: whiteout ${JSON.stringify(names)}: ${problem}`);
  }
  const read = (host: string, names: string[], info: Deno.FileInfo): Entry => {
    const attributes = info.isDirectory ? 0 : modeAttributes(info.mode!);
    const entry = { names, host, isDir: info.isDirectory, mtime: mtimeOf(info), attributes };
    if (!info.isDirectory) return { ...entry, size: info.size, children: [] };
    const byKey = new Map<string, string>();
    const children = listDir(host).sort((a, b) => compareNames(a.name, b.name)).map((child) => {
      const path = joinHost(host, child.name);
      const problem = nameProblem(child.name);
      if (problem) throw new OverlayError(`${path}: ${problem}`);
      const twin = byKey.get(fold(child.name));
      if (twin !== undefined) {
        throw new OverlayError(`${path} and ${joinHost(host, twin)} differ only in case; a guest sees one name`);
      }
      byKey.set(fold(child.name), child.name);
      const childInfo = Deno.lstatSync(path);
      if (!childInfo.isFile && !childInfo.isDirectory) {
        throw new OverlayError(`${path} is neither a file nor a directory; an overlay holds only those`);
      }
      return read(path, [...names, child.name], childInfo);
    });
    return { ...entry, size: 0, children };
  };
  return { root: read(paths.files, [], Deno.lstatSync(paths.files)), whiteouts };
}

function newest(entry: Entry): number {
  return Math.max(entry.mtime, ...entry.children.map(newest));
}

function realDir(path: string, what: string): string {
  let real: string;
  try {
    real = Deno.realPathSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new OverlayError(`${what} ${path} does not exist`);
    throw e;
  }
  if (!Deno.statSync(real).isDirectory) throw new OverlayError(`${what} ${path} is not a directory`);
  return real;
}

/** Copying a tree into itself would never end, and merging an overlay with itself would only look like work. */
function refuseNesting(a: string, b: string, what: string): void {
  const [ra, rb] = [Deno.realPathSync(a), Deno.realPathSync(b)];
  if (isWithin(ra, rb) || isWithin(rb, ra)) throw new OverlayError(`${what}: ${a} and ${b} are the same or nested`);
}

// ---------------------------------------------------------------------------------------------
// Applying an overlay to a directory tree: the plan, then its execution

/** An entry of the tree an overlay is applied to, as found before anything changed. */
interface Found {
  /** The guest path, case as the target stores it. */
  names: string[];
  host: string;
  isDir: boolean;
  mtime: number;
}

/** One step of applying an overlay; the plan is made before any of them runs. */
type Step =
  | { op: "delete"; path: string; host: string; removed: string[] }
  | { op: "mkdir"; path: string; host: string; mtime: number }
  /** A directory both have: only its time changes, once what goes into it is in. */
  | { op: "enter"; path: string; host: string; mtime: number }
  | { op: "copy"; path: string; from: string; host: string; mtime: number; size: number; replaces: boolean }
  | { op: "keep"; path: string };

/** The tree being changed, looked up as a guest would: one component at a time, ignoring case. */
class Target {
  readonly root: Found;
  readonly #listings = new Map<string, Deno.DirEntry[]>();
  /** Host paths earlier steps of the plan delete: later lookups must not find them. */
  readonly #gone = new Set<string>();

  constructor(root: string) {
    this.root = { names: [], host: root, isDir: true, mtime: mtimeOf(Deno.statSync(root)) };
  }

  child(dir: Found, name: string): Found | undefined {
    let entries = this.#listings.get(dir.host);
    if (!entries) this.#listings.set(dir.host, entries = listDir(dir.host));
    const entry = pickEntry(entries, name);
    if (!entry) return undefined;
    const host = joinHost(dir.host, entry.name);
    if (this.#gone.has(host)) return undefined;
    const info = Deno.lstatSync(host);
    // A link could lead anywhere on the host, and a device or FIFO would block or reach hardware.
    if (!info.isFile && !info.isDirectory) {
      throw new OverlayError(
        `${host} is ${info.isSymlink ? "a symbolic link" : "neither a file nor a directory"}; ` +
          "pvx only replaces or deletes files and directories",
      );
    }
    return { names: [...dir.names, entry.name], host, isDir: info.isDirectory, mtime: mtimeOf(info) };
  }

  resolve(names: readonly string[]): Found | undefined {
    let found: Found | undefined = this.root;
    for (const name of names) {
      found = found.isDir ? this.child(found, name) : undefined;
      if (!found) return undefined;
    }
    return found;
  }

  delete(found: Found): Step {
    this.#gone.add(found.host);
    const removed = this.#below(found).map((e) => displayPath(e.names, e.isDir));
    return { op: "delete", path: displayPath(found.names, found.isDir), host: found.host, removed };
  }

  newest(found: Found): number {
    return Math.max(...this.#below(found).map((e) => e.mtime));
  }

  /** `found` and everything in it that the plan has not deleted, links as themselves. */
  #below(found: Found): Found[] {
    if (!found.isDir) return [found];
    const children = listDir(found.host).map((entry) => entry.name).sort(compareNames)
      .map((name) => ({ name, host: joinHost(found.host, name) }))
      .filter(({ host }) => !this.#gone.has(host));
    return [
      found,
      ...children.flatMap(({ name, host }) => {
        const info = Deno.lstatSync(host);
        return this.#below({ names: [...found.names, name], host, isDir: info.isDirectory, mtime: mtimeOf(info) });
      }),
    ];
  }
}

/**
 * What applying `source` to `target` does. Whiteouts delete what the target has at their paths;
 * then each overlay entry goes in, unless `wins` says the target's entry at that path stays.
 */
function plan(source: OverlayContent, target: Target, wins: (entry: Entry, found: Found) => boolean): Step[] {
  const steps: Step[] = [];
  for (const names of source.whiteouts) {
    const found = target.resolve(names);
    if (found) steps.push(target.delete(found));
  }
  const copy = (entry: Entry, path: string, host: string, replaces: boolean): Step => ({
    op: "copy",
    path,
    from: entry.host,
    host,
    mtime: entry.mtime,
    size: entry.size,
    replaces,
  });
  const add = (entry: Entry, dir: string, names: string[]) => {
    const host = joinHost(dir, entry.names.at(-1)!);
    const path = displayPath(names, entry.isDir);
    if (!entry.isDir) {
      steps.push(copy(entry, path, host, false));
      return;
    }
    steps.push({ op: "mkdir", path, host, mtime: entry.mtime });
    for (const child of entry.children) add(child, host, [...names, child.names.at(-1)!]);
  };
  const merge = (dir: Entry, into: Found) => {
    for (const entry of dir.children) {
      const name = entry.names.at(-1)!;
      const found = target.child(into, name);
      if (!found) add(entry, into.host, [...into.names, name]);
      else if (entry.isDir && found.isDir) {
        steps.push({
          op: "enter",
          path: displayPath(found.names, true),
          host: found.host,
          mtime: Math.max(entry.mtime, found.mtime),
        });
        merge(entry, found);
      } else if (!wins(entry, found)) steps.push({ op: "keep", path: displayPath(found.names, found.isDir) });
      else if (entry.isDir || found.isDir) {
        steps.push(target.delete(found));
        add(entry, into.host, [...into.names, name]);
      } else steps.push(copy(entry, displayPath(found.names, false), found.host, true));
    }
  };
  merge(source.root, target.root);
  return steps;
}

/** Where a long merge or sync stands; the CLI shows it, the library only reports it. */
export interface Progress {
  step: number;
  steps: number;
  bytes: number;
  totalBytes: number;
  /** The guest path being worked on. */
  path: string;
}

export type OnProgress = (progress: Progress) => void;

const COPY_CHUNK = 1 << 20;

/** Runs `steps` in order; every copy is atomic, through a temp name `tempFor` gives beside its target. */
function execute(steps: readonly Step[], tempFor: (target: string) => string, onProgress?: OnProgress): void {
  const progress: Progress = {
    step: 0,
    steps: steps.length,
    bytes: 0,
    totalBytes: steps.reduce((sum, s) => sum + (s.op === "copy" ? s.size : 0), 0),
    path: "",
  };
  for (const step of steps) {
    progress.path = step.path;
    onProgress?.(progress);
    if (step.op === "delete") Deno.removeSync(step.host, { recursive: true });
    else if (step.op === "mkdir") Deno.mkdirSync(step.host);
    else if (step.op === "copy") {
      const temp = tempFor(step.host);
      replaceAtomic(step.host, temp, (file) => {
        using from = Deno.openSync(step.from, { read: true });
        const buffer = new Uint8Array(COPY_CHUNK);
        for (let n = from.readSync(buffer); n !== null; n = from.readSync(buffer)) {
          writeAll(file, buffer.subarray(0, n));
          progress.bytes += n;
          onProgress?.(progress);
        }
        // The mode holds the file's attributes (abi/file_attributes.ts): the copy keeps them.
        Deno.chmodSync(temp, from.statSync().mode! & 0o7777);
        file.utimeSync(new Date(step.mtime), new Date(step.mtime));
      });
    }
    progress.step++;
  }
  onProgress?.(progress);
  // Writing into a directory changes its time, so times are set last, deepest first.
  for (const step of steps.toReversed()) {
    if (step.op === "mkdir" || step.op === "enter") {
      Deno.utimeSync(step.host, new Date(step.mtime), new Date(step.mtime));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Merge

export interface MergeReport {
  /** SRC's files and directories DEST did not have; directories end in "\". In plan order, as all lists here. */
  added: string[];
  /** DEST files SRC's newer copy replaced. */
  replaced: string[];
  /** What DEST lost: entries under SRC's whiteouts, and entries an entry of the other kind replaced. */
  deleted: string[];
  /** DEST entries at least as new as SRC's entry at the same path, which stayed. */
  kept: string[];
  /** Whiteouts DEST gained. */
  whiteouts: string[];
}

/**
 * Merges the overlay `src` into the existing overlay `dest`; `src` is only read. Neither may be in
 * use by an instance, which keeps its whiteouts in memory.
 *
 * The rule, per path (names compared ignoring case):
 * - A whiteout in SRC is carried to DEST, and DEST's entry at its path (with all it holds) is
 *   deleted: a deletion has no time, so SRC's is taken as the later change.
 * - Then each SRC entry: one DEST lacks is added. A file replaces DEST's file at its path only if
 *   its modification time is later; on a tie DEST's stays, so merging twice changes nothing. Two
 *   directories merge entry by entry and end with the later of their times. Where the kinds differ,
 *   the side whose newest time (of the entry and all it holds) is later wins, DEST on a tie.
 * - DEST's whiteouts stay, even under a SRC file: a whiteout hides only the bundle, so the file shows
 *   anyway, and the whiteout is what keeps the bundle's entry (perhaps a directory) hidden once that
 *   file is deleted.
 * A replaced file keeps DEST's spelling of its name; a file copied in has SRC's time.
 *
 * Crash safety: every file goes in by an atomic rename through DEST's tmp/, so each DEST file is
 * the old one or the new one. whiteouts.json is written first: whiteouts hide no DEST file, so
 * until the deletions are done DEST shows what it had; written last, a crash after the deletions
 * would uncover bundle files that SRC had deleted. Running the merge again completes it.
 */
export function mergeOverlay(src: string, dest: string, o: { onProgress?: OnProgress } = {}): MergeReport {
  const source = readOverlay(src);
  const paths = overlayPaths(dest);
  refuseNesting(src, dest, "merge");
  const target = new Target(paths.files);
  const steps = plan(source, target, (entry, found) => newest(entry) > target.newest(found));
  // Only now that the plan stands is DEST touched (tmp/ made, crash debris cleared).
  const overlay = new Overlay(dest);
  const before = new Set(overlay.whiteouts.list());
  overlay.whiteouts.add(...source.whiteouts);
  execute(steps, () => joinHost(overlay.temp, crypto.randomUUID()), o.onProgress);
  return {
    added: steps.flatMap((s) => s.op === "mkdir" || (s.op === "copy" && !s.replaces) ? [s.path] : []),
    replaced: steps.flatMap((s) => s.op === "copy" && s.replaces ? [s.path] : []),
    deleted: steps.flatMap((s) => s.op === "delete" ? s.removed : []),
    kept: steps.flatMap((s) => s.op === "keep" ? [s.path] : []),
    whiteouts: overlay.whiteouts.list().filter((path) => !before.has(path)),
  };
}

// ---------------------------------------------------------------------------------------------
// Sync

export type SyncAction =
  /** `removed` lists the entry and all it held. */
  | { op: "delete"; path: string; host: string; removed: string[] }
  | { op: "mkdir"; path: string; host: string }
  | { op: "copy"; path: string; host: string; size: number; replaces: boolean };

export interface SyncReport {
  dryRun: boolean;
  /** In the order they run (or would). */
  actions: SyncAction[];
}

/**
 * Applies the overlay's changes to the plain host directory `hostDir`, for use without pvx: what
 * whiteouts name is deleted, then every overlay directory is created and every file copied in
 * (atomically, with its time), replacing whatever is at its path. Host names match ignoring case
 * as on the drive, and an existing name keeps its spelling. Symbolic links and devices on the way
 * are refused: a link could lead outside `hostDir`. With `dryRun`, only the plan is made.
 *
 * `hostDir` should hold what the overlay was made over (the app's files, or an earlier sync): a
 * whiteout deletes whatever is at its path there, each time, as it cannot tell the bundle's files
 * from ones added since.
 */
export function syncOverlay(
  overlayDir: string,
  hostDir: string,
  o: { dryRun?: boolean; onProgress?: OnProgress } = {},
): SyncReport {
  const source = readOverlay(overlayDir);
  const root = realDir(hostDir, "host directory");
  refuseNesting(overlayDir, root, "sync");
  const steps = plan(source, new Target(root), () => true);
  // A dot name stays out of most listings; a crash can leave one behind in the user's directory.
  if (!o.dryRun) execute(steps, (target) => joinHost(dirname(target), `.pvx-${crypto.randomUUID()}`), o.onProgress);
  const actions = steps.flatMap((s): SyncAction[] => {
    switch (s.op) {
      case "delete":
        return [s];
      case "mkdir":
        return [{ op: s.op, path: s.path, host: s.host }];
      case "copy":
        return [{ op: s.op, path: s.path, host: s.host, size: s.size, replaces: s.replaces }];
      default:
        return [];
    }
  });
  return { dryRun: o.dryRun ?? false, actions };
}

// ---------------------------------------------------------------------------------------------
// Reset

export interface ResetReport {
  reset: boolean;
  /** What the overlay held: files, whiteouts.json and debris in tmp/. */
  bytes: number;
  freed: number;
}

function bytesIn(path: string): number {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
  if (info.isFile) return info.size;
  if (!info.isDirectory) return 0;
  return listDir(path).reduce((sum, entry) => sum + bytesIn(joinHost(path, entry.name)), 0);
}

/**
 * Empties the overlay (files and whiteouts), or with `ifLargerThan` (bytes) only an overlay that
 * holds more. pvx keeps no record of what was merged or synced, so reset does not guess whether
 * changes still matter: running it is the decision. It removes only what is inside `dir`, links
 * as links, and refuses a directory without files/, which is not an overlay.
 *
 * files/ goes in one rename, so a crash never leaves part of the guest's files; whiteouts.json
 * goes after: a crash in between only keeps deleted bundle files hidden, which resetting again
 * fixes, where the other order could show them beside the guest's own files.
 */
export function resetOverlay(dir: string, o: { ifLargerThan?: number } = {}): ResetReport {
  const paths = overlayPaths(dir);
  const bytes = bytesIn(paths.files) + bytesIn(paths.whiteouts) + bytesIn(paths.temp);
  if (o.ifLargerThan !== undefined && bytes <= o.ifLargerThan) return { reset: false, bytes, freed: 0 };
  Deno.mkdirSync(paths.temp, { recursive: true });
  Deno.renameSync(paths.files, joinHost(paths.temp, crypto.randomUUID()));
  Deno.mkdirSync(paths.files);
  syncDir(dir);
  try {
    Deno.removeSync(paths.whiteouts);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  for (const entry of listDir(paths.temp)) Deno.removeSync(joinHost(paths.temp, entry.name), { recursive: true });
  return { reset: true, bytes, freed: bytes };
}
