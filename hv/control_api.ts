// One instance's control API: HTTP (Hono) on a Unix socket that only its
// owner can open (mode 0600), the way Firecracker serves its API socket.
//
//   GET  /           the instance: app, state (running | paused), threads when paused
//   GET  /stats      hypercalls served by name, their latency histogram (hv/hypercall_stats.ts), and
//                    guest pages resident in host memory
//   POST /pause      park every vCPU
//   POST /resume     continue
//   POST /snapshot   {"path": "...", "stop": false, "diffFrom"?: "...", "seal"?: {...}}: save it to a
//                    snapshot file, whole or only what changed since the snapshot at diffFrom; with
//                    "seal": {"keyFile": "...", "expiresInMs"?: n}, to one blob sealed under that key file's
//                    key (hv/sealed_snapshot.ts), which this process reads: the key itself is never sent
//
// Errors are {"error": {"message": ..., "field"?: ...}} with 400 for a bad
// request, 404 for an unknown route and 409 for a state that does not allow it.

import { Hono } from "hono";
import type { InstanceSession } from "./snapshot.ts";
import { InstanceStateError } from "./instance.ts";
import { SnapshotError } from "./snapshot_format.ts";
import { KeyFileError, readKeyFile, type SealKey } from "./sealed_snapshot.ts";

type ErrorBody = { error: { message: string; field?: string } };

/** An error answer in the shape every pvx API uses (this one and the daemon's, hv/daemon/api.ts). */
export function refuse<S extends 400 | 401 | 404 | 409 | 413 | 422 | 429 | 500 | 502 | 507>(
  status: S,
  message: string,
  field?: string,
) {
  return { body: { error: { message, ...(field ? { field } : {}) } } satisfies ErrorBody, status };
}

export function controlApi(session: InstanceSession, progress?: (done: number, total: number) => void): Hono {
  const app = new Hono();
  const instance = session.instance;
  // A pause under way (a restore --paused whose vCPUs are parking) is waited for: its threads are known only then.
  const describe = async () => {
    const paused = await instance.settledPause();
    return {
      app: session.boot.app,
      state: paused ? "paused" : "running",
      memoryBytes: session.boot.memoryBytes,
      ...(paused
        ? {
          threads: paused.threads.map((t) => ({
            threadId: t.threadId,
            cpu: t.cpu,
            ...(t.pending ? { blockedIn: t.pending.nr } : {}),
          })),
        }
        : {}),
    };
  };

  app.get("/", async (c) => c.json(await describe()));
  app.get("/stats", (c) => c.json(instance.stats()));
  app.post("/pause", async (c) => {
    await instance.pause();
    return c.json(await describe());
  });
  app.post("/resume", async (c) => {
    instance.resume();
    return c.json(await describe());
  });
  app.post("/snapshot", async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch (e) {
      const r = refuse(400, `the body is not JSON: ${(e as Error).message}`);
      return c.json(r.body, r.status);
    }
    const b = typeof body === "object" && body !== null && !Array.isArray(body) ? body as Record<string, unknown> : {};
    const unknown = Object.keys(b).find((k) => !["path", "stop", "diffFrom", "seal"].includes(k));
    if (unknown) return c.json(refuse(400, `unknown field`, unknown).body, 400);
    if (typeof b.path !== "string" || b.path === "") {
      return c.json(refuse(400, "must be the snapshot file's path, a non-empty string", "path").body, 400);
    }
    if (b.stop !== undefined && typeof b.stop !== "boolean") {
      return c.json(refuse(400, "must be true or false", "stop").body, 400);
    }
    const diffFrom = b.diffFrom;
    if (diffFrom !== undefined) {
      if (typeof diffFrom !== "string" || diffFrom === "") {
        return c.json(refuse(400, "must be the parent snapshot's path, a non-empty string", "diffFrom").body, 400);
      }
      const problem = await Deno.stat(diffFrom).then((s) => s.isFile ? "" : "is not a file", (e) => e.message);
      if (problem) return c.json(refuse(400, `${diffFrom}: ${problem}`, "diffFrom").body, 400);
    }
    let seal: { key: SealKey; expiresAt?: Date } | undefined;
    if (b.seal !== undefined) {
      const s = b.seal;
      if (typeof s !== "object" || s === null || Array.isArray(s)) {
        return c.json(refuse(400, 'must be an object: {"keyFile": ..., "expiresInMs"?: ...}', "seal").body, 400);
      }
      const { keyFile, expiresInMs, ...others } = s as Record<string, unknown>;
      const other = Object.keys(others)[0];
      if (other) return c.json(refuse(400, "unknown field", `seal.${other}`).body, 400);
      if (typeof keyFile !== "string" || keyFile === "") {
        return c.json(refuse(400, "must be the key file's path, a non-empty string", "seal.keyFile").body, 400);
      }
      if (expiresInMs !== undefined && !(Number.isSafeInteger(expiresInMs) && (expiresInMs as number) > 0)) {
        return c.json(refuse(400, "must be a whole number of milliseconds above 0", "seal.expiresInMs").body, 400);
      }
      if (diffFrom !== undefined) {
        return c.json(
          refuse(400, "a sealed snapshot is always full: give seal or diffFrom, not both", "seal").body,
          400,
        );
      }
      try {
        seal = {
          key: await readKeyFile(keyFile),
          ...(expiresInMs === undefined ? {} : { expiresAt: new Date(Date.now() + (expiresInMs as number)) }),
        };
      } catch (e) {
        const unreadable = e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied;
        if (!unreadable && !(e instanceof KeyFileError)) throw e;
        return c.json(refuse(400, `cannot use the key file: ${(e as Error).message}`, "seal.keyFile").body, 400);
      }
    }
    try {
      return c.json(
        await session.snapshot(b.path, {
          stop: b.stop === true,
          progress,
          ...(diffFrom ? { diffFrom } : {}),
          ...(seal ? { seal } : {}),
        }),
      );
    } catch (e) {
      // Where the file was to go is the caller's to fix.
      if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied)) throw e;
      return c.json(refuse(400, `cannot write the snapshot there: ${(e as Error).message}`, "path").body, 400);
    }
  });
  app.notFound((c) => c.json(refuse(404, `no route ${c.req.method} ${c.req.path}`).body, 404));
  app.onError((e, c) => {
    if (e instanceof InstanceStateError) return c.json(refuse(409, e.message).body, 409);
    if (e instanceof SnapshotError) return c.json(refuse(400, e.message).body, 400);
    return c.json(refuse(500, `${e.name}: ${e.message}`).body, 500);
  });
  return app;
}

