// Content-addressed chunks (hv/chunks.ts) and the daemon's chunk routes
// (hv/daemon/chunks_api.ts) on real snapshot files, over real HTTP on
// 127.0.0.1 with the daemon's token. No guest is needed.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { CHUNK_BYTES, chunkFile, ChunkStore, lacking, type Recipe } from "../hv/chunks.ts";
import { pushChunks } from "../hv/daemon/chunks_api.ts";
import { daemonApi } from "../hv/daemon/api.ts";
import { Instances } from "../hv/daemon/instances.ts";
import { Metrics } from "../hv/daemon/metrics.ts";
import { Records } from "../hv/daemon/records.ts";
import { StoredSnapshots } from "../hv/daemon/snapshots.ts";
import { checkBundle, guestMemoryMiB } from "../tools/serve_cli.ts";
import { UploadedBundles } from "../hv/daemon/bundles.ts";
import { writeSnapshot } from "../hv/snapshot_writer.ts";
import { openSnapshot } from "../hv/snapshot_file.ts";
import { PAGE } from "../abi/memory_map.ts";

const PAGES = 1024; // 4 MiB of guest RAM
const PRESENT = Array.from({ length: 300 }, (_, i) => (i * 7) % PAGES);

function ram(changed: number[] = []): Uint8Array {
  const bytes = new Uint8Array(PAGES * PAGE);
  for (const page of PRESENT) bytes.fill((page % 250) + 1, page * PAGE, (page + 1) * PAGE);
  for (const page of changed) bytes[page * PAGE + 17] ^= 0xff;
  return bytes;
}

async function snapshotOf(path: string, bytes: Uint8Array, note: string) {
  await writeSnapshot(path, {
    kind: "full",
    parent: null,
    bundleSha256: createHash("sha256").update("bundle").digest("hex"),
    meta: { note },
    memory: { bytes },
    sections: { state: new TextEncoder().encode(JSON.stringify({ note })) },
  });
}

