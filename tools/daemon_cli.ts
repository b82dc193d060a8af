// `pvx serve`, the daemon (hv/daemon/), and its clients in the Docker shape:
// `pvx ps`, `start`, `logs`, `kill`, `wait`, `rm`, `pause|resume|snapshot ID`
// and `migrate ID --to URL`.
// A client finds the daemon by --host or PVX_HOST: a Unix socket's path, or
// http://HOST:PORT with the bearer token in --token-file or PVX_TOKEN_FILE.

import { parseArgs } from "node:util";
import { join, resolve } from "../abi/host_path.ts";
import { type InstanceRecord, Records } from "../hv/daemon/records.ts";
import { summarizeSnapshot } from "../hv/snapshot.ts";
import { isSealed, readKeyFile } from "../hv/sealed_snapshot.ts";
import { maxMemory, MiB } from "../abi/memory_map.ts";
import { DEFAULT_MEMORY_MIB, isPe, parseBundle, readHead } from "../hv/bundle.ts";
import { Instances } from "../hv/daemon/instances.ts";
import { Metrics } from "../hv/daemon/metrics.ts";
import { StoredSnapshots } from "../hv/daemon/snapshots.ts";
import { type BundleCheck, type UploadedBundle, UploadedBundles } from "../hv/daemon/bundles.ts";
import { cachedBundle, defaultPackOptions } from "./pack.ts";
import { parseShareSpec } from "../abi/share.ts";
import { daemonApi } from "../hv/daemon/api.ts";
import { ChunkStore } from "../hv/chunks.ts";
import { requestControlApi, serveOnSocket } from "../hv/control_api.ts";
import { parseDuration, parseEnvPairs, parseSize, UsageError } from "./run_options.ts";
import { onStopSignals } from "./signals.ts";
import { EXIT_PVX_ERROR } from "./report.ts";
import { describeSaved, parseExpiry } from "./snapshot_cli.ts";

const pvxScript = new URL("./pvx.ts", import.meta.url).pathname;

/** `$XDG_STATE_HOME/pvx`, or `~/.local/state/pvx`: instance records and daemon-made overlays survive a reboot. */
function defaultStateDir(): string {
  const home = Deno.env.get("HOME") ?? "/tmp";
  return join(Deno.env.get("XDG_STATE_HOME") ?? join(home, ".local", "state"), "pvx");
}

/** Where `pvx serve` listens, and clients look, when neither is told. */
const defaultSocket = () => join(defaultStateDir(), "serve.sock");

async function readToken(file: string): Promise<string> {
  const token = (await Deno.readTextFile(file)).trim();
  if (!token) throw new UsageError(`--token-file ${file}: is empty`);
  return token;
}

/**
 * The guest RAM an instance of `from` will have, in MiB: what the create asks for, else the bundle's own (an exe
 * is packed with the default), else the snapshot's.
 */
export async function guestMemoryMiB(from: InstanceRecord["from"], memoryMiB?: number): Promise<number> {
  if ("bundle" in from) {
    if (memoryMiB !== undefined) return memoryMiB;
    const bytes = await Deno.readFile(from.bundle);
    return isPe(bytes) ? DEFAULT_MEMORY_MIB : (await parseBundle(bytes, from.bundle)).manifest.memoryMiB;
  }
  const path = "snapshot" in from ? from.snapshot : from.template;
  // A sealed blob's RAM size is inside the ciphertext: counted as the most a guest can have, never too little.
  if (isSealed(await readHead(path))) return maxMemory / MiB;
  return summarizeSnapshot(path).memory.bytes / MiB;
}

/** An uploaded bundle is checked as `pvx run` checks one: every hash, offset and manifest field. */
export const checkBundle: BundleCheck = async (bytes, file) => ({
  name: (await parseBundle(bytes, file)).manifest.name,
});

/** Processes kept waiting for creates: enough for a few in a row, each refilled while its instance starts. */
const DEFAULT_WARM = 2;

