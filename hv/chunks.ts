// Content-addressed chunks: files (snapshots, bundles) cut into pieces named
// by their SHA-256, so that a host that already holds a piece never receives it
// again. A file becomes a recipe (which chunk goes where; the rest is zero),
// a ChunkStore keeps chunks on disk, and `lacking` is the "which of these do
// you not have" half of a transfer. Layout and rationale: docs/snapshot.md,
// "Content-addressed chunks".

import { createHash } from "node:crypto";
import { join } from "../abi/host_path.ts";
import { readAt, writeAll, writeBytesAtomically, writeFileAtomically } from "./atomic_file.ts";
import { type SnapshotManifest } from "./snapshot_format.ts";
import { openSnapshot } from "./snapshot_file.ts";

/** Every chunk but a region's last is this long. */
export const CHUNK_BYTES = 64 << 10;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface ChunkRef {
  /** Where the chunk's bytes go in the file. */
  offset: number;
  length: number;
  /** Lowercase hex SHA-256 of the chunk's bytes: its name. */
  id: string;
}

/** A file as chunks: its length, and the chunks that cover it; every byte no chunk covers is zero. */
export interface Recipe {
  length: number;
  chunks: ChunkRef[];
}

export const chunkId = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** A chunk the store or a peer refused: which, and why. */
export class ChunkError extends Error {
  override name = "ChunkError";
}

/**
 * Cuts `[from, to)` of `file` into CHUNK_BYTES pieces starting at `from`, calling `take` with each that is not all
 * zeros (a zero chunk is a hole in the recipe and never sent).
 */
async function cut(
  file: Deno.FsFile,
  from: number,
  to: number,
  take: (ref: ChunkRef, bytes: Uint8Array) => Promise<void> | void,
): Promise<void> {
  const buffer = new Uint8Array(CHUNK_BYTES);
  for (let offset = from; offset < to; offset += CHUNK_BYTES) {
    const piece = buffer.subarray(0, Math.min(CHUNK_BYTES, to - offset));
    const done = (await readAt(file, offset, piece)).length;
    if (done < piece.length) {
      throw new ChunkError(`${offset + done}: the file ended while it was being cut into chunks`);
    }
    if (!isZero(piece)) await take({ offset, length: piece.length, id: chunkId(piece) }, piece);
  }
}

/**
 * The recipe of the file at `path`, passing each chunk to `take` (to store or send it). A snapshot is cut in two
 * regions: what comes before its memory region (header, manifest, sections: new with every snapshot), then guest
 * RAM in chunks aligned to guest addresses, so that a page run the guest did not change is the same chunk in every
 * snapshot of it, wherever the manifest's length puts the memory region. Any other file (a bundle) is cut from its
 * start.
 */
export async function chunkFile(
  path: string,
  take: (ref: ChunkRef, bytes: Uint8Array) => Promise<void> | void = () => {},
): Promise<Recipe> {
  let memory: SnapshotManifest["memory"] | undefined;
  try {
    using snapshot = openSnapshot(path);
    memory = snapshot.manifest.memory;
  } catch {
    // Not a snapshot: cut from the start.
  }
  using file = await Deno.open(path, { read: true });
  const length = (await file.stat()).size;
  const chunks: ChunkRef[] = [];
  const collect = async (ref: ChunkRef, bytes: Uint8Array) => {
    chunks.push(ref);
    await take(ref, bytes);
  };
  if (memory === undefined) await cut(file, 0, length, collect);
  else {
    const at = memory.fileOffset;
    await cut(file, 0, at, collect);
    // Only the chunks that hold a page the snapshot stores: the rest of the region is holes, which read as zeros
    // (a diff of a few pages in a guest of 1 GiB is otherwise 1 GiB read).
    let next = at;
    for (const extent of memory.extents) {
      const from = Math.max(next, at + Math.floor(extent.start / CHUNK_BYTES) * CHUNK_BYTES);
      const to = Math.min(length, at + Math.ceil((extent.start + extent.length) / CHUNK_BYTES) * CHUNK_BYTES);
      if (from < to) await cut(file, from, to, collect);
      next = Math.max(next, to);
    }
  }
  return { length, chunks };
}

/**
 * Chunks on disk, one file each, named by hash under a two-hex-digit fan-out (`ab/abcd…`). A chunk is written to
 * a temporary file, fsynced and renamed, so a chunk file is always whole; its hash is checked when it is stored
 * and again whenever it is read, so a damaged disk is an error naming the chunk, never wrong bytes.
 */
export class ChunkStore implements ChunkSource {
  constructor(readonly dir: string) {}

