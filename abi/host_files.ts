// Host files under the drive's directories: names found as a case-insensitive guest would find them, and
// content replaced atomically.

import { dirname } from "./host_path.ts";
import { fold } from "./guest_names.ts";

export function joinHost(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

export function isWithin(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith("/") ? root : `${root}/`);
}

/** The host directory is case-sensitive and the guest is not: the match to use, exact first, then the lowest. */
export function pickEntry(entries: readonly Deno.DirEntry[], name: string): Deno.DirEntry | undefined {
  const key = fold(name);
  let found: Deno.DirEntry | undefined;
  for (const entry of entries) {
    if (entry.name === name) return entry;
    if (fold(entry.name) === key && (!found || entry.name < found.name)) found = entry;
  }
  return found;
}

export function listDir(dir: string): Deno.DirEntry[] {
  return [...Deno.readDirSync(dir)];
}

export function mtimeOf(info: Deno.FileInfo): number {
  return info.mtime?.getTime() ?? 0;
}

export function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
}

/**
 * Persists the names in `dir` (a rename, a new file). Best-effort: some filesystems refuse to fsync
 * a directory, and the content is complete under its name either way; only durability across a
 * power cut is weaker.
 */
export function syncDir(dir: string): void {
  try {
    using handle = Deno.openSync(dir, { read: true });
    handle.syncSync();
  } catch {
    // See above.
  }
}

/**
 * Puts new content at `target` so that a crash leaves the old content or the new, never a torn file.
 * `fill` writes it to `temp`, which must be on the same filesystem (rename is only atomic within one).
 */
export function replaceAtomic(target: string, temp: string, fill: (file: Deno.FsFile) => void): void {
  {
    using file = Deno.openSync(temp, { write: true, createNew: true });
    try {
      fill(file);
      // Without the fsync, a crash soon after the rename could leave the name pointing at unwritten blocks.
      file.syncSync();
    } catch (e) {
      Deno.removeSync(temp);
      throw e;
    }
  }
  Deno.renameSync(temp, target);
  syncDir(dirname(target));
}

/** `tempDir` must be on the target's filesystem and out of the guest's sight. */
export function writeFileAtomic(target: string, bytes: Uint8Array, tempDir: string): void {
  replaceAtomic(target, joinHost(tempDir, crypto.randomUUID()), (file) => writeAll(file, bytes));
}