/**
 * `pvx serve [--socket PATH] [--listen HOST:PORT --token-file FILE] [--state-dir DIR] [--max-instances N]
 * [--max-memory MiB] [--key-file KEY] [--peer-timeout T] [--warm N]`: serves until SIGINT or SIGTERM, then kills
 * its instances. It prints where it listens once it does. Past a --max limit, a create is refused (429, 507) rather
 * than the host overcommitted. Sealed snapshots are sealed with, and restored with, KEY. A migration out of it
 * waits T (default 120s) for each answer of its target but the commit's, which waits for a restore there. N
 * processes (default 2) wait, loaded, for the next creates.
 */
export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: "string" },
      listen: { type: "string" },
      "token-file": { type: "string" },
      "state-dir": { type: "string" },
      "max-instances": { type: "string" },
      "max-memory": { type: "string" },
      "key-file": { type: "string" },
      "peer-timeout": { type: "string" },
      warm: { type: "string", default: String(DEFAULT_WARM) },
    },
  });
  const peerTimeoutMs = values["peer-timeout"] === undefined
    ? undefined
    : parseDuration(values["peer-timeout"], "--peer-timeout");
  const limit = (name: "max-instances" | "max-memory") => {
    const v = values[name];
    if (v === undefined) return undefined;
    if (!/^[1-9]\d{0,8}$/.test(v)) {
      throw new UsageError(`--${name} ${JSON.stringify(v)}: expected a whole number above 0`);
    }
    return Number(v);
  };
  const capacity = { maxInstances: limit("max-instances"), maxMemoryMiB: limit("max-memory"), guestMemoryMiB };
  if (!/^\d{1,3}$/.test(values.warm)) throw new UsageError(`--warm ${JSON.stringify(values.warm)}: expected 0 to 999`);
  let tcp: { hostname: string; port: number } | undefined;
  if (values.listen !== undefined) {
    const m = /^(.+):(\d{1,5})$/.exec(values.listen);
    if (!m || Number(m[2]) > 65535) throw new UsageError(`--listen ${values.listen}: expected HOST:PORT`);
    if (!values["token-file"]) {
      throw new UsageError("--listen needs --token-file: over TCP every request must carry it");
    }
    tcp = { hostname: m[1].replace(/^\[(.*)\]$/, "$1"), port: Number(m[2]) };
  }
  const token = values["token-file"] ? await readToken(values["token-file"]) : undefined;
  const stateDir = resolve(values["state-dir"] ?? defaultStateDir());
  const metrics = new Metrics();
  const keyFile = values["key-file"] === undefined ? undefined : resolve(values["key-file"]);
  // Checked now, so a bad key file stops the daemon at its start rather than failing each sealed snapshot.
  if (keyFile) await readKeyFile(keyFile);
  const instances = new Instances(
    new Records(stateDir),
    [Deno.execPath(), "run", "-A", pvxScript],
    metrics,
    capacity,
    keyFile,
    Number(values.warm),
  );
  const stored = new StoredSnapshots(stateDir);
  const bundles = await UploadedBundles.open(stateDir, checkBundle);
  const migration = {
    chunks: new ChunkStore(join(stateDir, "chunks")),
    migrationDir: join(stateDir, "migrations"),
    peerTimeoutMs,
  };
  // What a killed daemon's migration left half done: no client was told it finished.
  await Deno.remove(migration.migrationDir, { recursive: true }).catch(() => {});
  const closers: (() => Promise<void>)[] = [];
  if (!tcp || values.socket) {
    // The socket's mode (0600) is its access control: no token.
    const socket = resolve(values.socket ?? join(stateDir, "serve.sock"));
    // serveOnSocket replaces a stale socket, which must not be a live daemon's.
    if (await requestControlApi(socket, "GET", "/healthz").then(() => true, () => false)) {
      throw new DaemonError(`${socket}: a daemon is serving there already`);
    }
    const server = await serveOnSocket(daemonApi(instances, stored, bundles, metrics, migration), socket);
    closers.push(server.close);
    console.log(`pvx serve: listening on ${socket}`);
  }
  if (tcp) {
    const app = daemonApi(instances, stored, bundles, metrics, { token, ...migration });
    const listening = Promise.withResolvers<Deno.NetAddr>();
    const server = Deno.serve({ ...tcp, onListen: listening.resolve }, app.fetch);
    closers.push(() => server.shutdown());
    const addr = await listening.promise;
    console.log(`pvx serve: listening on http://${addr.hostname}:${addr.port}`);
  }
  const stop = Promise.withResolvers<void>();
  const stopListening = onStopSignals(() => stop.resolve());
  await stop.promise;
  stopListening();
  await instances.stopAll();
  await Promise.all(closers.map((close) => close()));
  return 0;
}

