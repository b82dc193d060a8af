// Snapshots of running guests, restored in new processes: what the app
// prints across the snapshot must equal an uninterrupted run. The counter
// guest ends only once it reads a line, so every step here waits on what the
// guest or pvx said, never on a guessed time.

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { guestBundle, pvxCli, pvxStart } from "./support/guests.ts";
import { inTempDirs, snapshotPoints, whenServing, workersOutput } from "./support/snapshots.ts";
import { buildWindowsExe } from "./support/win32.ts";
import { type ControlApiError, NOT_SERVING, requestControlApi } from "../hv/control_api.ts";

const ticks = (n: number) => Array.from({ length: n }, (_, i) => `tick ${i}\n`).join("");
const counted = (n: number, line: string) => `${ticks(n)}read ${line.length} bytes\ndone\n`;

Deno.test("a snapshot restores on another machine and the app's output goes on without a gap or a repeat", () =>
  inTempDirs(async (dir, elsewhere) => {
    const bundle = `${dir}/counter.pvx`;
    await Deno.copyFile(await guestBundle("counter"), bundle);
    const api = `${dir}/api.sock`;
    // The snapshot lands in one of the sleeps or in the final console read: the output must not show which.
    const { seed, points: [tick] } = snapshotPoints(1, 0, 6);
    const at = `(snapshot after tick ${tick}: PVX_SNAPSHOT_SEED=${seed})`;
    const run = pvxStart(["run", "--api", api, bundle, "--", "6", "300"], { keepOpen: true });
    await run.printed(`tick ${tick}\n`);
    const snap = await whenServing(["snapshot", "--api", api, "-o", `${dir}/app.snap`, "--stop"]);
    assert.equal(snap.code, 0, snap.stderr);
    assert.match(snap.stdout, /saved .*app\.snap: full, 1 thread/);
    await run.endInput();
    const first = await run.result;
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /stopped after its snapshot was saved/);

    const inspected = await pvxCli(["inspect", `${dir}/app.snap`]);
    assert.match(inspected.stdout, /app\.snap: full snapshot of counter, format 1/);
    assert.match(inspected.stdout, /thread +8 on vCPU 0: (running|blocked in (Sleep|ReadFile))/);
    assert.match(inspected.stdout, /section state: \d+ bytes\n {2}section overlay: \d+ bytes/);

    // The other machine has the snapshot and the bundle, in a directory of its own, and nothing else.
    await Deno.rename(`${dir}/app.snap`, `${elsewhere}/app.snap`);
    await Deno.rename(bundle, `${elsewhere}/counter.pvx`);
    const restored = pvxStart(["restore", `${elsewhere}/app.snap`], "hello\n");
    const r = await restored.result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(first.stdout + r.stdout, counted(6, "hello\n"), at);

    // One snapshot restores any number of times, each an instance of its own.
    const again = await pvxStart(["restore", `${elsewhere}/app.snap`], "hi\n").result;
    assert.equal(again.code, 0, again.stderr);
    assert.equal(first.stdout + again.stdout, counted(6, "hi\n"));
  }));

