// Sealed snapshots: one snapshot (hv/snapshot_file.ts) encrypted and
// authenticated with AES-256-GCM (Web Crypto) under a key only the key file's
// holder has, so a client can keep the blob and hand it back but can neither
// read nor alter it. The plaintext lives only in a memfd on either side: it is
// never written to a file system. Format and rationale: docs/snapshot.md,
// "Sealed snapshots".

import { check, cString, libc, MFD_CLOEXEC } from "../ffi/libc.ts";
import { readAt, writeAll, writeBytesAtomically, writeFileAtomically } from "./atomic_file.ts";
import { SnapshotError } from "./snapshot_format.ts";
import { type SnapshotInput, writeSnapshotInto, type WrittenSnapshot } from "./snapshot_writer.ts";
import { openSnapshotFd, packedLength, type Snapshot, SnapshotUnpacker } from "./snapshot_file.ts";
import { hexBytes } from "../abi/hex.ts";

export const SEAL_MAGIC = new TextEncoder().encode("PVXSEAL\0");
export const SEAL_VERSION = 1;
/** A key file holds exactly this many random bytes, and nothing else. */
export const KEY_BYTES = 32;
/** Plaintext bytes per GCM segment; every segment but the last is this long. */
export const SEGMENT_BYTES = 64 << 10;
export const TAG_BYTES = 16;

/** Header fields: [offset, length]. Integers are little-endian. */
const FIELD = {
  magic: [0, 8],
  version: [8, 4],
  plaintextLength: [12, 8],
  createdAt: [20, 8],
  expiresAt: [28, 8],
  bundleSha256: [36, 32],
  salt: [68, 32],
  keyId: [100, 16],
  headerTag: [116, 16],
} as const;
/** The header's bytes that its tag, and every segment, authenticate: all of it but the tag. */
const AUTHENTICATED_BYTES = FIELD.headerTag[0];
export const SEAL_HEADER_BYTES = FIELD.headerTag[0] + FIELD.headerTag[1];
/** Every length stays below this, as in a snapshot, so sums of them are exact in a JS number. */
const MAX_PLAINTEXT_BYTES = 2 ** 48;

/** The last byte of a nonce: which kind of message it is for, so that no two of one blob ever share one. */
const NONCE_SEGMENT = 0x00;
const NONCE_LAST_SEGMENT = 0x01;
const NONCE_HEADER = 0x02;

const KEY_ID_INFO = new TextEncoder().encode("pvx seal v1 key id");
const BLOB_KEY_INFO = new TextEncoder().encode("pvx seal v1 blob key");

/** A sealed blob refused: which check failed, and where. */
export class SealError extends SnapshotError {
  override name = "SealError";
}

/** A key file that cannot be used, or made: the file and what is wrong. */
export class KeyFileError extends Error {
  override name = "KeyFileError";
  constructor(readonly file: string, readonly problem: string) {
    super(`${file}: key file: ${problem}`);
  }
}

/** A key file's key, as HKDF input: the raw bytes are not kept. */
export interface SealKey {
  file: string;
  /** Names the key without revealing it: HKDF-SHA256(key, info "pvx seal v1 key id"), 16 bytes. */
  id: Uint8Array<ArrayBuffer>;
  hkdf: CryptoKey;
}

async function importKey(bytes: Uint8Array<ArrayBuffer>, file: string): Promise<SealKey> {
  const hkdf = await crypto.subtle.importKey("raw", bytes, "HKDF", false, ["deriveKey", "deriveBits"]);
  const id = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: KEY_ID_INFO },
      hkdf,
      8 * FIELD.keyId[1],
    ),
  );
  return { file, id, hkdf };
}

/** Reads a key file: exactly KEY_BYTES bytes, readable by its owner only, as `pvx key create` makes one. */
export async function readKeyFile(path: string): Promise<SealKey> {
  const fail = (problem: string): never => {
    throw new KeyFileError(path, problem);
  };
  const info = await Deno.stat(path);
  if (!info.isFile) fail("is not a file");
  // As ssh refuses a private key others can read: whoever can read it can read every blob sealed under it.
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    fail(`others can read or change it (mode ${(info.mode & 0o777).toString(8)}): chmod 600 it`);
  }
  const bytes = await Deno.readFile(path);
  if (bytes.length !== KEY_BYTES) {
    fail(`must hold exactly ${KEY_BYTES} bytes (pvx key create makes one), it holds ${bytes.length}`);
  }
  return await importKey(bytes, path);
}

