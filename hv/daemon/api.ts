// The daemon's HTTP API (Hono): instances created, watched, driven and
// removed, the Docker way. Routes and their bodies are in hv/daemon/openapi.ts,
// which GET /openapi.json serves. Every body and query is checked here before a
// handler acts: a 400 names the field. Errors are shaped as the instance's own
// control API shapes them (hv/control_api.ts): {"error": {"message", "field"?}}.

import { Hono } from "hono";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { timingSafeEqual } from "node:crypto";
import { isAbsolute, join } from "../../abi/host_path.ts";
import { refuse } from "../control_api.ts";
import { describeValue } from "../describe_value.ts";
import { maxMemory, maxVcpus, MiB, minMemory } from "../../abi/memory_map.ts";
import { MAX_HANDLES, MIN_HANDLES } from "../../abi/handles.ts";
import { parseShareSpec, type ShareSpec } from "../../abi/share.ts";
import {
  AtCapacity,
  BadSource,
  type CreateSpec,
  type Instance,
  InstanceConflict,
  InstanceRefused,
  type Instances,
} from "./instances.ts";
import type { Metrics } from "./metrics.ts";
import { RING_BYTES } from "./console.ts";
import { openApiDocument } from "./openapi.ts";
import {
  NoSuchStored,
  type ReadyPoint,
  StoredInUse,
  type StoredRecord,
  type StoredSnapshots,
  TemplateFailed,
} from "./snapshots.ts";
import { type ChunkStore, parseRecipe, RecipeError } from "../chunks.ts";
import { chunksApi } from "./chunks_api.ts";
import { IncomingMigrations, MigrationFailed, MigrationSpent, NoSuchMigration, parsePlan } from "./migration_target.ts";
import { DEFAULT_ROUNDS, MAX_ROUNDS, migrate, MigrationError, UNCONVERGED } from "./migration_source.ts";
import { noHypercalls } from "../hypercall_stats.ts";
import {
  BadUpload,
  BundleInUse,
  MAX_UPLOAD_BYTES,
  NoSuchBundle,
  type UploadedBundle,
  type UploadedBundles,
} from "./bundles.ts";

/** A body or query the API refuses (400), naming the field. */
class BadInput extends Error {
  constructor(readonly field: string | undefined, message: string) {
    super(message);
  }
}

class NoSuchInstance extends Error {}

/** A body past the route's limit (413). */
class TooLarge extends Error {}

/** The raw body, refused once it passes `limit` bytes, before the rest is read. */
async function boundedBody(c: Context, limit: number): Promise<Uint8Array<ArrayBuffer>> {
  const tooLarge = () => new TooLarge(`the body is larger than ${limit} bytes`);
  if (Number(c.req.header("content-length")) > limit) throw tooLarge();
  const parts: Uint8Array[] = [];
  let length = 0;
  for await (const part of c.req.raw.body ?? []) {
    if ((length += part.length) > limit) throw tooLarge();
    parts.push(part);
  }
  const bytes = new Uint8Array(length);
  parts.reduce((at, part) => (bytes.set(part, at), at + part.length), 0);
  return bytes;
}

type Body = Record<string, unknown>;

async function jsonBody(c: Context, fields: readonly string[]): Promise<Body> {
  const text = await c.req.text();
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new BadInput(undefined, `the body is not JSON: ${(e as Error).message}`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new BadInput(undefined, `the body must be a JSON object, not ${describeValue(body)}`);
  }
  const unknown = Object.keys(body).find((k) => !fields.includes(k));
  if (unknown) throw new BadInput(unknown, `unknown field; expected one of ${fields.join(", ")}`);
  return body as Body;
}

/** The query's parameters, all of them among `names`. */
function query(c: Context, names: readonly string[]): Record<string, string> {
  const q = c.req.query();
  const unknown = Object.keys(q).find((k) => !names.includes(k));
  if (unknown) throw new BadInput(unknown, `unknown query parameter; expected ${names.join(", ") || "none"}`);
  return q;
}