Deno.test("a sealed snapshot restores on any host with its key exactly as the plain one; without it, or altered, not at all", () =>
  inTempDirs(async (dir, elsewhere) => {
    const bundle = `${dir}/counter.pvx`;
    await Deno.copyFile(await guestBundle("counter"), bundle);
    const key = `${dir}/seal.key`;
    const made = await pvxCli(["key", "create", "-o", key]);
    assert.equal(made.code, 0, made.stderr);
    const api = `${dir}/api.sock`;
    const { seed, points: [tick] } = snapshotPoints(1, 0, 4);
    const at = `(snapshot after tick ${tick}: PVX_SNAPSHOT_SEED=${seed})`;
    const run = pvxStart(["run", "--api", api, bundle, "--", "4", "300"], { keepOpen: true });
    await run.printed(`tick ${tick}\n`);
    // Paused first, so the plain snapshot and the sealed one are of the same instant.
    const paused = await whenServing(["pause", "--api", api]);
    assert.equal(paused.code, 0, paused.stderr);
    const plain = await pvxCli(["snapshot", "--api", api, "-o", `${dir}/app.snap`]);
    assert.equal(plain.code, 0, plain.stderr);
    const sealed = await pvxCli(
      ["snapshot", "--api", api, "-o", `${dir}/app.blob`, "--seal", "--key-file", key, "--expires", "1h", "--stop"],
    );
    assert.equal(sealed.code, 0, sealed.stderr);
    assert.match(sealed.stdout, /saved .*app\.blob: full, sealed until \d{4}-.*Z, 1 thread/);
    const noKey = await pvxCli(["snapshot", "--api", api, "-o", `${dir}/x.blob`, "--seal"]);
    assert.match(noKey.stderr, /--seal needs --key-file/);
    await run.endInput();
    const first = await run.result;
    assert.equal(first.code, 0, first.stderr);
    const inspected = await pvxCli(["inspect", `${dir}/app.blob`]);
    assert.match(inspected.stdout, /app\.blob: sealed snapshot, format 1, .*unverified/);
    const blob = await Deno.readFile(`${dir}/app.blob`);
    assert.ok(!new TextDecoder("latin1").decode(blob).includes('"boot":'), "the blob shows the state section");

    // The other host has the blob, the bundle and a copy of the key, and nothing else.
    await Deno.copyFile(`${dir}/app.blob`, `${elsewhere}/app.blob`);
    await Deno.copyFile(bundle, `${elsewhere}/counter.pvx`);
    await Deno.copyFile(key, `${elsewhere}/seal.key`);
    const fromBlob = await pvxStart(["restore", `${elsewhere}/app.blob`, "--key-file", `${elsewhere}/seal.key`], "hi\n")
      .result;
    assert.equal(fromBlob.code, 0, fromBlob.stderr);
    const fromPlain = await pvxStart(["restore", `${dir}/app.snap`], "hi\n").result;
    assert.equal(fromPlain.code, 0, fromPlain.stderr);
    assert.equal(fromBlob.stdout, fromPlain.stdout, at);
    assert.equal(first.stdout + fromBlob.stdout, counted(4, "hi\n"), at);

    const without = await pvxCli(["restore", `${elsewhere}/app.blob`]);
    assert.match(without.stderr, /app\.blob: offset 0: is a sealed snapshot: give --key-file/);
    const otherKey = `${elsewhere}/other.key`;
    assert.equal((await pvxCli(["key", "create", "-o", otherKey])).code, 0);
    const wrong = await pvxCli(["restore", `${elsewhere}/app.blob`, "--key-file", otherKey]);
    assert.match(wrong.stderr, /app\.blob: offset 100: wrong key: the blob was sealed under key id [0-9a-f]+/);
    blob[blob.length - 1] ^= 1;
    await Deno.writeFile(`${elsewhere}/app.blob`, blob);
    const altered = await pvxCli(["restore", `${elsewhere}/app.blob`, "--key-file", `${elsewhere}/seal.key`]);
    assert.notEqual(altered.code, 0);
    assert.match(altered.stderr, /app\.blob: offset \d+: segment \d+ of \d+ .*authentication failed/);
  }));

Deno.test("a snapshot of an app blocked on the console restores into that same read", () =>
  inTempDirs(async (dir) => {
    const bundle = `${dir}/counter.pvx`;
    await Deno.copyFile(await guestBundle("counter"), bundle);
    const api = `${dir}/api.sock`;
    const run = pvxStart(["run", "--api", api, bundle, "--", "1", "0"], { keepOpen: true });
    await run.printed("tick 0\n");
    const paused = await whenServing(["pause", "--api", api]);
    assert.equal(paused.code, 0, paused.stderr);
    const state = await pvxCli(["api", api, "GET", "/"]);
    assert.match(state.stdout, /^200\n.*"state":"paused"/s);
    const snap = await pvxCli(["snapshot", "--api", api, "-o", `${dir}/read.snap`, "--stop"]);
    assert.equal(snap.code, 0, snap.stderr);
    await run.endInput();
    assert.equal((await run.result).stdout, ticks(1));
    const r = await pvxStart(["restore", `${dir}/read.snap`], "typed\n").result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "read 6 bytes\ndone\n");
  }));

Deno.test("pause and resume change nothing the app can see but the clock; a bad request is named", () =>
  inTempDirs(async (dir) => {
    const api = `${dir}/api.sock`;
    const run = pvxStart(["run", "--api", api, await guestBundle("counter"), "--", "4", "200"], { keepOpen: true });
    await run.printed("tick 1\n");
    const notPaused = await whenServing(["resume", "--api", api]);
    assert.match(notPaused.stderr, /not paused/);
    const paused = await pvxCli(["pause", "--api", api]);
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal(paused.stdout, "counter: paused\n");
    const twice = await pvxCli(["pause", "--api", api]);
    assert.match(twice.stderr, /already paused/);
    const notJson = await pvxCli(["api", api, "POST", "/snapshot"]);
    assert.match(notJson.stdout, /^400\n.*the body is not JSON/s);
    const missing = await pvxStart(["api", api, "POST", "/snapshot"], '{"stop":true}').result;
    assert.match(missing.stdout, /^400\n.*"field":"path"/s);
    const wrongType = await pvxStart(["api", api, "POST", "/snapshot"], '{"path":"x.snap","stop":"yes"}').result;
    assert.match(wrongType.stdout, /^400\n.*"field":"stop"/s);
    const nowhere = await pvxStart(["api", api, "POST", "/snapshot"], '{"path":"/nonexistent/dir/x.snap"}').result;
    assert.match(nowhere.stdout, /^400\n.*cannot write the snapshot there.*"field":"path"/s);
    const unknown = await pvxCli(["api", api, "GET", "/nothing"]);
    assert.match(unknown.stdout, /^404\n/);
    const resumed = await pvxCli(["resume", "--api", api]);
    assert.equal(resumed.stdout, "counter: running\n");
    await run.type("go\n");
    await run.endInput();
    const r = await run.result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, counted(4, "go\n"));
  }));

