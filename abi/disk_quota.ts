// The overlay's disk quota, one of an instance's partitions: the bytes of the
// files the guest keeps in its overlay, what it wrote and the bundle files it
// changed (each copied up whole). Shares are the user's own directories and are
// not counted, nor are directories and whiteouts, which hold no data. One
// FileView owns it, on the host-services thread, so a plain count is enough.

export class DiskQuota {
  #used: number;

  /** Starts from what `dir` already holds: a restored or reused overlay counts against the quota at once. */
  constructor(readonly limit: number, dir: string) {
    this.#used = filesBytes(dir);
  }

  get used(): number {
    return this.#used;
  }

  /** Takes `bytes` more if they fit under the limit, and says whether they did. */
  take(bytes: number): boolean {
    if (bytes > 0 && this.#used + bytes > this.limit) return false;
    this.#used = Math.max(0, this.#used + bytes);
    return true;
  }

  give(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
  }
}

/** The bytes of every regular file at or below `path`; symlinks are not followed. */
export function filesBytes(path: string): number {
  const info = Deno.lstatSync(path);
  if (info.isFile) return info.size;
  if (!info.isDirectory) return 0;
  let total = 0;
  for (const entry of Deno.readDirSync(path)) total += filesBytes(`${path}/${entry.name}`);
  return total;
}