/** `?flag`, `?flag=true|1` or `?flag=false|0`. */
function flag(q: Record<string, string>, name: string): boolean {
  const v = q[name];
  if (v === undefined || v === "false" || v === "0") return false;
  if (v === "" || v === "true" || v === "1") return true;
  throw new BadInput(name, `must be true or false, not ${describeValue(v)}`);
}

/** A kept template's, snapshot's or uploaded bundle's id, which a field may give instead of a path. */
const STORED_ID = /^[0-9a-f]{12}$/;

/** The file a field names: an absolute path, or the id of one the daemon keeps, which `byId` finds. */
async function existingFile(body: Body, field: string, byId?: (id: string) => string): Promise<string> {
  const path = body[field];
  if (byId && typeof path === "string" && STORED_ID.test(path)) {
    try {
      return byId(path);
    } catch (e) {
      if (e instanceof NoSuchStored || e instanceof NoSuchBundle) throw new BadInput(field, e.message);
      throw e;
    }
  }
  if (typeof path !== "string" || !isAbsolute(path)) {
    throw new BadInput(field, `must be an absolute path, not ${describeValue(path)}`);
  }
  const problem = await Deno.stat(path).then((s) => s.isFile ? "" : "is not a file", (e) => e.message);
  if (problem) throw new BadInput(field, `${path}: ${problem}`);
  return path;
}

function optionalInteger(body: Body, field: string, min: number, max: number): number | undefined {
  const v = body[field];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new BadInput(field, `must be a whole number from ${min} to ${max}, not ${describeValue(v)}`);
  }
  return v;
}

const createFields = [
  "bundle",
  "snapshot",
  "template",
  "args",
  "env",
  "cpus",
  "memoryMiB",
  "maxHandles",
  "overlayQuotaBytes",
  "cpuLimitMs",
  "timeoutMs",
  "shares",
  "overlay",
] as const;
const sources = ["bundle", "snapshot", "template"] as const;

function stringArray(body: Body, field: string): string[] {
  const v = body[field] ?? [];
  if (!Array.isArray(v) || v.some((a) => typeof a !== "string")) {
    throw new BadInput(field, `must be an array of strings, not ${describeValue(v)}`);
  }
  return v;
}

function environment(body: Body): Record<string, string> {
  const env = body.env ?? {};
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new BadInput("env", `must be an object of NAME: value strings, not ${describeValue(env)}`);
  }
  for (const [name, value] of Object.entries(env)) {
    if (!/^[^=\0]+$/.test(name) || typeof value !== "string" || value.includes("\0")) {
      throw new BadInput("env", `${describeValue(name)}: names have no = or NUL, and values are strings`);
    }
  }
  return env as Record<string, string>;
}