/** The daemon refused a request or could not be reached. */
export class DaemonError extends Error {
  override name = "DaemonError";
}

export interface Daemon {
  fetch(route: string, init?: RequestInit): Promise<Response>;
  /** Reached on a Unix socket, so on this machine: it can read a path this client names. */
  local: boolean;
}

const clientOptions = {
  host: { type: "string" as const },
  "token-file": { type: "string" as const },
  json: { type: "boolean" as const, default: false },
};

export async function connect(values: { host?: string; "token-file"?: string }): Promise<Daemon> {
  const host = values.host ?? Deno.env.get("PVX_HOST") ?? defaultSocket();
  const reach = async (url: string, init: RequestInit & { client?: Deno.HttpClient }) => {
    try {
      return await fetch(url, init);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      throw new DaemonError(`${host}: cannot reach the daemon: ${(e.cause as Error)?.message ?? e.message}`);
    }
  };
  if (/^https?:\/\//.test(host)) {
    const tokenFile = values["token-file"] ?? Deno.env.get("PVX_TOKEN_FILE");
    const token = tokenFile ? await readToken(tokenFile) : undefined;
    return {
      local: false,
      fetch: (route, init = {}) =>
        reach(`${host.replace(/\/$/, "")}${route}`, {
          ...init,
          headers: {
            ...init.headers as Record<string, string>,
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
        }),
    };
  }
  return {
    local: true,
    fetch: async (route, init = {}) => {
      // One client per request: it holds the connection, and a long `logs -f` must not be shared.
      const client = Deno.createHttpClient({ proxy: { transport: "unix", path: host } });
      const response = await reach(`http://pvx${route}`, { ...init, client }).catch((e) => {
        client.close();
        throw e;
      });
      // The client is closed once the body has been read to its end.
      const body = response.body?.pipeThrough(new TransformStream({ flush: () => client.close() }));
      return new Response(body, response);
    },
  };
}

/** One request (with a JSON `body` or raw `bytes`): its JSON answer, or a DaemonError with the daemon's message. */
export async function call(
  daemon: Daemon,
  method: string,
  route: string,
  body?: unknown,
  bytes?: Uint8Array<ArrayBuffer>,
) {
  const response = await daemon.fetch(route, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    ...(bytes === undefined ? {} : { body: bytes }),
  });
  const text = await response.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new DaemonError(`the daemon answered ${response.status} with a body that is not JSON: ${text}`);
  }
  if (response.status >= 400) {
    const e = answer?.error;
    throw new DaemonError(`${e?.field ? `${e.field}: ` : ""}${e?.message ?? `status ${response.status}`}`);
  }
  return answer;
}

interface Described {
  id: string;
  state: string;
  from: Record<string, string>;
  uptimeSeconds?: number;
  exit?: { code: number; kind: string };
}

const fromText = (d: Described) => Object.entries(d.from).map(([k, v]) => `${k} ${v}`).join();
const exitText = (d: Described) => d.exit ? `${d.exit.kind} ${d.exit.code}` : "";