Deno.test("a damaged snapshot is refused with the file, the offset and the reason", () =>
  inTempDirs(async (dir) => {
    await Deno.writeFile(`${dir}/bad.snap`, new TextEncoder().encode("not a snapshot at all"));
    const r = await pvxCli(["restore", `${dir}/bad.snap`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bad\.snap: offset \d+: /);
  }));

Deno.test("pausing and resuming a busy multi-threaded app changes nothing in its output", () =>
  inTempDirs(async (dir) => {
    const api = `${dir}/api.sock`;
    const rounds = 40;
    const { seed, points } = snapshotPoints(3, 1, rounds);
    const at = `(paused at rounds ${points.join(", ")}: PVX_SNAPSHOT_SEED=${seed})`;
    const run = pvxStart(["run", "--api", api, await guestBundle("workers"), "--", `${rounds}`, "20"], {
      keepOpen: true,
    });
    for (const round of points) {
      await run.printed(`round ${round}\n`);
      const paused = await whenServing(["pause", "--api", api]);
      assert.equal(paused.code, 0, `${at} ${paused.stderr}`);
      const resumed = await pvxCli(["resume", "--api", api]);
      assert.equal(resumed.code, 0, `${at} ${resumed.stderr}`);
    }
    await run.endInput();
    const r = await run.result;
    assert.equal(r.code, 0, `${at} ${r.stderr}`);
    assert.equal(r.stdout, workersOutput(rounds, ""), at);
  }));

/**
 * Runs guest `name` until it prints `at`, snapshots it with --stop, moves its bundle to `elsewhere` and restores it
 * there with `input` on its console: the snapshot's summary and what each run printed.
 */
async function snapshotAndRestoreElsewhere(
  [dir, elsewhere]: [string, string],
  name: string,
  args: string[],
  at: string,
  input: string,
) {
  const bundle = `${dir}/${name}.pvx`;
  await Deno.copyFile(await guestBundle(name), bundle);
  const api = `${dir}/api.sock`;
  const run = pvxStart(["run", "--api", api, bundle, "--", ...args], { keepOpen: true });
  await run.printed(at);
  const snap = await whenServing(["snapshot", "--api", api, "-o", `${elsewhere}/app.snap`, "--stop"]);
  assert.equal(snap.code, 0, snap.stderr);
  await run.endInput();
  const first = await run.result;
  assert.equal(first.code, 0, first.stderr);
  await Deno.rename(bundle, `${elsewhere}/${name}.pvx`);
  const restored = await pvxStart(["restore", `${elsewhere}/app.snap`], input).result;
  assert.equal(restored.code, 0, restored.stderr);
  return { summary: snap.stdout, before: first.stdout, after: restored.stdout };
}

Deno.test("a multi-threaded app is snapshotted with threads blocked on events, a mutex, a sleep and the console", () =>
  inTempDirs(async (...dirs) => {
    const r = await snapshotAndRestoreElsewhere(dirs, "workers", ["5", "300"], "round 2\n", "go\n");
    assert.match(r.summary, /: full, 4 thread\(s\)/);
    assert.equal(r.before + r.after, workersOutput(5, "go\n"));
  }));

Deno.test("a suspended thread stays suspended through a snapshot and a restore elsewhere, until it is resumed", () =>
  inTempDirs(async (...dirs) => {
    const r = await snapshotAndRestoreElsewhere(dirs, "suspended", [], "suspended\n", "go\n");
    assert.match(r.summary, /: full, 2 thread\(s\)/);
    assert.equal(r.before, "suspended\n");
    assert.equal(
      r.after,
      "read a line\nthe worker is still suspended\nResumeThread: 1\nworker ran\nworker exited 7\n",
    );
  }));

Deno.test("restore --paused answers from its socket's first moment, paused with every thread, and runs on resume", () =>
  inTempDirs(async (dir, elsewhere) => {
    const bundle = `${dir}/workers.pvx`;
    await Deno.copyFile(await guestBundle("workers"), bundle);
    const api = `${dir}/api.sock`;
    const run = pvxStart(["run", "--api", api, bundle, "--", "4", "100"], { keepOpen: true });
    await run.printed("round 1\n");
    const snap = await whenServing(["snapshot", "--api", api, "-o", `${elsewhere}/app.snap`, "--stop"]);
    assert.equal(snap.code, 0, snap.stderr);
    await run.endInput();
    const first = await run.result;

    // Its four threads park in Workers that are still loading when the socket appears: ask at once, and again.
    const restoredApi = `${elsewhere}/api.sock`;
    const changes = Deno.watchFs(elsewhere);
    const restored = pvxStart(["restore", `${elsewhere}/app.snap`, "--paused", "--api", restoredApi], {
      keepOpen: true,
    });
    const ask = () =>
      requestControlApi(restoredApi, "GET", "/").then(
        (a) => `${a.status} ${a.body}`,
        (e: ControlApiError) => e.message,
      );
    // The first change is the socket (under the nested accelerator, the relay's, before the guest's API serves).
    for await (const _ of changes) break;
    changes.close();
    let answer = await ask();
    while (answer.includes(NOT_SERVING)) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      answer = await ask();
    }
    const answers = [answer, await ask(), await ask()];
    for (const answer of answers) {
      assert.match(
        answer,
        /^200 \{"app":"workers","state":"paused",.*"threads":\[(\{"threadId":\d+,"cpu":\d+.*\}.*){4}\]/,
      );
    }
    const resumed = await pvxCli(["resume", "--api", restoredApi]);
    assert.equal(resumed.code, 0, resumed.stderr);
    await restored.type("go\n");
    await restored.endInput();
    const r = await restored.result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(first.stdout + r.stdout, workersOutput(4, "go\n"));
  }));

Deno.test("a template made at the app's first console read starts any number of fresh instances", () =>
  inTempDirs(async (dir) => {
    const tpl = `${dir}/counter.tpl`;
    const made = await pvxCli([
      "template",
      "create",
      await guestBundle("counter"),
      "-o",
      tpl,
      "--ready",
      "first-input",
      "--",
      "2",
      "0",
    ]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /^tick 0\ntick 1\ntemplate .*counter\.tpl: 1 thread/);
    for (const line of ["one\n", "second\n"]) {
      const r = await pvxStart(["run", "--from", tpl], line).result;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `read ${line.length} bytes\ndone\n`);
    }
  }));

