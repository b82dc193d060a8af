// The daemon's HTTP API (Hono): instances created, watched, driven and
// removed, the Docker way. Routes and their bodies are in hv/daemon/openapi.ts,
// which GET /openapi.json serves. Every body and query is checked
// (hv/daemon/requests.ts) before a handler acts: a 400 names the field. The
// migration routes are hv/daemon/migration_api.ts.

import { Hono } from "hono";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { timingSafeEqual } from "node:crypto";
import { join } from "../../abi/host_path.ts";
import { refuse } from "../control_api.ts";
import { describeValue } from "../describe_value.ts";
import { type Instances, MAX_KILL_GRACE_MS } from "./instances.ts";
import type { Metrics } from "./metrics.ts";
import { RING_BYTES } from "./console.ts";
import { openApiDocument } from "./openapi.ts";
import type { StoredRecord, StoredSnapshots } from "./snapshots.ts";
import type { ChunkStore } from "../chunks.ts";
import { chunksApi } from "./chunks_api.ts";
import { IncomingMigrations } from "./migration_target.ts";
import { noHypercalls } from "../hypercall_stats.ts";
import { MAX_UPLOAD_BYTES, type UploadedBundle, type UploadedBundles } from "./bundles.ts";
import {
  BadInput,
  boundedBody,
  createFields,
  createSpec,
  flag,
  instanceOf,
  jsonBody,
  query,
  queryInteger,
  refusalOf,
  snapshotRequest,
  templateSpec,
} from "./requests.ts";
import { migrationRoutes } from "./migration_api.ts";

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
    const graceMs = queryInteger(query(c, ["graceMs"]), "graceMs", 0, MAX_KILL_GRACE_MS);
    return c.json(await find(c).kill(graceMs));
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