async function inTempDir(body: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "pvx-chunks-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Cuts `path` into chunks, keeping them in `store`. */
const cutInto = (path: string, store: ChunkStore) => chunkFile(path, (ref, bytes) => store.put(ref.id, bytes));
const ids = (recipe: Recipe) => recipe.chunks.map((c) => c.id);
const unique = (recipe: Recipe) => new Map(recipe.chunks.map((c) => [c.id, c.length]));

Deno.test("a snapshot cut into chunks is put back together byte for byte, memory chunks on guest addresses", () =>
  inTempDir(async (dir) => {
    await snapshotOf(`${dir}/a.snap`, ram(), "first");
    const store = new ChunkStore(`${dir}/store`);
    const recipe = await cutInto(`${dir}/a.snap`, store);
    using snapshot = openSnapshot(`${dir}/a.snap`);
    const memoryAt = snapshot.manifest.memory.fileOffset;
    assert.equal(recipe.length, memoryAt + PAGES * PAGE);
    for (const c of recipe.chunks.filter((c) => c.offset >= memoryAt)) {
      assert.equal((c.offset - memoryAt) % CHUNK_BYTES, 0, `chunk at ${c.offset}`);
    }
    await store.assemble(recipe, `${dir}/b.snap`);
    assert.deepEqual(await Deno.readFile(`${dir}/b.snap`), await Deno.readFile(`${dir}/a.snap`));
    using copy = openSnapshot(`${dir}/b.snap`);
    copy.verifyMemory();
    assert.equal(copy.id, snapshot.id);
    assert.deepEqual([...Deno.readDirSync(`${dir}/store`)].filter((e) => e.name.includes(".tmp-")), []);
  }));

Deno.test("the chunk store refuses bytes that are not their id, and a damaged chunk on disk", () =>
  inTempDir(async (dir) => {
    const store = new ChunkStore(`${dir}/store`);
    const bytes = new TextEncoder().encode("some chunk");
    const id = createHash("sha256").update(bytes).digest("hex");
    await assert.rejects(store.put("0".repeat(64), bytes), /chunk 0{64}: its bytes hash to [0-9a-f]{64}/);
    await assert.rejects(store.put("../../etc/passwd", bytes), /is not a chunk id/);
    await store.put(id, bytes);
    assert.deepEqual(await store.get(id), bytes);
    assert.deepEqual(await lacking(store, [id, "1".repeat(64), id, "1".repeat(64)]), ["1".repeat(64)]);
    await Deno.writeFile(`${dir}/store/${id.slice(0, 2)}/${id}`, new TextEncoder().encode("some chunK"));
    await assert.rejects(store.get(id), new RegExp(`store/${id.slice(0, 2)}/${id}: chunk ${id} is damaged`));
  }));

Deno.test("over HTTP with the daemon's token, a second transfer of a snapshot sends only what the target lacks", () =>
  inTempDir(async (dir) => {
    const token = crypto.randomUUID();
    const target = new ChunkStore(`${dir}/target`);
    const app = daemonApi(
      new Instances(new Records(`${dir}/state`), [], new Metrics(), { guestMemoryMiB }),
      new StoredSnapshots(`${dir}/state`),
      await UploadedBundles.open(`${dir}/state`, checkBundle),
      new Metrics(),
      {
        token,
        chunks: target,
      },
    );
    const listening = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: listening.resolve }, app.fetch);
    try {
      const { port } = await listening.promise;
      const url = `http://127.0.0.1:${port}`;
      const source = new ChunkStore(`${dir}/source`);

      const noToken = await fetch(`${url}/chunks/missing`, { method: "POST", body: '{"chunks":[]}' });
      assert.equal(noToken.status, 401);
      await noToken.body?.cancel();
      const badId = await fetch(`${url}/chunks/missing`, {
        method: "POST",
        body: JSON.stringify({ chunks: ["a".repeat(64), "nope"] }),
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(badId.status, 400);
      assert.equal((await badId.json()).error.field, "chunks[1]");

      // The first transfer sends every distinct non-zero chunk once; the second of the same snapshot nothing.
      await snapshotOf(`${dir}/s1.snap`, ram(), "first");
      const s1 = await cutInto(`${dir}/s1.snap`, source);
      const first = await pushChunks(ids(s1), source, { url, token });
      const s1Bytes = [...unique(s1).values()].reduce((a, b) => a + b, 0);
      assert.deepEqual(first, { chunks: unique(s1).size, sent: unique(s1).size, bytes: s1Bytes });
      const again = await pushChunks(ids(s1), source, { url, token });
      assert.deepEqual(again, { chunks: unique(s1).size, sent: 0, bytes: 0 });
      await target.assemble(s1, `${dir}/s1.copy`);
      assert.deepEqual(await Deno.readFile(`${dir}/s1.copy`), await Deno.readFile(`${dir}/s1.snap`));

      // A later snapshot with three pages changed, in two chunks: the front (new manifest and state) and those go.
      const changed = [PRESENT[0], PRESENT[1], PRESENT[200]];
      await snapshotOf(`${dir}/s2.snap`, ram(changed), "second");
      const s2 = await cutInto(`${dir}/s2.snap`, source);
      using s2File = openSnapshot(`${dir}/s2.snap`);
      const memoryAt = s2File.manifest.memory.fileOffset;
      const dirtyChunks = new Set(changed.map((p) => Math.floor((p * PAGE) / CHUNK_BYTES))).size;
      const frontChunks = Math.ceil(memoryAt / CHUNK_BYTES);
      const second = await pushChunks(ids(s2), source, { url, token });
      assert.equal(second.sent, frontChunks + dirtyChunks);
      assert.equal(second.bytes, memoryAt + dirtyChunks * CHUNK_BYTES);
      console.log(
        `chunks: first transfer ${first.bytes} bytes in ${first.sent} chunks, the same again ${again.bytes}, ` +
          `a snapshot with ${changed.length} pages changed ${second.bytes} (of ${s2.length} file bytes)`,
      );
      await target.assemble(s2, `${dir}/s2.copy`);
      assert.deepEqual(await Deno.readFile(`${dir}/s2.copy`), await Deno.readFile(`${dir}/s2.snap`));

      // A chunk corrupted in flight is refused and not stored.
      const [victim] = await lacking(target, ["2".repeat(64)]);
      const corrupt = await fetch(`${url}/chunks/${victim}`, {
        method: "PUT",
        body: new Uint8Array([1, 2, 3]),
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(corrupt.status, 400);
      assert.match((await corrupt.json()).error.message, /its bytes hash to/);
      assert.equal(await target.has(victim), false);
    } finally {
      await server.shutdown();
    }
  }));
