// A test's side of a `pvx serve`: requests over its Unix socket, and its
// instances' consoles read as the server-sent events a client gets.

import assert from "node:assert/strict";
import { requestControlApi } from "../../hv/control_api.ts";
import type { RunningPvx } from "./guests.ts";

export interface Daemon {
  socket: string;
  stateDir: string;
  process: RunningPvx;
}

/** One request; the answer's status and its body as JSON. */
export async function api(daemon: Daemon, method: string, route: string, body?: unknown) {
  const r = await requestControlApi(
    daemon.socket,
    method,
    route,
    typeof body === "string" || body === undefined ? body : JSON.stringify(body),
  );
  return { status: r.status, json: JSON.parse(r.body) };
}

export async function create(daemon: Daemon, body: unknown): Promise<string> {
  const r = await api(daemon, "POST", "/instances", body);
  assert.equal(r.status, 201, JSON.stringify(r.json));
  assert.equal(r.json.state, "starting");
  return r.json.id;
}

export interface Logs {
  stdout: string;
  stderr: string;
  exit?: { state: string; exit: { code: number; kind: string } };
}

/**
 * Reads GET /instances/ID/logs?QUERY as server-sent events until the stream ends,
 * or until stdout holds `until`.
 */
export async function logs(daemon: Daemon, id: string, query: string, until?: string): Promise<Logs> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: daemon.socket } });
  try {
    const response = await fetch(`http://pvx/instances/${id}/logs?${query}`, { client });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    const seen: Logs = { stdout: "", stderr: "" };
    let pending = "";
    for await (const text of response.body!.pipeThrough(new TextDecoderStream())) {
      pending += text;
      for (let end; (end = pending.indexOf("\n\n")) >= 0; pending = pending.slice(end + 2)) {
        const fields = Object.fromEntries(pending.slice(0, end).split("\n").map((l) => l.split(/: (.*)/s)));
        const data = JSON.parse(fields.data);
        if (fields.event === "exit") seen.exit = data;
        else seen[fields.event as "stdout" | "stderr"] += data;
      }
      if (until !== undefined && seen.stdout.includes(until)) {
        await response.body!.cancel().catch(() => {});
        return seen;
      }
    }
    if (until !== undefined) throw new Error(`the logs ended before ${JSON.stringify(until)}: ${JSON.stringify(seen)}`);
    return seen;
  } finally {
    client.close();
  }
}

export const printed = (daemon: Daemon, id: string, text: string) => logs(daemon, id, "follow=true", text);
