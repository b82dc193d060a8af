// Diff snapshots: a chain S0 <- D1 <- D2 must hold exactly the memory a full
// snapshot taken at D2's moment holds (so nothing the guest or the host wrote
// was missed by the dirty log), restore as that full snapshot would, and merge
// into one that does.

import assert from "node:assert/strict";
import { guestBundle, pvxCli, pvxStart } from "./support/guests.ts";
import { inTempDirs, snapshotPoints, whenServing, workersOutput } from "./support/snapshots.ts";
import { openChain } from "../hv/snapshot.ts";
import { mapSnapshotChain } from "../hv/snapshot_file.ts";
import { unmapGuestRam } from "../hv/memory.ts";

/** The first page where the guest RAM the two snapshot chains restore differs, or -1. */
function firstDifferentPage(a: string, b: string): number {
  const chains = [openChain(a), openChain(b)];
  const rams = chains.map(mapSnapshotChain);
  try {
    const [x, y] = rams.map((ram) => new Uint32Array(ram.bytes.buffer, ram.bytes.byteOffset, ram.size / 4));
    assert.equal(x.length, y.length, "guest RAM sizes differ");
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return Math.floor(i / 1024);
    return -1;
  } finally {
    rams.forEach(unmapGuestRam);
    chains.flat().forEach((s) => s.close());
  }
}

Deno.test("a chain of diff snapshots holds what a full snapshot holds, restores elsewhere and merges into one", () =>
  inTempDirs(async (dir, elsewhere) => {
    const bundle = `${dir}/workers.pvx`;
    await Deno.copyFile(await guestBundle("workers"), bundle);
    const api = `${dir}/api.sock`;
    const { seed, points: [s0, d1, d2] } = snapshotPoints(3, 0, 7);
    const at = `(snapshots at rounds ${s0}, ${d1}, ${d2}: PVX_SNAPSHOT_SEED=${seed})`;
    const snapshot = async (name: string, ...flags: string[]) => {
      const r = await whenServing(["snapshot", "--api", api, "-o", `${dir}/${name}`, ...flags]);
      assert.equal(r.code, 0, `${at} ${r.stderr}`);
      return r.stdout;
    };
    const run = pvxStart(["run", "--api", api, bundle, "--", "7", "300"], { keepOpen: true });
    await run.printed(`round ${s0}\n`);
    assert.match(await snapshot("s0.snap"), /: full, 4 thread/);
    await run.printed(`round ${d1}\n`);
    assert.match(await snapshot("d1.snap", "--diff-from", `${dir}/s0.snap`), /: diff over [0-9a-f]{64}, 4 thread/);
    // Changes are counted from the last snapshot, so a diff from an older one is refused.
    const stale = await pvxCli(["snapshot", "--api", api, "-o", `${dir}/x.snap`, "--diff-from", `${dir}/s0.snap`]);
    assert.notEqual(stale.code, 0);
    assert.match(stale.stderr, /s0\.snap is snapshot [0-9a-f]+, but the instance's changes are counted from/);
    await run.printed(`round ${d2}\n`);
    assert.equal((await pvxCli(["pause", "--api", api])).code, 0);
    // Both at one moment: the instance stays paused between them.
    await snapshot("d2.snap", "--diff-from", `${dir}/d1.snap`);
    await snapshot("full.snap", "--stop");
    await run.endInput();
    const first = await run.result;
    assert.equal(first.code, 0, first.stderr);

    assert.equal(firstDifferentPage(`${dir}/d2.snap`, `${dir}/full.snap`), -1, `a page the dirty log missed ${at}`);
    const inspect = async (path: string) => (await pvxCli(["inspect", path])).stdout;
    const pages = async (path: string) => Number(/(\d+) page\(s\) stored/.exec(await inspect(path))![1]);
    assert.ok(await pages(`${dir}/d2.snap`) < await pages(`${dir}/full.snap`), "a diff stores fewer pages");
    assert.match(await inspect(`${dir}/d2.snap`), /chain +\S*d2\.snap <- \S*d1\.snap <- \S*s0\.snap/);

    // Another machine gets the chain and the bundle, in a directory of their own.
    for (const name of ["s0.snap", "d1.snap", "d2.snap", "workers.pvx"]) {
      await Deno.rename(`${dir}/${name}`, `${elsewhere}/${name}`);
    }
    const restored = await pvxStart(["restore", `${elsewhere}/d2.snap`], "go\n").result;
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal(first.stdout + restored.stdout, workersOutput(7, "go\n"), at);

    const merged = await pvxCli(["snapshot", "merge", `${elsewhere}/d2.snap`, "-o", `${elsewhere}/merged.snap`]);
    assert.equal(merged.code, 0, merged.stderr);
    assert.match(merged.stdout, /merged 3 snapshot\(s\) into/);
    assert.match(await inspect(`${elsewhere}/merged.snap`), /: full snapshot of workers/);
    assert.equal(firstDifferentPage(`${elsewhere}/merged.snap`, `${dir}/full.snap`), -1, "a page the merge lost");
    // The merged snapshot needs no chain.
    await Deno.remove(`${elsewhere}/d1.snap`);
    const fromMerged = await pvxStart(["restore", `${elsewhere}/merged.snap`], "go\n").result;
    assert.equal(fromMerged.code, 0, fromMerged.stderr);
    assert.equal(first.stdout + fromMerged.stdout, workersOutput(7, "go\n"));

    // A diff whose parent is gone, or replaced by another snapshot, is refused, naming the parent.
    await Deno.rename(`${elsewhere}/merged.snap`, `${elsewhere}/d1.snap`);
    const orphan = await pvxCli(["restore", `${elsewhere}/d2.snap`]);
    assert.notEqual(orphan.code, 0);
    assert.match(
      orphan.stderr,
      /d2\.snap: offset 0: manifest\.parent: its parent snapshot [0-9a-f]{64} .*is not there/,
    );
  }));
