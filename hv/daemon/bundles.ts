// Bundles a client uploaded, for a daemon that cannot read the client's files
// (one reached over TCP, on another machine): POST /bundles with the .pvx's
// bytes, then create instances with its id as `bundle`. Each is kept under its
// content's SHA-256, so an upload of the same bytes again is the same bundle,
// and a file present under its name is whole (written atomically).
//
//   <state dir>/bundles/<sha256>.pvx

import { createHash } from "node:crypto";
import { join } from "../../abi/host_path.ts";
import { writeBytesAtomically } from "../atomic_file.ts";

/** Larger uploads are refused (413) before they are read: a bundle holds an app, not a disk image. */
export const MAX_UPLOAD_BYTES = 512 * 1024 * 1024;

/** What was uploaded is not a bundle (400), with the checker's reason and offset. */
export class BadUpload extends Error {}

/** No uploaded bundle has that id (404). */
export class NoSuchBundle extends Error {}

/** Something still needs it (409): a live instance runs it, a kept template or snapshot restores with it. */
export class BundleInUse extends Error {}

export interface UploadedBundle {
  /** The first 12 hex digits of its SHA-256. */
  id: string;
  sha256: string;
  /** The app's name, from its manifest. */
  name: string;
  bytes: number;
  path: string;
  uploadedAt: string;
}

/** Checks that `bytes` are a bundle, and names its app; throws with what is wrong and where. */
export type BundleCheck = (bytes: Uint8Array, file: string) => Promise<{ name: string }>;

const sha256Of = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export class UploadedBundles {
  readonly dir: string;
  private readonly all = new Map<string, UploadedBundle>();

  private constructor(stateDir: string, private readonly check: BundleCheck) {
    this.dir = join(stateDir, "bundles");
  }

  /** The store in `stateDir`, with what earlier daemons kept; a bundle damaged since is dropped, and said so. */
  static async open(stateDir: string, check: BundleCheck): Promise<UploadedBundles> {
    const store = new UploadedBundles(stateDir, check);
    await Deno.mkdir(store.dir, { recursive: true, mode: 0o700 });
    for await (const entry of Deno.readDir(store.dir)) {
      const path = join(store.dir, entry.name);
      const sha256 = /^([0-9a-f]{64})\.pvx$/.exec(entry.name)?.[1];
      // A temporary file is an upload the previous daemon did not finish: nobody was told its id.
      if (!sha256) {
        await Deno.remove(path);
        continue;
      }
      const bytes = await Deno.readFile(path);
      try {
        if (sha256Of(bytes) !== sha256) throw new Error("its bytes no longer match its SHA-256");
        const bundle = await store.described(bytes, sha256, path, path, (await Deno.stat(path)).mtime);
        store.all.set(bundle.id, bundle);
      } catch (e) {
        console.error(`pvx serve: dropping uploaded bundle ${path}: ${(e as Error).message}`);
        await Deno.remove(path);
      }
    }
    return store;
  }

  /** Checks `bytes`, naming them `shownAs` in what is wrong, and describes them as kept at `path`. */
  private async described(
    bytes: Uint8Array,
    sha256: string,
    path: string,
    shownAs: string,
    at: Date | null,
  ): Promise<UploadedBundle> {
    const { name } = await this.check(bytes, shownAs);
    const uploadedAt = (at ?? new Date()).toISOString();
    return { id: sha256.slice(0, 12), sha256, name, bytes: bytes.length, path, uploadedAt };
  }

  /** Keeps `bytes` once checked; `created` is false when the same bytes were kept already. */
  async add(bytes: Uint8Array): Promise<{ bundle: UploadedBundle; created: boolean }> {
    const sha256 = sha256Of(bytes);
    const kept = this.all.get(sha256.slice(0, 12));
    if (kept?.sha256 === sha256) return { bundle: kept, created: false };
    const path = join(this.dir, `${sha256}.pvx`);
    let bundle: UploadedBundle;
    try {
      bundle = await this.described(bytes, sha256, path, "the uploaded bundle", null);
    } catch (e) {
      throw new BadUpload((e as Error).message);
    }
    await writeBytesAtomically(path, bytes);
    this.all.set(bundle.id, bundle);
    return { bundle, created: true };
  }

  list(): UploadedBundle[] {
    return [...this.all.values()].sort((a, b) => a.uploadedAt.localeCompare(b.uploadedAt));
  }

  get(id: string): UploadedBundle {
    const bundle = this.all.get(id);
    if (!bundle) throw new NoSuchBundle(`no uploaded bundle ${JSON.stringify(id)}`);
    return bundle;
  }

  /** Deletes it unless something still needs it: `users` names each (a live instance, a kept snapshot). */
  async remove(bundle: UploadedBundle, users: string[]): Promise<void> {
    if (users.length) throw new BundleInUse(`bundle ${bundle.id} is in use by ${users.join(", ")}`);
    this.all.delete(bundle.id);
    await Deno.remove(bundle.path).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
}
