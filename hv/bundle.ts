// The `.pvx` bundle, format v1: one app (an executable entry plus the files it
// needs) and a JSON manifest saying how to run it. Layout and rationale are in
// docs/bundle.md. Every byte of a bundle is either header, hashed manifest, or
// a hashed entry at an offset derived from the manifest, so a reader never has
// to trust a length or offset that nothing else checks.

import { describeValue } from "./describe_value.ts";
import {
  checkHeader,
  checkManifestHash,
  HEADER_SIZE,
  type HeaderRules,
  headerWithManifest,
  MANIFEST_LENGTH_OFFSET,
} from "./file_header.ts";
import { fold } from "../abi/guest_names.ts";
import { manifestFields, manifestJson } from "./manifest_json.ts";
import { maxMemory, MiB, minMemory } from "../abi/memory_map.ts";
import { writeBytesAtomically } from "./atomic_file.ts";
import { SPECIAL_CALL_POLICIES, type SpecialCallPolicy } from "../abi/special_calls.ts";
import { hexBytes } from "../abi/hex.ts";

export const MAGIC = new TextEncoder().encode("PVXBNDL\0");
export const FORMAT_VERSION = 1;
/** v0 had no DLL provenance and no special calls; it reads as v1 with none of either (docs/bundle.md). */
const OLDEST_READABLE_VERSION = 0;
/** The manifest is parsed as JSON in one piece, so its size is what bounds that work. */
export const MAX_MANIFEST_BYTES = 1 << 20;

const HEADER_RULES: HeaderRules = {
  magic: MAGIC,
  kind: "a .pvx bundle",
  versions: [OLDEST_READABLE_VERSION, FORMAT_VERSION],
  maxManifestBytes: MAX_MANIFEST_BYTES,
};
const MAX_PATH_BYTES = 255;
const MIN_MEMORY_MIB = minMemory / MiB;
const MAX_MEMORY_MIB = maxMemory / MiB;
/** Guest RAM of a bundle packed without --memory, as `pvx run app.exe` packs one. */
export const DEFAULT_MEMORY_MIB = 64;
const MAX_NAME_CHARS = 64;
const NAME_PATTERN = /^[A-Za-z0-9._-]+$/;
const CALL_NAME_PATTERN = /^[A-Za-z0-9_]+$/;
const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/;
const KINDS = ["elf", "pe"] as const;
/** Names the bundle being built in encodeBundle's errors, which have no file yet. */
const ENCODING_LABEL = "(bundle being encoded)";

export interface ManifestFile {
  /** Relative, `/`-separated; unique case-insensitively among the bundle's files. */
  path: string;
  size: number;
  /** Lowercase hex SHA-256 of the file's bytes. */
  sha256: string;
}

/** Where a system DLL in the bundle came from, as the packer found it. */
export interface DllOrigin {
  /** Its path among `files`. */
  path: string;
  /** The host file it was copied from, or "pvx" for pvx's own runtime. */
  from: string;
}

/** What a Windows app reaches besides its static imports, and what happens to the rest (abi/special_calls.ts). */
export interface SpecialCallManifest {
  policy: SpecialCallPolicy;
  /** "module!function" (module in lower case, "#N" for an ordinal) its code names or a traced run looked up. */
  procs: string[];
  /** DLL names, lower case, its code names or a traced run tried to load. */
  libraries: string[];
  /** Paths a traced run opened, as the app spelled them: what its analysis saw, for a reader. */
  files: string[];
}

export interface Manifest {
  format: typeof FORMAT_VERSION;
  name: string;
  /** Path of the executable among `files`. */
  entry: string;
  kind: (typeof KINDS)[number];
  memoryMiB: number;
  abiVersion: number;
  allowedCalls: string[];
  /** Default arguments for the entry. */
  args: string[];
  /** In the order their bytes follow the manifest. */
  files: ManifestFile[];
  /** A Windows app's system DLLs (and pvx's runtime), with where each came from. */
  dlls: DllOrigin[];
  specialCalls: SpecialCallManifest;
}

/** What a bundle without special-call rules (v0) gets: every lookup answered, as v0 did, each with a log line. */
const V0_SPECIAL_CALLS: SpecialCallManifest = { policy: "allow", procs: [], libraries: [], files: [] };

/** A bundle that is malformed, corrupt or inconsistent, and where the problem was found. */
export class BundleError extends Error {
  constructor(readonly file: string, readonly offset: number, readonly reason: string) {
    super(`${file}: offset ${offset}: ${reason}`);
    this.name = "BundleError";
  }
}

