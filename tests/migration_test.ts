// Live migration between two hosts on one machine: two network namespaces
// joined by a veth pair, made here and removed after, each with its own
// `pvx serve` and state directory, listening on its own address with its own
// token. The daemons talk to each other only over the veth; the test reaches
// each over its Unix socket. Faults are real too: a proxy on the path flips a
// byte of a chunk in flight.

import assert from "node:assert/strict";
import { guestBundle, pvxCli, pvxStart } from "./support/guests.ts";
import { api, create, type Daemon, logs, printed } from "./support/daemon.ts";

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

/** A `pvx serve` in `side`'s namespace, on its address and on a socket, once it listens. */
async function serveOn(side: Side, dir: string): Promise<Host> {
  const stateDir = `${dir}/state`;
  await Deno.mkdir(dir, { recursive: true });
  const tokenFile = `${dir}/token`;
  await Deno.writeTextFile(tokenFile, crypto.randomUUID());
  const socket = `${dir}/pvx.sock`;
  const url = `http://${side.address}:${PORT}`;
  const process = pvxStart(
    [
      "serve",
      "--socket",
      socket,
      "--listen",
      `${side.address}:${PORT}`,
      "--token-file",
      tokenFile,
      "--state-dir",
      stateDir,
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
async function migrate(from: Host, id: string, to: Host, via?: string) {
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
    } finally {
      await Promise.all([stop(a), stop(b)]);
    }
  }));

/** A fault_proxy.ts in `side`'s namespace in front of `target`, corrupting its `after`-th chunk, once it listens. */
async function corruptingProxy(side: Side, target: Host, after: number, port: number) {
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
      String(after),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  for (let seen = ""; !seen.includes("proxy: listening");) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the fault proxy ended before it listened");
    seen += value;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

Deno.test("migration: a chunk corrupted in flight or a wrong token loses nothing; a commit not opened or replayed is refused", () =>
  withTwoHosts(async (sideA, sideB, dir) => {
    const a = await serveOn(sideA, `${dir}/a`), b = await serveOn(sideB, `${dir}/b`);
    try {
      const id = await create(a, { bundle: await guestBundle("tally"), args: ["100000", "50"] });
      await printed(a, id, "tick 1\n");
      /** The source instance runs on, untouched, and the target has no instance. */
      const untouched = async (target: Host) => {
        assert.equal((await api(a, "GET", `/instances/${id}`)).json.state, "running");
        const last = Number([...(await logs(a, id, "")).stdout.matchAll(/tick (\d+)\n/g)].at(-1)![1]);
        await printed(a, id, `tick ${last + 1}\n`);
        assert.deepEqual((await api(target, "GET", "/instances")).json, []);
      };
      const fails = async (to: Host, via: string | undefined, pattern: RegExp) => {
        const r = await migrate(a, id, to, via);
        assert.equal(r.code, 125, r.stdout);
        assert.match(r.stderr, pattern);
      };

      const corrupt = await corruptingProxy(sideA, b, 2, 7171);
      try {
        await fails(b, corrupt.url, /sending .*PUT \/chunks\/[0-9a-f]{64}: 400 chunk [0-9a-f]{64}: its bytes hash to/);
      } finally {
        await corrupt.close();
      }
      await untouched(b);

      const wrong = { ...b, tokenFile: `${dir}/wrong-token` };
      await Deno.writeTextFile(wrong.tokenFile, "not the token");
      await fails(wrong, undefined, /opening the migration: .*401 a valid bearer token is required/);
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
