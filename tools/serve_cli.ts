// `pvx serve`: the daemon (hv/daemon/) on a Unix socket and, with a bearer token, on TCP.

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
import { type BundleCheck, UploadedBundles } from "../hv/daemon/bundles.ts";
import { daemonApi } from "../hv/daemon/api.ts";
import { ChunkStore } from "../hv/chunks.ts";
import { requestControlApi, serveOnSocket } from "../hv/control_api.ts";
import { parseDuration, UsageError } from "./run_options.ts";
import { onStopSignals } from "./signals.ts";
import { DaemonError, defaultStateDir, readToken } from "./daemon_client.ts";

const pvxScript = new URL("./pvx.ts", import.meta.url).pathname;

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
