import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { PAGE } from "../abi/memory_map.ts";
import { unmapGuestRam } from "../hv/memory.ts";
import { HEADER_SIZE } from "../hv/file_header.ts";
import { MAX_MANIFEST_BYTES, SnapshotError, type SnapshotManifest, validateManifest } from "../hv/snapshot_format.ts";
import { type SnapshotInput, writeSnapshot } from "../hv/snapshot_writer.ts";
import { checkParent, mapSnapshotChain, openSnapshot, type Snapshot } from "../hv/snapshot_file.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const BUNDLE_SHA256 = createHash("sha256").update("a pretend bundle").digest("hex");
const text = (s: string) => new TextEncoder().encode(s);
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Fills `page` of `ram` with bytes that depend on `seed` and are never zero. */
function fillPage(ram: Uint8Array, page: number, seed: number): void {
  for (let i = 0; i < PAGE; i++) ram[page * PAGE + i] = ((seed * 31 + i * 7) % 255) + 1;
}

function ramWith(pageCount: number, pages: number[], seed = 1): Uint8Array {
  const ram = new Uint8Array(pageCount * PAGE);
  for (const page of pages) fillPage(ram, page, seed + page);
  return ram;
}

async function inTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function tmpEntries(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.includes(".tmp"));
}

function assertRefused(action: () => unknown, file: string, expected: { offset: number; reason: string }): void {
  let error: unknown;
  try {
    action();
  } catch (e) {
    error = e;
  }
  assert.ok(
    error instanceof SnapshotError,
    `expected a SnapshotError about ${JSON.stringify(expected.reason)}, got ${error}`,
  );
  assert.equal(error.file, file);
  assert.ok(error.reason.includes(expected.reason), `reason ${JSON.stringify(error.reason)}`);
  assert.equal(error.offset, expected.offset, `offset for ${JSON.stringify(error.reason)}`);
  assert.equal(error.message, `${file}: offset ${error.offset}: ${error.reason}`);
}

/** The bytes of guest RAM as the file stores them, read without mmap. */
function memoryOf(file: Uint8Array, manifest: SnapshotManifest): Uint8Array {
  return file.subarray(manifest.memory.fileOffset, manifest.memory.fileOffset + manifest.memory.size);
}

const SAMPLE_PAGES = 16;
const SAMPLE_PRESENT = [1, 2, 5, 15];
const SAMPLE_SECTIONS = {
  state: text(JSON.stringify({ rip: "0x401000", threads: [{ id: 1 }] })),
  overlay: Uint8Array.from({ length: 300 }, (_, i) => i % 256),
  empty: new Uint8Array(0),
};
const SAMPLE_META = { app: "hello-1.0", threads: 1, note: "ünïcode" };

type FullInput = Extract<SnapshotInput, { kind: "full" }>;

function sampleInput(): FullInput {
  return {
    kind: "full",
    parent: null,
    bundleSha256: BUNDLE_SHA256,
    meta: SAMPLE_META,
    memory: { bytes: ramWith(SAMPLE_PAGES, SAMPLE_PRESENT) },
    sections: SAMPLE_SECTIONS,
  };
}

/** A written sample snapshot: its file's bytes, manifest and manifest length. */
async function sample(dir: string) {
  const path = `${dir}/sample.snap`;
  const written = await writeSnapshot(path, sampleInput());
  using snapshot = openSnapshot(path);
  const bytes = await Deno.readFile(path);
  return {
    path,
    written,
    bytes,
    manifest: snapshot.manifest,
    manifestLength: new DataView(bytes.buffer).getUint32(12, true),
  };
}

/** `bytes` with its manifest replaced and the header resealed, everything after the old manifest kept. */
function reseal(bytes: Uint8Array, manifestBytes: Uint8Array): Uint8Array {
  const oldEnd = HEADER_SIZE + new DataView(bytes.buffer, bytes.byteOffset).getUint32(12, true);
  const out = new Uint8Array(HEADER_SIZE + manifestBytes.length + bytes.length - oldEnd);
  out.set(bytes.subarray(0, HEADER_SIZE));
  new DataView(out.buffer).setUint32(12, manifestBytes.length, true);
  out.set(createHash("sha256").update(manifestBytes).digest(), 16);
  out.set(manifestBytes, HEADER_SIZE);
  out.set(bytes.subarray(oldEnd), HEADER_SIZE + manifestBytes.length);
  return out;
}

