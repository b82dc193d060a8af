// Live migration between two hosts on one machine: two network namespaces
// joined by a veth pair, made here and removed after, each with its own
// `pvx serve` and state directory, listening on its own address with its own
// token. The daemons talk to each other only over the veth; the test reaches
// each over its Unix socket. Faults are real too: a proxy on the path
// (support/fault_proxy.ts) flips a byte of a chunk in flight, takes the veth
// down, kills the target daemon, or loses an answer; a target's state dir on
// a tiny tmpfs fills up.

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { guestBundle, pvxCli, pvxStart } from "./support/guests.ts";
import { api, create, type Daemon, logs, printed } from "./support/daemon.ts";
import { workersOutput } from "./support/snapshots.ts";
import { buildWindowsExe } from "./support/win32.ts";
import { NESTED_SOCKET_ENV } from "../tools/accel.ts";
import { requestControlApi } from "../hv/control_api.ts";

const decoder = new TextDecoder();

async function sh(...argv: string[]) {
  const r = await new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped", stderr: "piped" }).output();
  if (!r.success) throw new Error(`${argv.join(" ")}: ${decoder.decode(r.stderr)}`);
  return decoder.decode(r.stdout);
}

/** One end of the link: its namespace, its veth and its address. */
interface Side {
  netns: string;
  dev: string;
  address: string;
}

interface Host extends Daemon {
  side: Side;
  url: string;
  tokenFile: string;
}

const PORT = 7070;

