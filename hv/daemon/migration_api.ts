// The daemon's migration routes: a migration out of it, and the steps of one into it (docs/migration.md).

import type { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { describeValue } from "../describe_value.ts";
import { type Instance, InstanceConflict, type Instances } from "./instances.ts";
import type { Metrics } from "./metrics.ts";
import type { StoredSnapshots } from "./snapshots.ts";
import { parseRecipe } from "../chunks.ts";
import { type IncomingMigrations, MigrationFailed, MigrationSpent, parsePlan } from "./migration_target.ts";
import { DEFAULT_ROUNDS, MAX_ROUNDS, migrate, MigrationError, UNCONVERGED } from "./migration_source.ts";
import type { UploadedBundles } from "./bundles.ts";
import {
  BadInput,
  type Body,
  createSpec,
  flag,
  instanceOf,
  jsonBody,
  optionalInteger,
  peerUrl,
  query,
  refusalOf,
  shareList,
} from "./requests.ts";

/** The create fields a migration carries over: how the instance ran, but not what its snapshot holds. */
const migratedFields = ["cpus", "maxHandles", "overlayQuotaBytes", "cpuLimitMs", "timeoutMs", "shares"] as const;

/** What the migration routes work with: the daemon's own, and where a migration out of it keeps its files. */
export interface MigrationContext {
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
export function migrationRoutes(app: Hono, context: MigrationContext) {
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