export interface Bundle {
  manifest: Manifest;
  /** Bytes of each file by path, in manifest order. */
  files: Map<string, Uint8Array>;
  entryBytes(): Uint8Array;
}

const V0_MANIFEST_FIELDS = [
  "format",
  "name",
  "entry",
  "kind",
  "memoryMiB",
  "abiVersion",
  "allowedCalls",
  "args",
  "files",
];
const MANIFEST_FIELDS = [...V0_MANIFEST_FIELDS, "dlls", "specialCalls"];
const FILE_FIELDS = ["path", "size", "sha256"];
const DLL_FIELDS = ["path", "from"];
const SPECIAL_CALL_FIELDS = ["policy", "procs", "libraries", "files"];
/** "module!function" or "module!#ordinal": a file name without a path, and an export's name. */
const PROC_PATTERN = /^[^\\/!\0]+![^\0]+$/;

/**
 * Checks a parsed manifest against every rule of its format (v0 or v1) and
 * returns a fresh v1 copy of it. Unknown fields are refused: a reader that
 * skipped a field a newer writer relies on would run the app wrongly, so new
 * fields need a new format.
 */
export function validateManifest(value: unknown, file: string): Manifest {
  const fail = (field: string, problem: string): never => {
    throw new BundleError(file, HEADER_SIZE, `${field}: ${problem}`);
  };

  const { record, integer, array, ...shapes } = manifestFields(fail);
  const string = (value: unknown, field: string): string => {
    const s = shapes.string(value, field);
    // A lone surrogate has no UTF-8 form: the guest would see U+FFFD instead of what the manifest says.
    if (!s.isWellFormed()) fail(field, `${describeValue(s)} contains a lone UTF-16 surrogate`);
    return s;
  };

  const path = (value: unknown, field: string): string => {
    const p = string(value, field);
    const shown = describeValue(p);
    if (p === "") fail(field, "must not be empty");
    if (p.includes("\0")) fail(field, `NUL is not allowed in ${shown}`);
    if (p.includes("\\")) fail(field, `backslash is not allowed in ${shown} (paths are "/"-separated)`);
    if (p.startsWith("/")) fail(field, `must be relative, got ${shown}`);
    for (const component of p.split("/")) {
      if (component === "") fail(field, `empty component is not allowed in ${shown}`);
      if (component === "." || component === "..") fail(field, `"${component}" is not allowed in ${shown}`);
    }
    const bytes = new TextEncoder().encode(p).length;
    if (bytes > MAX_PATH_BYTES) fail(field, `is ${bytes} bytes of UTF-8, more than ${MAX_PATH_BYTES}: ${shown}`);
    return p;
  };

  const format = shapes.object(value, "manifest").format;
  if (format !== FORMAT_VERSION && format !== OLDEST_READABLE_VERSION) {
    fail("manifest.format", `must be ${OLDEST_READABLE_VERSION} or ${FORMAT_VERSION}, got ${describeValue(format)}`);
  }
  const m = record(value, "manifest", format === FORMAT_VERSION ? MANIFEST_FIELDS : V0_MANIFEST_FIELDS);

  const name = string(m.name, "manifest.name");
  if (name.length < 1 || name.length > MAX_NAME_CHARS || !NAME_PATTERN.test(name)) {
    fail("manifest.name", `must be 1..${MAX_NAME_CHARS} of [A-Za-z0-9._-], got ${describeValue(name)}`);
  }

  const kind = m.kind;
  if (!KINDS.includes(kind as Manifest["kind"])) {
    fail("manifest.kind", `must be one of ${KINDS.map((k) => `"${k}"`).join(", ")}, got ${describeValue(kind)}`);
  }

  const memoryMiB = integer(m.memoryMiB, "manifest.memoryMiB", MIN_MEMORY_MIB, MAX_MEMORY_MIB);
  const abiVersion = integer(m.abiVersion, "manifest.abiVersion", 1, Number.MAX_SAFE_INTEGER);

  const allowedCalls = array(m.allowedCalls, "manifest.allowedCalls").map((call, i) => {
    const field = `manifest.allowedCalls[${i}]`;
    const c = string(call, field);
    if (!CALL_NAME_PATTERN.test(c)) fail(field, `must be a non-empty name of [A-Za-z0-9_], got ${describeValue(c)}`);
    return c;
  });
  allowedCalls.forEach((call, i) => {
    const first = allowedCalls.indexOf(call);
    if (first !== i) {
      fail(`manifest.allowedCalls[${i}]`, `${describeValue(call)} repeats manifest.allowedCalls[${first}]`);
    }
  });

  const args = array(m.args, "manifest.args").map((arg, i) => {
    const field = `manifest.args[${i}]`;
    const a = string(arg, field);
    // The guest receives argv as C strings, where a NUL would silently cut the argument short.
    if (a.includes("\0")) fail(field, `NUL is not allowed in ${describeValue(a)}`);
    return a;
  });

  const files = array(m.files, "manifest.files").map((entry, i): ManifestFile => {
    const field = `manifest.files[${i}]`;
    const f = record(entry, field, FILE_FIELDS);
    const p = path(f.path, `${field}.path`);
    const size = integer(f.size, `${field}.size`, 0, Number.MAX_SAFE_INTEGER);
    const sha256 = string(f.sha256, `${field}.sha256`);
    if (!SHA256_HEX_PATTERN.test(sha256)) {
      fail(`${field}.sha256`, `must be 64 lowercase hex digits, got ${describeValue(sha256)}`);
    }
    return { path: p, size, sha256 };
  });
  checkPathsCanCoexist(files, fail);

  const entry = string(m.entry, "manifest.entry");
  if (!files.some((f) => f.path === entry)) {
    const caseTwin = files.findIndex((f) => fold(f.path) === fold(entry));
    fail(
      "manifest.entry",
      caseTwin >= 0
        ? `${describeValue(entry)} differs only in case from manifest.files[${caseTwin}].path; it must match exactly`
        : `${describeValue(entry)} is not a path in manifest.files`,
    );
  }

  const unique = (list: string[], field: string) =>
    list.forEach((item, i) => {
      const first = list.indexOf(item);
      if (first !== i) fail(`${field}[${i}]`, `${describeValue(item)} repeats ${field}[${first}]`);
    });

  const dlls = format === OLDEST_READABLE_VERSION ? [] : array(m.dlls, "manifest.dlls").map((entry, i): DllOrigin => {
    const field = `manifest.dlls[${i}]`;
    const d = record(entry, field, DLL_FIELDS);
    const p = string(d.path, `${field}.path`);
    if (!files.some((f) => f.path === p)) fail(`${field}.path`, `${describeValue(p)} is not a path in manifest.files`);
    const from = string(d.from, `${field}.from`);
    if (from === "") fail(`${field}.from`, "must not be empty");
    return { path: p, from };
  });
  unique(dlls.map((d) => d.path), "manifest.dlls.path");

  let specialCalls = V0_SPECIAL_CALLS;
  if (format === FORMAT_VERSION) {
    const s = record(m.specialCalls, "manifest.specialCalls", SPECIAL_CALL_FIELDS);
    const policy = s.policy as SpecialCallPolicy;
    if (!SPECIAL_CALL_POLICIES.includes(policy)) {
      fail(
        "manifest.specialCalls.policy",
        `must be one of ${SPECIAL_CALL_POLICIES.map((p) => `"${p}"`).join(", ")}, got ${describeValue(policy)}`,
      );
    }
    const names = (key: string, check: (v: string) => string | undefined) => {
      const field = `manifest.specialCalls.${key}`;
      const list = array(s[key], field).map((v, i) => {
        const item = string(v, `${field}[${i}]`);
        const problem = check(item);
        if (problem) fail(`${field}[${i}]`, `${problem}, got ${describeValue(item)}`);
        return item;
      });
      unique(list, field);
      return list;
    };
    const lowerFile = (v: string) =>
      v === "" || v !== v.toLowerCase() || /[\\/\0]/.test(v) ? "must be a lower-case file name" : undefined;
    specialCalls = {
      policy,
      procs: names("procs", (v) => {
        if (!PROC_PATTERN.test(v)) return 'must be "module!function"';
        return lowerFile(v.slice(0, v.indexOf("!")));
      }),
      libraries: names("libraries", lowerFile),
      files: names("files", (v) => v === "" || v.includes("\0") ? "must be a path without NUL" : undefined),
    };
  }

  return {
    format: FORMAT_VERSION,
    name,
    entry,
    kind: kind as Manifest["kind"],
    memoryMiB,
    abiVersion,
    allowedCalls,
    args,
    files,
    dlls,
    specialCalls: {
      ...specialCalls,
      procs: [...specialCalls.procs],
      libraries: [...specialCalls.libraries],
      files: [...specialCalls.files],
    },
  };
}

