// `pvx pause|resume|snapshot --api SOCKET` and `pvx api` (clients of a
// running instance's control API, hv/control_api.ts), `pvx restore SNAP`, and
// the API server `pvx run --api` starts.

import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "../abi/host_path.ts";
import { callControlApi, controlApi, requestControlApi, serveOnSocket } from "../hv/control_api.ts";
import type { InstanceSession, SnapshotResult } from "../hv/snapshot.ts";
import { loadSealedSnapshot, loadSnapshot, mergeSnapshot, summarizeSnapshot } from "../hv/snapshot.ts";
import { createKeyFile, isSealed, peekSealedHeader, readKeyFile } from "../hv/sealed_snapshot.ts";
import { MAGIC, SnapshotError } from "../hv/snapshot_format.ts";
import { restoreSnapshot } from "../hv/launch.ts";
import { writeBytesAtomically } from "../hv/atomic_file.ts";
import { parseBundle, sha256Hex } from "../hv/bundle.ts";
import { parseRunOptions, UsageError } from "./run_options.ts";
import { chooseAccel } from "./accel.ts";
import { runPvxNested } from "./nested/api_relay.ts";
import { describeOutcome, exitStatus } from "./report.ts";
import { onStopSignals } from "./signals.ts";
import { prewarm } from "../hv/vcpu_threads.ts";
import { hexBytes } from "../abi/hex.ts";

function progressLine(what: string) {
  const startedAt = performance.now();
  let shown = -1;
  return (done: number, total: number) => {
    if (performance.now() - startedAt < 1000) return;
    const percent = total ? Math.floor((100 * done) / total) : 100;
    if (percent === shown) return;
    shown = percent;
    Deno.stderr.writeSync(new TextEncoder().encode(`\rpvx: ${what}: ${percent}%${percent === 100 ? "\n" : ""}`));
  };
}

/**
 * The control API of the instance `pvx run --api` or `pvx restore --api` starts, once it has one;
 * with `statsFile`, what the instance did is written there as it closes (GET /stats's answer).
 */
export function apiServer(o: { api?: string; statsFile?: string }) {
  let server: Promise<{ close(): Promise<void> }> | undefined;
  let session: InstanceSession | undefined;
  return {
    attach: (s: InstanceSession) => {
      session = s;
      if (o.api) server = serveOnSocket(controlApi(s, progressLine("snapshot")), o.api);
    },
    close: async () => {
      await (await server)?.close();
      if (o.statsFile && session) {
        await writeBytesAtomically(o.statsFile, new TextEncoder().encode(JSON.stringify(session.instance.stats())));
      }
    },
  };
}

/** `pvx pause|resume --api SOCKET`. */
async function changeState(command: "pause" | "resume", argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { api: { type: "string" } } });
  if (!values.api) throw new UsageError(`${command} needs --api <socket>`);
  const answer = await callControlApi(values.api, "POST", `/${command}`);
  console.log(`${answer.app}: ${answer.state}`);
  return 0;
}

export const pauseCommand = (argv: string[]) => changeState("pause", argv);
export const resumeCommand = (argv: string[]) => changeState("resume", argv);

/** `--expires 90s|30m|12h|7d`, in milliseconds. */
export function parseExpiry(text: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text);
  if (!m || Number(m[1]) === 0) {
    throw new UsageError(`--expires ${JSON.stringify(text)}: expected a time such as 90s, 30m, 12h or 7d`);
  }
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}

/** `pvx snapshot --api SOCKET -o SNAP [--diff-from SNAP0 | --seal --key-file KEY [--expires T]] [--stop]`, and merge. */
export async function snapshotCommand(argv: string[]): Promise<number> {
  if (argv[0] === "merge") return await mergeCommand(argv.slice(1));
  const { values } = parseArgs({
    args: argv,
    options: {
      api: { type: "string" },
      output: { type: "string", short: "o" },
      "diff-from": { type: "string" },
      stop: { type: "boolean" },
      seal: { type: "boolean" },
      "key-file": { type: "string" },
      expires: { type: "string" },
    },
  });
  if (!values.api || !values.output) throw new UsageError("snapshot needs --api <socket> and -o <snapshot file>");
  const diffFrom = values["diff-from"];
  if (values.seal && !values["key-file"]) throw new UsageError("snapshot --seal needs --key-file <key>");
  if (!values.seal && (values["key-file"] || values.expires)) {
    throw new UsageError("snapshot: --key-file and --expires are for --seal");
  }
  if (values.seal && diffFrom) throw new UsageError("snapshot: a sealed snapshot is always full: no --diff-from");
  const answer = await callControlApi(values.api, "POST", "/snapshot", {
    path: resolve(values.output),
    stop: values.stop ?? false,
    ...(diffFrom ? { diffFrom: resolve(diffFrom) } : {}),
    ...(values.seal
      ? {
        seal: {
          keyFile: resolve(values["key-file"]!),
          ...(values.expires ? { expiresInMs: parseExpiry(values.expires) } : {}),
        },
      }
      : {}),
  });
  console.log(describeSaved(answer));
  return 0;
}