async function createSpec(body: Body, stored: StoredSnapshots, bundles: UploadedBundles): Promise<CreateSpec> {
  const given = sources.filter((s) => body[s] !== undefined);
  if (given.length !== 1) {
    throw new BadInput(given[1] ?? "bundle", "give exactly one of bundle, snapshot and template");
  }
  const source = given[0];
  const path = await existingFile(
    body,
    source,
    source === "bundle" ? (id) => bundles.get(id).path : (id) => stored.get(source, id).path,
  );
  const args = stringArray(body, "args");
  const env = environment(body);
  // A snapshot's arguments and environment are in its RAM already, set when the app started.
  if (source !== "bundle" && args.length) {
    throw new BadInput("args", `a ${source} keeps the arguments it was made with`);
  }
  if (source !== "bundle" && Object.keys(env).length) {
    throw new BadInput("env", `a ${source} keeps the environment it was made with`);
  }
  const memoryMiB = optionalInteger(body, "memoryMiB", minMemory / MiB, maxMemory / MiB);
  if (source !== "bundle" && memoryMiB !== undefined) {
    throw new BadInput("memoryMiB", `a ${source} keeps the guest RAM it was made with`);
  }
  const shares = await shareList(body);
  const overlay = body.overlay;
  if (overlay !== undefined && (typeof overlay !== "string" || !isAbsolute(overlay))) {
    throw new BadInput("overlay", `must be an absolute path, not ${describeValue(overlay)}`);
  }
  return {
    from: { [source]: path } as CreateSpec["from"],
    args,
    env,
    cpus: optionalInteger(body, "cpus", 1, maxVcpus),
    ...(memoryMiB === undefined ? {} : { memoryMiB }),
    timeoutMs: optionalInteger(body, "timeoutMs", 1, 2 ** 31),
    maxHandles: optionalInteger(body, "maxHandles", MIN_HANDLES, MAX_HANDLES),
    overlayQuotaBytes: optionalInteger(body, "overlayQuotaBytes", 0, Number.MAX_SAFE_INTEGER),
    cpuLimitMs: optionalInteger(body, "cpuLimitMs", 1, 2 ** 31),
    ...(shares.length ? { shares } : {}),
    ...(overlay === undefined ? {} : { overlay }),
  };
}

/** `shares`: [{hostPath, guestPath, readOnly?}], each an existing host directory at a valid guest path. */
async function shareList(body: Body): Promise<ShareSpec[]> {
  const v = body.shares ?? [];
  if (!Array.isArray(v)) throw new BadInput("shares", `must be an array of shares, not ${describeValue(v)}`);
  const shares = [];
  for (const [i, raw] of v.entries()) {
    const at = `shares[${i}]`;
    const s = typeof raw === "object" && raw !== null && !Array.isArray(raw) ? raw as Body : undefined;
    const unknown = s && Object.keys(s).find((k) => !["hostPath", "guestPath", "readOnly"].includes(k));
    if (!s || unknown) {
      throw new BadInput(unknown ? `${at}.${unknown}` : at, 'must be {"hostPath", "guestPath", "readOnly"?}');
    }
    const hostPath = await existingDirectory(s.hostPath, `${at}.hostPath`);
    if (typeof s.guestPath !== "string") throw new BadInput(`${at}.guestPath`, "must be a guest directory");
    if (s.readOnly !== undefined && typeof s.readOnly !== "boolean") {
      throw new BadInput(`${at}.readOnly`, `must be true or false, not ${describeValue(s.readOnly)}`);
    }
    try {
      shares.push(parseShareSpec(`${hostPath}:${s.guestPath}${s.readOnly ? ":ro" : ""}`));
    } catch (e) {
      throw new BadInput(`${at}.guestPath`, (e as Error).message);
    }
  }
  return shares;
}

async function existingDirectory(path: unknown, field: string): Promise<string> {
  if (typeof path !== "string" || !isAbsolute(path)) {
    throw new BadInput(field, `must be an absolute path, not ${describeValue(path)}`);
  }
  const problem = await Deno.stat(path).then((s) => s.isDirectory ? "" : "is not a directory", (e) => e.message);
  if (problem) throw new BadInput(field, `${path}: ${problem}`);
  return path;
}

