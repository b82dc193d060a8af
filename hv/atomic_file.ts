// Files that appear whole or not at all: written beside their target, fsynced,
// then renamed (or linked) into place, the way snapshots, bundles, sealed
// blobs and key files must be, so a reader never sees a half-written one;
// and the loops that write or read a whole buffer, which one call may not.

import { dirname } from "../abi/host_path.ts";

export interface AtomicWriteOptions {
  /** The file's mode (before the umask), set when the temporary file is created, so it is never wider. */
  mode?: number;
  /** Refuse to replace an existing file (Deno.errors.AlreadyExists) instead of replacing it. */
  exclusive?: boolean;
}

/**
 * Creates `path` with what `fill` writes into it: readers see the old file or the whole new one, even if the
 * process or machine dies part-way. `fill` gets an empty file opened for writing; its result is returned.
 */
export async function writeFileAtomically<T>(
  path: string,
  fill: (out: Deno.FsFile) => Promise<T>,
  options: AtomicWriteOptions = {},
): Promise<T> {
  // Same directory as the target, because rename is only atomic within one filesystem.
  const temp = `${path}.tmp-${crypto.randomUUID()}`;
  let result: T;
  try {
    { // Closed before the rename, which Windows refuses on an open file.
      using out = await Deno.open(temp, { write: true, createNew: true, mode: options.mode });
      result = await fill(out);
      // Without the fsync, a crash soon after the rename could leave the name pointing at unwritten blocks.
      await out.sync();
    }
    // link(2), unlike rename(2), fails when the target exists, so no two writers both believe they created it.
    if (options.exclusive) await Deno.link(temp, path);
    else await Deno.rename(temp, path);
  } finally {
    await Deno.remove(temp).catch(() => {});
  }
  // Persists the rename itself. Best-effort: some filesystems refuse to fsync a directory, and the file is
  // complete under its name either way; only durability across a power cut is weaker.
  try {
    using dir = await Deno.open(dirname(path), { read: true });
    await dir.sync();
  } catch {
    // See above: nothing is wrong with the file.
  }
  return result;
}

/** The write failed because the disk (or the writer's quota) is full. */
export function isDiskFull(e: unknown): boolean {
  return /ENOSPC|No space left|EDQUOT|quota exceeded/i.test(String((e as Error)?.message ?? ""));
}

/** Writes all of `bytes` to `out`, which may take several writes. */
export async function writeAll(out: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) written += await out.write(bytes.subarray(written));
}

/** Fills `into` from `file` at `offset`, which may take several reads; the part filled, short only where the file ends. */
export async function readAt<B extends ArrayBufferLike>(
  file: Deno.FsFile,
  offset: number,
  into: Uint8Array<B>,
): Promise<Uint8Array<B>> {
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < into.length) {
    const n = await file.read(into.subarray(done));
    if (n === null) break;
    done += n;
  }
  return into.subarray(0, done);
}

/** `writeFileAtomically` of bytes already in hand. */
export async function writeBytesAtomically(path: string, bytes: Uint8Array, options: AtomicWriteOptions = {}) {
  await writeFileAtomically(path, (out) => writeAll(out, bytes), options);
}