/** Serves `app` on the Unix socket at `path` (mode 0600); a stale socket there is replaced, anything else refused. */
export async function serveOnSocket(
  app: { fetch(request: Request): Response | Promise<Response> },
  path: string,
): Promise<{ close(): Promise<void> }> {
  try {
    const st = await Deno.lstat(path);
    if (!st.isSocket) throw new Error(`--api ${path}: exists and is not a socket`);
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const server = Deno.serve({ path, onListen: () => {} }, app.fetch);
  await Deno.chmod(path, 0o600);
  return {
    close: async () => {
      await server.shutdown();
      await Deno.remove(path).catch(() => {});
    },
  };
}

/** One request to the control API on `socket`, as it answered. */
export async function requestControlApi(socket: string, method: string, route: string, body?: string) {
  try {
    if (!Deno.statSync(socket).isSocket) throw new ControlApiError(socket, 0, "is not a socket");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new ControlApiError(socket, 0, NOT_SERVING);
    throw e;
  }
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  try {
    const response = await fetch(`http://pvx${route}`, {
      method,
      client,
      ...(body ? { body, headers: { "content-type": "application/json" } } : {}),
    });
    return { status: response.status, body: await response.text() };
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    throw new ControlApiError(socket, 0, `cannot reach the instance: ${(e.cause as Error)?.message ?? e.message}`);
  } finally {
    client.close();
  }
}

/** What a client is told when nothing listens on the socket it named: no instance yet, or none any more. */
export const NOT_SERVING = "no instance is serving its control API there";

/** A control API the instance refused or failed: its status and message. */
export class ControlApiError extends Error {
  override name = "ControlApiError";
  constructor(readonly socket: string, readonly status: number, message: string) {
    super(`${socket}: ${message}`);
  }
}

/** One request to an instance's control API: its JSON answer, or a ControlApiError with the API's message. */
export async function callControlApi(socket: string, method: "GET" | "POST", route: string, body?: unknown) {
  const r = await requestControlApi(socket, method, route, body === undefined ? undefined : JSON.stringify(body));
  let answer;
  try {
    answer = JSON.parse(r.body);
  } catch {
    throw new ControlApiError(socket, r.status, `answered ${r.status} with a body that is not JSON: ${r.body}`);
  }
  if (r.status >= 400) throw new ControlApiError(socket, r.status, answer?.error?.message ?? `status ${r.status}`);
  return answer;
}