/** A snapshot request; without a path, the daemon keeps the snapshot and names it by its id. */
async function snapshotRequest(body: Body, stored: StoredSnapshots) {
  const path = body.path;
  if (path !== undefined && (typeof path !== "string" || !isAbsolute(path))) {
    throw new BadInput("path", `must be the snapshot file's absolute path, not ${describeValue(path)}`);
  }
  if (body.stop !== undefined && typeof body.stop !== "boolean") {
    throw new BadInput("stop", `must be true or false, not ${describeValue(body.stop)}`);
  }
  let diffFrom: string | undefined;
  if (body.diffFrom !== undefined) {
    // The parent may be a template or a snapshot the daemon keeps.
    const id = body.diffFrom;
    const kind = typeof id === "string" && STORED_ID.test(id) ? stored.byId(id)?.kind : undefined;
    diffFrom = await existingFile(body, "diffFrom", (id) => stored.get(kind ?? "snapshot", id).path);
  }
  // Sealed under the daemon's own key file: a client names no key, and is never sent one.
  const seal = body.seal;
  if (seal !== undefined && seal !== true) {
    const s = typeof seal === "object" && seal !== null && !Array.isArray(seal) ? seal as Body : undefined;
    const other = s && Object.keys(s).find((k) => k !== "expiresInMs");
    if (!s || other) {
      throw new BadInput(other ? `seal.${other}` : "seal", 'must be true or {"expiresInMs": n}');
    }
    optionalInteger(s, "expiresInMs", 1, Number.MAX_SAFE_INTEGER);
  }
  return {
    ...(path === undefined ? {} : { path }),
    ...(body.stop === undefined ? {} : { stop: body.stop }),
    ...(diffFrom === undefined ? {} : { diffFrom }),
    ...(seal === undefined ? {} : { seal: seal === true ? {} : seal as { expiresInMs?: number } }),
  };
}

const readyPoint = /^(?:first-input|call|ms:\d{1,9})$/;

async function templateSpec(body: Body, bundles: UploadedBundles) {
  const bundle = await existingFile(body, "bundle", (id) => bundles.get(id).path);
  if (typeof body.ready !== "string" || !readyPoint.test(body.ready)) {
    throw new BadInput("ready", `must be first-input, call or ms:<milliseconds>, not ${describeValue(body.ready)}`);
  }
  return {
    from: { bundle, ready: body.ready as ReadyPoint, args: stringArray(body, "args"), env: environment(body) },
    cpus: optionalInteger(body, "cpus", 1, maxVcpus),
  };
}

export interface DaemonApiOptions {
  /** Required as `Authorization: Bearer <token>` on every request (the TCP listener). */
  token?: string;
  /** The chunk store the /chunks routes serve (hv/daemon/chunks_api.ts); without one there are none. */
  chunks?: ChunkStore;
  /**
   * Where a migration out of this daemon keeps its round snapshots while it runs. With `chunks`, it makes the
   * migration routes: /instances/:id/migrate, and /migrations for migrations into this daemon.
   */
  migrationDir?: string;
  /** How long a migration out of this daemon waits for each answer of its target (PEER_TIMEOUT_MS by default). */
  peerTimeoutMs?: number;
}

/** The create fields a migration carries over: how the instance ran, but not what its snapshot holds. */
const migratedFields = ["cpus", "maxHandles", "overlayQuotaBytes", "cpuLimitMs", "timeoutMs", "shares"] as const;

/** `to`: the target daemon's base URL, http or https. */
function peerUrl(v: unknown): string {
  let url: URL | undefined;
  try {
    url = typeof v === "string" ? new URL(v) : undefined;
  } catch {
    // Said below.
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.pathname !== "/" || url.search || url.hash) {
    throw new BadInput("to", `must be a daemon's base URL, http://HOST:PORT, not ${describeValue(v)}`);
  }
  return url.origin;
}

/** The instance the request's `:id` names, or a 404. */
function instanceOf(instances: Instances, c: Context): Instance {
  const instance = instances.get(c.req.param("id")!);
  if (!instance) throw new NoSuchInstance(`no instance ${describeValue(c.req.param("id"))}`);
  return instance;
}

