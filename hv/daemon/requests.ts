// What the daemon's API checks of every body and query before a handler acts (a 400 names the field), and the
// refusal each kind of error is answered with, shaped as the instance's own control API shapes them
// (hv/control_api.ts): {"error": {"message", "field"?}}.

import type { Context } from "hono";
import { isAbsolute } from "../../abi/host_path.ts";
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
import { NoSuchStored, type ReadyPoint, StoredInUse, type StoredSnapshots, TemplateFailed } from "./snapshots.ts";
import { RecipeError } from "../chunks.ts";
import { MigrationFailed, MigrationSpent, NoSuchMigration } from "./migration_target.ts";
import { MigrationError } from "./migration_source.ts";
import { BadUpload, BundleInUse, NoSuchBundle, type UploadedBundles } from "./bundles.ts";

/** A body or query the API refuses (400), naming the field. */
export class BadInput extends Error {
  constructor(readonly field: string | undefined, message: string) {
    super(message);
  }
}

class NoSuchInstance extends Error {}

/** A body past the route's limit (413). */
class TooLarge extends Error {}

/** The raw body, refused once it passes `limit` bytes, before the rest is read. */
export async function boundedBody(c: Context, limit: number): Promise<Uint8Array<ArrayBuffer>> {
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

export type Body = Record<string, unknown>;

export async function jsonBody(c: Context, fields: readonly string[]): Promise<Body> {
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
export function query(c: Context, names: readonly string[]): Record<string, string> {
  const q = c.req.query();
  const unknown = Object.keys(q).find((k) => !names.includes(k));
  if (unknown) throw new BadInput(unknown, `unknown query parameter; expected ${names.join(", ") || "none"}`);
  return q;
}

/** `?flag`, `?flag=true|1` or `?flag=false|0`. */
export function flag(q: Record<string, string>, name: string): boolean {
  const v = q[name];
  if (v === undefined || v === "false" || v === "0") return false;
  if (v === "" || v === "true" || v === "1") return true;
  throw new BadInput(name, `must be true or false, not ${describeValue(v)}`);
}

/** `?name=N`: checked as optionalInteger checks a body's field, digits read as the number they spell. */
export function queryInteger(q: Record<string, string>, name: string, min: number, max: number): number | undefined {
  const v = q[name];
  return optionalInteger({ [name]: v !== undefined && /^\d+$/.test(v) ? Number(v) : v }, name, min, max);
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

export function optionalInteger(body: Body, field: string, min: number, max: number): number | undefined {
  const v = body[field];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new BadInput(field, `must be a whole number from ${min} to ${max}, not ${describeValue(v)}`);
  }
  return v;
}

export const createFields = [
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

export async function createSpec(body: Body, stored: StoredSnapshots, bundles: UploadedBundles): Promise<CreateSpec> {
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
export async function shareList(body: Body): Promise<ShareSpec[]> {
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
export async function snapshotRequest(body: Body, stored: StoredSnapshots) {
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

export async function templateSpec(body: Body, bundles: UploadedBundles) {
  const bundle = await existingFile(body, "bundle", (id) => bundles.get(id).path);
  if (typeof body.ready !== "string" || !readyPoint.test(body.ready)) {
    throw new BadInput("ready", `must be first-input, call or ms:<milliseconds>, not ${describeValue(body.ready)}`);
  }
  return {
    from: { bundle, ready: body.ready as ReadyPoint, args: stringArray(body, "args"), env: environment(body) },
    cpus: optionalInteger(body, "cpus", 1, maxVcpus),
  };
}

/** `to`: the target daemon's base URL, http or https. */
export function peerUrl(v: unknown): string {
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
export function instanceOf(instances: Instances, c: Context): Instance {
  const instance = instances.get(c.req.param("id")!);
  if (!instance) throw new NoSuchInstance(`no instance ${describeValue(c.req.param("id"))}`);
  return instance;
}

/** The answer to a request that threw `e`: a refusal with the status its kind of error has, else a 500. */
export function refusalOf(e: Error) {
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