/** What `pvx snapshot` prints of the control API's answer to POST /snapshot. */
export function describeSaved(answer: SnapshotResult): string {
  const sealed = answer.sealed ? `, sealed${answer.sealed.expiresAt ? ` until ${answer.sealed.expiresAt}` : ""}` : "";
  return `saved ${answer.path}: ${answer.kind}${answer.parent ? ` over ${answer.parent}` : ""}${sealed}, ` +
    `${answer.threads} thread(s), ${answer.pages} page(s), ${answer.fileBytes} bytes, id ${answer.id}`;
}

/** `pvx key create -o KEY`: a new key for sealed snapshots, 32 random bytes, mode 0600; never replaces a file. */
export async function keyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { output: { type: "string", short: "o" } },
  });
  if (positionals.join(" ") !== "create" || !values.output) throw new UsageError("key create needs -o <key file>");
  const key = await createKeyFile(values.output);
  console.log(`created ${values.output}: key id ${hexBytes(key.id)}`);
  return 0;
}

/** `pvx snapshot merge SNAP -o OUT`: the chain below a diff compacted into one full snapshot. */
async function mergeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { output: { type: "string", short: "o" } },
  });
  if (positionals.length !== 1 || !values.output) throw new UsageError("snapshot merge needs <snapshot> -o <output>");
  const merged = await mergeSnapshot(positionals[0], values.output, progressLine("merge"));
  console.log(
    `merged ${merged.chain} snapshot(s) into ${values.output}: ${merged.pages} page(s), ` +
      `${merged.fileBytes} bytes, id ${merged.id}`,
  );
  return 0;
}

/** `pvx api SOCKET METHOD ROUTE`, the body on stdin: prints the status on one line, then the body. */
export async function apiCommand(argv: string[]): Promise<number> {
  const [socket, method, route] = argv;
  if (!socket || !method || !route?.startsWith("/")) throw new UsageError("api needs <socket> <METHOD> </route>");
  const body = method === "GET" ? undefined : await new Response(Deno.stdin.readable).text();
  const answer = await requestControlApi(socket, method, route, body);
  console.log(`${answer.status}\n${answer.body}`);
  return 0;
}

/** `argv` without `--name VALUE`, and that value. */
function takeOption(argv: string[], name: string): [string | undefined, string[]] {
  const at = argv.indexOf(name);
  if (at < 0) return [undefined, argv];
  if (at + 1 >= argv.length) throw new UsageError(`${name} needs a value`);
  return [argv[at + 1], [...argv.slice(0, at), ...argv.slice(at + 2)]];
}

/**
 * `pvx restore SNAP [--bundle app.pvx] [--key-file KEY] [--no-verify] [--paused] [run options]`: a
 * new instance, in this process, from a snapshot or a sealed blob (which needs its key). The
 * bundle is found by the path it had, or beside the snapshot, and must hash to what the
 * snapshot names. With --paused no guest instruction runs until a resume through --api.
 */