export function daemonApi(
  instances: Instances,
  stored: StoredSnapshots,
  bundles: UploadedBundles,
  metrics: Metrics,
  options: DaemonApiOptions = {},
): Hono {
  const app = new Hono();
  const find = (c: Context) => instanceOf(instances, c);
  /** The live instances whose RAM maps `record`'s file: those started from it or from a diff over it. */
  const liveUsers = (record: StoredRecord) =>
    instances.list().filter((i) => {
      const from = i.record.from;
      const source = stored.byPath("snapshot" in from ? from.snapshot : "template" in from ? from.template : "");
      return i.running && source !== undefined && stored.chain(source).includes(record);
    }).map((i) => i.record.id);

  if (options.token !== undefined) {
    const want = new TextEncoder().encode(`Bearer ${options.token}`);
    app.use("*", async (c, next) => {
      const got = new TextEncoder().encode(c.req.header("authorization") ?? "");
      if (got.length !== want.length || !timingSafeEqual(got, want)) {
        c.header("WWW-Authenticate", "Bearer");
        return c.json(refuse(401, "a valid bearer token is required").body, 401);
      }
      await next();
    });
  }

  if (options.chunks) app.route("/chunks", chunksApi(options.chunks));
  if (options.chunks && options.migrationDir !== undefined) {
    const incoming = new IncomingMigrations(options.chunks, join(options.migrationDir, "incoming"));
    const { migrationDir: workDir, peerTimeoutMs } = options;
    migrationRoutes(app, { instances, stored, bundles, metrics, incoming, workDir, peerTimeoutMs });
  }
  app.get("/healthz", (c) => {
    query(c, []);
    return c.json({ ok: true });
  });
  app.get("/openapi.json", (c) => c.json(openApiDocument));
  app.get("/metrics", async (c) => {
    query(c, []);
    const { maxInstances, maxMemoryMiB } = instances.capacity;
    const capacity = { memoryMiB: instances.inUse().memoryMiB, maxInstances, maxMemoryMiB };
    const counts = await instances.counts();
    return c.text(metrics.render(instances.countByState(), capacity, counts), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });

  app.post("/instances", async (c) => {
    const requestedAt = performance.now();
    query(c, []);
    const instance = await instances.create(
      await createSpec(await jsonBody(c, createFields), stored, bundles),
      requestedAt,
    );
    return c.json({ id: instance.record.id, state: instance.record.state }, 201);
  });
  app.get("/instances", (c) => {
    query(c, []);
    return c.json(instances.list().map((i) => i.describe()));
  });
  app.get("/instances/:id", (c) => {
    query(c, []);
    return c.json(find(c).describe());
  });
  app.get("/instances/:id/stats", async (c) => {
    query(c, []);
    const stats = await find(c).stats();
    return c.json(stats ?? { hypercalls: noHypercalls(), residentPages: 0 });
  });
  app.delete("/instances/:id", async (c) => {
    const force = flag(query(c, ["force"]), "force");
    const instance = find(c);
    await instances.remove(instance, force);
    return c.json(instance.describe());
  });
  app.post("/instances/:id/pause", async (c) => {
    query(c, []);
    return c.json(await find(c).pause());
  });
  app.post("/instances/:id/resume", async (c) => {
    query(c, []);
    return c.json(await find(c).resume());
  });
  app.post("/instances/:id/snapshot", async (c) => {
    query(c, []);
    const instance = find(c);
    const request = await snapshotRequest(await jsonBody(c, ["path", "stop", "diffFrom", "seal"]), stored);
    if (request.path !== undefined) return c.json(await instance.snapshot({ ...request, path: request.path }));
    if (request.seal) throw new BadInput("path", "a sealed snapshot is the client's to hold: give the blob's path");
    const saved = await instance.snapshot({ ...request, path: stored.newPath() });
    return c.json({ ...saved, snapshot: stored.addSnapshot(saved, instance.record.id).id });
  });
  app.post("/instances/:id/kill", async (c) => {
    query(c, []);
    return c.json(await find(c).kill());
  });
  app.post("/instances/:id/wait", async (c) => {
    query(c, []);
    return c.json(await find(c).wait());
  });
  app.post("/instances/:id/stdin", async (c) => {
    const close = flag(query(c, ["close"]), "close");
    const instance = find(c);
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    await instance.write(bytes, close);
    return c.json({ written: bytes.length, closed: close });
  });
  app.get("/instances/:id/logs", (c) => {
    const q = query(c, ["follow", "tail"]);
    const follow = flag(q, "follow");
    const tail = q.tail === undefined ? RING_BYTES / 1024 : Number(q.tail);
    if (q.tail !== undefined && !(q.tail !== "" && Number.isFinite(tail) && tail >= 0)) {
      throw new BadInput("tail", `must be a number of KiB, 0 or more, not ${describeValue(q.tail)}`);
    }
    const instance = find(c);
    return streamSSE(c, async (stream) => {
      const gone = new AbortController();
      stream.onAbort(() => gone.abort());
      for await (const chunk of instance.console.read(Math.floor(tail * 1024), follow, gone.signal)) {
        await stream.writeSSE({ event: chunk.stream, data: JSON.stringify(chunk.text) });
      }
      if (!instance.running) await stream.writeSSE({ event: "exit", data: JSON.stringify(instance.describe()) });
    });
  });

  /** Live instances that run it, and the kept templates and snapshots a restore of which reads it. */
  const bundleUsers = (bundle: UploadedBundle) => [
    ...instances.list().filter((i) => {
      const { from, bundleFile } = i.record;
      return i.running && ("bundle" in from ? from.bundle : bundleFile) === bundle.path;
    }).map((i) => `instance ${i.record.id}`),
    ...(["template", "snapshot"] as const).flatMap((kind) =>
      stored.list(kind).filter((r) => {
        const file = stored.describe(r).file;
        return "bundle" in file && file.bundle.sha256 === bundle.sha256;
      }).map((r) => `${kind} ${r.id}`)
    ),
  ];
  app.post("/bundles", async (c) => {
    query(c, []);
    const { bundle, created } = await bundles.add(await boundedBody(c, MAX_UPLOAD_BYTES));
    return c.json(bundle, created ? 201 : 200);
  });
  app.get("/bundles", (c) => {
    query(c, []);
    return c.json(bundles.list());
  });
  app.get("/bundles/:id", (c) => {
    query(c, []);
    return c.json(bundles.get(c.req.param("id")!));
  });
  app.delete("/bundles/:id", async (c) => {
    query(c, []);
    const bundle = bundles.get(c.req.param("id")!);
    await bundles.remove(bundle, bundleUsers(bundle));
    return c.json(bundle);
  });

  for (const kind of ["template", "snapshot"] as const) {
    const route = `/${kind}s`;
    app.get(route, (c) => {
      query(c, []);
      return c.json(stored.list(kind).map((r) => stored.describe(r)));
    });
    app.get(`${route}/:id`, (c) => {
      query(c, []);
      return c.json(stored.describe(stored.get(kind, c.req.param("id")!)));
    });
    app.delete(`${route}/:id`, async (c) => {
      query(c, []);
      const record = stored.get(kind, c.req.param("id")!);
      const described = stored.describe(record);
      await stored.remove(record, liveUsers(record));
      return c.json(described);
    });
  }
  app.post("/templates", async (c) => {
    query(c, []);
    const spec = await templateSpec(await jsonBody(c, ["bundle", "ready", "args", "env", "cpus"]), bundles);
    return c.json(stored.describe(await stored.makeTemplate(instances.pvx, spec.from, spec.cpus)), 201);
  });

  app.notFound((c) => c.json(refuse(404, `no route ${c.req.method} ${c.req.path}`).body, 404));
  app.onError((e, c) => {
    const { status, body } = refusalOf(e);
    return c.json(body, status);
  });
  return app;
}

/** The answer to a request that threw `e`: a refusal with the status its kind of error has, else a 500. */
function refusalOf(e: Error) {
  if (e instanceof BadInput || e instanceof BadSource || e instanceof RecipeError) {
    return refuse(400, e.message, e.field);
  }
  if (e instanceof NoSuchInstance || e instanceof NoSuchStored || e instanceof NoSuchBundle) {
    return refuse(404, e.message);
  }
  if (e instanceof BadUpload) return refuse(400, e.message, "body");
  if (e instanceof TooLarge) return refuse(413, e.message, "body");
  if (e instanceof AtCapacity) return refuse(e.status, e.message);
  if (e instanceof StoredInUse || e instanceof BundleInUse) return refuse(409, e.message);
  if (e instanceof TemplateFailed) return refuse(422, e.message);
  if (e instanceof NoSuchMigration) return refuse(404, e.message);
  if (e instanceof MigrationSpent) return refuse(409, e.message);
  if (e instanceof MigrationFailed || e instanceof MigrationError) return refuse(e.status, e.message);
  if (e instanceof InstanceConflict) return refuse(409, e.message);
  if (e instanceof InstanceRefused) return refuse(e.status === 400 ? 400 : 409, e.message);
  return refuse(500, `${e.name}: ${e.message}`);
}

/** What the migration routes work with: the daemon's own, and where a migration out of it keeps its files. */
interface MigrationContext {
  instances: Instances;
  stored: StoredSnapshots;
  bundles: UploadedBundles;
  metrics: Metrics;
  incoming: IncomingMigrations;
  workDir: string;
  peerTimeoutMs?: number;
}

/**
 * A migration out of this daemon (POST /instances/:id/migrate), and the routes of one into it: open (POST
 * /migrations), stage a round (PUT /migrations/:id/chain/:n), commit (POST /migrations/:id), start (POST
 * /migrations/:id/start) and abort (DELETE /migrations/:id). docs/migration.md tells the steps.
 */
function migrationRoutes(app: Hono, context: MigrationContext) {
  const { instances, stored, bundles, metrics, incoming, workDir, peerTimeoutMs } = context;
  app.post("/instances/:id/migrate", async (c) => {
    const progress = flag(query(c, ["progress"]), "progress");
    const instance = instanceOf(instances, c);
    const body = await jsonBody(c, ["to", "token", "maxRounds", "unconverged"]);
    const url = peerUrl(body.to);
    if (body.token !== undefined && (typeof body.token !== "string" || body.token === "")) {
      throw new BadInput("token", "must be the target daemon's bearer token, a non-empty string");
    }
    const maxRounds = optionalInteger(body, "maxRounds", 1, MAX_ROUNDS) ?? DEFAULT_ROUNDS;
    const unconverged = body.unconverged ?? UNCONVERGED[0];
    if (!UNCONVERGED.includes(unconverged as typeof UNCONVERGED[number])) {
      throw new BadInput("unconverged", `must be ${UNCONVERGED.join(" or ")}, not ${describeValue(unconverged)}`);
    }
    const to = {
      url,
      ...(body.token ? { token: body.token as string } : {}),
      ...(peerTimeoutMs === undefined ? {} : { timeoutMs: peerTimeoutMs }),
    };
    const log = (line: string) => console.error(`pvx serve: migrating ${instance.record.id} to ${url}: ${line}`);
    const request = { to, maxRounds, unconverged: unconverged as typeof UNCONVERGED[number], keep: incoming.store };
    const moved = async (say: (line: string) => void) => {
      try {
        const report = await migrate(instance, request, workDir, say);
        metrics.migrated("moved", { downtimeSeconds: report.downtimeMs / 1000, bytesSent: report.bytesSent });
        return report;
      } catch (e) {
        metrics.migrated(e instanceof MigrationError && e.keptPaused ? "kept-paused" : "failed");
        throw e;
      }
    };
    if (!progress) return c.json(await moved(log));
    // With ?progress: each step as a "progress" event while it runs, then the "report", or an "error" with the
    // status and body the plain request would have answered.
    return streamSSE(c, async (stream) => {
      const said: Promise<void>[] = [];
      const say = (line: string) => {
        log(line);
        said.push(stream.writeSSE({ event: "progress", data: JSON.stringify(line) }));
      };
      const outcome = await moved(say).then(
        (report) => ({ event: "report", data: report }),
        (e) => {
          const { status, body } = refusalOf(e);
          return { event: "error", data: { status, ...body } };
        },
      );
      await Promise.all(said);
      await stream.writeSSE({ event: outcome.event, data: JSON.stringify(outcome.data) });
    });
  });

  app.post("/migrations", (c) => {
    query(c, []);
    return c.json(incoming.open(), 201);
  });
  app.delete("/migrations/:id", async (c) => {
    query(c, []);
    const drop = async (id: string) => {
      const instance = instances.get(id);
      if (instance) await instances.remove(instance, true);
    };
    return c.json({ id: c.req.param("id"), aborted: true, ...await incoming.abort(c.req.param("id")!, drop) });
  });
  app.put("/migrations/:id/chain/:index", async (c) => {
    query(c, []);
    const id = c.req.param("id")!, index = Number(c.req.param("index"));
    incoming.expectOpen(id);
    await incoming.stage(id, index, parseRecipe(await jsonBody(c, ["length", "chunks"]), "recipe"));
    return c.json({ id, index, staged: true });
  });
  app.post("/migrations/:id/start", async (c) => {
    query(c, []);
    const instance = instances.get(await incoming.committed(c.req.param("id")!));
    if (!instance) throw new MigrationSpent(`migration ${c.req.param("id")}: its instance was removed here`);
    return c.json(await instance.takeOver());
  });
  app.post("/migrations/:id", async (c) => {
    const requestedAt = performance.now();
    query(c, []);
    const body = await jsonBody(c, ["bundle", "chain", "console", "create"]);
    const migration = c.req.param("id")!;
    // A commit this daemon did not open, or a replay, is refused before its plan is even read.
    incoming.expectOpen(migration);
    const plan = parsePlan(body);
    const create = body.create ?? {};
    if (typeof create !== "object" || create === null || Array.isArray(create)) {
      throw new BadInput("create", `must be an object of ${migratedFields.join(", ")}`);
    }
    const unknown = Object.keys(create).find((k) => !(migratedFields as readonly string[]).includes(k));
    if (unknown) throw new BadInput(`create.${unknown}`, `unknown field; expected one of ${migratedFields.join(", ")}`);
    const prefixed = async <T>(check: () => Promise<T>) => {
      try {
        return await check();
      } catch (e) {
        if (e instanceof BadInput) throw new BadInput(`create.${e.field}`, e.message);
        throw e;
      }
    };
    // A share this host lacks refuses the migration before anything is written.
    await prefixed(() => shareList(create as Body));
    const made = await incoming.commit(migration, async (staged) => {
      const id = await instances.newId();
      let instance: Instance | undefined;
      try {
        const dir = instances.records.migrated(id);
        await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
        const files = await incoming.assemble(plan, dir, bundles, staged);
        const spec = await prefixed(() => createSpec({ ...create, snapshot: files.snapshot }, stored, bundles));
        instance = await instances.create(
          { ...spec, id, bundleFile: files.bundleFile, printedBefore: plan.console, incoming: migration },
          requestedAt,
        );
        await instance.started();
        return id;
      } catch (e) {
        // The target keeps no half instance.
        if (instance) {
          const printed = instance.console.replay(4096).filter((c) => c.stream === "stderr").map((c) => c.text)
            .join("");
          await instances.remove(instance, true).catch(() => {});
          if (e instanceof InstanceConflict) {
            throw new MigrationFailed(422, `its restore here failed: ${printed.trim() || e.message}`);
          }
        } else await instances.dropId(id);
        throw e;
      }
    });
    return c.json(instances.get(made)!.describe(), 201);
  });
}