/** Creates a key file of KEY_BYTES random bytes, mode 0600, atomically; an existing file is never replaced. */
export async function createKeyFile(path: string): Promise<SealKey> {
  const bytes = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  try {
    await writeBytesAtomically(path, bytes, { mode: 0o600, exclusive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    throw new KeyFileError(
      path,
      "exists already, and is never replaced: every blob sealed under it would become unreadable",
    );
  }
  return await importKey(bytes, path);
}

/** Whether `head`, a file's first bytes, is a sealed blob's magic. */
export function isSealed(head: Uint8Array): boolean {
  return head.length >= SEAL_MAGIC.length && SEAL_MAGIC.every((b, i) => head[i] === b);
}

/** The 96-bit GCM nonce of segment `index` (or of the header): the index big-endian, then what it is for. */
function nonce(index: number, kind: number): Uint8Array<ArrayBuffer> {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(3, BigInt(index));
  iv[11] = kind;
  return iv;
}

/** The blob's own AES-256-GCM key: HKDF-SHA256 of the key file's key with the blob's random salt. */
function blobKey(key: SealKey, salt: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: BLOB_KEY_INFO },
    key.hkdf,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

const segmentCount = (plaintextLength: number) => Math.max(1, Math.ceil(plaintextLength / SEGMENT_BYTES));

/** How long the blob of a `plaintextLength`-byte snapshot is. */
export const sealedLength = (plaintextLength: number) =>
  SEAL_HEADER_BYTES + plaintextLength + TAG_BYTES * segmentCount(plaintextLength);

/** Where segment `index` starts in the blob. */
const segmentOffset = (index: number) => SEAL_HEADER_BYTES + index * (SEGMENT_BYTES + TAG_BYTES);

/** The blob's metadata, authenticated but not secret: a client may read it, but not change it. */
export interface SealedHeader {
  version: number;
  plaintextLength: number;
  createdAt: Date;
  expiresAt?: Date;
  bundleSha256: string;
  keyId: string;
}

function readHeader(header: Uint8Array<ArrayBuffer>): SealedHeader {
  const view = new DataView(header.buffer, header.byteOffset, SEAL_HEADER_BYTES);
  const field = (f: readonly [number, number]) => header.subarray(f[0], f[0] + f[1]);
  const expiresAt = Number(view.getBigUint64(FIELD.expiresAt[0], true));
  return {
    version: view.getUint32(FIELD.version[0], true),
    plaintextLength: Number(view.getBigUint64(FIELD.plaintextLength[0], true)),
    createdAt: new Date(Number(view.getBigUint64(FIELD.createdAt[0], true))),
    ...(expiresAt ? { expiresAt: new Date(expiresAt) } : {}),
    bundleSha256: hexBytes(field(FIELD.bundleSha256)),
    keyId: hexBytes(field(FIELD.keyId)),
  };
}

export interface SealOptions {
  /** After this the blob is refused. */
  expiresAt?: Date;
  progress?: (doneBytes: number, totalBytes: number) => void;
}

export interface SealedBlob {
  /** The blob's length. */
  fileBytes: number;
  segments: number;
  createdAt: Date;
  expiresAt?: Date;
}

/** Seals `snapshot` into a new blob at `path`, replacing it atomically. */
export async function sealSnapshot(
  snapshot: Snapshot,
  path: string,
  key: SealKey,
  options: SealOptions = {},
): Promise<SealedBlob> {
  const createdAt = new Date();
  const { expiresAt } = options;
  if (expiresAt && !(expiresAt.getTime() > createdAt.getTime())) {
    throw new RangeError(`expiresAt: ${expiresAt.toISOString()} is not after now, ${createdAt.toISOString()}`);
  }
  const plaintextLength = packedLength(snapshot.manifest);
  const segments = segmentCount(plaintextLength);

  const header = new Uint8Array(SEAL_HEADER_BYTES);
  const view = new DataView(header.buffer);
  header.set(SEAL_MAGIC, FIELD.magic[0]);
  view.setUint32(FIELD.version[0], SEAL_VERSION, true);
  view.setBigUint64(FIELD.plaintextLength[0], BigInt(plaintextLength), true);
  view.setBigUint64(FIELD.createdAt[0], BigInt(createdAt.getTime()), true);
  view.setBigUint64(FIELD.expiresAt[0], BigInt(expiresAt?.getTime() ?? 0), true);
  header.set(
    Uint8Array.from(snapshot.manifest.bundle.sha256.match(/../g)!, (h) => parseInt(h, 16)),
    FIELD.bundleSha256[0],
  );
  const salt = crypto.getRandomValues(new Uint8Array(FIELD.salt[1]));
  header.set(salt, FIELD.salt[0]);
  header.set(key.id, FIELD.keyId[0]);
  const aesKey = await blobKey(key, salt);
  const additionalData = header.slice(0, AUTHENTICATED_BYTES);
  const tag = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce(0, NONCE_HEADER), additionalData },
    aesKey,
    new Uint8Array(0),
  );
  header.set(new Uint8Array(tag), FIELD.headerTag[0]);

  const fileBytes = sealedLength(plaintextLength);
  await writeFileAtomically(path, async (out) => {
    await writeAll(out, header);
    const segment = new Uint8Array(SEGMENT_BYTES);
    let filled = 0, index = 0;
    const seal = async (length: number) => {
      const iv = nonce(index, index === segments - 1 ? NONCE_LAST_SEGMENT : NONCE_SEGMENT);
      const sealed = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData },
        aesKey,
        segment.subarray(0, length),
      );
      await writeAll(out, new Uint8Array(sealed));
      index++;
      options.progress?.(Math.min(index * SEGMENT_BYTES, plaintextLength), plaintextLength);
    };
    let total = 0;
    for (const piece of snapshot.packed()) {
      total += piece.length;
      if (total > plaintextLength) throw new Error(`${snapshot.path}: its packed form outgrew its manifest`);
      for (let at = 0; at < piece.length;) {
        const n = Math.min(piece.length - at, SEGMENT_BYTES - filled);
        segment.set(piece.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === SEGMENT_BYTES && index < segments - 1) {
          await seal(filled);
          filled = 0;
        }
      }
    }
    if (total !== plaintextLength) throw new Error(`${snapshot.path}: its packed form fell short of its manifest`);
    await seal(filled);
  }, { mode: 0o600 });
  return { fileBytes, segments, createdAt, ...(expiresAt ? { expiresAt } : {}) };
}

