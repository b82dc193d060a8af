// Sealed snapshots (hv/sealed_snapshot.ts) on real files: a blob opens only
// whole, unaltered, in order, unexpired and under its own key, and gives back
// exactly the snapshot that was sealed. No guest is needed.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { unmapGuestRam } from "../hv/memory.ts";
import {
  createKeyFile,
  readKeyFile,
  SEAL_HEADER_BYTES,
  sealedLength,
  SealError,
  type SealKey,
  sealSnapshot,
  SEGMENT_BYTES,
  TAG_BYTES,
  unsealSnapshot,
  writeSealedSnapshot,
} from "../hv/sealed_snapshot.ts";
import { writeSnapshot } from "../hv/snapshot_writer.ts";
import { mapSnapshotChain, openSnapshot, packedLength } from "../hv/snapshot_file.ts";
import { PAGE } from "../abi/memory_map.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const SECRET = "the guest's secret: 7f3a9c";
const PAGES = 96;
/** Present pages: enough for several segments, with holes between them. */
const PRESENT = Array.from({ length: 40 }, (_, i) => 2 * i + 3);

function sampleRam(): Uint8Array {
  const ram = new Uint8Array(PAGES * PAGE);
  for (const page of PRESENT) {
    for (let i = 0; i < PAGE; i++) ram[page * PAGE + i] = ((page * 31 + i * 7) % 255) + 1;
  }
  return ram;
}

const sampleInput = (ram: Uint8Array) => ({
  kind: "full" as const,
  parent: null,
  bundleSha256: createHash("sha256").update("a pretend bundle").digest("hex"),
  meta: { app: "sample" },
  memory: { bytes: ram },
  sections: {
    state: new TextEncoder().encode(JSON.stringify({ version: 1, note: SECRET })),
    overlay: Uint8Array.from({ length: 5000 }, (_, i) => i % 251),
  },
});

/** A key file, a plain snapshot and that snapshot sealed, made once for every test here. */
const fixture = await (async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-seal-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  const key = await createKeyFile(`${dir}/key`);
  const ram = sampleRam();
  await writeSnapshot(`${dir}/plain.snap`, sampleInput(ram));
  using plain = openSnapshot(`${dir}/plain.snap`);
  await sealSnapshot(plain, `${dir}/sealed.blob`, key);
  return { dir, key, ram, blob: await Deno.readFile(`${dir}/sealed.blob`) };
})();

const segmentCount = Math.ceil((fixture.blob.length - SEAL_HEADER_BYTES) / (SEGMENT_BYTES + TAG_BYTES));
const segmentAt = (index: number) => SEAL_HEADER_BYTES + index * (SEGMENT_BYTES + TAG_BYTES);

/** Unseals `bytes` written to a file of their own; the refusal, or undefined if it opened. */
async function refusal(bytes: Uint8Array, key: SealKey = fixture.key, now?: Date): Promise<SealError | undefined> {
  const path = `${fixture.dir}/try-${crypto.randomUUID()}.blob`;
  await Deno.writeFile(path, bytes);
  try {
    (await unsealSnapshot(path, key, now)).close();
    return undefined;
  } catch (e) {
    if (!(e instanceof SealError)) throw e;
    assert.equal(e.message, `${path}: offset ${e.offset}: ${e.reason}`);
    return e;
  } finally {
    await Deno.remove(path);
  }
}

/** Throws unless a one-byte change at `offset` is refused by the check that covers that byte. */
async function assertChangeRefused(offset: number, xor: number) {
  const bytes = fixture.blob.slice();
  bytes[offset] ^= xor;
  const e = await refusal(bytes);
  assert.ok(e, `a change of byte ${offset} (xor ${xor}) was not refused`);
  if (offset >= SEAL_HEADER_BYTES) {
    const index = Math.floor((offset - SEAL_HEADER_BYTES) / (SEGMENT_BYTES + TAG_BYTES));
    assert.equal(e.offset, segmentAt(index), e.message);
    assert.match(e.reason, new RegExp(`^segment ${index} of ${segmentCount} .*authentication failed`));
  } else {
    assert.match(e.reason, /^(bad magic|format version|wrong key|header authentication failed)/, e.message);
  }
}

Deno.test("a sealed snapshot unseals to the very snapshot that was sealed, and the blob shows none of it", async () => {
  assert.ok(segmentCount >= 3, `the sample should span several segments, it spans ${segmentCount}`);
  assert.equal(fixture.blob.length, sealedLength(packedLength(openSnapshot(`${fixture.dir}/plain.snap`).manifest)));
  const text = new TextDecoder("latin1").decode(fixture.blob);
  assert.ok(!text.includes(SECRET) && !text.includes('"sections"'), "the blob holds plaintext");

  using unsealed = await unsealSnapshot(`${fixture.dir}/sealed.blob`, fixture.key);
  using plain = openSnapshot(`${fixture.dir}/plain.snap`);
  assert.equal(unsealed.id, plain.id);
  assert.deepEqual(unsealed.manifest, plain.manifest);
  assert.deepEqual(unsealed.section("state"), plain.section("state"));
  assert.deepEqual(unsealed.section("overlay"), plain.section("overlay"));
  unsealed.verifyMemory();
  const ram = mapSnapshotChain([unsealed]);
  try {
    assert.ok(ram.bytes.every((b, i) => b === fixture.ram[i]), "guest RAM differs");
  } finally {
    unmapGuestRam(ram);
  }
  assert.match(unsealed.path, /sealed\.blob \(unsealed\)$/);

  // Sealed as it is written, the plaintext going no further than a memfd.
  const written = await writeSealedSnapshot(`${fixture.dir}/direct.blob`, sampleInput(fixture.ram), fixture.key);
  using direct = await unsealSnapshot(`${fixture.dir}/direct.blob`, fixture.key);
  assert.equal(direct.id, written.id);
  assert.equal(written.fileBytes, (await Deno.stat(`${fixture.dir}/direct.blob`)).size);
  assert.equal(written.pages, PRESENT.length);
  assert.deepEqual(direct.section("state"), plain.section("state"));
  direct.verifyMemory();
});