/** Rows as columns padded to their widest cell, the `docker ps` way. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

function print(json: boolean, answer: unknown, human: string) {
  console.log(json ? JSON.stringify(answer) : human);
}

/** The one instance id a command takes. */
function instanceArg(command: string, positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError(`${command} needs one instance id`);
  return encodeURIComponent(positionals[0]);
}

/** `pvx ps [--json]`: every instance the daemon knows, running or not. */
export async function psCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: clientOptions });
  const list: Described[] = await call(await connect(values), "GET", "/instances");
  const rows = [
    ["ID", "STATE", "UPTIME", "EXIT", "FROM"],
    ...list.map((
      d,
    ) => [d.id, d.state, d.uptimeSeconds === undefined ? "" : `${d.uptimeSeconds}s`, exitText(d), fromText(d)]),
  ];
  print(values.json, list, table(rows));
  return 0;
}

/** `pvx start app.pvx|app.exe|--from TPL|--snapshot SNAP [options] [-- args]`: prints the new instance's id. */
export async function startCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...clientOptions,
      from: { type: "string" },
      snapshot: { type: "string" },
      cpus: { type: "string" },
      memory: { type: "string" },
      "max-handles": { type: "string" },
      "overlay-quota": { type: "string" },
      "cpu-limit": { type: "string" },
      timeout: { type: "string" },
      env: { type: "string", multiple: true, default: [] },
      share: { type: "string", multiple: true, default: [] },
      overlay: { type: "string" },
      upload: { type: "boolean", default: false },
    },
  });
  const end = argv.indexOf("--");
  const [app, ...extra] = end < 0 ? positionals : positionals.slice(0, positionals.length - (argv.length - end - 1));
  const args = end < 0 ? [] : argv.slice(end + 1);
  const given = [app, values.from, values.snapshot].filter((s) => s !== undefined);
  if (given.length !== 1 || extra.length) {
    throw new UsageError("start needs one of: an app, --from <template>, --snapshot <snap>");
  }
  const env = Object.fromEntries(parseEnvPairs(values.env));
  const daemon = await connect(values);
  const answer = await call(daemon, "POST", "/instances", {
    ...(app !== undefined ? { bundle: await bundleField(daemon, app, values.upload) } : {}),
    ...(values.from !== undefined ? { template: await pathOrId(values.from) } : {}),
    ...(values.snapshot !== undefined ? { snapshot: await pathOrId(values.snapshot) } : {}),
    ...(args.length ? { args } : {}),
    ...(Object.keys(env).length ? { env } : {}),
    ...(values.share.length ? { shares: values.share.map(shareField) } : {}),
    ...(values.cpus === undefined ? {} : { cpus: Number(values.cpus) }),
    ...(values.memory === undefined ? {} : { memoryMiB: Number(values.memory) }),
    ...(values["max-handles"] === undefined ? {} : { maxHandles: Number(values["max-handles"]) }),
    ...(values["overlay-quota"] === undefined
      ? {}
      : { overlayQuotaBytes: parseSize("--overlay-quota", values["overlay-quota"]) }),
    ...(values["cpu-limit"] === undefined ? {} : { cpuLimitMs: parseDuration(values["cpu-limit"], "--cpu-limit") }),
    ...(values.timeout === undefined ? {} : { timeoutMs: parseDuration(values.timeout) }),
    ...(values.overlay === undefined ? {} : { overlay: resolve(values.overlay) }),
  });
  print(values.json, answer, answer.id);
  return 0;
}

/**
 * Copies an instance's console, as GET /instances/ID/logs streams it (SSE), to this process's stdout
 * and stderr; resolves with how the instance ended, if it ended while streaming.
 */
async function copyConsole(daemon: Daemon, id: string, query: Record<string, string>): Promise<Described | undefined> {
  const encoder = new TextEncoder();
  let ended: Described | undefined;
  for await (
    const { event, data } of serverEvents(await daemon.fetch(`/instances/${id}/logs?${new URLSearchParams(query)}`))
  ) {
    if (event === "stdout") await Deno.stdout.write(encoder.encode(data as string));
    if (event === "stderr") await Deno.stderr.write(encoder.encode(data as string));
    if (event === "exit") ended = data as Described;
  }
  return ended;
}