/**
 * The files must be extractable onto a case-insensitive filesystem: no two paths
 * may fold to the same name, and no path may be a file where another needs a directory.
 * Each conflict is reported at the later of the two files.
 */
function checkPathsCanCoexist(files: ManifestFile[], fail: (field: string, problem: string) => never): void {
  const fileByFolded = new Map<string, number>();
  const directoryNeededBy = new Map<string, number>();
  files.forEach((f, i) => {
    const field = `manifest.files[${i}].path`;
    const other = (j: number) => `manifest.files[${j}].path ${describeValue(files[j].path)}`;
    const folded = fold(f.path);
    const twin = fileByFolded.get(folded);
    if (twin !== undefined) {
      fail(field, `${describeValue(f.path)} collides with ${other(twin)} (paths are compared case-insensitively)`);
    }
    const child = directoryNeededBy.get(folded);
    if (child !== undefined) fail(field, `${describeValue(f.path)} is a file where ${other(child)} needs a directory`);
    const components = folded.split("/");
    for (let depth = 1; depth < components.length; depth++) {
      const directory = components.slice(0, depth).join("/");
      const file = fileByFolded.get(directory);
      if (file !== undefined) fail(field, `${describeValue(f.path)} needs a directory where ${other(file)} is a file`);
      if (!directoryNeededBy.has(directory)) directoryNeededBy.set(directory, i);
    }
    fileByFolded.set(folded, i);
  });
}

