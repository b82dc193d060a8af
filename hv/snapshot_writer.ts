// Writing pvx snapshots (format in hv/snapshot_format.ts): atomically to a path,
// or in place into a file no reader sees yet.

import {
  alignUp,
  CHUNK_BYTES,
  FORMAT_VERSION,
  isZero,
  MAGIC,
  MAX_MANIFEST_BYTES,
  type MemoryExtent,
  type SectionEntry,
  sha256Hex,
  SnapshotError,
  validateManifest,
} from "./snapshot_format.ts";
import { HEADER_SIZE, headerWithManifest, MANIFEST_LENGTH_OFFSET } from "./file_header.ts";
import { describeValue } from "./describe_value.ts";
import { createHash } from "node:crypto";
import { writeAll, writeFileAtomically } from "./atomic_file.ts";
import { PAGE } from "../abi/memory_map.ts";

/** Stands in for hashes not yet computed: as long as any real one, so the manifest's length is known in advance. */
const PLACEHOLDER_SHA256 = "0".repeat(64);

interface CommonInput {
  bundleSha256: string;
  meta: Record<string, unknown>;
  /** Stored in this order; names are 1..64 of [A-Za-z0-9._-]. */
  sections: Record<string, Uint8Array>;
}

export type SnapshotInput =
  & CommonInput
  & (
    | {
      kind: "full";
      parent: null;
      /** `bytes` is all of guest RAM; `pages` defaults to every page that is not all zeros. */
      memory: { bytes: Uint8Array; pages?: Iterable<number> };
    }
    | {
      kind: "diff";
      /** The id of the snapshot this one is laid over. */
      parent: string;
      /** `bytes` is all of guest RAM; exactly the listed pages are stored, zero ones included. */
      memory: { bytes: Uint8Array; pages: Iterable<number> };
    }
  );

export interface WrittenSnapshot {
  id: string;
  /** Bytes written to the file: holes, which the filesystem need not store, are not counted. */
  fileBytes: number;
  /** Pages in the snapshot's extents. */
  pages: number;
}

/** Runs of page indices as extents, without hashes yet. */
function extentsOf(pages: Iterable<number>, pageCount: number): { start: number; length: number }[] {
  const extents: { start: number; length: number }[] = [];
  for (const page of [...new Set(pages)].sort((a, b) => a - b)) {
    if (!Number.isSafeInteger(page) || page < 0 || page >= pageCount) {
      throw new RangeError(`memory.pages: ${describeValue(page)} is not a page of guest RAM (0..${pageCount - 1})`);
    }
    const last = extents.at(-1);
    if (last && last.start + last.length === page * PAGE) last.length += PAGE;
    else extents.push({ start: page * PAGE, length: PAGE });
  }
  return extents;
}

function nonZeroPages(ram: Uint8Array): number[] {
  const pages: number[] = [];
  for (let page = 0; page * PAGE < ram.length; page++) {
    if (!isZero(ram.subarray(page * PAGE, (page + 1) * PAGE))) pages.push(page);
  }
  return pages;
}

/**
 * Writes a snapshot to `path`, replacing it atomically: readers see the old file or the whole new one, even if
 * the writer is killed or the machine dies part-way. Guest RAM must not change while this runs (pause the
 * vCPUs); each piece is copied before it is hashed and written, so a change is at worst a torn but
 * self-consistent snapshot, never one that fails its own hashes. `progress` gets the bytes of sections and
 * present pages done so far and their total.
 */
export async function writeSnapshot(
  path: string,
  input: SnapshotInput,
  progress?: (doneBytes: number, totalBytes: number) => void,
): Promise<WrittenSnapshot> {
  return await writeFileAtomically(path, (out) => writeSnapshotInto(out, path, input, progress));
}

/**
 * Writes a snapshot into `out`, an empty file opened for writing, as writeSnapshot does but in place: nothing
 * is synced or renamed. For files no reader can see until they are complete, such as a memfd (see
 * hv/sealed_snapshot.ts). `file` names it in errors.
 */