/** Two namespaces joined by a veth pair, for `body`; removed after, whatever happened. */
async function withTwoHosts(body: (a: Side, b: Side, dir: string) => Promise<void>) {
  const tag = `pvx${Deno.pid % 100000}`;
  const subnet = `10.231.${Deno.pid % 250}`;
  const a = { netns: `${tag}a`, dev: `${tag}a`, address: `${subnet}.1` };
  const b = { netns: `${tag}b`, dev: `${tag}b`, address: `${subnet}.2` };
  const dir = await Deno.makeTempDir({ prefix: "pvx-migrate-" });
  try {
    for (const side of [a, b]) await sh("ip", "netns", "add", side.netns);
    await sh("ip", "link", "add", a.dev, "netns", a.netns, "type", "veth", "peer", "name", b.dev, "netns", b.netns);
    for (const side of [a, b]) {
      await sh("ip", "-n", side.netns, "addr", "add", `${side.address}/30`, "dev", side.dev);
      await sh("ip", "-n", side.netns, "link", "set", side.dev, "up");
      await sh("ip", "-n", side.netns, "link", "set", "lo", "up");
    }
    await body(a, b, dir);
  } finally {
    for (const side of [a, b]) await sh("ip", "netns", "del", side.netns).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

/** A `pvx serve` in `side`'s namespace, on its address and on a socket, once it listens; `flags` go to it. */
async function serveOn(side: Side, dir: string, flags: string[] = [], port = PORT): Promise<Host> {
  const stateDir = `${dir}/state`;
  await Deno.mkdir(dir, { recursive: true });
  const tokenFile = `${dir}/token`;
  await Deno.writeTextFile(tokenFile, crypto.randomUUID());
  const socket = `${dir}/pvx.sock`;
  const url = `http://${side.address}:${port}`;
  const process = pvxStart(
    [
      "serve",
      "--socket",
      socket,
      "--listen",
      `${side.address}:${port}`,
      "--token-file",
      tokenFile,
      "--state-dir",
      stateDir,
      ...flags,
    ],
    undefined,
    {},
    side.netns,
  );
  await process.printed(`listening on ${url}`);
  return { side, url, tokenFile, socket, stateDir, process };
}

async function stop(host: Host) {
  try {
    host.process.kill("SIGTERM");
  } catch {
    // It has ended already.
  }
  await host.process.result;
}

/** `pvx migrate` of `id` from `from` to `to` (or to `via`, a proxy on the path); its report, or what it printed. */
async function migrate(from: Host, id: string, to: Host, via?: string, flags: string[] = []) {
  const r = await pvxCli([
    "migrate",
    "--host",
    from.socket,
    id,
    "--to",
    via ?? to.url,
    "--to-token-file",
    to.tokenFile,
    "--json",
    ...flags,
  ]);
  return { ...r, report: r.code === 0 ? JSON.parse(r.stdout) : undefined };
}

const tally = (n: number) =>
  Array.from({ length: n }, (_, i) => `tick ${i}\n`).join("") +
  `the file holds:\n${Array.from({ length: n }, (_, i) => `line ${i}\n`).join("")}`;

Deno.test("migration: an app that counts into a file it keeps open moves to another host and back, as if it never moved", () =>
  withTwoHosts(async (sideA, sideB, dir) => {
    const a = await serveOn(sideA, `${dir}/a`), b = await serveOn(sideB, `${dir}/b`);
    try {
      const id = await create(a, { bundle: await guestBundle("tally"), args: ["8", "300"] });
      await printed(a, id, "tick 1\n");

      const there = await migrate(a, id, b);
      assert.equal(there.code, 0, there.stderr);
      // Its steps, as they happen, on stderr.
      assert.match(there.stderr, /^pvx: round 1: full, \d+ pages, \d+ bytes sent\n(.*\n)*pvx: running there as /m);
      const onB = there.report.to.instance;
      assert.deepEqual(there.report.to, { url: b.url, instance: onB });
      assert.ok(there.report.rounds.length >= 1 && there.report.rounds[0].kind === "full", there.stdout);
      const left = (await api(a, "GET", `/instances/${id}`)).json;
      assert.equal(left.state, "exited");
      assert.deepEqual([left.exit.kind, left.exit.to], ["migrated", { url: b.url, instance: onB }]);
      // It counts on there, and its console there begins where this one began.
      const atB = await printed(b, onB, "tick 4\n");
      assert.match(atB.stdout, /^tick 0\ntick 1\n/);

      const back = await migrate(b, onB, a);
      assert.equal(back.code, 0, back.stderr);
      const home = back.report.to.instance;
      assert.equal((await api(b, "GET", `/instances/${onB}`)).json.exit.kind, "migrated");
      // This host kept what it sent: the bundle and the pages that did not change since do not cross again.
      assert.ok(back.report.bytesSent < there.report.bytesSent, `${back.stdout}\n${there.stdout}`);
      console.log(
        `there: ${there.report.bytesSent} bytes, ${there.report.downtimeMs} ms down; ` +
          `back: ${back.report.bytesSent} bytes, ${back.report.downtimeMs} ms down`,
      );

      await api(a, "POST", `/instances/${home}/stdin?close=true`, "hi\n");
      const ended = (await api(a, "POST", `/instances/${home}/wait`)).json;
      assert.deepEqual([ended.exit.code, ended.exit.kind], [0, "exit"]);
      assert.equal((await logs(a, home, "")).stdout, tally(8));
      // Neither host keeps a migration's working files once it is done.
      for (const host of [a, b]) assert.deepEqual([...Deno.readDirSync(`${host.stateDir}/migrations`)], []);
      for (const [host, trip] of [[a, there], [b, back]] as const) {
        const metrics = (await requestControlApi(host.socket, "GET", "/metrics")).body;
        assert.match(metrics, /^pvx_migrations_total\{outcome="moved"\} 1$/m);
        assert.match(metrics, /^pvx_migration_downtime_seconds_count 1$/m);
        assert.match(metrics, new RegExp(`^pvx_migration_sent_bytes_total ${trip.report.bytesSent}$`, "m"));
      }
    } finally {
      await Promise.all([stop(a), stop(b)]);
    }
  }));

Deno.test("migration: a multi-threaded Windows exe, its workers blocked on events and a mutex, moves there and back", () =>
  withTwoHosts(async (sideA, sideB, dir) => {
    const source = new URL("./guests/workers.c", import.meta.url).pathname;
    const exe = await buildWindowsExe("workers", dir, source, ["-DWINDOWS_EXE", `-I${dirname(source)}`]);
    const a = await serveOn(sideA, `${dir}/a`), b = await serveOn(sideB, `${dir}/b`);
    try {
      const id = await create(a, { bundle: exe });
      await printed(a, id, "round 1\n");
      const there = await migrate(a, id, b);
      assert.equal(there.code, 0, there.stderr);
      const onB = there.report.to.instance;
      const back = await migrate(b, onB, a);
      assert.equal(back.code, 0, back.stderr);
      const home = back.report.to.instance;
      await api(a, "POST", `/instances/${home}/stdin?close=true`, "windows\n");
      const ended = (await api(a, "POST", `/instances/${home}/wait`)).json;
      assert.deepEqual([ended.exit.code, ended.exit.kind], [0, "exit"], JSON.stringify(await logs(a, home, "")));
      // Its console, replayed from host to host, is a run's that never moved: no round or step lost or repeated.
      assert.equal((await logs(a, home, "")).stdout, workersOutput(5, "windows\n"));
    } finally {
      await Promise.all([stop(a), stop(b)]);
    }
  }));

/** A fault_proxy.ts in `side`'s namespace in front of `target`, with `fault` (its arguments), once it listens. */
async function faultProxy(side: Side, target: Host, port: number, ...fault: string[]) {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      side.netns,
      Deno.execPath(),
      "run",
      "-A",
      new URL("./support/fault_proxy.ts", import.meta.url).pathname,
      String(port),
      target.url,
      ...fault,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const saw = async (line: string) => {
    while (!seen.includes(line)) {
      const { value, done } = await reader.read();
      if (done) return false;
      seen += value;
    }
    return true;
  };
  if (!await saw("proxy: listening")) throw new Error("the fault proxy ended before it listened");
  return {
    url: `http://127.0.0.1:${port}`,
    /** Whether the fault happened: a test that passes without it tested nothing. */
    faulted: () => saw("proxy: fault"),
    async close() {
      try {
        child.kill("SIGTERM");
      } catch {
        // It died as the fault's host would.
      }
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

/** `pvx migrate` of `id` from `from` to `to` (or to `via`, a proxy on the path) fails as `pattern` says. */
async function migrateFails(from: Host, id: string, to: Host, pattern: RegExp, via?: string, flags: string[] = []) {
  const r = await migrate(from, id, to, via, flags);
  assert.equal(r.code, 125, r.stdout);
  assert.match(r.stderr, pattern);
}

/**
 * `migrateFails` through a fault proxy in `side`'s namespace on `port`, making `fault`, which must have happened; the
 * proxy is closed after, whatever happened.
 */
async function failsThrough(
  path: { side: Side; port: number; fault: string[] },
  from: Host,
  id: string,
  to: Host,
  pattern: RegExp,
) {
  const proxy = await faultProxy(path.side, to, path.port, ...path.fault);
  try {
    await migrateFails(from, id, to, pattern, proxy.url);
    assert.ok(await proxy.faulted());
  } finally {
    await proxy.close();
  }
}

/** The last tick `id` printed on `host`. */
async function lastTick(host: Host, id: string) {
  return Number([...(await logs(host, id, "")).stdout.matchAll(/tick (\d+)\n/g)].at(-1)![1]);
}

/** `id` runs on `host`, untouched: it counts on from where it was. */
async function runsOn(host: Host, id: string) {
  const described = (await api(host, "GET", `/instances/${id}`)).json;
  assert.equal(described.state, "running", JSON.stringify({ ...described, ...await logs(host, id, "") }));
  await printed(host, id, `tick ${await lastTick(host, id) + 1}\n`);
}

/** `host` holds no instance, and no process of one: a target keeps no half instance. */
async function holdsNothing(host: Host) {
  assert.deepEqual((await api(host, "GET", "/instances")).json, []);
  const home = `${host.stateDir}/instances/`;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const argv = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    assert.ok(!argv.includes(home), `process ${entry.name} still runs an instance of ${home}: ${argv}`);
  }
}

Deno.test("migration: a chunk corrupted in flight or a wrong token loses nothing; a commit not opened or replayed is refused", () =>
  withTwoHosts(async (sideA, sideB, dir) => {
    const a = await serveOn(sideA, `${dir}/a`), b = await serveOn(sideB, `${dir}/b`);
    try {
      const id = await create(a, { bundle: await guestBundle("tally"), args: ["100000", "50"] });
      await printed(a, id, "tick 1\n");
      /** The source instance runs on, untouched, and the target has no instance. */
      const untouched = async (target: Host) => {
        await runsOn(a, id);
        await holdsNothing(target);
      };
      const corrupt = { side: sideA, port: 7171, fault: ["corrupt", "2"] };
      await failsThrough(
        corrupt,
        a,
        id,
        b,
        /sending .*PUT \/chunks\/[0-9a-f]{64}: 400 chunk [0-9a-f]{64}: its bytes hash to/,
      );
      await untouched(b);

      const wrong = { ...b, tokenFile: `${dir}/wrong-token` };
      await Deno.writeTextFile(wrong.tokenFile, "not the token");
      await migrateFails(a, id, wrong, /opening the migration: .*401 a valid bearer token is required/);
      await untouched(b);

      // A commit or an abort the target did not open, or one it has seen, is refused before anything happens.
      const opened = await api(b, "POST", "/migrations");
      assert.equal(opened.status, 201);
      const commit = { bundle: { sha256: "0".repeat(64), recipe: { length: 0, chunks: [] } }, chain: [] };
      assert.equal((await api(b, "DELETE", `/migrations/${opened.json.id}`)).status, 200);
      const replayed = await api(b, "POST", `/migrations/${opened.json.id}`, commit);
      assert.equal(replayed.status, 409);
      assert.match(replayed.json.error.message, /already committed or aborted/);
      const unknown = await api(b, "POST", `/migrations/${crypto.randomUUID()}`, commit);
      assert.equal(unknown.status, 404);
      assert.match(unknown.json.error.message, /did not open it/);
    } finally {
      await Promise.all([stop(a), stop(b)]);
    }
  }));

/**
 * A source daemon that waits this long for each answer of its target, so that a lost one fails the migration soon.
 * Under the nested accelerator an answer that waits on an instance (a start, an abort) takes seconds.
 */
const PATIENCE_S = Deno.env.get(NESTED_SOCKET_ENV) ? 60 : 2;
const PATIENCE = ["--peer-timeout", `${PATIENCE_S}s`];

Deno.test("migration: a link cut or a target killed mid-transfer leaves the source running, the target with nothing", () =>
  withTwoHosts(async (sideA, sideB, dir) => {
    const a = await serveOn(sideA, `${dir}/a`, PATIENCE);
    let b = await serveOn(sideB, `${dir}/b`);
    try {
      const id = await create(a, { bundle: await guestBundle("tally"), args: ["100000", "50"] });
      await printed(a, id, "tick 1\n");

      try {
        const cut = { side: sideA, port: 7171, fault: ["cut", "3", sideA.dev] };
        const silence = new RegExp(`sending round 1: .*PUT /chunks/[0-9a-f]{64}: no answer within ${PATIENCE_S} s`);
        await failsThrough(cut, a, id, b, silence);
      } finally {
        await sh("ip", "-n", sideA.netns, "link", "set", sideA.dev, "up");
      }
      await runsOn(a, id);
      await holdsNothing(b);

      const kill = { side: sideA, port: 7172, fault: ["kill", "3", String(b.process.pid)] };
      await failsThrough(kill, a, id, b, /sending round 1: .*PUT \/chunks\/[0-9a-f]{64}: /);
      await runsOn(a, id);
      assert.equal((await b.process.result).code, 137);
      b = await serveOn(sideB, `${dir}/b`);
      await holdsNothing(b);

      // With the link back and the target up again, the same instance moves.
      const moved = await migrate(a, id, b);
      assert.equal(moved.code, 0, moved.stderr);
      await runsOn(b, moved.report.to.instance);
    } finally {
      await Promise.all([stop(a), stop(b)]);
    }
  }));

Deno.test("migration: when the source cannot know whether the target runs the app, exactly one host does", () =>
  withTwoHosts(async (sideA, sideB, dir) => {
    const a = await serveOn(sideA, `${dir}/a`, PATIENCE);
    let b = await serveOn(sideB, `${dir}/b`);
    try {
      const id = await create(a, { bundle: await guestBundle("tally"), args: ["100000", "50"] });
      await printed(a, id, "tick 1\n");

      // The target restored it (paused), but the source never heard: it aborts, the target drops its copy.
      const lose = { side: sideA, port: 7171, fault: ["lose-commit"] };
      await failsThrough(
        lose,
        a,
        id,
        b,
        /restoring it there: .*POST \/migrations\/[0-9a-f-]{36}: the answer broke off/,
      );
      await runsOn(a, id);
      await holdsNothing(b);

      // The target dies before the start, and so cannot answer the abort either: the source stays paused.
      const kill = { side: sideA, port: 7172, fault: ["kill-start", String(b.process.pid)] };
      await failsThrough(kill, a, id, b, /starting it there .*did not answer an abort .*this instance stays paused/);
      assert.equal((await api(a, "GET", `/instances/${id}`)).json.state, "paused");
      // A target daemon that starts again drops the copy its source never let go of, process and all.
      b = await serveOn(sideB, `${dir}/b`);
      await holdsNothing(b);
      assert.equal((await api(a, "POST", `/instances/${id}/resume`)).status, 200);
      await runsOn(a, id);
      const metrics = (await requestControlApi(a.socket, "GET", "/metrics")).body;
      assert.match(metrics, /^pvx_migrations_total\{outcome="failed"\} 1$/m);
      assert.match(metrics, /^pvx_migrations_total\{outcome="kept-paused"\} 1$/m);
    } finally {
      await Promise.all([stop(a), stop(b)]);
    }
  }));

Deno.test("migration: a target whose disk is full refuses it with a 507, and one that does not converge can fail", () =>
  withTwoHosts(async (sideA, sideB, dir) => {
    const full = `${dir}/full`;
    await Deno.mkdir(full);
    await sh("mount", "-t", "tmpfs", "-o", "size=192k", "pvx-full", full);
    const a = await serveOn(sideA, `${dir}/a`);
    let b: Host | undefined;
    try {
      b = await serveOn(sideB, full);
      const id = await create(a, { bundle: await guestBundle("tally"), args: ["100000", "50"] });
      await printed(a, id, "tick 1\n");
      await migrateFails(a, id, b, /507 this host's disk is full/);
      await runsOn(a, id);
      await holdsNothing(b);

      // With one pre-copy round, a full snapshot of 8 MiB written, pre-copy has not converged.
      const other = await serveOn(sideB, `${dir}/b`, [], PORT + 1);
      try {
        const big = await create(a, { bundle: await guestBundle("dirty"), args: ["8"] });
        await printed(a, big, "committed\n");
        const unconverged = /pre-copy did not converge: round 1 still carried \d{4} pages .*the app runs on here/;
        await migrateFails(a, big, other, unconverged, undefined, ["--max-rounds", "1", "--unconverged", "fail"]);
        assert.equal((await api(a, "GET", `/instances/${big}`)).json.state, "running");
        await printed(a, big, "tick 0\n");
        await holdsNothing(other);
      } finally {
        await stop(other);
      }
    } finally {
      await Promise.all([stop(a), ...(b ? [stop(b)] : [])]);
      await sh("umount", full);
    }
  }));