Deno.test("every one-byte change of a sealed blob is refused, naming the check and the segment", async () => {
  // Every byte of the header, and the first and last byte of every segment, then any byte at all.
  for (let offset = 0; offset < SEAL_HEADER_BYTES; offset++) await assertChangeRefused(offset, 0x01);
  for (let index = 0; index < segmentCount; index++) {
    await assertChangeRefused(segmentAt(index), 0x80);
    await assertChangeRefused(Math.min(segmentAt(index + 1), fixture.blob.length) - 1, 0xff);
  }
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: fixture.blob.length - 1 }),
      fc.integer({ min: 1, max: 255 }),
      assertChangeRefused,
    ),
    { numRuns: fuzzRuns },
  );
});

Deno.test("a cut, lengthened or reordered sealed blob is refused", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: fixture.blob.length - 1 }), async (length) => {
      const e = await refusal(fixture.blob.slice(0, length));
      assert.ok(e, `a blob cut to ${length} bytes was not refused`);
      assert.match(e.reason, /^(bad magic|truncated)/, e.message);
    }),
    { numRuns: fuzzRuns },
  );
  // Cut exactly between segments: what is left is whole segments, each authentic on its own.
  for (let index = 1; index < segmentCount; index++) {
    const e = await refusal(fixture.blob.slice(0, segmentAt(index)));
    assert.match(e?.reason ?? "", new RegExp(`^truncated: .* inside segment ${index} of ${segmentCount}`));
  }
  const longer = new Uint8Array(fixture.blob.length + 1);
  longer.set(fixture.blob);
  assert.match((await refusal(longer))?.reason ?? "", /^1 trailing bytes after the last segment/);

  const swapped = fixture.blob.slice();
  swapped.set(fixture.blob.subarray(segmentAt(1), segmentAt(2)), segmentAt(0));
  swapped.set(fixture.blob.subarray(segmentAt(0), segmentAt(1)), segmentAt(1));
  const e = await refusal(swapped);
  assert.equal(e?.offset, segmentAt(0));
  assert.match(e.reason, /^segment 0 of \d+ .*authentication failed/);

  // A segment of another blob sealed from the same snapshot under the same key does not fit this one.
  await writeSealedSnapshot(`${fixture.dir}/other.blob`, sampleInput(fixture.ram), fixture.key);
  const other = await Deno.readFile(`${fixture.dir}/other.blob`);
  const spliced = fixture.blob.slice();
  spliced.set(other.subarray(segmentAt(1), segmentAt(2)), segmentAt(1));
  assert.equal((await refusal(spliced))?.offset, segmentAt(1));
});

Deno.test("a sealed blob is refused under another key, and once it has expired", async () => {
  const stranger = await createKeyFile(`${fixture.dir}/stranger.key`);
  const e = await refusal(fixture.blob, stranger);
  assert.equal(e?.offset, 100);
  assert.match(e.reason, /^wrong key: the blob was sealed under key id [0-9a-f]{32}, .*stranger\.key is key id/);

  using plain = openSnapshot(`${fixture.dir}/plain.snap`);
  const expiresAt = new Date(Date.now() + 3600_000);
  const sealed = await sealSnapshot(plain, `${fixture.dir}/expiring.blob`, fixture.key, { expiresAt });
  assert.equal(sealed.expiresAt, expiresAt);
  const bytes = await Deno.readFile(`${fixture.dir}/expiring.blob`);
  assert.equal(await refusal(bytes, fixture.key, new Date(expiresAt.getTime() - 1)), undefined);
  const expired = await refusal(bytes, fixture.key, new Date(expiresAt.getTime() + 1));
  assert.equal(expired?.offset, 28);
  assert.match(expired.reason, new RegExp(`^expired at ${expiresAt.toISOString()}`));
  // Pushing the expiry back is an altered header.
  const extended = bytes.slice();
  extended[28 + 5]++;
  const forged = await refusal(extended, fixture.key, new Date(expiresAt.getTime() + 1));
  assert.match(forged?.reason ?? "", /^header authentication failed/);
  await assert.rejects(
    sealSnapshot(plain, `${fixture.dir}/past.blob`, fixture.key, { expiresAt: new Date(Date.now() - 1) }),
    /expiresAt: .* is not after now/,
  );
});

Deno.test("a key file is 32 random bytes only its owner can read, never replaced", async () => {
  const path = `${fixture.dir}/made.key`;
  const key = await createKeyFile(path);
  const info = await Deno.stat(path);
  assert.equal(info.mode! & 0o777, 0o600);
  assert.equal(info.size, 32);
  assert.deepEqual((await readKeyFile(path)).id, key.id);
  const before = await Deno.readFile(path);
  await assert.rejects(createKeyFile(path), /made\.key: key file: exists already, and is never replaced/);
  assert.deepEqual(await Deno.readFile(path), before);
  assert.deepEqual([...Deno.readDirSync(fixture.dir)].filter((e) => e.name.includes(".tmp-")), []);

  await Deno.chmod(path, 0o644);
  await assert.rejects(readKeyFile(path), /others can read or change it \(mode 644\): chmod 600 it/);
  await Deno.writeFile(`${fixture.dir}/short.key`, new Uint8Array(31), { mode: 0o600 });
  await assert.rejects(readKeyFile(`${fixture.dir}/short.key`), /must hold exactly 32 bytes .*it holds 31/);
});
