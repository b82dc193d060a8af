// The clients of `pvx serve` (tools/serve_cli.ts) in the Docker shape: `pvx ps`, `start`, `logs`, `attach`,
// `stats`, `kill`, `wait`, `rm`, `pause|resume|snapshot ID`, `migrate ID --to URL`, and the stored templates,
// snapshots and bundles. How they reach the daemon is tools/daemon_client.ts.

import { parseArgs } from "node:util";
import { resolve } from "../abi/host_path.ts";
import { isPe, readHead } from "../hv/bundle.ts";
import type { UploadedBundle } from "../hv/daemon/bundles.ts";
import { cachedBundle, defaultPackOptions } from "./pack.ts";
import { parseShareSpec } from "../abi/share.ts";
import { parseDuration, parseEnvPairs, parseSize, UsageError } from "./run_options.ts";
import { EXIT_PVX_ERROR } from "./report.ts";
import { describeSaved, parseExpiry } from "./snapshot_cli.ts";
import { call, connect, type Daemon, DaemonError, readToken, serverEvents } from "./daemon_client.ts";

const clientOptions = {
  host: { type: "string" as const },
  "token-file": { type: "string" as const },
  json: { type: "boolean" as const, default: false },
};

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

/**
 * `pvx kill [--grace T] ID`: stops the guest (SIGTERM to its process, SIGKILL after the grace, 10 s unless given; at
 * once for 0) and answers once it exited.
 */
export async function killCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...clientOptions, grace: { type: "string" } },
  });
  const grace = values.grace === undefined ? "" : `?graceMs=${Math.round(parseDuration(values.grace, "--grace"))}`;
  const d: Described = await call(
    await connect(values),
    "POST",
    `/instances/${instanceArg("kill", positionals)}/kill${grace}`,
  );
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