export async function restoreCommand(argv: string[]): Promise<number> {
  const [bundleArg, withoutBundle] = takeOption(argv, "--bundle");
  const [keyFile, withoutKey] = takeOption(withoutBundle, "--key-file");
  const trusted = argv.includes("--no-verify");
  const paused = argv.includes("--paused");
  const rest = withoutKey.filter((a) => a !== "--no-verify" && a !== "--paused");
  const o = parseRunOptions(rest);
  if (paused && !o.api) throw new UsageError("restore --paused needs --api <socket>: only a resume there starts it");
  const [path, ...extra] = o.positionals;
  if (!path) throw new UsageError("restore needs a snapshot file");
  // These are in the snapshot's RAM already, set when the app started.
  if (extra.length || o.environment.size) throw new UsageError("restore: arguments and --env are the snapshot's own");
  if (o.memoryMiB !== undefined) {
    throw new UsageError("restore: --memory is the snapshot's own: its RAM is saved whole");
  }
  if (chooseAccel(o.accel) === "nested") return await runPvxNested("restore", argv);
  if (o.overlay) await Deno.mkdir(o.overlay, { recursive: true });
  prewarm();
  let snapshot;
  if (await isSealedFile(path)) {
    if (!keyFile) throw new SnapshotError(path, 0, "is a sealed snapshot: give --key-file <key>");
    snapshot = await loadSealedSnapshot(path, await readKeyFile(keyFile), { verifyMemory: !trusted });
  } else snapshot = loadSnapshot(path, { verifyMemory: !trusted });
  const interrupt = new AbortController();
  const stopListening = onStopSignals((sig) => interrupt.abort(sig));
  const api = apiServer(o);
  try {
    const want = { sha256: snapshot.file.manifest.bundle.sha256, path: String(snapshot.file.manifest.meta.bundlePath) };
    const candidates = bundleArg ? [bundleArg] : [want.path, join(dirname(path), basename(want.path))];
    let bundleBytes: Uint8Array<ArrayBuffer> | undefined, bundlePath = "";
    for (const candidate of candidates) {
      try {
        const bytes = await Deno.readFile(candidate);
        if (await sha256Hex(bytes) === want.sha256) [bundleBytes, bundlePath] = [bytes, candidate];
        else if (bundleArg) {
          throw new SnapshotError(path, 0, `${candidate} is not the bundle it was taken of (SHA-256 ${want.sha256})`);
        }
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (bundleBytes) break;
    }
    if (!bundleBytes) {
      throw new SnapshotError(
        path,
        0,
        `its bundle (SHA-256 ${want.sha256}) is not at ${candidates.join(" or ")}; give --bundle`,
      );
    }
    const bundle = await parseBundle(bundleBytes, bundlePath);
    const { outcome, symbolize } = await restoreSnapshot(bundle, snapshot, {
      args: [],
      timeoutMs: o.timeoutMs,
      shares: o.shares,
      overlayDir: o.overlay,
      cpus: o.cpus,
      limits: o.limits,
      cpuLimitMs: o.cpuLimitMs,
      interrupt: interrupt.signal,
      bundleFile: { path: await Deno.realPath(bundlePath), sha256: want.sha256 },
      onSession: api.attach,
      startPaused: paused,
    });
    if (outcome.kind !== "exit") console.error(describeOutcome(outcome, bundle.manifest.name, symbolize));
    return exitStatus(outcome);
  } finally {
    await api.close();
    snapshot.close();
    stopListening();
  }
}

async function isSealedFile(path: string): Promise<boolean> {
  using file = await Deno.open(path);
  const head = new Uint8Array(8);
  await file.read(head);
  return isSealed(head);
}

/** `pvx inspect BLOB`: what a sealed blob's header says, which nothing vouches for without its key. */
export async function describeSealed(path: string): Promise<string> {
  const h = await peekSealedHeader(path);
  return [
    `${path}: sealed snapshot, format ${h.version}, sealed ${h.createdAt.toISOString()} (unverified: no key given)`,
    `  bundle  ${h.bundleSha256}`,
    `  expires ${h.expiresAt?.toISOString() ?? "never"}`,
    `  key id  ${h.keyId}`,
    `  length  ${h.plaintextLength} bytes of snapshot inside`,
  ].join("\n");
}

/** Whether `head`, a file's first bytes, is a snapshot's magic. */
export function isSnapshot(head: Uint8Array): boolean {
  return head.length >= MAGIC.length && MAGIC.every((b, i) => head[i] === b);
}

/** `pvx inspect SNAP`: the app, its threads and where each stands, pages, sizes and sections, from the manifest. */
export function describeSnapshot(path: string): string {
  const s = summarizeSnapshot(path);
  const chain = s.chain === undefined
    ? undefined
    : Array.isArray(s.chain)
    ? [...s.chain].reverse().join(" <- ")
    : `broken: ${s.chain.broken}`;
  const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return [
    `${path}: ${s.kind} snapshot of ${s.app ?? "?"}, format ${s.format}, taken ${s.createdAt}`,
    `  id      ${s.id}${s.parent ? `\n  parent  ${s.parent}` : ""}${chain ? `\n  chain   ${chain}` : ""}`,
    `  bundle  ${s.bundle.sha256}${s.bundle.path ? ` (was ${s.bundle.path})` : ""}`,
    `  memory  ${
      mib(s.memory.bytes)
    } guest RAM, ${s.memory.pagesStored} page(s) stored in ${s.memory.extents} extent(s)`,
    ...s.threads.map((t) =>
      `  thread  ${t.threadId} on vCPU ${t.cpu}: ${t.blockedIn === null ? "running" : `blocked in ${t.blockedIn}`}`
    ),
    `  handles ${s.openHandles ?? "?"} open; current directory ${s.currentDirectory ?? "?"}`,
    ...s.sections.map((sec) => `  section ${sec.name}: ${sec.length} bytes`),
  ].join("\n");
}