Deno.test("a full snapshot reads back what was written, holding only the non-zero pages", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/full.snap`;
    const input = sampleInput();
    const calls: [number, number][] = [];
    const written = await writeSnapshot(path, input, (done, total) => calls.push([done, total]));
    assert.equal(written.pages, 4);

    const sectionBytes = Object.values(SAMPLE_SECTIONS).reduce((n, s) => n + s.length, 0);
    const total = sectionBytes + 4 * PAGE;
    assert.ok(calls.length > 0);
    assert.deepEqual(calls.at(-1), [total, total]);
    calls.forEach(([done, t], i) => {
      assert.equal(t, total);
      if (i > 0) assert.ok(done >= calls[i - 1][0], "progress went backwards");
    });

    using s = openSnapshot(path);
    const file = await Deno.readFile(path);
    const manifestLength = new DataView(file.buffer).getUint32(12, true);
    assert.equal(s.id, sha256(file.subarray(HEADER_SIZE, HEADER_SIZE + manifestLength)));
    assert.equal(s.id, written.id);
    const m = s.manifest;
    assert.equal(m.format, 1);
    assert.equal(m.kind, "full");
    assert.equal(m.parent, null);
    assert.deepEqual(m.bundle, { sha256: BUNDLE_SHA256 });
    assert.ok(Math.abs(Date.parse(m.createdAt) - Date.now()) < 60_000);
    assert.deepEqual(m.meta, SAMPLE_META);
    assert.equal(m.memory.size, SAMPLE_PAGES * PAGE);
    assert.equal(m.memory.fileOffset % PAGE, 0);
    assert.equal(file.length, m.memory.fileOffset + m.memory.size);
    assert.deepEqual(
      m.memory.extents.map((e) => [e.start / PAGE, e.length / PAGE]),
      [[1, 2], [5, 1], [15, 1]],
    );
    assert.deepEqual(m.sections.map((x) => x.name), ["state", "overlay", "empty"]);
    for (const [name, bytes] of Object.entries(SAMPLE_SECTIONS)) assert.deepEqual(s.section(name), bytes, name);
    s.verifyMemory();
    assert.deepEqual(memoryOf(file, m), input.memory.bytes);
    assert.equal(written.fileBytes, HEADER_SIZE + manifestLength + sectionBytes + 4 * PAGE);
  });
});

Deno.test("a diff holds exactly the listed pages, zero ones included, and maps over its parent", async () => {
  await inTempDir(async (dir) => {
    const base = ramWith(8, [0, 1, 2, 3]);
    await writeSnapshot(`${dir}/base.snap`, { ...sampleInput(), memory: { bytes: base } });
    using parent = openSnapshot(`${dir}/base.snap`);

    const next = base.slice();
    next.fill(0, 1 * PAGE, 2 * PAGE); // page 1 becomes zero: the diff must still carry it
    fillPage(next, 3, 99);
    fillPage(next, 4, 98);
    const written = await writeSnapshot(`${dir}/diff.snap`, {
      kind: "diff",
      parent: parent.id,
      bundleSha256: BUNDLE_SHA256,
      meta: {},
      memory: { bytes: next, pages: [4, 1, 3, 3] },
      sections: {},
    });
    assert.equal(written.pages, 3);
    using diff = openSnapshot(`${dir}/diff.snap`);
    assert.equal(diff.manifest.kind, "diff");
    assert.equal(diff.manifest.parent, parent.id);
    assert.deepEqual(diff.manifest.memory.extents.map((e) => [e.start / PAGE, e.length / PAGE]), [
      [1, 1],
      [3, 2],
    ]);
    diff.verifyMemory();
    checkParent(diff, parent);

    const ram = mapSnapshotChain([parent, diff]);
    try {
      assert.deepEqual(ram.bytes, next);
    } finally {
      unmapGuestRam(ram);
    }
  });
});

Deno.test("a chain S0 <- D1 <- D2 maps to the last state, and writes to the mapping never reach the files", async () => {
  await inTempDir(async (dir) => {
    const pageCount = 32;
    const states = [ramWith(pageCount, [0, 3, 4, 10, 31])];
    const changes = [[3, 11, 12], [4, 12, 20]];
    for (const [i, pages] of changes.entries()) {
      const next = states[i].slice();
      for (const page of pages) fillPage(next, page, 1000 * (i + 1) + page);
      next.fill(0, 10 * PAGE, 11 * PAGE);
      states.push(next);
    }
    const paths = [`${dir}/s0.snap`, `${dir}/d1.snap`, `${dir}/d2.snap`];
    let parent: string | null = null;
    for (const [i, bytes] of states.entries()) {
      const common = { bundleSha256: BUNDLE_SHA256, meta: { step: i }, sections: { state: text(`step ${i}`) } };
      const written: { id: string } = parent === null
        ? await writeSnapshot(paths[i], { ...common, kind: "full", parent: null, memory: { bytes } })
        : await writeSnapshot(paths[i], {
          ...common,
          kind: "diff",
          parent,
          memory: { bytes, pages: [...changes[i - 1], 10] },
        });
      parent = written.id;
    }
    const before = paths.map((p) => Deno.readFileSync(p));

    const chain = paths.map(openSnapshot) as [Snapshot, ...Snapshot[]];
    try {
      for (const [i, prefix] of [chain.slice(0, 1), chain.slice(0, 2), chain].entries()) {
        const ram = mapSnapshotChain(prefix as [Snapshot, ...Snapshot[]]);
        try {
          assert.deepEqual(ram.bytes, states[i], `state after ${i} diffs`);
          // Pages from every layer and from the holes: none of it may reach a file.
          for (const page of [0, 1, 3, 4, 10, 11, 12, 20, 31]) {
            ram.bytes.fill(0xee, page * PAGE, page * PAGE + 100);
          }
          assert.equal(ram.bytes[12 * PAGE], 0xee);
        } finally {
          unmapGuestRam(ram);
        }
      }
    } finally {
      for (const s of chain) s.close();
    }
    paths.forEach((p, i) => assert.deepEqual(Deno.readFileSync(p), before[i], p));
    for (const p of paths) {
      using s = openSnapshot(p);
      s.verifyMemory();
    }
  });
});

Deno.test("a diff refuses any parent but its own", async () => {
  await inTempDir(async (dir) => {
    const ram = ramWith(4, [0]);
    const full = (path: string, meta: Record<string, unknown>) =>
      writeSnapshot(path, { ...sampleInput(), meta, memory: { bytes: ram } });
    const s0 = await full(`${dir}/s0.snap`, { n: 0 });
    await full(`${dir}/other.snap`, { n: 1 });
    const diff = (path: string, parent: string) =>
      writeSnapshot(path, {
        kind: "diff",
        parent,
        bundleSha256: BUNDLE_SHA256,
        meta: {},
        memory: { bytes: ram, pages: [1] },
        sections: {},
      });
    const d1 = await diff(`${dir}/d1.snap`, s0.id);
    await diff(`${dir}/d2.snap`, d1.id);
    await writeSnapshot(`${dir}/big.snap`, { ...sampleInput(), memory: { bytes: ramWith(8, [0]) } });

    using a = openSnapshot(`${dir}/s0.snap`);
    using b = openSnapshot(`${dir}/other.snap`);
    using c = openSnapshot(`${dir}/d1.snap`);
    using d = openSnapshot(`${dir}/d2.snap`);
    using big = openSnapshot(`${dir}/big.snap`);
    assert.notEqual(a.id, b.id);
    assertRefused(() => checkParent(c, b), c.path, {
      offset: HEADER_SIZE,
      reason: `manifest.parent: diff ${c.id} was taken against snapshot ${a.id}, not ${b.id}`,
    });
    assertRefused(() => checkParent(d, a), d.path, {
      offset: HEADER_SIZE,
      reason: `against snapshot ${c.id}, not ${a.id}`,
    });
    assertRefused(() => checkParent(a, b), a.path, { offset: HEADER_SIZE, reason: "manifest.kind: snapshot" });
    assertRefused(() => mapSnapshotChain([a, d]), d.path, { offset: HEADER_SIZE, reason: "manifest.parent:" });
    assertRefused(() => mapSnapshotChain([b, c]), c.path, { offset: HEADER_SIZE, reason: "manifest.parent:" });
    assertRefused(() => mapSnapshotChain([c, d]), c.path, {
      offset: HEADER_SIZE,
      reason: `manifest.kind: a chain starts with a full snapshot, but ${c.id} is a diff of ${a.id}`,
    });

    // A diff whose manifest names the right parent but disagrees with it about the VM.
    await writeSnapshot(`${dir}/bad.snap`, {
      kind: "diff",
      parent: big.id,
      bundleSha256: BUNDLE_SHA256,
      meta: {},
      memory: { bytes: ram, pages: [1] },
      sections: {},
    });
    using bad = openSnapshot(`${dir}/bad.snap`);
    assertRefused(() => checkParent(bad, big), bad.path, {
      offset: HEADER_SIZE,
      reason: `manifest.memory.size: diff ${bad.id} has 16384 bytes of guest RAM, its parent ${big.id} 32768`,
    });
  });
});

Deno.test("a mostly-zero guest makes a sparse file, and opening, verifying and mapping it cost what is present", async () => {
  await inTempDir(async (dir) => {
    const size = 1 << 30;
    // Untouched memory of a fresh buffer costs nothing; only the listed pages are read.
    const ram = new Uint8Array(size);
    const present = [0, 1, 7, 100_000, size / PAGE - 1];
    for (const page of present) fillPage(ram, page, page);
    const path = `${dir}/big.snap`;
    const written = await writeSnapshot(path, {
      kind: "full",
      parent: null,
      bundleSha256: BUNDLE_SHA256,
      meta: {},
      memory: { bytes: ram, pages: present },
      sections: { state: text("{}") },
    });
    const stat = await Deno.stat(path);
    assert.ok(stat.size > size);
    assert.ok(stat.blocks !== null && stat.blocks * 512 < 1 << 20, `allocated ${stat.blocks} blocks of 512`);
    assert.ok(written.fileBytes < 6 * PAGE);

    using s = openSnapshot(path);
    s.verifyMemory();
    const mapped = mapSnapshotChain([s]);
    try {
      for (const page of [...present, 2, 99_999]) {
        const at = page * PAGE;
        assert.deepEqual(mapped.bytes.subarray(at, at + PAGE), ram.subarray(at, at + PAGE), `page ${page}`);
      }
    } finally {
      unmapGuestRam(mapped);
    }

    // The default for a full snapshot finds the non-zero pages itself.
    const small = ramWith(16 << 8, [3, 4000]);
    await writeSnapshot(`${dir}/small.snap`, { ...sampleInput(), memory: { bytes: small } });
    const smallStat = await Deno.stat(`${dir}/small.snap`);
    assert.ok(smallStat.blocks !== null && smallStat.blocks * 512 < 64 << 10, `allocated ${smallStat.blocks} blocks`);
  });
});

Deno.test("header refusals", async (t) => {
  await inTempDir(async (dir) => {
    const { bytes, manifestLength } = await sample(dir);
    const path = `${dir}/bad.snap`;
    const refused = (file: Uint8Array, expected: { offset: number; reason: string }) => {
      Deno.writeFileSync(path, file);
      assertRefused(() => openSnapshot(path), path, expected);
    };
    const patched = (offset: number, patch: (view: DataView) => void) => {
      const copy = bytes.slice();
      patch(new DataView(copy.buffer, offset));
      return copy;
    };

    await t.step(
      "bad magic",
      () => refused(patched(3, (v) => v.setUint8(0, 0x21)), { offset: 0, reason: "bad magic" }),
    );
    await t.step("a bundle is not a snapshot", () => refused(text("PVXBNDL\0"), { offset: 0, reason: "bad magic" }));
    await t.step(
      "empty file",
      () => refused(new Uint8Array(0), { offset: 0, reason: "truncated: the header needs 48" }),
    );
    await t.step(
      "a snapshot's first bytes alone",
      () => refused(text("PVXS"), { offset: 4, reason: "truncated: the header" }),
    );
    await t.step("a newer version", () =>
      refused(patched(8, (v) => v.setUint32(0, 2, true)), {
        offset: 8,
        reason: "format version 2 is not supported (this reader knows 1)",
      }));
    await t.step(
      "an older version",
      () =>
        refused(patched(8, (v) => v.setUint32(0, 0, true)), { offset: 8, reason: "format version 0 is not supported" }),
    );
    await t.step("oversize manifest", () =>
      refused(patched(12, (v) => v.setUint32(0, MAX_MANIFEST_BYTES + 1, true)), {
        offset: 12,
        reason: `exceeds the ${MAX_MANIFEST_BYTES}-byte limit`,
      }));
    await t.step(
      "manifest hash changed",
      () =>
        refused(patched(16, (v) => v.setUint8(31, v.getUint8(31) ^ 1)), {
          offset: 16,
          reason: "manifest sha256 mismatch",
        }),
    );
    await t.step(
      "manifest byte changed under its hash",
      () =>
        refused(patched(HEADER_SIZE + 9, (v) => v.setUint8(0, v.getUint8(0) ^ 0x20)), {
          offset: 16,
          reason: "manifest sha256 mismatch",
        }),
    );
    await t.step(
      "truncated header",
      () => refused(bytes.subarray(0, 20), { offset: 20, reason: "truncated: the header needs 48 bytes, file has 20" }),
    );
    await t.step("truncated manifest", () =>
      refused(bytes.subarray(0, HEADER_SIZE + 10), {
        offset: HEADER_SIZE + 10,
        reason: `truncated: the ${manifestLength}-byte manifest at offset 48 ends at ${HEADER_SIZE + manifestLength}`,
      }));
  });
});

Deno.test("manifest refusals found on open name the field", async (t) => {
  await inTempDir(async (dir) => {
    const { bytes, manifest } = await sample(dir);
    const path = `${dir}/bad.snap`;
    const refused = (manifestBytes: Uint8Array, reason: string) => {
      Deno.writeFileSync(path, reseal(bytes, manifestBytes));
      assertRefused(() => openSnapshot(path), path, { offset: HEADER_SIZE, reason });
    };
    await t.step("invalid UTF-8", () => refused(new Uint8Array([0x7b, 0xff, 0x7d]), "manifest is not valid UTF-8"));
    await t.step("invalid JSON", () => refused(text('{"format": 1,'), "manifest is not valid JSON"));
    await t.step("byte order mark", () => refused(text("\ufeff{}"), "manifest is not valid JSON"));
    await t.step(
      "unknown field",
      () => refused(text(JSON.stringify({ ...manifest, signature: "x" })), 'manifest: unknown field "signature"'),
    );
    await t.step(
      "a newer manifest format",
      () => refused(text(JSON.stringify({ ...manifest, format: 2 })), "manifest.format: must be 1, got 2"),
    );
    // The same manifest with the layout shifted by the resealing: the stored offsets no longer hold.
    await t.step(
      "offsets that do not match the manifest's length",
      () => refused(text(JSON.stringify(manifest, null, 1)), "manifest.sections[0].offset: must be"),
    );
  });
});

Deno.test("layout refusals point where the file goes wrong", async (t) => {
  await inTempDir(async (dir) => {
    const { bytes, manifest } = await sample(dir);
    const path = `${dir}/bad.snap`;
    const { fileOffset, size } = manifest.memory;
    const overlay = manifest.sections[1];
    const sectionsEnd = manifest.sections.at(-1)!.offset + manifest.sections.at(-1)!.length;
    const write = (file: Uint8Array) => Deno.writeFileSync(path, file);
    const refused = (file: Uint8Array, expected: { offset: number; reason: string }) => {
      write(file);
      assertRefused(() => openSnapshot(path), path, expected);
    };
    const flipped = (offset: number) => {
      const copy = bytes.slice();
      copy[offset] ^= 0x40;
      return copy;
    };

    await t.step("truncated inside a section", () =>
      refused(bytes.subarray(0, overlay.offset + 10), {
        offset: overlay.offset + 10,
        reason: `truncated: section "overlay" at offset ${overlay.offset} needs 300 bytes, only 10 remain`,
      }));
    await t.step("truncated inside the padding", () =>
      refused(bytes.subarray(0, sectionsEnd + 1), {
        offset: sectionsEnd + 1,
        reason: `truncated: the memory region at offset ${fileOffset} (${size} bytes) ends at ${fileOffset + size}`,
      }));
    await t.step("truncated inside memory", () => {
      const cut = fileOffset + 5 * PAGE + 7;
      refused(bytes.subarray(0, cut), { offset: cut, reason: `the file at ${cut}` });
    });
    await t.step("trailing bytes", () => {
      const longer = new Uint8Array(bytes.length + 3);
      longer.set(bytes);
      refused(longer, { offset: bytes.length, reason: "3 trailing bytes after the memory region" });
    });
    await t.step(
      "padding that is not zero",
      () => refused(flipped(sectionsEnd + 2), { offset: sectionsEnd + 2, reason: "padding before the memory region" }),
    );
    await t.step("a section changed under its hash", () => {
      write(flipped(overlay.offset + 299));
      using s = openSnapshot(path);
      assert.deepEqual(s.section("state"), SAMPLE_SECTIONS.state);
      assertRefused(() => s.section("overlay"), path, {
        offset: overlay.offset,
        reason: `section "overlay" at offset ${overlay.offset} (length 300): sha256 is`,
      });
      s.verifyMemory();
    });
    await t.step("a missing section", () => {
      write(bytes);
      using s = openSnapshot(path);
      assertRefused(() => s.section("nope"), path, {
        offset: HEADER_SIZE,
        reason: 'manifest.sections: no section named "nope" (present: "state", "overlay", "empty")',
      });
    });
    await t.step("an extent changed under its hash", () => {
      write(flipped(fileOffset + 5 * PAGE + 4095));
      using s = openSnapshot(path);
      assertRefused(() => s.verifyMemory(), path, {
        offset: fileOffset + 5 * PAGE,
        reason: `memory extent at guest address ${5 * PAGE} (4096 bytes): sha256 is`,
      });
    });
    for (const guest of [10, 3 * PAGE + 100, 14 * PAGE + 4095]) {
      await t.step(`data outside every extent at guest ${guest}`, () => {
        write(flipped(fileOffset + guest));
        using s = openSnapshot(path);
        assertRefused(() => s.verifyMemory(), path, {
          offset: fileOffset + guest,
          reason: `guest byte ${guest} is not zero, but no memory extent covers it`,
        });
      });
    }
  });
});

Deno.test("manifest schema refusals", async (t) => {
  await inTempDir(async (dir) => {
    const { manifest, manifestLength } = await sample(dir);
    const [first, second, third] = manifest.memory.extents;
    type Edit = (m: SnapshotManifest & Record<string, unknown>) => unknown;
    const memory = (m: SnapshotManifest, edit: Partial<SnapshotManifest["memory"]>) => ({
      ...m,
      memory: { ...m.memory, ...edit },
    });
    const cases: [string, Edit, string][] = [
      ["not an object", () => [], "manifest: must be an object, got an array"],
      ["unknown field", (m) => ({ ...m, extra: 1 }), 'manifest: unknown field "extra"'],
      ["missing field", ({ meta: _, ...m }) => m, "manifest.meta: missing"],
      ["format as a string", (m) => ({ ...m, format: "1" }), 'manifest.format: must be 1, got "1"'],
      ["kind", (m) => ({ ...m, kind: "partial" }), 'manifest.kind: must be one of "full", "diff", got "partial"'],
      ["full with a parent", (m) => ({ ...m, parent: "a".repeat(64) }), "manifest.parent: must be null for a full"],
      ["diff without a parent", (m) => ({ ...m, kind: "diff" }), "manifest.parent: must be a string, got null"],
      ["diff with a short parent", (m) => ({ ...m, kind: "diff", parent: "abc" }), "manifest.parent: must be 64"],
      [
        "bundle unknown field",
        (m) => ({ ...m, bundle: { ...m.bundle, size: 1 } }),
        'manifest.bundle: unknown field "size"',
      ],
      ["bundle sha256", (m) => ({ ...m, bundle: { sha256: "A".repeat(64) } }), "manifest.bundle.sha256: must be 64"],
      ["bundle missing", (m) => ({ ...m, bundle: null }), "manifest.bundle: must be an object, got null"],
      ["createdAt not a time", (m) => ({ ...m, createdAt: "yesterday" }), "manifest.createdAt: must be a UTC time"],
      ["createdAt no such day", (m) => ({ ...m, createdAt: "2025-02-30T00:00:00.000Z" }), "manifest.createdAt:"],
      ["createdAt not UTC", (m) => ({ ...m, createdAt: "2025-01-01T00:00:00.000+01:00" }), "manifest.createdAt:"],
      ["meta an array", (m) => ({ ...m, meta: [] }), "manifest.meta: must be an object, got an array"],
      ["memory unknown field", (m) => ({ ...m, memory: { ...m.memory, zero: 0 } }), "manifest.memory: unknown field"],
      ["size zero", (m) => memory(m, { size: 0 }), "manifest.memory.size: must be an integer in 4096.."],
      ["size not whole pages", (m) => memory(m, { size: 65537 }), "manifest.memory.size: must be a multiple of 4096"],
      [
        "fileOffset",
        (m) => memory(m, { fileOffset: m.memory.fileOffset + PAGE }),
        "manifest.memory.fileOffset: must be",
      ],
      ["extents not an array", (m) => memory(m, { extents: {} as never }), "manifest.memory.extents: must be an array"],
      [
        "extent beyond size",
        (m) => memory(m, { size: 8 * PAGE }),
        "manifest.memory.extents[2].start: must be an integer in 0..28672, got 61440",
      ],
      [
        "extent running past size",
        (m) => memory(m, { extents: [first, second, { ...third, length: 2 * PAGE }] }),
        "manifest.memory.extents[2].length: must be an integer in 4096..4096",
      ],
      [
        "extents out of order",
        (m) => memory(m, { extents: [first, third, second] }),
        "manifest.memory.extents[2].start: must be greater than 65536",
      ],
      [
        "extents overlapping",
        (m) => memory(m, { extents: [first, { ...first, start: PAGE * 2 }] }),
        "manifest.memory.extents[1].start: must be greater than 12288",
      ],
      [
        "extents touching",
        (m) =>
          memory(m, {
            extents: [{ ...first, length: PAGE }, { ...first, start: 2 * PAGE, length: PAGE }],
          }),
        "manifest.memory.extents[1].start: must be greater than 8192, where manifest.memory.extents[0] ends",
      ],
      [
        "extent unaligned",
        (m) => memory(m, { extents: [{ ...first, start: 100 }] }),
        "extents[0].start: must be a multiple",
      ],
      [
        "extent empty",
        (m) => memory(m, { extents: [{ ...first, length: 0 }] }),
        "extents[0].length: must be an integer in 4096",
      ],
      [
        "extent sha256",
        (m) => memory(m, { extents: [{ ...first, sha256: "x" }] }),
        "manifest.memory.extents[0].sha256: must be 64",
      ],
      [
        "extent field",
        (m) => memory(m, { extents: [{ ...first, zero: false } as never] }),
        'manifest.memory.extents[0]: unknown field "zero"',
      ],
      [
        "section name",
        (m) => ({ ...m, sections: [{ ...m.sections[0], name: "a/b" }] }),
        "manifest.sections[0].name: must be 1..64",
      ],
      [
        "section names repeat",
        (m) => ({ ...m, sections: [m.sections[0], { ...m.sections[1], name: "state" }] }),
        'manifest.sections[1].name: "state" repeats manifest.sections[0].name',
      ],
      [
        "section offset",
        (m) => ({ ...m, sections: [m.sections[1]] }),
        `manifest.sections[0].offset: must be ${HEADER_SIZE + manifestLength} (where the manifest ends)`,
      ],
      [
        "section length",
        (m) => ({ ...m, sections: [{ ...m.sections[0], length: -1 }] }),
        "manifest.sections[0].length: must be an integer in 0..",
      ],
      [
        "section without a hash",
        (m) => ({ ...m, sections: [{ ...m.sections[0], sha256: undefined }] }),
        "manifest.sections[0].sha256: must be a string",
      ],
    ];
    for (const [name, edit, reason] of cases) {
      await t.step(name, () => {
        const value = edit(structuredClone(manifest) as SnapshotManifest & Record<string, unknown>);
        assertRefused(() => validateManifest(value, "test.snap", manifestLength), "test.snap", {
          offset: HEADER_SIZE,
          reason,
        });
      });
    }
    await t.step("the unedited manifest passes", () => {
      assert.deepEqual(validateManifest(structuredClone(manifest), "test.snap", manifestLength), manifest);
    });
  });
});

Deno.test("writeSnapshot refuses bad input before touching the file", async (t) => {
  await inTempDir(async (dir) => {
    const path = `${dir}/keep.snap`;
    const { id } = await writeSnapshot(path, sampleInput());
    const kept = () => {
      using s = openSnapshot(path);
      assert.equal(s.id, id);
      assert.deepEqual(tmpEntries(dir), []);
    };
    const cases: [string, SnapshotInput, string][] = [
      ["bundle hash", { ...sampleInput(), bundleSha256: "nope" }, "manifest.bundle.sha256: must be 64"],
      ["section name", { ...sampleInput(), sections: { "no spaces": new Uint8Array(1) } }, "manifest.sections[0].name"],
      [
        "diff parent",
        { ...sampleInput(), kind: "diff", parent: "x", memory: { bytes: ramWith(1, []), pages: [] } },
        "manifest.parent",
      ],
    ];
    for (const [name, input, reason] of cases) {
      await t.step(name, async () => {
        const error = await writeSnapshot(path, input).then(() => undefined, (e) => e);
        assert.ok(error instanceof SnapshotError, `${error}`);
        assert.ok(error.reason.includes(reason), error.reason);
        kept();
      });
    }
    await t.step("a page outside guest RAM", async () => {
      await assert.rejects(
        writeSnapshot(path, { ...sampleInput(), memory: { bytes: ramWith(2, []), pages: [2] } }),
        RangeError,
      );
      kept();
    });
    await t.step("RAM that is not whole pages", async () => {
      await assert.rejects(
        writeSnapshot(path, { ...sampleInput(), memory: { bytes: new Uint8Array(100) } }),
        RangeError,
      );
      kept();
    });
    await t.step("a failed rename leaves the target and no temp file", async () => {
      const target = `${dir}/dir.snap`;
      await Deno.mkdir(target);
      await Deno.writeFile(`${target}/keep`, text("still here"));
      await assert.rejects(writeSnapshot(target, sampleInput()));
      assert.deepEqual(await Deno.readFile(`${target}/keep`), text("still here"));
      assert.deepEqual(tmpEntries(dir), []);
    });
    await t.step("a successful write replaces the target and leaves no temp file", async () => {
      const { id: newId } = await writeSnapshot(path, { ...sampleInput(), meta: { again: true } });
      assert.notEqual(newId, id);
      using s = openSnapshot(path);
      assert.equal(s.id, newId);
      assert.deepEqual(tmpEntries(dir), []);
    });
  });
});

Deno.test("a corrupted snapshot is refused with a SnapshotError or reads back exactly what was written", async () => {
  await inTempDir(async (dir) => {
    const { bytes, manifest, written } = await sample(dir);
    const original = sampleInput();
    const path = `${dir}/fuzz.snap`;
    const { fileOffset } = manifest.memory;
    // The header, the manifest and sections, anywhere in memory, and inside an extent: a change anywhere else in
    // memory is refused so often that an extent's check would hardly ever be what stands in the way.
    const within = (start: number, length: number) => fc.integer({ min: start, max: start + length - 1 });
    const offset = fc.oneof(
      within(0, HEADER_SIZE),
      within(HEADER_SIZE, fileOffset - HEADER_SIZE),
      within(fileOffset, bytes.length - fileOffset),
      fc.constantFrom(...manifest.memory.extents).chain((e) => within(fileOffset + e.start, e.length)),
    );
    // Mostly left out, so that many runs change bytes in place and some of them reach the success path.
    const rarely = <T>(arbitrary: fc.Arbitrary<T>) =>
      fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary, weight: 1 });
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(offset, fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        rarely(fc.integer({ min: 0, max: bytes.length })),
        rarely(fc.uint8Array({ minLength: 1, maxLength: 8 })),
        (edits, cut, extra) => {
          let file = bytes.slice();
          for (const [at, value] of edits) file[at] = value;
          if (cut !== null) file = file.subarray(0, cut);
          if (extra !== null) file = Uint8Array.from([...file, ...extra]);
          Deno.writeFileSync(path, file);
          let s: Snapshot;
          try {
            s = openSnapshot(path);
          } catch (e) {
            if (e instanceof SnapshotError) return;
            throw e;
          }
          try {
            const sections = Object.keys(SAMPLE_SECTIONS).map((name) => s.section(name));
            s.verifyMemory();
            // Every byte is hashed, must be zero, or may not be there at all: what reads back is the original.
            assert.deepEqual(file, bytes);
            assert.equal(s.id, written.id);
            assert.deepEqual(s.manifest, manifest);
            assert.deepEqual(sections, Object.values(SAMPLE_SECTIONS));
            const ram = mapSnapshotChain([s]);
            try {
              assert.deepEqual(ram.bytes, original.memory.bytes);
            } finally {
              unmapGuestRam(ram);
            }
            accepted++;
          } catch (e) {
            if (!(e instanceof SnapshotError)) throw e;
          } finally {
            s.close();
          }
        },
      ),
      { numRuns: fuzzRuns },
    );
    assert.ok(accepted > 0, "no run left the file readable, so the success path went untested");
  });
});

Deno.test("a writer killed with SIGKILL mid-write leaves the previous snapshot intact", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/app.snap`;
    const old = await writeSnapshot(path, sampleInput());
    const module = new URL("../hv/snapshot_writer.ts", import.meta.url).href;
    // 256 MiB of non-zero pages: long enough to write that the kill lands in the middle.
    const script = `
      import { writeSnapshot } from ${JSON.stringify(module)};
      const ram = new Uint8Array(256 << 20);
      const words = new Uint32Array(ram.buffer);
      let x = 0x9e3779b9;
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        words[i] = x | 1;
      }
      await writeSnapshot(${JSON.stringify(path)}, {
        kind: "full", parent: null, bundleSha256: ${JSON.stringify(BUNDLE_SHA256)}, meta: {}, sections: {},
        memory: { bytes: ram },
      });
    `;
    const child = new Deno.Command(Deno.execPath(), { args: ["eval", script], stdout: "null", stderr: "piped" })
      .spawn();
    let exited = false;
    child.status.then(() => exited = true);

    let temp: string | undefined;
    const deadline = Date.now() + 60_000;
    while (temp === undefined) {
      assert.ok(!exited, "the writer finished before it could be killed");
      assert.ok(Date.now() < deadline, "the writer's temp file never grew");
      const name = tmpEntries(dir).find((n) => n.startsWith("app.snap.tmp-"));
      if (name !== undefined && (await Deno.stat(`${dir}/${name}`).catch(() => null))?.size! > 32 << 20) {
        temp = `${dir}/${name}`;
      } else {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
    child.kill("SIGKILL");
    const { signal, stderr } = await child.output();
    assert.equal(signal, "SIGKILL", new TextDecoder().decode(stderr));

    using s = openSnapshot(path);
    assert.equal(s.id, old.id);
    s.verifyMemory();
    assert.deepEqual(s.section("overlay"), SAMPLE_SECTIONS.overlay);
    // The stray temp file is still there, and is not a snapshot: its header is written last.
    assert.deepEqual(tmpEntries(dir), [temp.slice(dir.length + 1)]);
    assertRefused(() => openSnapshot(temp), temp, { offset: 0, reason: "bad magic" });
  });
});