Deno.test("a template made at the app's PvxReady call starts there", () =>
  inTempDirs(async (dir) => {
    const tpl = `${dir}/ready.tpl`;
    const bundle = await guestBundle("counter");
    const made = await pvxCli(["template", "create", bundle, "-o", tpl, "--ready", "call", "--", "1", "0"]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /^tick 0\ntemplate .*ready\.tpl: 1 thread/);
    const inspected = await pvxCli(["inspect", tpl]);
    assert.match(inspected.stdout, /thread +8 on vCPU 0: blocked in PvxReady/);
    const r = await pvxStart(["run", "--from", tpl], "ready\n").result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "read 6 bytes\ndone\n");
  }));

Deno.test("a template made after a time carries on from wherever the app was", () =>
  inTempDirs(async (dir) => {
    const tpl = `${dir}/later.tpl`;
    const made = await pvxCli([
      "template",
      "create",
      await guestBundle("counter"),
      "-o",
      tpl,
      "--ready",
      "ms:300",
      "--",
      "4",
      "200",
    ]);
    assert.equal(made.code, 0, made.stderr);
    const before = made.stdout.replace(/template .*\n$/, "");
    const r = await pvxStart(["run", "--from", tpl], "x\n").result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(before + r.stdout, counted(4, "x\n"));
  }));

Deno.test("a multi-threaded Windows exe is snapshotted and restored like an ELF guest", () =>
  inTempDirs(async (dir) => {
    const source = new URL("./guests/workers.c", import.meta.url).pathname;
    const exe = await buildWindowsExe("workers", dir, source, ["-DWINDOWS_EXE", `-I${dirname(source)}`]);
    const api = `${dir}/api.sock`;
    const env = { PVX_CACHE_DIR: `${dir}/bundles` };
    const run = pvxStart(["run", "--api", api, exe], { keepOpen: true }, env);
    await run.printed("round 1\n");
    const snap = await whenServing(["snapshot", "--api", api, "-o", `${dir}/exe.snap`, "--stop"]);
    assert.equal(snap.code, 0, snap.stderr);
    assert.match(snap.stdout, /: full, 4 thread\(s\)/);
    await run.endInput();
    const first = await run.result;
    assert.equal(first.code, 0, first.stderr);
    const r = await pvxStart(["restore", `${dir}/exe.snap`], "windows\n", env).result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(first.stdout + r.stdout, workersOutput(5, "windows\n"));
  }));
