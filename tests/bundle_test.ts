import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Bundle,
  BundleError,
  describeBundle,
  encodeBundle,
  FORMAT_VERSION,
  type Manifest,
  MAX_MANIFEST_BYTES,
  parseBundle,
  readBundle,
  validateManifest,
  writeBundle,
} from "../hv/bundle.ts";
import { HEADER_SIZE } from "../hv/file_header.ts";

const FUZZ_RUNS = Number(Deno.env.get("PVX_FUZZ_RUNS") ?? 200);
if (!Number.isSafeInteger(FUZZ_RUNS) || FUZZ_RUNS < 1) {
  throw new Error(`PVX_FUZZ_RUNS must be a positive integer, got ${Deno.env.get("PVX_FUZZ_RUNS")}`);
}

const text = (s: string) => new TextEncoder().encode(s);

const APP = {
  name: "hello-1.0",
  entry: "bin/hello",
  kind: "elf",
  memoryMiB: 64,
  abiVersion: 1,
  allowedCalls: ["write", "exit_group"],
  args: ["--greeting", "hi there"],
} as const satisfies Omit<Manifest, "files" | "format" | "dlls" | "specialCalls">;
const app = (): Omit<Manifest, "files" | "format" | "dlls" | "specialCalls"> => ({
  ...APP,
  allowedCalls: [...APP.allowedCalls],
  args: [...APP.args],
});

const FILES = [
  { path: "bin/hello", bytes: text("\x7fELF pretend executable") },
  { path: "share/greeting.txt", bytes: text("hello, world\n") },
  { path: "empty", bytes: new Uint8Array(0) },
];

const sampleBundle = () => encodeBundle(app(), FILES);

/** The manifest length and manifest of an encoded bundle, to build variants of it. */
function manifestOf(bundle: Uint8Array): { manifest: Manifest; end: number } {
  const length = new DataView(bundle.buffer, bundle.byteOffset).getUint32(12, true);
  const end = HEADER_SIZE + length;
  return { manifest: JSON.parse(new TextDecoder().decode(bundle.subarray(HEADER_SIZE, end))), end };
}

/** A bundle with a header that correctly describes `manifestBytes`, so only what follows the hash is under test. */
async function assemble(manifestBytes: Uint8Array, payload: Uint8Array, version = FORMAT_VERSION): Promise<Uint8Array> {
  const out = new Uint8Array(HEADER_SIZE + manifestBytes.length + payload.length);
  out.set(text("PVXBNDL\0"));
  new DataView(out.buffer).setUint32(8, version, true);
  new DataView(out.buffer).setUint32(12, manifestBytes.length, true);
  out.set(new Uint8Array(await crypto.subtle.digest("SHA-256", manifestBytes.slice())), 16);
  out.set(manifestBytes, HEADER_SIZE);
  out.set(payload, HEADER_SIZE + manifestBytes.length);
  return out;
}

/** The sample bundle with its manifest replaced by `edit` applied to it, and the header resealed. */
async function withManifest(edit: (m: Manifest) => unknown): Promise<Uint8Array> {
  const bundle = await sampleBundle();
  const { manifest, end } = manifestOf(bundle);
  return assemble(text(JSON.stringify(edit(manifest))), bundle.subarray(end));
}