  #path(id: string): string {
    if (!SHA256_HEX.test(id)) throw new ChunkError(`${JSON.stringify(id)} is not a chunk id (64 lowercase hex digits)`);
    return join(this.dir, id.slice(0, 2), id);
  }

  async has(id: string): Promise<boolean> {
    try {
      return (await Deno.stat(this.#path(id))).isFile;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
  }

  /** Stores `bytes` as chunk `id`, which must be their hash; a chunk already there is left as it is. */
  async put(id: string, bytes: Uint8Array): Promise<void> {
    const path = this.#path(id);
    if (bytes.length === 0 || bytes.length > CHUNK_BYTES) {
      throw new ChunkError(`chunk ${id}: ${bytes.length} bytes, where a chunk has 1 to ${CHUNK_BYTES}`);
    }
    const actual = chunkId(bytes);
    if (actual !== id) throw new ChunkError(`chunk ${id}: its bytes hash to ${actual}`);
    if (await this.has(id)) return;
    await Deno.mkdir(join(this.dir, id.slice(0, 2)), { recursive: true });
    await writeBytesAtomically(path, bytes);
  }

  /** Chunk `id`'s bytes, checked against their hash. */
  async get(id: string): Promise<Uint8Array<ArrayBuffer>> {
    const path = this.#path(id);
    const bytes = await Deno.readFile(path);
    const actual = chunkId(bytes);
    if (actual !== id) throw new ChunkError(`${path}: chunk ${id} is damaged: its bytes hash to ${actual}`);
    return bytes;
  }

  /** Writes the file `recipe` describes to `path` (atomically), every chunk read from here and checked. */
  async assemble(recipe: Recipe, path: string): Promise<void> {
    await writeFileAtomically(path, async (out) => {
      for (const ref of recipe.chunks) {
        const bytes = await this.get(ref.id).catch((e) => {
          throw e instanceof Deno.errors.NotFound ? new ChunkError(`chunk ${ref.id} at ${ref.offset} is not here`) : e;
        });
        if (bytes.length !== ref.length) {
          throw new ChunkError(
            `chunk ${ref.id} at ${ref.offset}: ${bytes.length} bytes, the recipe says ${ref.length}`,
          );
        }
        await out.seek(ref.offset, Deno.SeekMode.Start);
        await writeAll(out, bytes);
      }
      // Zero ranges stay holes, as in a snapshot pvx writes itself.
      await out.truncate(recipe.length);
    });
  }
}

/** Where a sender reads the chunks it sends: a ChunkStore, or the files it cut them from (FileChunks). */
export interface ChunkSource {
  /** Chunk `id`'s bytes, checked against their hash. */
  get(id: string): Promise<Uint8Array<ArrayBuffer>>;
}

/**
 * The chunks of files cut in place: each is read back from its file when sent, so a sender never copies a
 * snapshot into a store first. A file that changed since it was cut is an error naming it, never wrong bytes.
 */
export class FileChunks implements ChunkSource {
  readonly #where = new Map<string, { path: string; offset: number; length: number }>();

  /** `keep`, if given, keeps a copy of every chunk cut: a host then holds what it once sent, should it come back. */
  constructor(private readonly keep?: ChunkStore) {}

  /** Cuts `path` (chunkFile) and remembers where each of its chunks is. */
  add(path: string): Promise<Recipe> {
    return chunkFile(path, async (ref, bytes) => {
      this.#where.set(ref.id, { path, offset: ref.offset, length: ref.length });
      await this.keep?.put(ref.id, bytes);
    });
  }

  async get(id: string): Promise<Uint8Array<ArrayBuffer>> {
    const at = this.#where.get(id);
    if (!at) throw new ChunkError(`chunk ${id} is in none of the files cut here`);
    using file = await Deno.open(at.path, { read: true });
    const bytes = new Uint8Array(at.length);
    // A file cut shorter since reads short, and so fails the hash.
    await readAt(file, at.offset, bytes);
    if (chunkId(bytes) !== id) throw new ChunkError(`${at.path}: changed since it was cut (chunk at ${at.offset})`);
    return bytes;
  }
}

/** A recipe a peer sent that does not describe a file: which field, and why. */
export class RecipeError extends ChunkError {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

/** Bigger than any file pvx moves (a snapshot of the largest guest, with its sections). */
const MAX_RECIPE_LENGTH = 2 ** 49;

/**
 * `value` as a Recipe, checked the way ChunkStore.assemble needs it: chunks in order, none overlapping, each 1 to
 * CHUNK_BYTES long and inside the file, each named by a chunk id. `field` names it in errors.
 */
export function parseRecipe(value: unknown, field: string): Recipe {
  const fail = (at: string, message: string) => new RecipeError(at, message);
  const object = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!object(value)) throw fail(field, 'must be a recipe: {"length", "chunks": [{"offset", "length", "id"}, ...]}');
  const { length, chunks, ...others } = value as Record<string, unknown>;
  const other = Object.keys(others)[0];
  if (other) throw fail(`${field}.${other}`, "unknown field; expected length, chunks");
  if (!Number.isSafeInteger(length) || (length as number) < 0 || (length as number) > MAX_RECIPE_LENGTH) {
    throw fail(`${field}.length`, `must be a whole number of bytes from 0 to 2^49`);
  }
  if (!Array.isArray(chunks)) throw fail(`${field}.chunks`, "must be an array of chunks");
  let end = 0;
  const refs = chunks.map((c, i): ChunkRef => {
    const at = `${field}.chunks[${i}]`;
    if (!object(c)) throw fail(at, 'must be {"offset", "length", "id"}');
    const { offset, length: size, id, ...rest } = c as Record<string, unknown>;
    const unknown = Object.keys(rest)[0];
    if (unknown) throw fail(`${at}.${unknown}`, "unknown field; expected offset, length, id");
    if (typeof id !== "string" || !SHA256_HEX.test(id)) throw fail(`${at}.id`, "must be 64 lowercase hex digits");
    if (!Number.isSafeInteger(offset) || (offset as number) < end) {
      throw fail(`${at}.offset`, `must be a whole number at or after ${end}, where the chunk before ends`);
    }
    if (!Number.isSafeInteger(size) || (size as number) < 1 || (size as number) > CHUNK_BYTES) {
      throw fail(`${at}.length`, `must be from 1 to ${CHUNK_BYTES}`);
    }
    end = (offset as number) + (size as number);
    if (end > (length as number)) throw fail(`${at}.length`, `ends at ${end}, past the file's length ${length}`);
    return { offset: offset as number, length: size as number, id };
  });
  return { length: length as number, chunks: refs };
}

/** Of `ids`, those `store` does not hold, each once, in the order first asked: what a sender must send. */
export async function lacking(store: ChunkStore, ids: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const id of new Set(ids)) if (!(await store.has(id))) missing.push(id);
  return missing;
}
