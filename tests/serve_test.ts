// `pvx serve` as an operator uses it: a real daemon on a temporary Unix socket
// (and one on TCP with a token), real instances in processes of their own, and
// the Docker-shaped clients. Every step waits on what an instance printed or on
// an answer, never on a guessed time.

import assert from "node:assert/strict";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { guestBundle, pvxCli, pvxStart } from "./support/guests.ts";
import { api, create, type Daemon, logs, printed } from "./support/daemon.ts";
import { requestControlApi } from "../hv/control_api.ts";
import { daemonApi } from "../hv/daemon/api.ts";
import { Instances } from "../hv/daemon/instances.ts";
import { Metrics } from "../hv/daemon/metrics.ts";
import {
  addTotals,
  HYPERCALL_BUCKETS,
  HYPERCALL_STATS_BYTES,
  HypercallStats,
  noHypercalls,
} from "../hv/hypercall_stats.ts";
import { callsByName } from "../abi/calls.ts";
import { Records } from "../hv/daemon/records.ts";
import { StoredSnapshots } from "../hv/daemon/snapshots.ts";
import { checkBundle, guestMemoryMiB } from "../tools/serve_cli.ts";
import { UploadedBundles } from "../hv/daemon/bundles.ts";
import { openApiDocument } from "../hv/daemon/openapi.ts";
import { ChunkStore } from "../hv/chunks.ts";
import { fuzzRuns } from "./support/fuzz.ts";
import { NESTED_SOCKET_ENV } from "../tools/accel.ts";
import { warmChildren } from "../tools/bench/daemons.ts";

const ticks = (n: number) => Array.from({ length: n }, (_, i) => `tick ${i}\n`).join("");
const counted = (n: number, line: string) => `${ticks(n)}read ${line.length} bytes\ndone\n`;

/** A `pvx serve` on a socket in `dir`, once it listens. */
async function serve(dir: string, options: string[] = []): Promise<Daemon> {
  const socket = `${dir}/pvx.sock`;
  const stateDir = `${dir}/state`;
  const process = pvxStart(["serve", "--socket", socket, "--state-dir", stateDir, ...options]);
  await process.printed(`listening on ${socket}`);
  return { socket, stateDir, process };
}

async function stop(daemon: Daemon) {
  daemon.process.kill("SIGTERM");
  const r = await daemon.process.result;
  assert.equal(r.code, 0, r.stderr);
}