/** The events of a server-sent event stream the daemon answered, each with its data parsed; a refusal throws. */
export async function* serverEvents(response: Response): AsyncGenerator<{ event: string; data: unknown }> {
  if (response.status >= 400) {
    const e = (await response.json())?.error;
    throw new DaemonError(`${e?.field ? `${e.field}: ` : ""}${e?.message}`);
  }
  let pending = "";
  for await (const text of response.body!.pipeThrough(new TextDecoderStream())) {
    pending += text;
    for (let end; (end = pending.indexOf("\n\n")) >= 0; pending = pending.slice(end + 2)) {
      const fields = Object.fromEntries(
        pending.slice(0, end).split("\n").map((
          line,
        ) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]),
      );
      yield { event: fields.event, data: JSON.parse(fields.data) };
    }
  }
}

/** `pvx logs [-f] [--tail KiB] ID`: the instance's stdout on stdout, its stderr on stderr. */
export async function logsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...clientOptions, follow: { type: "boolean", short: "f", default: false }, tail: { type: "string" } },
  });
  const id = instanceArg("logs", positionals);
  await copyConsole(await connect(values), id, {
    follow: String(values.follow),
    ...(values.tail ? { tail: values.tail } : {}),
  });
  return 0;
}

/**
 * `pvx attach [--tail KiB] [--no-stdin] ID`: this terminal becomes the instance's console, the `docker
 * attach` way. Its output from now on (or the last KiB with --tail) is copied here; what is typed goes
 * to its stdin, which is closed at end of input. It ends with the instance's status; Ctrl-C detaches and
 * leaves the instance running.
 */
export async function attachCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...clientOptions, tail: { type: "string", default: "0" }, "no-stdin": { type: "boolean" } },
  });
  const id = instanceArg("attach", positionals);
  const daemon = await connect(values);
  const detach = new AbortController();
  const onInterrupt = () => detach.abort();
  Deno.addSignalListener("SIGINT", onInterrupt);
  if (!values["no-stdin"]) {
    forwardStdin(daemon, id, detach.signal).catch((e) => {
      if (!detach.signal.aborted) console.error(`pvx: attach: input no longer reaches ${positionals[0]}: ${e.message}`);
    });
  }
  try {
    const ended = await Promise.race([
      copyConsole(daemon, id, { follow: "true", tail: values.tail }),
      new Promise<"detached">((resolve) => detach.signal.addEventListener("abort", () => resolve("detached"))),
    ]);
    if (ended === "detached") {
      console.error(`pvx: detached from ${positionals[0]}, which goes on running`);
      return 0;
    }
    const d = ended ?? await call(daemon, "GET", `/instances/${id}`);
    return d.exit ? d.exit.code & 0xff : EXIT_PVX_ERROR;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    // Reading stdin cannot be cancelled: once this returns, the process exits without waiting for it.
    detach.abort();
  }
}

/** Sends what this process reads on stdin to the instance's, chunk by chunk, and closes it at end of input. */
async function forwardStdin(daemon: Daemon, id: string, stop: AbortSignal) {
  const post = (bytes: Uint8Array<ArrayBuffer>, close: boolean) =>
    call(daemon, "POST", `/instances/${id}/stdin${close ? "?close=true" : ""}`, undefined, bytes);
  for await (const bytes of Deno.stdin.readable) {
    if (stop.aborted) return;
    await post(bytes, false);
  }
  if (!stop.aborted) await post(new Uint8Array(), true);
}