/**
 * A file that lives in memory only (memfd_create), open for reading and writing: where a sealed snapshot's
 * plaintext goes. `fd` is for openSnapshotFd, `file` for writing; closing `file` leaves `fd` open.
 */
async function memoryFile(name: string): Promise<{ fd: number; file: Deno.FsFile }> {
  const fd = check(`memfd_create ${name}`, libc().memfd_create(cString(`pvx ${name}`), MFD_CLOEXEC));
  try {
    return { fd, file: await Deno.open(`/proc/self/fd/${fd}`, { read: true, write: true }) };
  } catch (e) {
    libc().close(fd);
    throw e;
  }
}

/**
 * Writes a snapshot of `input` as writeSnapshot does, but sealed: the snapshot is laid out in memory, checked
 * as a reader would, and sealed to `path`. The result's id is the snapshot's, its fileBytes the blob's.
 */
export async function writeSealedSnapshot(
  path: string,
  input: SnapshotInput,
  key: SealKey,
  options: SealOptions = {},
): Promise<WrittenSnapshot & { sealed: SealedBlob }> {
  const name = `${path} (plaintext)`;
  const { fd, file } = await memoryFile(name);
  let written: WrittenSnapshot;
  try {
    // Sealing is the slower half: writing into memory needs no progress of its own.
    written = await writeSnapshotInto(file, name, input);
  } catch (e) {
    libc().close(fd);
    throw e;
  } finally {
    file.close();
  }
  using snapshot = openSnapshotFd(fd, name);
  const sealed = await sealSnapshot(snapshot, path, key, options);
  return { ...written, fileBytes: sealed.fileBytes, sealed };
}

/**
 * Checks a sealed blob's header without decrypting anything: magic, version, key, the header's tag, expiry and
 * length. Returns the header, and the key to decrypt its segments with.
 */