export async function writeSnapshotInto(
  out: Deno.FsFile,
  file: string,
  input: SnapshotInput,
  progress?: (doneBytes: number, totalBytes: number) => void,
): Promise<WrittenSnapshot> {
  const ram = input.memory.bytes;
  if (ram.length === 0 || ram.length % PAGE !== 0) {
    throw new RangeError(
      `memory.bytes: guest RAM must be a positive multiple of ${PAGE} bytes, got ${ram.length}`,
    );
  }
  const pages = input.kind === "diff" ? input.memory.pages : input.memory.pages ?? nonZeroPages(ram);
  const extents = extentsOf(pages, ram.length / PAGE);
  const sections = Object.entries(input.sections);
  const createdAt = new Date().toISOString();

  const manifestFor = (manifestLength: number, extentHashes: string[], sectionHashes: string[]) => {
    let offset = HEADER_SIZE + manifestLength;
    const entries = sections.map(([name, bytes], i): SectionEntry => {
      const entry = { name, offset, length: bytes.length, sha256: sectionHashes[i] };
      offset += bytes.length;
      return entry;
    });
    return {
      format: FORMAT_VERSION,
      kind: input.kind,
      parent: input.parent,
      bundle: { sha256: input.bundleSha256 },
      createdAt,
      meta: input.meta,
      memory: {
        size: ram.length,
        fileOffset: alignUp(offset),
        extents: extents.map((e, i): MemoryExtent => ({ ...e, sha256: extentHashes[i] })),
      },
      sections: entries,
    };
  };
  const encode = (manifest: unknown) => new TextEncoder().encode(JSON.stringify(manifest));

  // The offsets are in the manifest and depend on its length. Longer numbers only ever lengthen it, so this
  // settles after a step or two; hashes are all 64 digits, so the real ones will not change the length.
  const extentPlaceholders = extents.map(() => PLACEHOLDER_SHA256);
  const sectionPlaceholders = sections.map(() => PLACEHOLDER_SHA256);
  let manifestLength = 0;
  for (;;) {
    const length = encode(manifestFor(manifestLength, extentPlaceholders, sectionPlaceholders)).length;
    if (length > MAX_MANIFEST_BYTES) {
      throw new SnapshotError(
        file,
        MANIFEST_LENGTH_OFFSET,
        `manifest length ${length} exceeds the ${MAX_MANIFEST_BYTES}-byte limit (${extents.length} extents)`,
      );
    }
    if (length === manifestLength) break;
    manifestLength = length;
  }
  // Checked before anything is written, so a bad input leaves no file behind and errors show the caller's values.
  const layout = validateManifest(
    manifestFor(manifestLength, extentPlaceholders, sectionPlaceholders),
    file,
    manifestLength,
  );
  const { fileOffset } = layout.memory;

  const totalBytes = sections.reduce((sum, [, bytes]) => sum + bytes.length, 0) +
    extents.reduce((sum, e) => sum + e.length, 0);
  let doneBytes = 0;
  let fileBytes = 0;
  const place = async (bytes: Uint8Array, offset: number) => {
    await out.seek(offset, Deno.SeekMode.Start);
    await writeAll(out, bytes);
    fileBytes += bytes.length;
  };

  const sectionHashes: string[] = [];
  for (const [i, [, bytes]] of sections.entries()) {
    const copy = bytes.slice();
    sectionHashes.push(sha256Hex(copy));
    await place(copy, layout.sections[i].offset);
    doneBytes += copy.length;
    progress?.(doneBytes, totalBytes);
  }

  const scratch = new Uint8Array(CHUNK_BYTES);
  const extentHashes: string[] = [];
  for (const e of extents) {
    const hash = createHash("sha256");
    for (let at = e.start; at < e.start + e.length; at += CHUNK_BYTES) {
      const piece = scratch.subarray(0, Math.min(CHUNK_BYTES, e.start + e.length - at));
      piece.set(ram.subarray(at, at + piece.length));
      hash.update(piece);
      // Zero pages are skipped, not written: they stay holes, which read as zero and take no space.
      const pageAt = (i: number) => piece.subarray(i * PAGE, (i + 1) * PAGE);
      const count = piece.length / PAGE;
      for (let first = 0; first < count;) {
        if (isZero(pageAt(first))) {
          first++;
          continue;
        }
        let end = first + 1;
        while (end < count && !isZero(pageAt(end))) end++;
        await place(piece.subarray(first * PAGE, end * PAGE), fileOffset + at + first * PAGE);
        first = end;
      }
      doneBytes += piece.length;
      progress?.(doneBytes, totalBytes);
    }
    extentHashes.push(hash.digest("hex"));
  }
  // Extends the file over trailing zero pages as a hole, so it ends where guest RAM does.
  await out.truncate(fileOffset + ram.length);

  // The header goes last: until then the file starts with zeros, so a temp file left by a killed writer is
  // refused as "bad magic" rather than read as a snapshot with missing pages.
  const manifestBytes = encode(manifestFor(manifestLength, extentHashes, sectionHashes));
  const header = headerWithManifest(MAGIC, FORMAT_VERSION, manifestBytes);
  await place(header, 0);
  const id = sha256Hex(manifestBytes);
  return { id, fileBytes, pages: extents.reduce((sum, e) => sum + e.length, 0) / PAGE };
}
