// The daemon's chunk routes (hv/chunks.ts), mounted under /chunks behind the
// daemon's token like every other route: a peer asks which chunks this host
// lacks, then sends only those.
//
//   POST /chunks/missing  {"chunks": [id, ...]}  ->  {"missing": [id, ...]}
//   PUT  /chunks/:id      the chunk's bytes; refused (400) unless they hash to id
//   GET  /chunks/:id      the chunk's bytes, checked against id first

import { Hono } from "hono";
import { refuse } from "../control_api.ts";
import { describeValue } from "../describe_value.ts";
import { isDiskFull } from "../atomic_file.ts";
import { CHUNK_BYTES, ChunkError, type ChunkSource, type ChunkStore, lacking } from "../chunks.ts";

/** Ids per negotiation: 4 GiB of chunks, about 4.3 MB of JSON. A peer with more asks in batches. */
export const MAX_IDS_PER_REQUEST = 65536;

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function chunksApi(store: ChunkStore): Hono {
  const app = new Hono();
  const badId = (id: string) => refuse(400, `${describeValue(id)} is not a chunk id (64 lowercase hex digits)`, "id");

  app.post("/missing", async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch (e) {
      return c.json(refuse(400, `the body is not JSON: ${(e as Error).message}`).body, 400);
    }
    const b = typeof body === "object" && body !== null && !Array.isArray(body) ? body as Record<string, unknown> : {};
    const other = Object.keys(b).find((k) => k !== "chunks");
    if (other) return c.json(refuse(400, "unknown field; expected chunks", other).body, 400);
    const ids = b.chunks;
    if (!Array.isArray(ids) || ids.length > MAX_IDS_PER_REQUEST) {
      return c.json(refuse(400, `must be an array of at most ${MAX_IDS_PER_REQUEST} chunk ids`, "chunks").body, 400);
    }
    const bad = ids.findIndex((id) => typeof id !== "string" || !SHA256_HEX.test(id));
    if (bad >= 0) {
      const r = refuse(400, `${describeValue(ids[bad])} is not a chunk id (64 lowercase hex digits)`, `chunks[${bad}]`);
      return c.json(r.body, 400);
    }
    return c.json({ missing: await lacking(store, ids as string[]) });
  });

  app.put("/:id", async (c) => {
    const id = c.req.param("id");
    if (!SHA256_HEX.test(id)) return c.json(badId(id).body, 400);
    const declared = Number(c.req.header("content-length") ?? NaN);
    if (declared > CHUNK_BYTES) {
      return c.json(refuse(400, `a chunk has at most ${CHUNK_BYTES} bytes, this one ${declared}`).body, 400);
    }
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    const had = await store.has(id);
    try {
      await store.put(id, bytes);
    } catch (e) {
      if (isDiskFull(e)) return c.json(refuse(507, `this host's disk is full: ${(e as Error).message}`).body, 507);
      if (!(e instanceof ChunkError)) throw e;
      return c.json(refuse(400, e.message).body, 400);
    }
    return c.json({ id, bytes: bytes.length, stored: !had }, had ? 200 : 201);
  });

  app.get("/:id", async (c) => {
    const id = c.req.param("id");
    if (!SHA256_HEX.test(id)) return c.json(badId(id).body, 400);
    if (!(await store.has(id))) return c.json(refuse(404, `no chunk ${id}`).body, 404);
    const bytes = await store.get(id);
    return c.body(bytes.slice().buffer, 200, { "content-type": "application/octet-stream" });
  });
  return app;
}

/** Another daemon: its base URL, its bearer token, and how long one request to it may take (PEER_TIMEOUT_MS). */
export interface Peer {
  url: string;
  token?: string;
  timeoutMs?: number;
}

/** How long one request to a peer may take by default: a cut link drops packets silently, and must not hang the sender. */
export const PEER_TIMEOUT_MS = 120_000;

/** A peer daemon refused a request (its status and message), or could not be reached (status 0). */
export class PeerError extends Error {
  override name = "PeerError";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** One request to `peer`; its JSON answer. Every failure, the network's included, is a PeerError naming the request. */
export async function callPeer(
  peer: Peer,
  method: string,
  route: string,
  body?: BodyInit,
  json = false,
  timeoutMs = peer.timeoutMs ?? PEER_TIMEOUT_MS,
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const what = `${peer.url}: ${method} ${route}`;
  let r: Response;
  try {
    r = await fetch(`${peer.url.replace(/\/$/, "")}${route}`, {
      method,
      body,
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        ...(peer.token ? { authorization: `Bearer ${peer.token}` } : {}),
        ...(json ? { "content-type": "application/json" } : {}),
      },
    });
  } catch (e) {
    const why = (e as Error).name === "TimeoutError" ? `no answer within ${timeoutMs / 1000} s` : (e as Error).message;
    throw new PeerError(0, `${what}: ${why}`);
  }
  const text = await r.text().catch((e) => {
    throw new PeerError(0, `${what}: the answer broke off: ${(e as Error).message}`);
  });
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new PeerError(r.status >= 300 ? r.status : 0, `${what}: ${r.status}, not a pvx daemon's JSON answer`);
  }
  if (r.status >= 300) throw new PeerError(r.status, `${what}: ${r.status} ${answer?.error?.message ?? ""}`);
  return answer;
}

/** Chunk PUTs a sender keeps in flight to one peer. */
const PUTS_IN_FLIGHT = 4;

export interface Pushed {
  /** Chunks in the recipe, each counted once. */
  chunks: number;
  /** Chunks the peer lacked, and so were sent. */
  sent: number;
  /** Bytes of chunk data sent. */
  bytes: number;
}

/**
 * Sends a peer the chunks of `ids` it lacks, read from `source`: asks which (in batches), then PUTs each. Every
 * refusal is a PeerError with the peer's status and message.
 */
export async function pushChunks(ids: readonly string[], source: ChunkSource, peer: Peer): Promise<Pushed> {
  const unique = [...new Set(ids)];
  let sent = 0, bytes = 0;
  for (let at = 0; at < unique.length; at += MAX_IDS_PER_REQUEST) {
    const batch = unique.slice(at, at + MAX_IDS_PER_REQUEST);
    const { missing } = await callPeer(peer, "POST", "/chunks/missing", JSON.stringify({ chunks: batch }), true);
    const asked = new Set(batch);
    if (!Array.isArray(missing) || missing.some((id) => !asked.has(id))) {
      throw new PeerError(0, `${peer.url}: POST /chunks/missing: the answer names chunks that were not asked about`);
    }
    // A few PUTs in flight at once: one at a time, each waits out a round trip that the link could fill.
    const queue = [...missing as string[]];
    const putter = async () => {
      for (let id; (id = queue.shift()) !== undefined;) {
        try {
          const chunk = await source.get(id);
          await callPeer(peer, "PUT", `/chunks/${id}`, chunk);
          sent++;
          bytes += chunk.length;
        } catch (e) {
          queue.length = 0; // the others stop after the PUT they are in
          throw e;
        }
      }
    };
    const putters = Array.from({ length: PUTS_IN_FLIGHT }, putter);
    const settled = await Promise.allSettled(putters);
    const failed = settled.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
  return { chunks: unique.length, sent, bytes };
}