/** `pvx stats ID [--json]`: what the instance's process counted, the way `docker stats` shows a container. */
export async function statsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: clientOptions });
  const stats = await call(await connect(values), "GET", `/instances/${instanceArg("stats", positionals)}/stats`);
  const calls = Object.entries(stats.hypercalls.calls as Record<string, number>).sort(([, a], [, b]) => b - a);
  const total = calls.reduce((n, [, c]) => n + c, 0);
  const human = [
    `guest pages resident: ${stats.residentPages} (${((stats.residentPages * 4) / 1024).toFixed(1)} MiB)`,
    `hypercalls: ${total}, ${stats.hypercalls.seconds.toFixed(3)} s in the host`,
    ...(calls.length ? ["", table([["CALL", "COUNT"], ...calls.map(([name, n]) => [name, String(n)])])] : []),
  ].join("\n");
  print(values.json, stats, human);
  return 0;
}

/** `pvx wait ID`: prints how it ended, and exits with its status, as `pvx run` of it would have. */
export async function waitCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: clientOptions });
  const d: Described = await call(await connect(values), "POST", `/instances/${instanceArg("wait", positionals)}/wait`);
  print(values.json, d, `${d.id}: ${exitText(d)}`);
  return d.exit ? d.exit.code & 0xff : EXIT_PVX_ERROR;
}

/** `pvx kill ID`: stops the guest (SIGTERM to its process, SIGKILL after a grace) and answers once it exited. */
export async function killCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: clientOptions });
  const d: Described = await call(await connect(values), "POST", `/instances/${instanceArg("kill", positionals)}/kill`);
  print(values.json, d, `${d.id}: ${exitText(d)}`);
  return 0;
}

/** `pvx rm [-f] ID`: forgets an instance that has ended (with -f, kills a running one first). */
export async function rmCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...clientOptions, force: { type: "boolean", short: "f", default: false } },
  });
  const route = `/instances/${instanceArg("rm", positionals)}${values.force ? "?force=true" : ""}`;
  const d: Described = await call(await connect(values), "DELETE", route);
  print(values.json, d, d.id);
  return 0;
}

/** `pvx pause|resume ID`: the daemon's form of `pvx pause|resume --api SOCKET`. */
export async function changeStateCommand(command: "pause" | "resume", argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: clientOptions });
  const id = instanceArg(`${command} (or ${command} --api <socket>)`, positionals);
  const d: Described = await call(await connect(values), "POST", `/instances/${id}/${command}`);
  print(values.json, d, `${d.id}: ${d.state}`);
  return 0;
}

/**
 * `pvx migrate ID --to URL [--to-token-file FILE] [--max-rounds N] [--unconverged stop-and-copy|fail]`: moves a
 * running instance to the daemon at URL (with that daemon's token), which runs it on; this daemon's instance then
 * ends as "migrated".
 */
export async function migrateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...clientOptions,
      to: { type: "string" },
      "to-token-file": { type: "string" },
      "max-rounds": { type: "string" },
      unconverged: { type: "string" },
    },
  });
  const id = instanceArg("migrate", positionals);
  if (!values.to) throw new UsageError("migrate needs --to URL: the target daemon, http://HOST:PORT");
  const maxRounds = values["max-rounds"] === undefined ? undefined : Number(values["max-rounds"]);
  if (maxRounds !== undefined && !Number.isInteger(maxRounds)) {
    throw new UsageError(`--max-rounds ${values["max-rounds"]}: expected a whole number of rounds`);
  }
  const token = values["to-token-file"] ? await readToken(values["to-token-file"]) : undefined;
  console.error(`pvx: migrating ${positionals[0]} to ${values.to}...`);
  const body = {
    to: values.to,
    ...(token ? { token } : {}),
    ...(maxRounds === undefined ? {} : { maxRounds }),
    ...(values.unconverged === undefined ? {} : { unconverged: values.unconverged }),
  };
  const answer = await (await connect(values)).fetch(`/instances/${id}/migrate?progress=true`, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  // deno-lint-ignore no-explicit-any
  let report: any;
  for await (const { event, data } of serverEvents(answer)) {
    if (event === "progress") console.error(`pvx: ${data}`);
    if (event === "report") report = data;
    if (event === "error") throw new DaemonError((data as { error: { message: string } }).error.message);
  }
  if (!report) throw new DaemonError("the daemon's answer ended before its report");
  const rounds = report.rounds.map((r: { kind: string; pages: number }) => `${r.kind} ${r.pages}`).join(", ");
  print(
    values.json,
    report,
    `${positionals[0]}: migrated to ${report.to.url} as ${report.to.instance}\n` +
      `  rounds    ${report.rounds.length} (pages: ${rounds})${report.converged ? "" : ", not converged"}\n` +
      `  sent      ${report.bytesSent} bytes in ${report.chunksSent} of ${report.chunks} chunks\n` +
      `  downtime  ${report.downtimeMs} ms of ${report.totalMs} ms (final round ${report.downtime.finalRoundMs} ms, ` +
      `restore there ${report.downtime.commitMs} ms, start ${report.downtime.startMs} ms)`,
  );
  return 0;
}