async function openBlob(
  path: string,
  blob: Deno.FsFile,
  key: SealKey,
  now: Date,
): Promise<{ header: SealedHeader; bytes: Uint8Array<ArrayBuffer>; aesKey: CryptoKey }> {
  const fail = (offset: number, reason: string): never => {
    throw new SealError(path, offset, reason);
  };
  const size = (await blob.stat()).size;
  const bytes = new Uint8Array(SEAL_HEADER_BYTES);
  const got = (await readAt(blob, 0, bytes)).length;
  if (!isSealed(bytes.subarray(0, got))) fail(0, "bad magic: not a sealed pvx snapshot");
  if (got < SEAL_HEADER_BYTES) fail(got, `truncated: the header needs ${SEAL_HEADER_BYTES} bytes, the blob has ${got}`);
  const header = readHeader(bytes);
  if (header.version !== SEAL_VERSION) {
    fail(FIELD.version[0], `format version ${header.version} is not supported (this reader knows ${SEAL_VERSION})`);
  }
  const keyId = hexBytes(key.id);
  if (header.keyId !== keyId) {
    fail(
      FIELD.keyId[0],
      `wrong key: the blob was sealed under key id ${header.keyId}, ${key.file} is key id ${keyId} ` +
        "(or the key id field was altered)",
    );
  }
  const aesKey = await blobKey(key, bytes.slice(FIELD.salt[0], FIELD.salt[0] + FIELD.salt[1]));
  try {
    await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonce(0, NONCE_HEADER), additionalData: bytes.subarray(0, AUTHENTICATED_BYTES) },
      aesKey,
      bytes.subarray(FIELD.headerTag[0], SEAL_HEADER_BYTES),
    );
  } catch {
    fail(
      FIELD.headerTag[0],
      `header authentication failed: a byte of its fields (offsets 0..${AUTHENTICATED_BYTES - 1}) or of its tag ` +
        "was altered",
    );
  }
  // Everything below is authenticated: only the key's holder could have written it.
  if (header.expiresAt && now.getTime() >= header.expiresAt.getTime()) {
    fail(
      FIELD.expiresAt[0],
      `expired at ${header.expiresAt.toISOString()} (sealed ${header.createdAt.toISOString()}, now ` +
        `${now.toISOString()})`,
    );
  }
  if (header.plaintextLength > MAX_PLAINTEXT_BYTES) {
    fail(FIELD.plaintextLength[0], `plaintext length ${header.plaintextLength} exceeds 2^48`);
  }
  const want = sealedLength(header.plaintextLength);
  if (size < want) {
    const cut = Math.floor((size - SEAL_HEADER_BYTES) / (SEGMENT_BYTES + TAG_BYTES));
    fail(
      size,
      `truncated: the blob ends at ${size}, inside segment ${cut} of ${segmentCount(header.plaintextLength)}; ` +
        `its header says it is ${want} bytes long`,
    );
  }
  if (size > want) fail(want, `${size - want} trailing bytes after the last segment`);
  return { header, bytes, aesKey };
}

/** The metadata of the sealed blob at `path`, unchecked: without the key, nothing vouches for it. */
export async function peekSealedHeader(path: string): Promise<SealedHeader> {
  using blob = await Deno.open(path, { read: true });
  const bytes = new Uint8Array(SEAL_HEADER_BYTES);
  const got = (await readAt(blob, 0, bytes)).length;
  if (!isSealed(bytes) || got < SEAL_HEADER_BYTES) {
    throw new SealError(path, 0, "not a sealed pvx snapshot, or its header is cut short");
  }
  return readHeader(bytes);
}

/**
 * Opens the sealed blob at `path` with `key`: every check of the header, then each segment decrypted and
 * authenticated in order, into a memfd that is then opened and checked as any snapshot is. The snapshot's
 * name in errors is `<path> (unsealed)`. `now` is for tests of expiry.
 */
export async function unsealSnapshot(path: string, key: SealKey, now = new Date()): Promise<Snapshot> {
  using blob = await Deno.open(path, { read: true });
  const { header, bytes, aesKey } = await openBlob(path, blob, key, now);
  const name = `${path} (unsealed)`;
  const { fd, file } = await memoryFile(name);
  let opened = false;
  try {
    const unpacker = new SnapshotUnpacker(file, name);
    const segments = segmentCount(header.plaintextLength);
    const additionalData = bytes.subarray(0, AUTHENTICATED_BYTES);
    const sealed = new Uint8Array(SEGMENT_BYTES + TAG_BYTES);
    for (let index = 0; index < segments; index++) {
      const offset = segmentOffset(index);
      const length = Math.min(SEGMENT_BYTES, header.plaintextLength - index * SEGMENT_BYTES) + TAG_BYTES;
      const piece = await readAt(blob, offset, sealed.subarray(0, length));
      if (piece.length < length) {
        throw new SealError(path, offset + piece.length, `truncated while read: segment ${index} of ${segments}`);
      }
      let plain: ArrayBuffer;
      try {
        const iv = nonce(index, index === segments - 1 ? NONCE_LAST_SEGMENT : NONCE_SEGMENT);
        plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData }, aesKey, piece);
      } catch {
        throw new SealError(
          path,
          offset,
          `segment ${index} of ${segments} (bytes ${offset}..${offset + length - 1}): authentication failed: ` +
            "a byte of it was altered, or it was moved from another place or another blob",
        );
      }
      await unpacker.write(new Uint8Array(plain));
    }
    await unpacker.finish();
    opened = true;
    return openSnapshotFd(fd, name);
  } catch (e) {
    if (!opened) libc().close(fd);
    throw e;
  } finally {
    file.close();
  }
}