async function withDaemon(body: (daemon: Daemon, dir: string) => Promise<void>, options: string[] = []) {
  const dir = await Deno.makeTempDir({ prefix: "pvx-serve-" });
  const daemon = await serve(dir, options);
  try {
    await body(daemon, dir);
  } finally {
    await stop(daemon);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("pvx serve: an instance is created, listed, read live and by a late reader, fed stdin and waited for", () =>
  withDaemon(async (daemon) => {
    const id = await create(daemon, { bundle: await guestBundle("counter"), args: ["3", "100"] });
    assert.equal((await printed(daemon, id, "tick 2\n")).stdout, ticks(3));
    // It now waits for a console line; a reader that comes late is given what it missed.
    const late = await logs(daemon, id, "");
    assert.equal(late.stdout, ticks(3));
    assert.equal(late.exit, undefined);
    assert.equal((await logs(daemon, id, "tail=0")).stdout, "");
    const got = await api(daemon, "GET", `/instances/${id}`);
    assert.equal(got.status, 200);
    assert.ok(["starting", "running"].includes(got.json.state), got.json.state);
    assert.ok(Number.isInteger(got.json.pid) && got.json.uptimeSeconds >= 0, JSON.stringify(got.json));

    const follower = logs(daemon, id, "follow=true");
    const fed = await api(daemon, "POST", `/instances/${id}/stdin?close=true`, "hello\n");
    assert.deepEqual(fed, { status: 200, json: { written: 6, closed: true } });
    const waited = await api(daemon, "POST", `/instances/${id}/wait`);
    assert.equal(waited.json.state, "exited");
    assert.deepEqual([waited.json.exit.code, waited.json.exit.kind], [0, "exit"]);
    const followed = await follower;
    assert.equal(followed.stdout, counted(3, "hello\n"));
    assert.equal(followed.exit?.exit.code, 0);
    assert.equal((await api(daemon, "POST", `/instances/${id}/stdin`, "more")).status, 409);

    // The clients, the Docker way.
    const host = ["--host", daemon.socket];
    const hello = await pvxCli(["start", ...host, await guestBundle("hello"), "--", "x", "y"]);
    assert.equal(hello.code, 0, hello.stderr);
    const helloId = hello.stdout.trim();
    const helloWait = await pvxCli(["wait", ...host, helloId]);
    assert.equal(helloWait.code, 3, helloWait.stderr); // argc: the program's name, x and y
    assert.equal(helloWait.stdout, `${helloId}: exit 3\n`);
    const helloLogs = await pvxCli(["logs", ...host, helloId]);
    assert.match(helloLogs.stdout, /^argc=3\nargv\[0\]=.*\nargv\[1\]=x\nargv\[2\]=y\n/);
    const ps = await pvxCli(["ps", ...host]);
    assert.equal(ps.code, 0, ps.stderr);
    assert.match(ps.stdout, /^ID +STATE +UPTIME +EXIT +FROM\n/);
    assert.match(ps.stdout, new RegExp(`\n${id} +exited +[\\d.]+s +exit 0 +bundle .*counter\\.pvx\n`));
    const listed = JSON.parse((await pvxCli(["ps", ...host, "--json"])).stdout);
    assert.deepEqual(listed.map((d: { id: string }) => d.id).sort(), [id, helloId].sort());
    assert.equal((await api(daemon, "GET", "/instances")).json.length, 2);

    const metrics = (await requestControlApi(daemon.socket, "GET", "/metrics")).body;
    assert.match(metrics, /^pvx_instances\{state="exited"\} 2$/m);
    assert.match(metrics, /^pvx_instance_exits_total\{kind="exit"\} 2$/m);
    // What the two processes counted and wrote as they ended: counter slept 3 times, 100 ms each; hello never.
    assert.match(metrics, /^pvx_hypercalls_total\{call="Sleep"\} 3$/m);
    const calls = [...metrics.matchAll(/^pvx_hypercalls_total\{call="\w+"\} (\d+)$/gm)].reduce((n, m) => n + +m[1], 0);
    assert.match(metrics, new RegExp(`^pvx_hypercall_seconds_count ${calls}$`, "m"));
    const fast = Number(/^pvx_hypercall_seconds_bucket\{le="0.01"\} (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(fast <= calls - 3, `${fast} of ${calls} calls took 10 ms or less, the 3 sleeps among them`);
    assert.doesNotMatch(metrics, /^pvx_guest_pages_resident\{/m); // none is live

    // Attached, this terminal is its console: what it printed (all of it, with --tail), and typed input.
    const other = await create(daemon, { bundle: await guestBundle("counter"), args: ["2", "50"] });
    const attached = pvxStart(["attach", ...host, "--tail", "64", other], { keepOpen: true });
    await attached.printed("tick 1\n");
    await attached.type("typed\n");
    await attached.endInput();
    const ended = await attached.result;
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal(ended.stdout, counted(2, "typed\n"));
    const stats = await pvxCli(["stats", ...host, other]);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /^guest pages resident: 0 /m);
    assert.match(stats.stdout, /^Sleep +2$/m);
  }));

Deno.test("pvx serve: pause, resume and a snapshot go through the daemon, and the snapshot restores as a new instance", () =>
  withDaemon(async (daemon, dir) => {
    const host = ["--host", daemon.socket];
    const id = await create(daemon, { bundle: await guestBundle("counter"), args: ["6", "200"] });
    await printed(daemon, id, "tick 1\n");
    // A pause waits for the instance's API to serve, then parks it.
    const paused = await pvxCli(["pause", ...host, id]);
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal(paused.stdout, `${id}: paused\n`);
    const pausedState = (await api(daemon, "GET", `/instances/${id}`)).json;
    assert.equal(pausedState.state, "paused");
    assert.equal(pausedState.threads.length, 1);
    assert.equal(pausedState.threads[0].threadId, 8);
    // It served, so its create was timed.
    const metrics = (await requestControlApi(daemon.socket, "GET", "/metrics")).body;
    assert.match(metrics, /^pvx_instance_create_seconds_count\{from="bundle"\} 1$/m);
    assert.match(metrics, /^pvx_instance_create_seconds_bucket\{from="bundle",le="\+Inf"\} 1$/m);
    assert.match(metrics, /^pvx_instances\{state="paused"\} 1$/m);
    // Asked of the paused instance's own process: its guest has touched its kernel, stack and image at least.
    const stats = (await api(daemon, "GET", `/instances/${id}/stats`)).json;
    const { residentPages } = stats;
    assert.ok(residentPages >= 4 && residentPages <= (pausedState.memoryMiB * 1024) / 4, JSON.stringify(stats));
    assert.ok(stats.hypercalls.calls.Sleep >= 1, JSON.stringify(stats)); // "tick 1" is printed after one
    const twice = await api(daemon, "POST", `/instances/${id}/pause`);
    assert.equal(twice.status, 409);
    assert.match(twice.json.error.message, /already paused/);
    const resumed = await pvxCli(["resume", ...host, id]);
    assert.equal(resumed.stdout, `${id}: running\n`);
    assert.equal((await api(daemon, "POST", `/instances/${id}/resume`)).status, 409);

    const snap = await pvxCli(["snapshot", ...host, id, "-o", `${dir}/app.snap`, "--stop"]);
    assert.equal(snap.code, 0, snap.stderr);
    assert.match(snap.stdout, /^saved .*app\.snap: full, 1 thread/);
    const first = await api(daemon, "POST", `/instances/${id}/wait`);
    assert.deepEqual(first.json.exit.kind, "snapshotted");
    assert.equal((await api(daemon, "POST", `/instances/${id}/pause`)).status, 409);
    const before = (await logs(daemon, id, "")).stdout;

    const restored = await create(daemon, { snapshot: `${dir}/app.snap` });
    // Blocked on its console until it is fed, it serves: its create is timed, as a restore.
    while ((await api(daemon, "GET", `/instances/${restored}`)).json.state === "starting") {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const restores = (await requestControlApi(daemon.socket, "GET", "/metrics")).body;
    assert.match(restores, /^pvx_instance_create_seconds_count\{from="snapshot"\} 1$/m);
    await api(daemon, "POST", `/instances/${restored}/stdin?close=true`, "hi\n");
    const second = await api(daemon, "POST", `/instances/${restored}/wait`);
    assert.deepEqual([second.json.exit.code, second.json.exit.kind], [0, "exit"]);
    assert.deepEqual(second.json.from, { snapshot: `${dir}/app.snap` });
    assert.equal(before + (await logs(daemon, restored, "")).stdout, counted(6, "hi\n"));
  }));

Deno.test("pvx serve --key-file: a snapshot sealed under the daemon's key restores as a new instance, unaltered only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-serve-" });
  const made = await pvxCli(["key", "create", "-o", `${dir}/daemon.key`]);
  assert.equal(made.code, 0, made.stderr);
  const daemon = await serve(dir, ["--key-file", `${dir}/daemon.key`]);
  try {
    const host = ["--host", daemon.socket];
    const id = await create(daemon, { bundle: await guestBundle("counter"), args: ["3", "200"] });
    await printed(daemon, id, "tick 1\n");
    const snap = await pvxCli([
      "snapshot",
      ...host,
      id,
      "-o",
      `${dir}/app.blob`,
      "--seal",
      "--expires",
      "1h",
      "--stop",
    ]);
    assert.equal(snap.code, 0, snap.stderr);
    assert.match(snap.stdout, /^saved .*app\.blob: full, sealed until \d{4}-\d\d-\d\dT.*Z, 1 thread/);
    assert.equal((await api(daemon, "POST", `/instances/${id}/wait`)).json.exit.kind, "snapshotted");
    const before = (await logs(daemon, id, "")).stdout;

    const restored = await create(daemon, { snapshot: `${dir}/app.blob` });
    await api(daemon, "POST", `/instances/${restored}/stdin?close=true`, "hi\n");
    const second = await api(daemon, "POST", `/instances/${restored}/wait`);
    assert.deepEqual([second.json.exit.code, second.json.exit.kind], [0, "exit"]);
    assert.equal(before + (await logs(daemon, restored, "")).stdout, counted(3, "hi\n"));

    // A client that keeps the blob can change it, but what it hands back is refused.
    const blob = await Deno.readFile(`${dir}/app.blob`);
    blob[blob.length >> 1] ^= 0x20;
    await Deno.writeFile(`${dir}/altered.blob`, blob);
    const altered = await create(daemon, { snapshot: `${dir}/altered.blob` });
    const refused = await api(daemon, "POST", `/instances/${altered}/wait`);
    assert.equal(refused.json.exit.kind, "error");
    assert.match(
      (await logs(daemon, altered, "")).stderr,
      /altered\.blob: offset \d+: segment \d+ of \d+ .*authentication failed/,
    );
  } finally {
    await stop(daemon);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pvx serve: instances started from one template each get their own console", () =>
  withDaemon(async (daemon, dir) => {
    const host = ["--host", daemon.socket];
    const tpl = `${dir}/counter.tpl`;
    const made = await pvxCli([
      "template",
      "create",
      await guestBundle("counter"),
      "-o",
      tpl,
      "--ready",
      "call",
      "--",
      "1",
      "0",
    ]);
    assert.equal(made.code, 0, made.stderr);
    const ids = [];
    for (const _ of [0, 1]) {
      const started = await pvxCli(["start", ...host, "--from", tpl, "--json"]);
      assert.equal(started.code, 0, started.stderr);
      ids.push(JSON.parse(started.stdout).id);
    }
    const lines = ["first\n", "the second\n"];
    await Promise.all(ids.map((id, i) => api(daemon, "POST", `/instances/${id}/stdin?close=true`, lines[i])));
    for (const [i, id] of ids.entries()) {
      const waited = await pvxCli(["wait", ...host, id, "--json"]);
      assert.equal(waited.code, 0, waited.stderr);
      assert.deepEqual(JSON.parse(waited.stdout).from, { template: tpl });
      const read = await pvxCli(["logs", ...host, id]);
      assert.equal(read.stdout, `read ${lines[i].length} bytes\ndone\n`);
    }
  }));

Deno.test("pvx serve: an instance sees the host directories shared with it, and one without them does not", () =>
  withDaemon(async (daemon, dir) => {
    const [input, output] = [`${dir}/in`, `${dir}/out`];
    await Deno.mkdir(input);
    await Deno.mkdir(output);
    await Deno.writeTextFile(`${input}/msg.txt`, "across the share");
    const bundle = await guestBundle("share_copy");
    const refused = async (shares: unknown, field: string) => {
      const r = await api(daemon, "POST", "/instances", { bundle, shares });
      assert.deepEqual([r.status, r.json.error.field], [400, field], JSON.stringify(r.json));
    };
    await refused([{ hostPath: `${dir}/none`, guestPath: "C:\\in" }], "shares[0].hostPath");
    await refused([{ hostPath: `${dir}/in/msg.txt`, guestPath: "C:\\in" }], "shares[0].hostPath");
    await refused([{ hostPath: input, guestPath: "in" }], "shares[0].guestPath");
    await refused([{ hostPath: input, guestPath: "C:\\in", readOnly: "yes" }], "shares[0].readOnly");
    await refused([{ hostPath: input, guestPath: "C:\\in", mode: 1 }], "shares[0].mode");
    await refused("C:\\in", "shares");

    const host = ["--host", daemon.socket];
    const started = await pvxCli([
      "start",
      ...host,
      "--share",
      `${input}:C:\\in:ro`,
      "--share",
      `${output}:C:\\out`,
      bundle,
    ]);
    assert.equal(started.code, 0, started.stderr);
    const id = started.stdout.trim();
    const waited = (await api(daemon, "POST", `/instances/${id}/wait`)).json;
    const printed = (await logs(daemon, id, "")).stdout;
    assert.equal(waited.exit.code, 0, printed);
    assert.equal(printed, "copied across the share\n");
    assert.equal(await Deno.readTextFile(`${output}/copy.txt`), "across the share");
    assert.deepEqual(waited.shares, [
      { hostPath: input, guestPath: "C:\\in", readOnly: true },
      { hostPath: output, guestPath: "C:\\out", readOnly: false },
    ]);
    // The same app, created without them, has no such directory on its drive.
    const alone = await create(daemon, { bundle });
    assert.equal((await api(daemon, "POST", `/instances/${alone}/wait`)).json.exit.code, 1);
    assert.match((await logs(daemon, alone, "")).stdout, /^open C:\\in\\msg\.txt: error [23]\n$/);
  }));

Deno.test("pvx serve: templates and kept snapshots are resources, deleted only once nothing depends on them", () =>
  withDaemon(async (daemon) => {
    const host = ["--host", daemon.socket];
    const counter = await guestBundle("counter");
    const made = await api(daemon, "POST", "/templates", { bundle: counter, ready: "call", args: ["1", "0"] });
    assert.equal(made.status, 201, JSON.stringify(made.json));
    const tpl = made.json;
    assert.match(tpl.id, /^[0-9a-f]{12}$/);
    assert.deepEqual([tpl.kind, tpl.from.ready, tpl.from.args, tpl.file.kind], [
      "template",
      "call",
      ["1", "0"],
      "full",
    ]);
    assert.equal(tpl.file.id.slice(0, 12), tpl.id);
    const listed = await pvxCli(["template", "ls", ...host]);
    assert.match(listed.stdout, new RegExp(`^${tpl.id} +\\S+ +[\\d.]+ MiB +counter +\\S*counter\\.pvx at call$`, "m"));

    // An instance started from the template by its id; the template cannot go while it runs.
    const started = await pvxCli(["start", ...host, "--from", tpl.id]);
    assert.equal(started.code, 0, started.stderr);
    const id = started.stdout.trim();
    const inUse = await api(daemon, "DELETE", `/templates/${tpl.id}`);
    assert.equal(inUse.status, 409);
    assert.match(inUse.json.error.message, new RegExp(`in use by instance ${id}`));

    // A diff from the template, kept by the daemon, then restored as a new instance by its id.
    const diff = await pvxCli(["snapshot", ...host, id, "--diff-from", tpl.id, "--stop", "--json"]);
    assert.equal(diff.code, 0, diff.stderr);
    const saved = JSON.parse(diff.stdout);
    assert.deepEqual([saved.kind, saved.parent.slice(0, 12), saved.snapshot], ["diff", tpl.id, saved.id.slice(0, 12)]);
    assert.equal((await api(daemon, "POST", `/instances/${id}/wait`)).json.exit.kind, "snapshotted");
    const kept = (await api(daemon, "GET", `/snapshots/${saved.snapshot}`)).json;
    assert.deepEqual([kept.kind, kept.parent, kept.from, kept.file.kind], [
      "snapshot",
      tpl.id,
      { instance: id },
      "diff",
    ]);
    const parentInUse = await api(daemon, "DELETE", `/templates/${tpl.id}`);
    assert.equal(parentInUse.status, 409);
    assert.match(parentInUse.json.error.message, new RegExp(`parent of snapshot ${saved.snapshot}`));
    const restored = await create(daemon, { snapshot: saved.snapshot });
    await api(daemon, "POST", `/instances/${restored}/stdin?close=true`, "hi\n");
    const ended = await api(daemon, "POST", `/instances/${restored}/wait`);
    assert.deepEqual([ended.json.exit.kind, ended.json.exit.code], ["exit", 0]);
    assert.equal((await logs(daemon, restored, "")).stdout, "read 3 bytes\ndone\n");

    // Nothing depends on them now: the diff, then the template.
    assert.equal((await pvxCli(["snapshot", "rm", ...host, saved.snapshot])).stdout, `${saved.snapshot}\n`);
    assert.equal((await api(daemon, "DELETE", `/templates/${tpl.id}`)).status, 200);
    assert.deepEqual([(await api(daemon, "GET", "/templates")).json, (await api(daemon, "GET", "/snapshots")).json], [
      [],
      [],
    ]);
    assert.deepEqual([...Deno.readDirSync(`${daemon.stateDir}/snapshots`)], []);
    assert.equal((await api(daemon, "GET", `/snapshots/${saved.snapshot}`)).status, 404);
    assert.equal((await api(daemon, "POST", "/instances", { template: tpl.id })).json.error.field, "template");

    // An app that never reaches its ready point makes no template, and says why.
    const failed = await api(daemon, "POST", "/templates", {
      bundle: await guestBundle("hello"),
      ready: "first-input",
    });
    assert.equal(failed.status, 422, JSON.stringify(failed.json));
    assert.match(failed.json.error.message, /template create exited/);
    assert.deepEqual((await api(daemon, "GET", "/templates")).json, []);
    const bad = await api(daemon, "POST", "/templates", { bundle: counter, ready: "later" });
    assert.deepEqual([bad.status, bad.json.error.field], [400, "ready"]);
  }));

Deno.test("pvx serve: past --max-instances a create is a 429, past --max-memory a 507, each naming the limit", () =>
  withDaemon(async (daemon) => {
    const counter = await guestBundle("counter");
    const first = await create(daemon, { bundle: counter, args: ["1", "0"], memoryMiB: 32 });
    const second = await create(daemon, { bundle: counter, args: ["1", "0"] }); // the bundle's own 64 MiB
    assert.deepEqual(
      [
        (await api(daemon, "GET", `/instances/${first}`)).json.memoryMiB,
        (await api(daemon, "GET", `/instances/${second}`)).json.memoryMiB,
      ],
      [32, 64],
    );
    const many = await api(daemon, "POST", "/instances", { bundle: counter, memoryMiB: 8 });
    assert.equal(many.status, 429, JSON.stringify(many.json));
    assert.match(many.json.error.message, /--max-instances 2 is reached: 2 live/);
    // No grace: SIGKILL at once, so the guest reports nothing and the signal is the status.
    const killedAtOnce = await api(daemon, "POST", `/instances/${second}/kill?graceMs=0`);
    assert.deepEqual([killedAtOnce.json.exit.kind, killedAtOnce.json.exit.code], ["killed", 137]);
    const big = await api(daemon, "POST", "/instances", { bundle: counter, memoryMiB: 80 });
    assert.equal(big.status, 507, JSON.stringify(big.json));
    assert.match(
      big.json.error.message,
      /--max-memory 100 MiB would be exceeded: 32 MiB .* in use, this instance needs 80 MiB/,
    );
    const third = await create(daemon, { bundle: counter, args: ["1", "0"], memoryMiB: 64 });
    await printed(daemon, third, "tick 0\n");
    const metrics = (await requestControlApi(daemon.socket, "GET", "/metrics")).body;
    assert.match(metrics, /^pvx_guest_memory_mib 96$/m);
    assert.match(metrics, /^pvx_max_instances 2$/m);
    assert.match(metrics, /^pvx_max_memory_mib 100$/m);
    const refusedStart = await pvxCli(["start", "--host", daemon.socket, counter, "--memory", "8"]);
    assert.equal(refusedStart.code, 125);
    assert.match(refusedStart.stderr, /--max-instances 2/);
    assert.equal((await api(daemon, "GET", "/instances")).json.length, 3, "no refused create made an instance");
    for (const id of [first, third]) await api(daemon, "POST", `/instances/${id}/kill`);

    // Each instance's own partitions, given on create.
    const limited = await pvxCli([
      "start",
      "--host",
      daemon.socket,
      await guestBundle("limits"),
      "--max-handles",
      "10",
      "--memory",
      "32",
      "--",
      "handles",
    ]);
    assert.equal(limited.code, 0, limited.stderr);
    const handles = limited.stdout.trim();
    const spin = await create(daemon, { bundle: await guestBundle("spin"), memoryMiB: 32, cpuLimitMs: 5000 });
    const [h, s] = [
      await api(daemon, "POST", `/instances/${handles}/wait`),
      await api(daemon, "POST", `/instances/${spin}/wait`),
    ];
    assert.deepEqual([h.json.maxHandles, h.json.exit.code], [10, 1]);
    assert.equal((await logs(daemon, handles, "")).stdout, "opening stopped after 6: error 4\n");
    assert.deepEqual([s.json.cpuLimitMs, s.json.exit.kind, s.json.exit.code], [5000, "cpu-limit", 152]);
  }, ["--max-instances", "2", "--max-memory", "100"]));

Deno.test("pvx serve: bad input is a 400 naming the field, an unknown route or id a 404, a wrong state a 409", () =>
  withDaemon(async (daemon, dir) => {
    const bundle = await guestBundle("counter");
    await Deno.writeTextFile(`${dir}/not-a-bundle.pvx`, "hello");
    const field = async (method: string, route: string, body: unknown, name: string | undefined) => {
      const r = await api(daemon, method, route, body);
      assert.equal(r.status, 400, `${method} ${route} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.field, name, JSON.stringify(r.json));
      assert.equal(typeof r.json.error.message, "string");
    };
    await field("POST", "/instances", "{not json", undefined);
    await field("POST", "/instances", "[1]", undefined);
    await field("POST", "/instances", {}, "bundle");
    await field("POST", "/instances", { bundle: "counter.pvx" }, "bundle");
    await field("POST", "/instances", { bundle: `${dir}/nothing.pvx` }, "bundle");
    await field("POST", "/instances", { bundle: dir }, "bundle");
    await field("POST", "/instances", { bundle, snapshot: bundle }, "snapshot");
    await field("POST", "/instances", { bundle, args: [1] }, "args");
    await field("POST", "/instances", { bundle, env: { A: 1 } }, "env");
    await field("POST", "/instances", { bundle, env: { "A=B": "c" } }, "env");
    await field("POST", "/instances", { bundle, cpus: 0 }, "cpus");
    await field("POST", "/instances", { bundle, cpus: 1.5 }, "cpus");
    await field("POST", "/instances", { bundle, timeoutMs: "1s" }, "timeoutMs");
    await field("POST", "/instances", { bundle, colour: "red" }, "colour");
    await field("POST", "/instances", { snapshot: bundle, args: ["a"] }, "args");
    await field("POST", "/instances", { bundle, memoryMiB: 4 }, "memoryMiB");
    await field("POST", "/instances", { snapshot: bundle, memoryMiB: 32 }, "memoryMiB");
    await field("POST", "/instances", { bundle: `${dir}/not-a-bundle.pvx` }, "bundle");
    await field("POST", "/instances?verbose=1", { bundle }, "verbose");
    assert.deepEqual((await api(daemon, "GET", "/instances")).json, [], "no bad create made an instance");

    const missing = await api(daemon, "GET", "/nothing");
    assert.equal(missing.status, 404);
    assert.match(missing.json.error.message, /no route GET \/nothing/);
    for (const [method, route] of [["GET", ""], ["DELETE", ""], ["POST", "/pause"], ["POST", "/wait"]]) {
      assert.equal((await api(daemon, method, `/instances/nope${route}`)).status, 404, `${method} ${route}`);
    }

    const id = await create(daemon, { bundle, args: ["1", "0"] });
    await printed(daemon, id, "tick 0\n");
    await field("GET", `/instances/${id}/logs?tail=-1`, undefined, "tail");
    await field("GET", `/instances/${id}/logs?tail=lots`, undefined, "tail");
    await field("GET", `/instances/${id}/logs?follow=maybe`, undefined, "follow");
    await field("GET", `/instances/${id}/logs?since=1`, undefined, "since");
    await field("POST", `/instances/${id}/stdin?close=soon`, "x", "close");
    await field("DELETE", `/instances/${id}?force=perhaps`, undefined, "force");
    await field("POST", `/instances/${id}/kill?graceMs=soon`, undefined, "graceMs");
    await field("POST", `/instances/${id}/kill?graceMs=86400001`, undefined, "graceMs");
    await field("POST", `/instances/${id}/snapshot`, { path: "x.snap" }, "path");
    await field("POST", `/instances/${id}/snapshot`, { path: `${dir}/x.snap`, stop: "yes" }, "stop");
    await field("POST", `/instances/${id}/snapshot`, { path: `${dir}/x.snap`, diffFrom: `${dir}/none` }, "diffFrom");
    await field("POST", `/instances/${id}/snapshot`, { path: `${dir}/x.snap`, seal: "yes" }, "seal");
    // The daemon seals with its own key: a client can name none.
    await field(
      "POST",
      `/instances/${id}/snapshot`,
      { path: `${dir}/x.snap`, seal: { keyFile: bundle } },
      "seal.keyFile",
    );
    await field(
      "POST",
      `/instances/${id}/snapshot`,
      { path: `${dir}/x.snap`, seal: { expiresInMs: 0 } },
      "expiresInMs",
    );
    const keyless = await api(daemon, "POST", `/instances/${id}/snapshot`, { path: `${dir}/x.snap`, seal: true });
    assert.equal(keyless.status, 409);
    assert.match(keyless.json.error.message, /no key to seal with: start pvx serve with --key-file/);
    // Where the instance's own API refuses, its status and reason come through.
    const nowhere = await api(daemon, "POST", `/instances/${id}/snapshot`, { path: "/nonexistent/dir/x.snap" });
    assert.equal(nowhere.status, 400);
    assert.match(nowhere.json.error.message, /cannot write the snapshot there/);

    // rm, like docker rm: a running instance only with force, which kills it first.
    const refused = await api(daemon, "DELETE", `/instances/${id}`);
    assert.equal(refused.status, 409);
    assert.match(refused.json.error.message, /is (starting|running)/);
    const removed = await api(daemon, "DELETE", `/instances/${id}?force`);
    assert.equal(removed.status, 200);
    assert.deepEqual([removed.json.state, removed.json.exit.kind], ["exited", "killed"]);
    assert.equal((await api(daemon, "GET", `/instances/${id}`)).status, 404);
    await assert.rejects(Deno.stat(removed.json.overlay), Deno.errors.NotFound);

    // Blocked on the console for good: only its timeout ends it.
    const timed = await create(daemon, { bundle, args: ["1", "0"], cpus: 1, timeoutMs: 500 });
    const timedOut = await api(daemon, "POST", `/instances/${timed}/wait`);
    assert.deepEqual([timedOut.json.exit.kind, timedOut.json.exit.code, timedOut.json.cpus], ["timeout", 124, 1]);

    const hello = await create(daemon, { bundle: await guestBundle("hello") });
    assert.equal((await api(daemon, "POST", `/instances/${hello}/wait`)).json.exit.code, 1);
    for (const route of ["/pause", "/resume", "/kill", "/stdin"]) {
      const r = await api(daemon, "POST", `/instances/${hello}${route}`);
      assert.equal(r.status, 409, route);
      assert.match(r.json.error.message, /is exited/);
    }
    const second = await pvxCli(["serve", "--socket", daemon.socket, "--state-dir", daemon.stateDir]);
    assert.equal(second.code, 125);
    assert.match(second.stderr, /a daemon is serving there already/);
    const health = await api(daemon, "GET", "/healthz");
    assert.deepEqual(health, { status: 200, json: { ok: true } });
  }));

Deno.test("pvx serve: SIGKILL of one instance's process leaves the daemon and the others running; kill and rm", () =>
  withDaemon(async (daemon, dir) => {
    const host = ["--host", daemon.socket];
    const bundle = await guestBundle("counter");
    const kept = `${dir}/kept-overlay`;
    const [doomed, survivor, killed] = [
      await create(daemon, { bundle, args: ["1", "0"] }),
      await create(daemon, { bundle, args: ["1", "0"] }),
      await create(daemon, { bundle, args: ["1", "0"], overlay: kept }),
    ];
    for (const id of [doomed, survivor, killed]) await printed(daemon, id, "tick 0\n");

    Deno.kill((await api(daemon, "GET", `/instances/${doomed}`)).json.pid, "SIGKILL");
    const crashed = await api(daemon, "POST", `/instances/${doomed}/wait`);
    assert.deepEqual([crashed.json.state, crashed.json.exit.kind], ["exited", "crashed"]);
    assert.deepEqual(await api(daemon, "GET", "/healthz"), { status: 200, json: { ok: true } });
    assert.notEqual((await api(daemon, "GET", `/instances/${survivor}`)).json.state, "exited");

    await api(daemon, "POST", `/instances/${survivor}/stdin?close=true`, "ok\n");
    const waited = await pvxCli(["wait", ...host, survivor]);
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal((await logs(daemon, survivor, "")).stdout, counted(1, "ok\n"));

    // A grace no slow machine runs out of: SIGTERM alone stops the guest, and it reports (143).
    const kill = await pvxCli(["kill", ...host, "--grace", "600", killed]);
    assert.equal(kill.code, 0, kill.stderr);
    assert.equal(kill.stdout, `${killed}: killed 143\n`);
    const metrics = (await requestControlApi(daemon.socket, "GET", "/metrics")).body;
    for (const kind of ["crashed", "exit", "killed"]) {
      assert.match(metrics, new RegExp(`^pvx_instance_exits_total\\{kind="${kind}"\\} 1$`, "m"));
    }

    for (const id of [doomed, killed]) {
      const rm = await pvxCli(["rm", ...host, id]);
      assert.equal(rm.stdout, `${id}\n`, rm.stderr);
    }
    // rm takes the daemon's files of an instance; an overlay the create named is the caller's to keep.
    for (const id of [doomed, killed]) {
      await assert.rejects(Deno.stat(`${daemon.stateDir}/instances/${id}`), Deno.errors.NotFound);
    }
    assert.ok((await Deno.stat(kept)).isDirectory);
    const left = JSON.parse((await pvxCli(["ps", ...host, "--json"])).stdout);
    assert.deepEqual(left.map((d: { id: string }) => d.id), [survivor]);
    const again = await pvxCli(["rm", ...host, doomed]);
    assert.equal(again.code, 125);
    assert.match(again.stderr, /no instance "/);
  }));

/** The processes `pid` started as `pvx warm` (an instance's keeps that name), once there are `count` of them. */
async function warmProcesses(pid: number, count: number): Promise<number[]> {
  for (let tries = 0;; tries++) {
    const warm = warmChildren(pid);
    if (warm.length === count) return warm;
    if (tries === 2000) throw new Error(`pid ${pid} has ${warm.length} waiting processes, not ${count}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const exists = (pid: number) => Deno.readTextFile(`/proc/${pid}/stat`).then(() => true, () => false);

Deno.test("pvx serve --warm: a create runs in the process that waited for it, another waits next; none outlives the daemon", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-serve-" });
  try {
    const daemon = await serve(dir, ["--warm", "1"]);
    const [waiting] = await warmProcesses(daemon.process.pid, 1);
    const id = await create(daemon, { bundle: await guestBundle("counter"), args: ["1", "0"] });
    assert.equal((await api(daemon, "GET", `/instances/${id}`)).json.pid, waiting);
    await printed(daemon, id, "tick 0\n");
    // The instance's process is still the `pvx warm` it was, beside the new one.
    const next = (await warmProcesses(daemon.process.pid, 2)).find((pid) => pid !== waiting)!;
    // The job's line went first on the process's stdin; all the guest reads is what was written to the instance.
    await api(daemon, "POST", `/instances/${id}/stdin?close=true`, "ok\n");
    assert.deepEqual((await api(daemon, "POST", `/instances/${id}/wait`)).json.exit.code, 0);
    assert.equal((await logs(daemon, id, "")).stdout, counted(1, "ok\n"));
    const paused = await create(daemon, { bundle: await guestBundle("counter"), args: ["1", "0"] });
    await printed(daemon, paused, "tick 0\n");
    const { pid } = (await api(daemon, "POST", `/instances/${paused}/pause`)).json;

    // A waiting process ends when its stdin does, as the daemon's end closes it, even a SIGKILL's; an instance's,
    // which nothing else would end while it is paused, once it sees its daemon gone.
    daemon.process.kill("SIGKILL");
    await daemon.process.result;
    for (const [what, gone] of [["waiting process", next], ["paused instance's process", pid]] as const) {
      for (let tries = 0; await exists(gone); tries++) {
        if (tries === 2000) throw new Error(`the ${what} ${gone} outlived its daemon`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Under the nested accelerator each instance runs in the helper VM, seconds apiece and 4 GiB for all. */
const nested = Deno.env.get(NESTED_SOCKET_ENV) !== undefined;

Deno.test("pvx serve: 100 creates at once all run to their end, each with its own arguments and console", () =>
  withDaemon(async (daemon) => {
    const count = nested ? 8 : 100;
    const bundle = await guestBundle("hello");
    const ids = await Promise.all(
      Array.from({ length: count }, (_, i) => create(daemon, { bundle, args: [`n${i}`] })),
    );
    assert.equal(new Set(ids).size, count);
    const ends = await Promise.all(ids.map((id) => api(daemon, "POST", `/instances/${id}/wait`)));
    for (const [i, { json }] of ends.entries()) {
      assert.deepEqual([json.state, json.exit.kind, json.exit.code], ["exited", "exit", 2], JSON.stringify(json));
      assert.match(
        (await logs(daemon, ids[i], "")).stdout,
        new RegExp(`^argc=2\nargv\\[0\\]=hello\nargv\\[1\\]=n${i}\n`),
      );
    }
    assert.deepEqual(await api(daemon, "GET", "/healthz"), { status: 200, json: { ok: true } });
  }));

/** The daemon's open descriptors, threads and resident memory (KiB), once its warm processes all wait. */
async function daemonResources(daemon: Daemon) {
  await warmProcesses(daemon.process.pid, 2);
  const status = Deno.readTextFileSync(`/proc/${daemon.process.pid}/status`);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)![1]);
  return {
    fds: [...Deno.readDirSync(`/proc/${daemon.process.pid}/fd`)].length,
    threads: field("Threads"),
    rssKiB: field("VmRSS"),
  };
}

Deno.test("pvx serve: 1000 create, wait and rm cycles leave the daemon's descriptors, threads and memory as they were", () =>
  withDaemon(async (daemon) => {
    // Nested, where a cycle takes seconds, 10 still show a descriptor or thread kept per cycle over the slack below.
    const cycles = nested ? 10 : 1000;
    const bundle = await guestBundle("hello");
    const cycle = async () => {
      const id = await create(daemon, { bundle });
      assert.equal((await api(daemon, "POST", `/instances/${id}/wait`)).json.exit.code, 1);
      assert.equal((await api(daemon, "DELETE", `/instances/${id}`)).status, 200);
    };
    // The first cycles grow what the daemon keeps for good: its HTTP connections, Deno's pools, the JIT's code.
    for (let i = 0; i < cycles / 10; i++) await cycle();
    const before = await daemonResources(daemon);
    for (let i = 0; i < cycles; i++) await cycle();
    const after = await daemonResources(daemon);
    const grew = `${JSON.stringify(before)} -> ${JSON.stringify(after)} over ${cycles} cycles`;
    // A leak of one descriptor, thread or 16 KiB a cycle would show as the number of cycles, or more.
    assert.ok(after.fds <= before.fds + 2, grew);
    assert.ok(after.threads <= before.threads + 4, grew);
    assert.ok(after.rssKiB <= before.rssKiB + 16 * 1024, grew);
    assert.deepEqual((await api(daemon, "GET", "/instances")).json, []);
  }));

Deno.test("pvx serve: after the daemon is killed, the next one reports its running instances as lost; overlays stay", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-serve-" });
  try {
    const first = await serve(dir);
    const id = await create(first, { bundle: await guestBundle("counter"), args: ["1", "0"] });
    await printed(first, id, "tick 0\n");
    const { overlay } = (await api(first, "GET", `/instances/${id}`)).json;
    first.process.kill("SIGKILL");
    await first.process.result;

    const second = await serve(dir);
    try {
      const [lost] = (await api(second, "GET", "/instances")).json;
      assert.deepEqual([lost.id, lost.state, lost.pid], [id, "lost", undefined]);
      assert.ok((await Deno.stat(overlay)).isDirectory);
      const waited = await api(second, "POST", `/instances/${id}/wait`);
      assert.equal(waited.status, 409);
      assert.match(waited.json.error.message, /lost/);
      assert.match(
        (await requestControlApi(second.socket, "GET", "/metrics")).body,
        /^pvx_instances\{state="lost"\} 1$/m,
      );
      assert.equal((await api(second, "DELETE", `/instances/${id}`)).status, 200);
      await assert.rejects(Deno.stat(overlay), Deno.errors.NotFound);
    } finally {
      await stop(second);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pvx serve --listen: over TCP a request without the bearer token gets 401 before any handler", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-serve-" });
  const tokenFile = `${dir}/token`;
  await Deno.writeTextFile(tokenFile, `${crypto.randomUUID()}\n`);
  const token = (await Deno.readTextFile(tokenFile)).trim();
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const url = `http://127.0.0.1:${port}`;
  const daemon = pvxStart(["serve", "--listen", `127.0.0.1:${port}`, "--token-file", tokenFile, "--state-dir", dir]);
  try {
    await daemon.printed(`listening on ${url}`);
    const get = async (route: string, authorization?: string) => {
      const r = await fetch(`${url}${route}`, { headers: authorization ? { authorization } : {} });
      return { status: r.status, json: await r.json() };
    };
    for (const authorization of [undefined, "Bearer wrong", `Basic ${token}`, `Bearer ${token}x`]) {
      for (const route of ["/healthz", "/instances", "/nothing"]) {
        const r = await get(route, authorization);
        assert.equal(r.status, 401, `${route} with ${authorization}`);
        assert.match(r.json.error.message, /bearer token/);
      }
    }
    assert.deepEqual(await get("/healthz", `Bearer ${token}`), { status: 200, json: { ok: true } });
    assert.equal((await get("/nothing", `Bearer ${token}`)).status, 404);
    const ps = await pvxCli(["ps", "--host", url, "--token-file", tokenFile, "--json"]);
    assert.equal(ps.stdout, "[]\n", ps.stderr);
    const refused = await pvxCli(["ps", "--host", url]);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /bearer token/);
    const noToken = await pvxCli(["serve", "--listen", "127.0.0.1:0", "--state-dir", dir]);
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /--listen needs --token-file/);
  } finally {
    daemon.kill("SIGTERM");
    await daemon.result;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pvx serve --listen: a client elsewhere uploads its bundle, which is kept once and deleted once unused", async () => {
  const tokenDir = await Deno.makeTempDir({ prefix: "pvx-token-" });
  const tokenFile = `${tokenDir}/token`;
  await Deno.writeTextFile(tokenFile, crypto.randomUUID());
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const remote = ["--host", `http://127.0.0.1:${port}`, "--token-file", tokenFile];
  try {
    await withDaemon(async (daemon) => {
      await daemon.process.printed(`listening on http://127.0.0.1:${port}`);
      // Over TCP the daemon cannot read the client's files: start sends the bundle itself.
      const counter = await guestBundle("counter");
      const started = await pvxCli(["start", ...remote, counter, "--", "2", "50"]);
      assert.equal(started.code, 0, started.stderr);
      assert.match(started.stderr, /uploading .*counter\.pvx/);
      const id = started.stdout.trim();
      const listed = JSON.parse((await pvxCli(["bundle", "ls", ...remote, "--json"])).stdout);
      const sha256 = createHash("sha256").update(await Deno.readFile(counter)).digest("hex");
      assert.deepEqual(listed.map((b: { name: string; sha256: string }) => [b.name, b.sha256]), [["counter", sha256]]);
      const bundle = listed[0].id;
      assert.equal(bundle, sha256.slice(0, 12));
      assert.deepEqual((await api(daemon, "GET", `/instances/${id}`)).json.from, { bundle: listed[0].path });
      const again = await pvxCli(["bundle", "upload", ...remote, counter]);
      assert.equal(again.stdout, `${bundle}\n`, again.stderr); // the same bytes are the same bundle

      const inUse = await api(daemon, "DELETE", `/bundles/${bundle}`);
      assert.equal(inUse.status, 409);
      assert.match(inUse.json.error.message, new RegExp(`in use by instance ${id}`));
      const damaged = (await Deno.readFile(counter)).slice(0, 200);
      const bad = await requestControlApi(daemon.socket, "POST", "/bundles", new TextDecoder().decode(damaged));
      assert.equal(bad.status, 400, bad.body);
      assert.equal(JSON.parse(bad.body).error.field, "body");
      assert.match(JSON.parse(bad.body).error.message, /^the uploaded bundle: offset \d+: /);

      await api(daemon, "POST", `/instances/${id}/stdin?close=true`, "up\n");
      assert.equal((await api(daemon, "POST", `/instances/${id}/wait`)).json.exit.code, 0);
      assert.equal((await logs(daemon, id, "")).stdout, counted(2, "up\n"));
      assert.equal((await pvxCli(["bundle", "rm", ...remote, bundle])).stdout, `${bundle}\n`);
      assert.equal((await api(daemon, "GET", `/bundles/${bundle}`)).status, 404);
      const gone = await api(daemon, "POST", "/instances", { bundle });
      assert.deepEqual([gone.status, gone.json.error.field], [400, "bundle"]);
      assert.deepEqual([...Deno.readDirSync(`${daemon.stateDir}/bundles`)], []);
    }, ["--listen", `127.0.0.1:${port}`, "--token-file", tokenFile]);
  } finally {
    await Deno.remove(tokenDir, { recursive: true });
  }
});

Deno.test("pvx serve: the OpenAPI document names exactly the routes the daemon serves", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-serve-" });
  try {
    const metrics = new Metrics();
    const app = daemonApi(
      new Instances(new Records(dir), ["false"], metrics, { guestMemoryMiB }),
      new StoredSnapshots(dir),
      await UploadedBundles.open(dir, checkBundle),
      metrics,
      { chunks: new ChunkStore(`${dir}/chunks`), migrationDir: `${dir}/migrations` },
    );
    const served = app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`);
    const documented = Object.entries(openApiDocument.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ":$1")}`)
    );
    assert.deepEqual([...new Set(served)].sort(), documented.sort());
    const r = await app.request("/openapi.json");
    assert.equal(r.status, 200);
    const doc = await r.json();
    assert.equal(doc.openapi, "3.1.0");
    assert.deepEqual(doc, JSON.parse(JSON.stringify(openApiDocument)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics: hypercalls counted from two threads' views add up, and every histogram is cumulative", () => {
  const buffer = new SharedArrayBuffer(HYPERCALL_STATS_BYTES + 8);
  const [one, other] = [new HypercallStats(buffer, 8), new HypercallStats(buffer, 8)];
  const sleep = callsByName.get("Sleep")!.nr, write = callsByName.get("WriteFile")!.nr;
  one.record(sleep, 150); // 0.15 s: above the 0.1 s bound
  other.record(write, 0.004); // 4 µs: in the first bucket
  other.record(write, 20_000); // 20 s: past the last bound
  const totals = one.totals();
  assert.deepEqual(totals.calls, { Sleep: 1, WriteFile: 2 });
  assert.ok(Math.abs(totals.seconds - 20.150004) < 1e-6, String(totals.seconds));
  const metrics = new Metrics();
  metrics.created("template", 0.3);
  metrics.created("template", 3);
  const text = metrics.render({ running: 1 }, { memoryMiB: 64 }, {
    hypercalls: addTotals(noHypercalls(), totals),
    residentPages: { abc: 12 },
  });
  const series = (name: string) =>
    [...text.matchAll(new RegExp(`^${name}_bucket\\{(?:.*,)?le="([^"]+)"\\} (\\d+)$`, "gm"))].map((m) => [m[1], +m[2]]);
  assert.deepEqual(series("pvx_hypercall_seconds"), [
    ...HYPERCALL_BUCKETS.map((bound) => [String(bound), bound < 0.15 ? 1 : 2]),
    ["+Inf", 3],
  ]);
  assert.match(text, /^pvx_hypercall_seconds_count 3$/m);
  assert.match(text, /^pvx_hypercalls_total\{call="WriteFile"\} 2$/m);
  assert.deepEqual(series("pvx_instance_create_seconds").slice(-3), [["60", 2], ["120", 2], ["+Inf", 2]]);
  assert.match(text, /^pvx_instance_create_seconds_bucket\{from="template",le="0.25"\} 0$/m);
  assert.match(text, /^pvx_instance_create_seconds_bucket\{from="template",le="0.5"\} 1$/m);
  assert.match(text, /^pvx_instance_create_seconds_sum\{from="template"\} 3.3$/m);
  assert.match(text, /^pvx_guest_pages_resident\{instance="abc"\} 12$/m);
});

Deno.test("fuzz: no body, query or id makes the daemon answer 500 or create an instance", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-serve-" });
  try {
    const metrics = new Metrics();
    // An instance this made would run `false`: the property is that none is made.
    const instances = new Instances(new Records(dir), ["false"], metrics, { guestMemoryMiB });
    const stored = new StoredSnapshots(dir);
    const app = daemonApi(instances, stored, await UploadedBundles.open(dir, checkBundle), metrics);
    const routes = app.routes.filter((r) => r.method !== "ALL");
    const value = fc.oneof(
      fc.jsonValue(),
      fc.constantFrom(dir, "counter.pvx", `${dir}/nothing.pvx`, "/", "", -1, 1.5, 33, [], {}, ["a"], { A: 1 }),
    );
    const createFields = (openApiDocument.paths["/instances"].post.requestBody.content["application/json"]
      .schema as { properties: object }).properties;
    const field = fc.constantFrom(...Object.keys(createFields), "path", "stop", "diffFrom", "ready", "x");
    const body = fc.oneof(
      fc.dictionary(field, value, { maxKeys: 4 }).map((b) => JSON.stringify(b)),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string(),
    );
    const query = fc.dictionary(fc.constantFrom("force", "close", "follow", "tail", "graceMs", "x"), fc.string(), {
      maxKeys: 3,
    });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), fc.string(), query, body, async (route, id, q, text) => {
        const path = route.path.replace(":id", encodeURIComponent(id) || "none");
        const search = new URLSearchParams(q).toString();
        const response = await app.request(`${path}${search ? `?${search}` : ""}`, {
          method: route.method,
          ...(route.method === "GET" ? {} : { body: text }),
        });
        if (response.status >= 400) {
          const answer = await response.json();
          assert.ok(response.status < 500, `${route.method} ${path}?${search} ${text}: ${JSON.stringify(answer)}`);
          assert.equal(typeof answer.error.message, "string");
        } else await response.body?.cancel();
        assert.equal(instances.list().length, 0);
        assert.deepEqual([stored.list("template"), stored.list("snapshot")], [[], []]);
      }),
      { numRuns: fuzzRuns },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