/**
 * A kept template's or snapshot's id as it is, or a file's path made absolute: the daemon's fields take
 * either, and a name that is both an id and a file here means the file.
 */
async function pathOrId(value: string): Promise<string> {
  if (/^[0-9a-f]{12}$/.test(value) && !(await Deno.stat(value).then(() => true, () => false))) return value;
  return resolve(value);
}

/**
 * `pvx snapshot ID [-o SNAP] [--diff-from SNAP0 | --seal [--expires T]] [--stop]`: the daemon's form of
 * `pvx snapshot --api SOCKET`; it seals with its own key file. Without -o the daemon keeps the snapshot, and
 * prints its id.
 */
export async function daemonSnapshotCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...clientOptions,
      output: { type: "string", short: "o" },
      "diff-from": { type: "string" },
      stop: { type: "boolean", default: false },
      seal: { type: "boolean", default: false },
      expires: { type: "string" },
    },
  });
  const id = instanceArg("snapshot (or snapshot --api <socket>)", positionals);
  const diffFrom = values["diff-from"];
  if (values.expires && !values.seal) throw new UsageError("snapshot: --expires is for --seal");
  const answer = await call(await connect(values), "POST", `/instances/${id}/snapshot`, {
    ...(values.output ? { path: resolve(values.output) } : {}),
    stop: values.stop,
    ...(diffFrom ? { diffFrom: await pathOrId(diffFrom) } : {}),
    ...(values.seal ? { seal: values.expires ? { expiresInMs: parseExpiry(values.expires) } : true } : {}),
  });
  print(values.json, answer, `${describeSaved(answer)}${answer.snapshot ? `, kept as ${answer.snapshot}` : ""}`);
  return 0;
}

interface StoredDescribed {
  id: string;
  kind: string;
  createdAt: string;
  fileBytes: number;
  parent?: string;
  from: Record<string, unknown>;
  file: { app?: string; kind?: string; broken?: string };
}