async function assertRefused(
  bytes: Uint8Array,
  expected: { offset: number; reason: string },
): Promise<void> {
  const error = await parseBundle(bytes, "test.pvx").then(
    () => assert.fail(`expected a BundleError about ${JSON.stringify(expected.reason)}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof BundleError, `expected a BundleError, got ${error}`);
  assert.equal(error.file, "test.pvx");
  assert.ok(error.reason.includes(expected.reason), `reason ${JSON.stringify(error.reason)}`);
  assert.equal(error.offset, expected.offset, `offset for ${JSON.stringify(error.reason)}`);
  assert.equal(error.message, `test.pvx: offset ${error.offset}: ${error.reason}`);
}

function assertSameBundle(actual: Bundle, expected: Bundle): void {
  assert.deepEqual(actual.manifest, expected.manifest);
  assert.deepEqual([...actual.files.keys()], [...expected.files.keys()]);
  for (const [path, bytes] of expected.files) assert.deepEqual(actual.files.get(path), bytes, path);
  assert.deepEqual(actual.entryBytes(), expected.entryBytes());
}

function tmpEntries(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.includes(".tmp"));
}

Deno.test("a v0 bundle reads as v1 with no DLL origins and every special call allowed, as v0 ran it", async () => {
  const bundle = await sampleBundle();
  const { manifest, end } = manifestOf(bundle);
  const { dlls: _, specialCalls: __, ...v0 } = { ...manifest, format: 0 };
  const b = await parseBundle(await assemble(text(JSON.stringify(v0)), bundle.subarray(end), 0), "v0.pvx");
  assert.deepEqual(b.manifest, { ...manifest, dlls: [], specialCalls: { ...manifest.specialCalls, policy: "allow" } });
  await assert.rejects(
    parseBundle(await assemble(text(JSON.stringify(v0)), bundle.subarray(end), 1), "mixed.pvx"),
    (e) =>
      e instanceof BundleError && e.message.includes("manifest.format: 0 differs from the header's format version 1"),
  );
});

Deno.test("encode, write, read gives back the same manifest and files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/hello.pvx`;
    await writeBundle(path, await sampleBundle());
    const b = await readBundle(path);
    assert.deepEqual(b.manifest, {
      format: 1,
      ...app(),
      ...NO_WINDOWS,
      files: await Promise.all(FILES.map(async (f) => ({
        path: f.path,
        size: f.bytes.length,
        sha256: Array.from(
          new Uint8Array(await crypto.subtle.digest("SHA-256", f.bytes)),
          (x) => x.toString(16).padStart(2, "0"),
        ).join(""),
      }))),
    });
    assert.deepEqual([...b.files], FILES.map((f) => [f.path, f.bytes]));
    assert.deepEqual(b.entryBytes(), FILES[0].bytes);

    const described = describeBundle(b);
    for (
      const expected of [
        "hello-1.0",
        "elf",
        "bin/hello",
        "64 MiB",
        "ABI version:   1",
        "write, exit_group",
        '"hi there"',
        b.manifest.files[1].sha256,
        "share/greeting.txt",
      ]
    ) {
      assert.ok(described.includes(expected), `describeBundle output lacks ${expected}:\n${described}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseBundle's result does not change when the caller's buffer does", async () => {
  const bytes = await sampleBundle();
  const b = await parseBundle(bytes, "test.pvx");
  const before = b.entryBytes().slice();
  bytes.fill(0);
  assert.deepEqual(b.entryBytes(), before);
});

Deno.test("writeBundle replaces an existing file and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/app.pvx`;
    await Deno.writeFile(path, text("an older bundle"));
    const bytes = await sampleBundle();
    await writeBundle(path, bytes);
    assert.deepEqual(await Deno.readFile(path), bytes);
    assert.deepEqual(tmpEntries(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeBundle that fails before the rename leaves the target intact and no temp file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A non-empty directory cannot be replaced by rename, so the write gets as far as the rename and fails there.
    const path = `${dir}/app.pvx`;
    await Deno.mkdir(path);
    await Deno.writeFile(`${path}/keep`, text("still here"));
    await assert.rejects(writeBundle(path, await sampleBundle()));
    assert.deepEqual(await Deno.readFile(`${path}/keep`), text("still here"));
    assert.deepEqual(tmpEntries(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("header refusals", async (t) => {
  const good = await sampleBundle();
  const { end } = manifestOf(good);
  const patched = (offset: number, patch: (view: DataView) => void) => {
    const copy = good.slice();
    patch(new DataView(copy.buffer, offset));
    return copy;
  };

  await t.step(
    "bad magic",
    () => assertRefused(patched(3, (v) => v.setUint8(0, 0x21)), { offset: 0, reason: "bad magic" }),
  );
  // A short file is only "truncated" if what it has looks like a bundle; otherwise it is just not one.
  await t.step(
    "bad magic in a file shorter than the magic",
    () => assertRefused(text("ELF"), { offset: 0, reason: "bad magic" }),
  );
  await t.step(
    "a bundle's first bytes alone",
    () => assertRefused(text("PVX"), { offset: 3, reason: "truncated: the header" }),
  );
  await t.step(
    "unsupported version",
    () =>
      assertRefused(patched(8, (v) => v.setUint32(0, 2, true)), {
        offset: 8,
        reason: "format version 2 is not supported",
      }),
  );
  await t.step(
    "oversize manifest",
    () =>
      assertRefused(patched(12, (v) => v.setUint32(0, MAX_MANIFEST_BYTES + 1, true)), {
        offset: 12,
        reason: "exceeds the 1048576-byte limit",
      }),
  );
  await t.step("manifest hash mismatch", () =>
    assertRefused(patched(16, (v) => v.setUint8(31, v.getUint8(31) ^ 1)), {
      offset: 16,
      reason: "manifest sha256 mismatch",
    }));
  await t.step(
    "manifest byte changed under its hash",
    () =>
      assertRefused(patched(HEADER_SIZE + 5, (v) => v.setUint8(0, v.getUint8(0) ^ 0x20)), {
        offset: 16,
        reason: "manifest sha256 mismatch",
      }),
  );
  await t.step(
    "truncated header",
    () => assertRefused(good.subarray(0, 20), { offset: 20, reason: "truncated: the header needs 48 bytes" }),
  );
  await t.step(
    "truncated manifest",
    () => assertRefused(good.subarray(0, end - 1), { offset: end - 1, reason: `manifest at offset 48 ends at ${end}` }),
  );
});

Deno.test("manifest encoding refusals", async (t) => {
  const payload = (await sampleBundle()).subarray(manifestOf(await sampleBundle()).end);
  await t.step("invalid UTF-8", async () =>
    assertRefused(await assemble(new Uint8Array([0x7b, 0xff, 0x7d]), payload), {
      offset: HEADER_SIZE,
      reason: "not valid UTF-8",
    }));
  await t.step(
    "invalid JSON",
    async () =>
      assertRefused(await assemble(text('{"format": 0,'), payload), { offset: HEADER_SIZE, reason: "not valid JSON" }),
  );
  await t.step(
    "byte order mark",
    async () =>
      assertRefused(await assemble(text("\ufeff{}"), payload), { offset: HEADER_SIZE, reason: "not valid JSON" }),
  );
  await t.step(
    "empty manifest",
    async () =>
      assertRefused(await assemble(new Uint8Array(0), payload), { offset: HEADER_SIZE, reason: "not valid JSON" }),
  );
  await t.step("schema violation found by parseBundle", async () =>
    assertRefused(
      await withManifest((m) => {
        m.files[2].path = "lib/../x";
        return m;
      }),
      { offset: HEADER_SIZE, reason: 'manifest.files[2].path: ".." is not allowed' },
    ));
});

Deno.test("entry refusals name the entry and its offset", async (t) => {
  const good = await sampleBundle();
  const { end } = manifestOf(good);
  const greetingOffset = end + FILES[0].bytes.length;
  const emptyOffset = greetingOffset + FILES[1].bytes.length;

  await t.step("sha256 mismatch", () => {
    const bad = good.slice();
    bad[greetingOffset + 3] ^= 1;
    return assertRefused(bad, {
      offset: greetingOffset,
      reason: `file "share/greeting.txt" at offset ${greetingOffset} (size 13): sha256 is`,
    });
  });
  await t.step("declared size too small", async () =>
    assertRefused(
      await withManifest((m) => {
        m.files[0].size--;
        return m;
      }),
      { offset: end, reason: `file "bin/hello" at offset ${end} (size ${FILES[0].bytes.length - 1}): sha256 is` },
    ));
  await t.step("declared size too large", async () =>
    assertRefused(
      await withManifest((m) => {
        m.files[2].size = 1;
        return m;
      }),
      { offset: emptyOffset, reason: `truncated: file "empty" at offset ${emptyOffset} needs 1 bytes, only 0 remain` },
    ));
  await t.step("truncated entry", () =>
    assertRefused(good.subarray(0, greetingOffset + 2), {
      offset: greetingOffset,
      reason: `file "share/greeting.txt" at offset ${greetingOffset} needs 13 bytes, only 2 remain`,
    }));
  await t.step("trailing bytes", () => {
    const longer = new Uint8Array(good.length + 2);
    longer.set(good);
    return assertRefused(longer, { offset: good.length, reason: "2 trailing bytes after the last file" });
  });
});

Deno.test("every truncation of a bundle is refused", async () => {
  const good = await sampleBundle();
  for (let length = 0; length < good.length; length++) {
    await parseBundle(good.subarray(0, length), "test.pvx").then(
      () => assert.fail(`truncation to ${length} bytes was accepted`),
      (e) => assert.ok(e instanceof BundleError, `truncation to ${length}: ${e}`),
    );
  }
});

/** What encodeBundle gives a manifest that says nothing of DLLs or special calls. */
const NO_WINDOWS = { dlls: [], specialCalls: { policy: "deny", procs: [], libraries: [], files: [] } } as const;

function validManifest(): Manifest {
  return {
    format: 1,
    ...app(),
    dlls: [],
    specialCalls: { policy: "deny", procs: [], libraries: [], files: [] },
    files: [
      { path: "bin/hello", size: 1, sha256: "a".repeat(64) },
      { path: "lib/libc.so", size: 2, sha256: "b".repeat(64) },
      { path: "data/x", size: 0, sha256: "c".repeat(64) },
    ],
  };
}

const SCHEMA_CASES: [string, (m: Record<string, unknown> & Manifest) => unknown, string][] = [
  ["not an object", () => [], "manifest: must be an object, got an array"],
  ["unknown field", (m) => ({ ...m, signature: "x" }), 'manifest: unknown field "signature"'],
  ["missing field", ({ args: _, ...m }) => m, "manifest.args: missing"],
  ["format", (m) => ({ ...m, format: 2 }), "manifest.format: must be 0 or 1, got 2"],
  ["v0 with a v1 field", (m) => ({ ...m, format: 0 }), 'manifest: unknown field "dlls"'],
  ["dlls missing", ({ dlls: _, ...m }) => m, "manifest.dlls: missing"],
  [
    "DLL not among the files",
    (m) => ({ ...m, dlls: [{ path: "msvcrt.dll", from: "/x/msvcrt.dll" }] }),
    'manifest.dlls[0].path: "msvcrt.dll" is not a path in manifest.files',
  ],
  [
    "DLL from nowhere",
    (m) => ({ ...m, dlls: [{ path: "data/x", from: "" }] }),
    "manifest.dlls[0].from: must not be empty",
  ],
  [
    "DLL twice",
    (m) => ({ ...m, dlls: [{ path: "data/x", from: "a" }, { path: "data/x", from: "b" }] }),
    'manifest.dlls.path[1]: "data/x" repeats manifest.dlls.path[0]',
  ],
  [
    "special-call policy",
    (m) => ({ ...m, specialCalls: { ...m.specialCalls, policy: "ask" } }),
    'manifest.specialCalls.policy: must be one of "deny", "allow", "stop", got "ask"',
  ],
  [
    "proc without a module",
    (m) => ({ ...m, specialCalls: { ...m.specialCalls, procs: ["FlsAlloc"] } }),
    'manifest.specialCalls.procs[0]: must be "module!function", got "FlsAlloc"',
  ],
  [
    "proc of an upper-case module",
    (m) => ({ ...m, specialCalls: { ...m.specialCalls, procs: ["KERNEL32.dll!FlsAlloc"] } }),
    "manifest.specialCalls.procs[0]: must be a lower-case file name",
  ],
  [
    "library with a path",
    (m) => ({ ...m, specialCalls: { ...m.specialCalls, libraries: ["c:\\x.dll"] } }),
    "manifest.specialCalls.libraries[0]: must be a lower-case file name",
  ],
  [
    "library twice",
    (m) => ({ ...m, specialCalls: { ...m.specialCalls, libraries: ["a.dll", "a.dll"] } }),
    'manifest.specialCalls.libraries[1]: "a.dll" repeats manifest.specialCalls.libraries[0]',
  ],
  [
    "special-call field unknown",
    (m) => ({ ...m, specialCalls: { ...m.specialCalls, calls: [] } }),
    'manifest.specialCalls: unknown field "calls"',
  ],
  ["empty name", (m) => ({ ...m, name: "" }), "manifest.name: must be 1..64"],
  ["long name", (m) => ({ ...m, name: "a".repeat(65) }), "manifest.name: must be 1..64"],
  ["name with a slash", (m) => ({ ...m, name: "a/b" }), "manifest.name: must be 1..64"],
  ["kind", (m) => ({ ...m, kind: "macho" }), 'manifest.kind: must be one of "elf", "pe", got "macho"'],
  ["memory too small", (m) => ({ ...m, memoryMiB: 7 }), "manifest.memoryMiB: must be an integer in 8..1024, got 7"],
  ["memory too large", (m) => ({ ...m, memoryMiB: 1025 }), "manifest.memoryMiB: must be an integer in 8..1024"],
  ["fractional memory", (m) => ({ ...m, memoryMiB: 8.5 }), "manifest.memoryMiB: must be an integer"],
  [
    "memory as a string",
    (m) => ({ ...m, memoryMiB: "64" }),
    'manifest.memoryMiB: must be an integer in 8..1024, got "64"',
  ],
  ["abiVersion 0", (m) => ({ ...m, abiVersion: 0 }), "manifest.abiVersion: must be an integer in 1.."],
  ["allowedCalls not an array", (m) => ({ ...m, allowedCalls: "write" }), "manifest.allowedCalls: must be an array"],
  ["bad call name", (m) => ({ ...m, allowedCalls: ["write", "ex-it"] }), "manifest.allowedCalls[1]: must be"],
  ["empty call name", (m) => ({ ...m, allowedCalls: [""] }), "manifest.allowedCalls[0]: must be a non-empty name"],
  [
    "repeated call",
    (m) => ({ ...m, allowedCalls: ["a", "b", "a"] }),
    'allowedCalls[2]: "a" repeats manifest.allowedCalls[0]',
  ],
  ["arg not a string", (m) => ({ ...m, args: [1] }), "manifest.args[0]: must be a string, got 1"],
  ["arg with NUL", (m) => ({ ...m, args: ["a\0b"] }), "manifest.args[0]: NUL is not allowed"],
  ["arg with lone surrogate", (m) => ({ ...m, args: ["\ud800"] }), "manifest.args[0]: "],
  ["entry not in files", (m) => ({ ...m, entry: "bin/other" }), 'manifest.entry: "bin/other" is not a path'],
  ["entry differs in case", (m) => ({ ...m, entry: "BIN/hello" }), "differs only in case from manifest.files[0].path"],
  ["files not an array", (m) => ({ ...m, files: {} }), "manifest.files: must be an array, got an object"],
  [
    "file not an object",
    (m) => ({ ...m, files: [...m.files, null] }),
    "manifest.files[3]: must be an object, got null",
  ],
  ["file field unknown", (m) => ({ ...m, files: [{ ...m.files[0], offset: 0 }] }), 'files[0]: unknown field "offset"'],
  [
    "file field missing",
    (m) => ({ ...m, files: [{ path: "bin/hello", size: 1 }] }),
    "manifest.files[0].sha256: missing",
  ],
  [
    "negative size",
    (m) => ({ ...m, files: [{ ...m.files[0], size: -1 }] }),
    "manifest.files[0].size: must be an integer",
  ],
  [
    "uppercase sha256",
    (m) => ({ ...m, files: [{ ...m.files[0], sha256: "A".repeat(64) }] }),
    "files[0].sha256: must be 64 lowercase",
  ],
  ["short sha256", (m) => ({ ...m, files: [{ ...m.files[0], sha256: "a" }] }), "files[0].sha256: must be 64 lowercase"],
];

const PATH_CASES: [string, string][] = [
  ["", "must not be empty"],
  ["/bin/x", "must be relative"],
  ["a\\b", "backslash is not allowed"],
  ["a\0b", "NUL is not allowed"],
  ["a//b", "empty component is not allowed"],
  ["a/", "empty component is not allowed"],
  ["./a", '"." is not allowed'],
  ["a/..", '".." is not allowed'],
  ["é".repeat(128), "is 256 bytes of UTF-8, more than 255"],
  ["bin/HELLO", 'collides with manifest.files[0].path "bin/hello"'],
  // LONG S is "s" only once upper-cased, as Windows compares names.
  ["lib/libc.\u017Fo", 'collides with manifest.files[1].path "lib/libc.so"'],
  ["lib/libc.so/x", 'needs a directory where manifest.files[1].path "lib/libc.so" is a file'],
  ["BIN", 'is a file where manifest.files[0].path "bin/hello" needs a directory'],
];

Deno.test("validateManifest accepts a valid manifest and refuses each rule's violation", async (t) => {
  assert.deepEqual(validateManifest(validManifest(), "m.json"), validManifest());
  const longest = { ...validManifest(), files: [{ path: "é".repeat(127) + "a", size: 0, sha256: "c".repeat(64) }] };
  validateManifest({ ...longest, entry: longest.files[0].path }, "m.json");
  const negativeZero = validateManifest(
    JSON.parse(JSON.stringify(validManifest()).replace('"size":0', '"size":-0')),
    "m.json",
  );
  assert.ok(Object.is(negativeZero.files[2].size, 0), "a size of -0 reads as plain 0");

  const refuse = (value: unknown, reason: string) => {
    assert.throws(
      () => validateManifest(value, "m.json"),
      (e) => e instanceof BundleError && e.offset === HEADER_SIZE && e.file === "m.json" && e.reason.includes(reason),
      reason,
    );
  };
  for (const [what, edit, reason] of SCHEMA_CASES) {
    await t.step(what, () => refuse(edit(validManifest() as Record<string, unknown> & Manifest), reason));
  }
  for (const [path, reason] of PATH_CASES) {
    await t.step(`path ${JSON.stringify(path)}`, () => {
      const m = validManifest();
      m.files.push({ path, size: 0, sha256: "d".repeat(64) });
      refuse(m, `manifest.files[3].path: `);
      refuse(m, reason);
    });
  }
});

Deno.test("encodeBundle refuses what parseBundle would", async () => {
  await assert.rejects(encodeBundle({ ...app(), entry: "missing" }, FILES), /manifest.entry: "missing" is not a path/);
  await assert.rejects(
    encodeBundle(app(), [...FILES, { path: "../escape", bytes: new Uint8Array(1) }]),
    (e) => e instanceof BundleError && e.reason.includes('manifest.files[3].path: ".." is not allowed'),
  );
  await assert.rejects(
    encodeBundle(app(), [...FILES, { path: "Empty", bytes: new Uint8Array(1) }]),
    /manifest.files\[3\].path: "Empty" collides/,
  );
  await assert.rejects(
    encodeBundle({ ...app(), memoryMiB: NaN }, FILES),
    (e) => e instanceof BundleError && e.reason.includes("manifest.memoryMiB: must be an integer in 8..1024, got NaN"),
  );
  await assert.rejects(
    encodeBundle({ ...app(), args: ["x".repeat(MAX_MANIFEST_BYTES)] }, FILES),
    (e) => e instanceof BundleError && e.offset === 12 && e.reason.includes("exceeds the 1048576-byte limit"),
  );
});

/** Rethrows anything but a BundleError: for any input, refusing it with a BundleError is the only allowed failure. */
function assertOnlyBundleErrors(e: unknown): void {
  if (!(e instanceof BundleError)) throw e;
}

type Mutation =
  | { kind: "overwrite"; at: number; bytes: Uint8Array }
  | { kind: "truncate"; length: number }
  | { kind: "append"; bytes: Uint8Array };

/**
 * Mutations of a buffer made of `regions` (start, end pairs covering it in order). Overwrites pick a region first,
 * so a small region that matters byte by byte, like the header, is hit as often as a large one.
 */
function mutation(regions: [number, number][]): fc.Arbitrary<Mutation> {
  const length = regions[regions.length - 1][1];
  const bytes = fc.uint8Array({ minLength: 1, maxLength: 8 });
  const at = fc.constantFrom(...regions).chain(([start, end]) => fc.integer({ min: start, max: end - 1 }));
  return fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant("overwrite" as const), at, bytes }), weight: 4 },
    { arbitrary: fc.record({ kind: fc.constant("truncate" as const), length: fc.nat({ max: length }) }), weight: 1 },
    { arbitrary: fc.record({ kind: fc.constant("append" as const), bytes }), weight: 1 },
  );
}

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  switch (m.kind) {
    case "overwrite": {
      const out = bytes.slice();
      if (m.at < out.length) out.set(m.bytes.subarray(0, out.length - m.at), m.at);
      return out;
    }
    case "truncate":
      return bytes.slice(0, m.length);
    case "append": {
      const out = new Uint8Array(bytes.length + m.bytes.length);
      out.set(bytes);
      out.set(m.bytes, bytes.length);
      return out;
    }
  }
}

Deno.test("fuzz: a mutated bundle is refused with a BundleError unless the mutation changed nothing", async () => {
  const good = await sampleBundle();
  const original = await parseBundle(good, "test.pvx");
  const { end } = manifestOf(good);
  const regions: [number, number][] = [[0, HEADER_SIZE], [HEADER_SIZE, end], [end, good.length]];
  await fc.assert(
    fc.asyncProperty(fc.array(mutation(regions), { minLength: 1, maxLength: 3 }), async (mutations) => {
      const mutated = mutations.reduce(mutate, good);
      const parsed = await parseBundle(mutated, "test.pvx").catch(assertOnlyBundleErrors);
      if (!parsed) return;
      // Every byte is covered by a hash or checked exactly, so only a mutation that changed nothing may be accepted.
      assert.deepEqual(mutated, good);
      assertSameBundle(parsed, original);
    }),
    { numRuns: FUZZ_RUNS },
  );
});

Deno.test("fuzz: a mutated manifest under a resealed header is refused or re-encodes to the same bundle", async () => {
  // Resealing gets the mutation past the manifest hash, so it reaches the UTF-8, JSON and schema checks.
  const good = await sampleBundle();
  const { end } = manifestOf(good);
  const manifestBytes = good.subarray(HEADER_SIZE, end);
  const payload = good.subarray(end);
  await fc.assert(
    fc.asyncProperty(
      fc.array(mutation([[0, manifestBytes.length]]), { minLength: 1, maxLength: 3 }),
      async (mutations) => {
        const parsed = await parseBundle(await assemble(mutations.reduce(mutate, manifestBytes), payload), "test.pvx")
          .catch(assertOnlyBundleErrors);
        if (!parsed) return;
        const { files: _, format: __, ...rest } = parsed.manifest;
        const files = [...parsed.files].map(([path, bytes]) => ({ path, bytes }));
        assertSameBundle(await parseBundle(await encodeBundle(rest, files), "re-encoded"), parsed);
      },
    ),
    { numRuns: FUZZ_RUNS },
  );
});

/** Mostly `valid`, sometimes `invalid`, so that most manifests get far enough to test the later rules. */
function mostly<T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<unknown> = fc.anything()): fc.Arbitrary<unknown> {
  return fc.oneof({ arbitrary: valid, weight: 19 }, { arbitrary: invalid, weight: 1 });
}

/** A value one time in twenty, undefined otherwise: for the edits that make a manifest invalid outright. */
function sometimes<T>(edit: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> {
  return fc.oneof({ arbitrary: fc.constant(undefined), weight: 19 }, { arbitrary: edit, weight: 1 });
}

const fuzzPath = mostly(
  fc.constantFrom("bin/app", "lib/libc.so", "LIB/LIBC.SO", "lib", "lib/libc.so/x", "lib/libc.\u017Fo", "\u212A", "k"),
  fc.oneof(
    fc.constantFrom("..", ".", "", "a//b", "/x", "a\\b", "a/", "x".repeat(256)),
    fc.string({ unit: fc.constantFrom("a", "B", "/", ".", "\\", "\0", "é", "\ud800") }),
    fc.anything(),
  ),
);

const fuzzManifest = fc.array(
  mostly(fc.record({
    path: fuzzPath,
    size: mostly(fc.nat(), fc.oneof(fc.integer(), fc.double(), fc.anything())),
    sha256: mostly(
      fc.stringMatching(/^[0-9a-f]{64}$/),
      fc.oneof(fc.stringMatching(/^[0-9a-fA-F]{63,65}$/), fc.anything()),
    ),
  })),
  { maxLength: 4 },
).chain((files) =>
  fc.tuple(
    fc.record({
      format: mostly(fc.constant(1), fc.oneof(fc.constant(0), fc.anything())),
      name: mostly(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), fc.oneof(fc.string({ maxLength: 70 }), fc.anything())),
      entry: mostly(fc.constantFrom(...files.map((f) => (f as { path?: unknown })?.path), "bin/app"), fuzzPath),
      kind: mostly(fc.constantFrom("elf", "pe"), fc.oneof(fc.constantFrom("ELF", ""), fc.anything())),
      memoryMiB: mostly(fc.integer({ min: 8, max: 1024 }), fc.oneof(fc.integer(), fc.double(), fc.anything())),
      abiVersion: mostly(fc.integer({ min: 1 }), fc.oneof(fc.integer(), fc.double(), fc.bigInt(), fc.anything())),
      allowedCalls: mostly(
        fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9_]{1,8}$/), { maxLength: 4 }),
        fc.oneof(fc.array(fc.oneof(fc.string(), fc.constantFrom("a", "A"))), fc.anything()),
      ),
      args: mostly(fc.array(fc.string({ unit: "binary" }))),
      files: mostly(fc.constant(files)),
      dlls: mostly(fc.array(
        mostly(fc.record({
          path: mostly(fc.constantFrom(...files.map((f) => (f as { path?: unknown })?.path), "x.dll")),
          from: mostly(fc.constantFrom("/usr/lib/x.dll", "pvx"), fc.constantFrom("", 1)),
        })),
        { maxLength: 2 },
      )),
      specialCalls: mostly(fc.record({
        policy: mostly(fc.constantFrom("deny", "allow", "stop")),
        procs: mostly(
          fc.array(fc.constantFrom("kernel32.dll!FlsAlloc", "msvcrt.dll!#12", "A.dll!x", "a/b!x", "x", "a!"), {
            maxLength: 3,
          }),
        ),
        libraries: mostly(fc.array(fc.constantFrom("msvcrt.dll", "MSVCRT.DLL", "", "a\\b"), { maxLength: 3 })),
        files: mostly(fc.array(fc.string(), { maxLength: 2 })),
      })),
    }),
    sometimes(fc.constantFrom(...Object.keys(validManifest()))),
    sometimes(fc.tuple(fc.string(), fc.anything())),
  ).map(([manifest, missing, extra]) => {
    const fields: Record<string, unknown> = { ...manifest };
    if (missing) delete fields[missing];
    if (extra) fields[extra[0]] = extra[1];
    return fields;
  })
);

Deno.test("fuzz: validateManifest returns a valid manifest or throws a BundleError for any value", () => {
  fc.assert(
    fc.property(fc.oneof(fuzzManifest, fc.anything(), fc.jsonValue()), (value) => {
      try {
        const manifest = validateManifest(value, "fuzz.json");
        // What validates must survive the JSON round trip a bundle puts it through.
        assert.deepEqual(validateManifest(JSON.parse(JSON.stringify(manifest)), "fuzz.json"), manifest);
      } catch (e) {
        assertOnlyBundleErrors(e);
      }
    }),
    { numRuns: FUZZ_RUNS },
  );
});
