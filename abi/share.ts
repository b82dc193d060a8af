// Host directories the user shared into the drive, and the checks that keep every guest name
// inside the directory shared.

import { guestPathString } from "./guest_names.ts";
import { isWithin, joinHost, listDir, pickEntry } from "./host_files.ts";
import { win32Errors as E } from "./win32.ts";
import { FileViewError, quote } from "./drive_errors.ts";
import { isGuestName, parseGuestPath } from "./guest_path.ts";

export interface ShareSpec {
  guestPath: string;
  hostPath: string;
  readOnly: boolean;
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

/** A shared host directory mounted on the drive. */
export class Share {
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

export interface ShareNode {
  readonly layer: "share";
  readonly names: readonly string[];
  readonly isDir: boolean;
  readonly share: Share;
  /** The host entry itself, which a delete or rename acts on (a symlink stays a symlink). */
  readonly host: string;
  /** Its realpath, inside the share root, which reads and writes go to. */
  readonly real: string;
}