/** `pvx template|snapshot|bundle ls|inspect|rm [ID]`, and `pvx bundle upload APP`: what the daemon keeps. */
export async function storedCommand(kind: "template" | "snapshot" | "bundle", argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: clientOptions });
  const daemon = await connect(values);
  const one = () => {
    if (positionals.length !== 1) throw new UsageError(`${kind} ${verb} needs one ${kind} id`);
    return `/${kind}s/${encodeURIComponent(positionals[0])}`;
  };
  if (verb === "ls" && kind === "bundle") {
    const list: UploadedBundle[] = await call(daemon, "GET", "/bundles");
    const rows = [
      ["ID", "UPLOADED", "SIZE", "APP", "SHA256"],
      ...list.map((d) => [d.id, d.uploadedAt, `${(d.bytes / (1 << 20)).toFixed(1)} MiB`, d.name, d.sha256]),
    ];
    print(values.json, list, table(rows));
  } else if (verb === "ls") {
    const list: StoredDescribed[] = await call(daemon, "GET", `/${kind}s`);
    const rows = [
      ["ID", "CREATED", "SIZE", "APP", "FROM"],
      ...list.map((d) => [
        d.id,
        d.createdAt,
        `${(d.fileBytes / (1 << 20)).toFixed(1)} MiB`,
        d.file.broken ? `broken: ${d.file.broken}` : d.file.app ?? "?",
        "bundle" in d.from
          ? `${d.from.bundle} at ${d.from.ready}`
          : `instance ${d.from.instance}${d.parent ? `, diff over ${d.parent}` : ""}`,
      ]),
    ];
    print(values.json, list, table(rows));
  } else if (verb === "inspect") {
    const d = await call(daemon, "GET", one());
    console.log(JSON.stringify(d, null, values.json ? undefined : 2));
  } else if (verb === "rm") {
    const d: { id: string } = await call(daemon, "DELETE", one());
    print(values.json, d, d.id);
  } else if (verb === "upload" && kind === "bundle") {
    if (positionals.length !== 1) throw new UsageError("bundle upload needs one app.pvx or app.exe");
    const d = await upload(daemon, positionals[0]);
    print(values.json, d, d.id);
  } else {
    const verbs = kind === "bundle" ? "ls, inspect, upload or rm" : "ls, inspect or rm";
    throw new UsageError(`${kind} ${verb ?? ""}: expected ${verbs}`);
  }
  return 0;
}

/** `--share HOST:GUEST[:ro]` as the API takes it, the host directory made absolute. */
function shareField(spec: string) {
  let share;
  try {
    share = parseShareSpec(
      spec.startsWith("/") ? spec : `${resolve(spec.slice(0, spec.indexOf(":")))}${spec.slice(spec.indexOf(":"))}`,
    );
  } catch (e) {
    throw new UsageError(`--share ${spec}: ${(e as Error).message}`);
  }
  return { hostPath: share.hostPath, guestPath: share.guestPath, ...(share.readOnly ? { readOnly: true } : {}) };
}

/** What a create names its app by: its path for a daemon on this machine, else (or with --upload) an upload's id. */
async function bundleField(daemon: Daemon, app: string, forceUpload: boolean): Promise<string> {
  return forceUpload || !daemon.local ? (await upload(daemon, app)).id : resolve(app);
}

/**
 * Sends the bundle at `path` to the daemon (POST /bundles); an exe is packed here first, as `pvx run`
 * packs one. For a daemon that cannot read this machine's files.
 */
async function upload(daemon: Daemon, path: string): Promise<UploadedBundle> {
  console.error(`pvx: uploading ${path}`);
  const bundlePath = isPe(await readHead(path)) ? await cachedBundle(path, defaultPackOptions) : path;
  const bytes = await Deno.readFile(bundlePath);
  return await call(daemon, "POST", "/bundles", undefined, bytes);
}

/** `pvx template create APP --ready R [--cpus N] [--env N=V]... [-- args]` without -o: the daemon makes and keeps it. */
export async function daemonTemplateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...clientOptions,
      ready: { type: "string" },
      cpus: { type: "string" },
      env: { type: "string", multiple: true, default: [] },
      upload: { type: "boolean", default: false },
    },
  });
  const end = argv.indexOf("--");
  const args = end < 0 ? [] : argv.slice(end + 1);
  const [app, ...extra] = end < 0 ? positionals : positionals.slice(0, positionals.length - args.length);
  if (app === undefined || extra.length) throw new UsageError("template create needs one app");
  if (!values.ready) throw new UsageError("template create needs --ready first-input|call|ms:<N>");
  const daemon = await connect(values);
  const d: StoredDescribed = await call(daemon, "POST", "/templates", {
    bundle: await bundleField(daemon, app, values.upload),
    ready: values.ready,
    ...(args.length ? { args } : {}),
    ...(values.env.length ? { env: Object.fromEntries(parseEnvPairs(values.env)) } : {}),
    ...(values.cpus === undefined ? {} : { cpus: Number(values.cpus) }),
  });
  print(values.json, d, d.id);
  return 0;
}