export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return hexBytes(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

/** Validates every byte of `bytes`, which the caller must not modify while or after this runs. */
async function parseOwnedBytes(bytes: Uint8Array<ArrayBuffer>, file: string): Promise<Bundle> {
  const fail = (offset: number, reason: string): never => {
    throw new BundleError(file, offset, reason);
  };

  const { version, manifestLength } = checkHeader(bytes.subarray(0, HEADER_SIZE), bytes.length, HEADER_RULES, fail);
  const manifestEnd = HEADER_SIZE + manifestLength;
  const manifestBytes = bytes.subarray(HEADER_SIZE, manifestEnd);
  checkManifestHash(bytes, manifestBytes, fail);

  const manifestValue = manifestJson(manifestBytes, (reason) => fail(HEADER_SIZE, reason));
  const manifest = validateManifest(manifestValue, file);
  const manifestVersion = (manifestValue as { format: number }).format;
  if (manifestVersion !== version) {
    fail(HEADER_SIZE, `manifest.format: ${manifestVersion} differs from the header's format version ${version}`);
  }

  const files = new Map<string, Uint8Array>();
  let offset = manifestEnd;
  for (const entry of manifest.files) {
    const where = `file ${describeValue(entry.path)} at offset ${offset}`;
    if (entry.size > bytes.length - offset) {
      fail(offset, `truncated: ${where} needs ${entry.size} bytes, only ${bytes.length - offset} remain`);
    }
    const content = bytes.subarray(offset, offset + entry.size);
    const actual = await sha256Hex(content);
    if (actual !== entry.sha256) {
      fail(offset, `${where} (size ${entry.size}): sha256 is ${actual}, manifest says ${entry.sha256}`);
    }
    files.set(entry.path, content);
    offset += entry.size;
  }
  if (offset !== bytes.length) fail(offset, `${bytes.length - offset} trailing bytes after the last file`);

  return { manifest, files, entryBytes: () => files.get(manifest.entry)! };
}

/** Parses and fully validates a bundle, including every file's sha256. */
export async function parseBundle(bytes: Uint8Array, file: string): Promise<Bundle> {
  // The copy makes the checked bytes immutable to the caller: the returned file views would
  // otherwise change whenever `bytes` did, after their hashes were checked.
  return await parseOwnedBytes(bytes.slice(), file);
}

export async function readBundle(path: string): Promise<Bundle> {
  return parseOwnedBytes(await Deno.readFile(path), path);
}

/** Builds a bundle from `files` in the given order; refuses anything parseBundle would. */
export async function encodeBundle(
  manifest:
    & Omit<Manifest, "files" | "format" | "dlls" | "specialCalls">
    & Partial<Pick<Manifest, "dlls" | "specialCalls">>,
  files: { path: string; bytes: Uint8Array }[],
): Promise<Uint8Array> {
  const contents = files.map((f) => f.bytes.slice());
  const full: Manifest = {
    format: FORMAT_VERSION,
    name: manifest.name,
    entry: manifest.entry,
    kind: manifest.kind,
    memoryMiB: manifest.memoryMiB,
    abiVersion: manifest.abiVersion,
    allowedCalls: manifest.allowedCalls,
    args: manifest.args,
    files: await Promise.all(
      files.map(async (f, i) => ({ path: f.path, size: contents[i].length, sha256: await sha256Hex(contents[i]) })),
    ),
    dlls: manifest.dlls ?? [],
    specialCalls: manifest.specialCalls ?? { policy: "deny", procs: [], libraries: [], files: [] },
  };
  // Checked before serialising so errors show the caller's values (NaN, not the null JSON would make of it). A
  // manifest that passes holds only strings, safe integers and arrays of them, which JSON carries unchanged.
  const manifestBytes = new TextEncoder().encode(JSON.stringify(validateManifest(full, ENCODING_LABEL)));
  if (manifestBytes.length > MAX_MANIFEST_BYTES) {
    throw new BundleError(
      ENCODING_LABEL,
      MANIFEST_LENGTH_OFFSET,
      `manifest length ${manifestBytes.length} exceeds the ${MAX_MANIFEST_BYTES}-byte limit`,
    );
  }

  const manifestEnd = HEADER_SIZE + manifestBytes.length;
  const out = headerWithManifest(MAGIC, FORMAT_VERSION, manifestBytes, contents.reduce((sum, c) => sum + c.length, 0));
  let offset = manifestEnd;
  for (const content of contents) {
    out.set(content, offset);
    offset += content.length;
  }
  return out;
}

/**
 * Replaces `path` atomically: readers see the old bundle or the new one, never a
 * mix, even if the process or machine dies part-way.
 */
export async function writeBundle(path: string, bytes: Uint8Array): Promise<void> {
  await writeBytesAtomically(path, bytes);
}

function formatSize(bytes: number): string {
  return bytes.toLocaleString("en-US");
}

/** Paths may hold spaces, quotes or control characters that would break a table row, so those get quoted. */
function displayPath(path: string): string {
  return /^[\p{L}\p{N}\p{P}\p{S}]+$/u.test(path) && !path.includes('"') ? path : JSON.stringify(path);
}

const LINE_WIDTH = 100;

/** `title` and the items, comma-separated, in lines of at most LINE_WIDTH characters where the items allow. */
function wrappedList(title: string, items: readonly string[]): string[] {
  if (items.length === 0) return [`${title}(none)`];
  const indent = " ".repeat(4);
  const lines = [title];
  items.map(displayPath).forEach((item, i) => {
    const text = i < items.length - 1 ? `${item},` : item;
    const last = lines.length - 1;
    if (lines[last].length + 1 + text.length > LINE_WIDTH && lines[last] !== title) lines.push(indent + text);
    else lines[last] += (lines[last] === title ? "" : " ") + text;
  });
  return lines;
}

/** The human-readable summary `pvx inspect` prints. */
export function describeBundle(b: Bundle): string {
  const m = b.manifest;
  const totalSize = m.files.reduce((sum, f) => sum + f.size, 0);
  const sizeWidth = Math.max(4, ...m.files.map((f) => formatSize(f.size).length));
  const lines = [
    `name:          ${m.name}`,
    `kind:          ${m.kind}`,
    `entry:         ${displayPath(m.entry)}`,
    `memory:        ${m.memoryMiB} MiB`,
    `ABI version:   ${m.abiVersion}`,
    `allowed calls: ${m.allowedCalls.length > 0 ? m.allowedCalls.join(", ") : "(none)"}`,
    `args:          ${m.args.length > 0 ? m.args.map((a) => JSON.stringify(a)).join(" ") : "(none)"}`,
    `files:         ${m.files.length} (${formatSize(totalSize)} bytes; * marks the entry)`,
    `  ${"size".padStart(sizeWidth)}  ${"sha256".padEnd(64)}  path`,
    ...m.files.map((f) =>
      `${f.path === m.entry ? "*" : " "} ${formatSize(f.size).padStart(sizeWidth)}  ${f.sha256}  ${displayPath(f.path)}`
    ),
  ];
  if (m.kind === "pe") {
    const sc = m.specialCalls;
    lines.push(
      `DLLs:          ${m.dlls.length}${m.dlls.length ? " (path, then where it came from)" : ""}`,
      ...m.dlls.map((d) => `  ${displayPath(d.path)}  ${displayPath(d.from)}`),
      `special calls: ${sc.policy}, for a lookup or DLL load beyond these`,
      ...wrappedList(`  looked up (${sc.procs.length}): `, sc.procs),
      ...wrappedList(`  loaded (${sc.libraries.length}): `, sc.libraries),
      ...wrappedList(`  opened (${sc.files.length}): `, sc.files),
    );
  }
  return lines.join("\n");
}

/** A Windows exe ("MZ"), which pvx packs into a bundle, rather than a bundle or an ELF. */
export const isPe = (bytes: Uint8Array) => bytes[0] === 0x4d && bytes[1] === 0x5a;

/** A file's first bytes: enough for a PE's "MZ", a snapshot's magic and a sealed blob's. */
export async function readHead(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path);
  const head = new Uint8Array(8);
  await file.read(head);
  return head;
}
