// The daemon API's OpenAPI 3.1 document, served at GET /openapi.json.
// tests/serve_test.ts checks that it names exactly the routes hv/daemon/api.ts serves.

import { MAX_UPLOAD_BYTES } from "./bundles.ts";
import { MAX_IDS_PER_REQUEST } from "./chunks_api.ts";
import { DEFAULT_ROUNDS, MAX_ROUNDS, UNCONVERGED } from "./migration_source.ts";
import { MAX_CHAIN } from "./migration_target.ts";
import { KILL_GRACE_MS, MAX_KILL_GRACE_MS } from "./instances.ts";

const error = { $ref: "#/components/schemas/Error" };
const instance = { $ref: "#/components/schemas/Instance" };
const stored = { $ref: "#/components/schemas/Stored" };
const id = { name: "id", in: "path", required: true, schema: { type: "string" } };
const json = (schema: unknown) => ({ content: { "application/json": { schema } } });
const answer = (description: string, schema: unknown) => ({ description, ...json(schema) });
const errors = {
  400: answer("a bad body or query; error.field names what was wrong", error),
  404: answer("no such route or instance", error),
  409: answer("the instance's state does not allow it", error),
};
const share = {
  type: "object",
  required: ["hostPath", "guestPath"],
  additionalProperties: false,
  properties: {
    hostPath: { type: "string", description: "an absolute path to a directory" },
    guestPath: { type: "string", description: "where the guest sees it, such as C:\\data" },
    readOnly: { type: "boolean" },
  },
};
const uploaded = {
  type: "object",
  properties: {
    id: { type: "string", description: "the first 12 hex digits of its SHA-256" },
    sha256: { type: "string" },
    name: { type: "string", description: "the app's name, from its manifest" },
    bytes: { type: "integer" },
    path: { type: "string", description: "where the daemon keeps it" },
    uploadedAt: { type: "string", format: "date-time" },
  },
};
const chunkId = { type: "string", pattern: "^[0-9a-f]{64}$" };
const binary = { content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } };
const recipe = {
  type: "object",
  required: ["length", "chunks"],
  additionalProperties: false,
  description: "a file as chunks; bytes no chunk covers are zero",
  properties: {
    length: { type: "integer", minimum: 0 },
    chunks: {
      type: "array",
      items: {
        type: "object",
        required: ["offset", "length", "id"],
        additionalProperties: false,
        properties: { offset: { type: "integer" }, length: { type: "integer" }, id: chunkId },
      },
    },
  },
};
const onStored = (kind: string) => ({
  get: {
    summary: `the ${kind} and what its file holds`,
    parameters: [id],
    responses: { 200: answer("it", stored), ...errors },
  },
  delete: {
    summary: `delete the ${kind}: refused (409) while an instance runs from it or a kept diff is laid over it`,
    parameters: [id],
    responses: { 200: answer("deleted", stored), ...errors },
  },
});
const onInstance = (summary: string, ok: unknown, extra: Record<string, unknown> = {}) => ({
  summary,
  parameters: [id],
  responses: { 200: answer("done", ok), ...errors },
  ...extra,
});

export const openApiDocument = {
  openapi: "3.1.0",
  info: {
    title: "pvx serve",
    version: "1",
    description: "Instances, each a micro-VM in its own process. Over TCP every request needs `Authorization: Bearer`.",
  },
  components: {
    securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
    schemas: {
      Error: {
        type: "object",
        required: ["error"],
        properties: {
          error: {
            type: "object",
            required: ["message"],
            properties: { message: { type: "string" }, field: { type: "string" } },
          },
        },
      },
      Stored: {
        type: "object",
        required: ["id", "kind", "path", "createdAt", "from", "fileBytes", "file"],
        properties: {
          id: { type: "string", description: "12 hex digits: the start of the file's id" },
          kind: { enum: ["template", "snapshot"] },
          path: { type: "string" },
          createdAt: { type: "string", format: "date-time" },
          from: { type: "object", description: "a template: bundle, ready, args, env; a snapshot: instance" },
          parent: { type: "string", description: "a diff's parent, when the daemon keeps it" },
          cpus: { type: "integer" },
          fileBytes: { type: "integer" },
          file: { type: "object", description: "as `pvx inspect` shows it, or {broken} if the file is damaged" },
        },
      },
      Instance: {
        type: "object",
        required: ["id", "state", "from", "args", "memoryMiB", "overlay", "createdAt"],
        properties: {
          id: { type: "string" },
          state: { enum: ["starting", "running", "paused", "exited", "lost"] },
          from: { type: "object", description: "one of bundle, snapshot, template: the path it was created from" },
          args: { type: "array", items: { type: "string" } },
          cpus: { type: "integer" },
          memoryMiB: { type: "integer", description: "its guest RAM, counted against the daemon's --max-memory" },
          maxHandles: { type: "integer" },
          overlayQuotaBytes: { type: "integer" },
          cpuLimitMs: { type: "integer" },
          timeoutMs: { type: "integer" },
          shares: { type: "array", items: share },
          overlay: { type: "string" },
          createdAt: { type: "string", format: "date-time" },
          pid: { type: "integer", description: "its process, while it runs" },
          uptimeSeconds: { type: "number" },
          threads: {
            type: "array",
            description: "while paused: each thread, its vCPU and the number of the hypercall it is blocked in",
            items: {
              type: "object",
              properties: { threadId: { type: "integer" }, cpu: { type: "integer" }, blockedIn: { type: "integer" } },
            },
          },
          exit: {
            type: "object",
            properties: {
              code: { type: "integer", description: "the process's status: the app's exit code, or pvx's 124-126" },
              kind: {
                enum: [
                  "exit",
                  "snapshotted",
                  "migrated",
                  "timeout",
                  "cpu-limit",
                  "killed",
                  "fault",
                  "error",
                  "interrupted",
                  "crashed",
                ],
              },
              at: { type: "string", format: "date-time" },
            },
          },
        },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    "/healthz": { get: { summary: "the daemon answers", responses: { 200: answer("ok", { type: "object" }) } } },
    "/openapi.json": { get: { summary: "this document", responses: { 200: answer("the document", {}) } } },
    "/metrics": {
      get: {
        summary: "Prometheus text: instances by state, exits by kind, create latency by source, hypercalls by " +
          "name and their latency, guest pages resident",
        responses: { 200: { description: "metrics", content: { "text/plain": { schema: { type: "string" } } } } },
      },
    },
    "/instances": {
      post: {
        summary: "create and start an instance from exactly one of bundle, snapshot, template",
        requestBody: json({
          type: "object",
          additionalProperties: false,
          properties: {
            bundle: { type: "string", description: "absolute path of a .pvx or .exe, or an uploaded bundle's id" },
            snapshot: {
              type: "string",
              description: "a snapshot's absolute path, the id of one the daemon keeps, or a blob sealed under its key",
            },
            template: { type: "string", description: "a template's absolute path, or the id of one the daemon keeps" },
            args: { type: "array", items: { type: "string" }, description: "bundle only" },
            env: { type: "object", additionalProperties: { type: "string" }, description: "bundle only" },
            cpus: { type: "integer", minimum: 1 },
            memoryMiB: {
              type: "integer",
              minimum: 8,
              maximum: 1024,
              description: "bundle only: guest RAM in place of the bundle's own",
            },
            maxHandles: { type: "integer", minimum: 5, description: "open handles; past it ERROR_TOO_MANY_OPEN_FILES" },
            overlayQuotaBytes: {
              type: "integer",
              minimum: 0,
              description: "the overlay's bytes; past it ERROR_DISK_FULL",
            },
            cpuLimitMs: {
              type: "integer",
              minimum: 1,
              description: "CPU time; past it the instance ends, kind cpu-limit",
            },
            timeoutMs: { type: "integer", minimum: 1 },
            shares: {
              type: "array",
              items: share,
              description:
                "host directories the guest sees; a snapshot's or template's must be given the same guest paths",
            },
            overlay: { type: "string", description: "kept; by default the daemon makes one and rm removes it" },
          },
        }),
        responses: {
          201: answer("starting", {
            type: "object",
            properties: { id: { type: "string" }, state: { type: "string" } },
          }),
          400: errors[400],
          429: answer("the daemon runs --max-instances instances already", error),
          507: answer("the instance's guest RAM would take the daemon past --max-memory", error),
        },
      },
      get: {
        summary: "every instance",
        responses: { 200: answer("the instances", { type: "array", items: instance }) },
      },
    },
    "/instances/{id}": {
      get: onInstance("the instance", instance),
      delete: onInstance("forget an instance that has ended; ?force kills a running one first", instance, {
        parameters: [id, { name: "force", in: "query", schema: { type: "boolean" } }],
      }),
    },
    "/instances/{id}/stats": {
      get: onInstance("what its process counted: hypercalls by name, their latency, guest pages resident", {
        type: "object",
        properties: {
          hypercalls: {
            type: "object",
            properties: {
              calls: { type: "object", additionalProperties: { type: "integer" } },
              buckets: {
                type: "array",
                items: { type: "integer" },
                description: "calls per latency bucket (not cumulative), bounds as /metrics gives them, then +Inf",
              },
              seconds: { type: "number" },
            },
          },
          residentPages: { type: "integer", description: "4 KiB guest pages in host memory; 0 once it ended" },
        },
      }),
    },
    "/instances/{id}/pause": { post: onInstance("park every vCPU", instance) },
    "/instances/{id}/resume": { post: onInstance("continue", instance) },
    "/instances/{id}/snapshot": {
      post: onInstance(
        "save a snapshot (as the instance's POST /snapshot); without a path the daemon keeps it, named by the " +
          "answer's `snapshot` id",
        { type: "object" },
        {
          requestBody: json({
            type: "object",
            additionalProperties: false,
            properties: {
              path: { type: "string" },
              diffFrom: { type: "string", description: "a path, or the id of a snapshot or template the daemon keeps" },
              stop: { type: "boolean" },
              seal: {
                description: "one blob sealed under the daemon's key file (pvx serve --key-file); never a diff",
                oneOf: [
                  { type: "boolean", enum: [true] },
                  {
                    type: "object",
                    additionalProperties: false,
                    properties: { expiresInMs: { type: "integer", minimum: 1 } },
                  },
                ],
              },
            },
          }),
        },
      ),
    },
    "/instances/{id}/kill": {
      post: onInstance(
        "SIGTERM (the guest stops and reports), SIGKILL after the grace; answers once it exited",
        instance,
        {
          parameters: [id, {
            name: "graceMs",
            in: "query",
            schema: { type: "integer", minimum: 0, maximum: MAX_KILL_GRACE_MS, default: KILL_GRACE_MS },
            description: "how long the guest has to stop and report before SIGKILL; 0 sends SIGKILL at once",
          }],
        },
      ),
    },
    "/instances/{id}/wait": { post: onInstance("answers once the instance has exited", instance) },
    "/instances/{id}/stdin": {
      post: onInstance("write the raw body to its stdin", { type: "object" }, {
        parameters: [id, { name: "close", in: "query", schema: { type: "boolean" }, description: "then end it" }],
        requestBody: { content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
      }),
    },
    "/instances/{id}/migrate": {
      post: onInstance(
        "move the instance to another daemon, live: pre-copy rounds, then a stop-and-copy; it ends here as " +
          '"migrated" once the target runs it, and runs on untouched if anything fails (502 names what), but ' +
          "stays paused if the target could not confirm that its copy will never run",
        { type: "object" },
        {
          parameters: [id, {
            name: "progress",
            in: "query",
            schema: { type: "boolean" },
            description: 'answer with server-sent events: "progress" lines, then the "report" or an "error"',
          }],
          requestBody: json({
            type: "object",
            required: ["to"],
            additionalProperties: false,
            properties: {
              to: { type: "string", description: "the target daemon's base URL, http://HOST:PORT" },
              token: { type: "string", description: "the target daemon's bearer token" },
              maxRounds: { type: "integer", minimum: 1, maximum: MAX_ROUNDS, default: DEFAULT_ROUNDS },
              unconverged: {
                enum: [...UNCONVERGED],
                default: UNCONVERGED[0],
                description: "when pre-copy does not converge: stop and copy all the same, or fail (409) and run on",
              },
            },
          }),
        },
      ),
    },
    "/migrations": {
      post: {
        summary: "open a migration into this daemon: a one-time id, good for one commit or abort",
        responses: { 201: answer("opened", { type: "object" }) },
      },
    },
    "/migrations/{id}": {
      post: {
        summary: "commit a migration whose chunks were sent: rebuild the files, restore the instance paused " +
          "before its first instruction, answer once it serves; an id not opened here is a 404, one used already a 409",
        parameters: [id],
        requestBody: json({
          type: "object",
          required: ["bundle", "chain"],
          additionalProperties: false,
          properties: {
            bundle: { type: "object", properties: { sha256: { type: "string" }, recipe } },
            chain: { type: "array", items: recipe, minItems: 1, maxItems: MAX_CHAIN, description: "full one first" },
            console: { type: "array", items: { type: "object" }, description: "what it printed so far" },
            create: {
              type: "object",
              description: "cpus, maxHandles, overlayQuotaBytes, cpuLimitMs, timeoutMs, shares",
            },
          },
        }),
        responses: {
          201: answer("restored here, paused until the start", instance),
          422: answer("the files or the restore failed here", error),
          507: answer("this host's disk is full", error),
          ...errors,
        },
      },
      delete: {
        summary: "abort a migration: an open one is closed; a committed one's instance is removed (dropped)",
        parameters: [id],
        responses: { 200: answer("aborted", { type: "object" }), ...errors },
      },
    },
    "/migrations/{id}/chain/{index}": {
      put: {
        summary: "rebuild a pre-copy round's snapshot (its place in the chain) from chunks sent, ahead of the commit",
        parameters: [id, { name: "index", in: "path", required: true, schema: { type: "integer", minimum: 0 } }],
        requestBody: json(recipe),
        responses: {
          200: answer("rebuilt", { type: "object" }),
          422: answer("a chunk is wrong", error),
          507: answer("this host's disk is full", error),
          ...errors,
        },
      },
    },
    "/migrations/{id}/start": {
      post: {
        summary: "run a committed migration's instance: its source has let go of it (again: no change)",
        parameters: [id],
        responses: { 200: answer("running here", instance), ...errors },
      },
    },
    "/chunks/missing": {
      post: {
        summary: "which of these chunks this daemon lacks",
        requestBody: json({
          type: "object",
          additionalProperties: false,
          properties: { chunks: { type: "array", items: chunkId, maxItems: MAX_IDS_PER_REQUEST } },
        }),
        responses: { 200: answer("the lacking ones", { type: "object" }), ...errors },
      },
    },
    "/chunks/{id}": {
      put: {
        summary: "keep a chunk: refused unless its bytes hash to the id",
        parameters: [id],
        requestBody: binary,
        responses: {
          200: answer("kept already", { type: "object" }),
          201: answer("kept", { type: "object" }),
          ...errors,
        },
      },
      get: { summary: "a chunk's bytes", parameters: [id], responses: { 200: { description: "bytes", ...binary } } },
    },
    "/bundles": {
      post: {
        summary: "keep an uploaded bundle (the .pvx's bytes as the body), for a client whose files the daemon cannot " +
          "read; create instances and templates from it by its id",
        requestBody: { content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
        responses: {
          200: answer("the same bytes were kept already", uploaded),
          201: answer("kept", uploaded),
          400: answer("not a bundle: error.message says where (offset) and why", error),
          413: answer(`larger than ${MAX_UPLOAD_BYTES} bytes`, error),
        },
      },
      get: {
        summary: "every uploaded bundle",
        responses: { 200: answer("the bundles", { type: "array", items: uploaded }) },
      },
    },
    "/bundles/{id}": {
      get: { summary: "the uploaded bundle", parameters: [id], responses: { 200: answer("it", uploaded), ...errors } },
      delete: {
        summary:
          "delete it: refused (409) while a live instance runs it or a kept template or snapshot restores with it",
        parameters: [id],
        responses: { 200: answer("deleted", uploaded), ...errors },
      },
    },
    "/templates": {
      post: {
        summary: "boot the bundle, run it to its ready point and keep the snapshot taken there; answers once made",
        requestBody: json({
          type: "object",
          required: ["bundle", "ready"],
          additionalProperties: false,
          properties: {
            bundle: { type: "string", description: "absolute path of a .pvx or .exe, or an uploaded bundle's id" },
            ready: { type: "string", description: "first-input, call (PvxReady) or ms:N" },
            args: { type: "array", items: { type: "string" } },
            env: { type: "object", additionalProperties: { type: "string" } },
            cpus: { type: "integer", minimum: 1 },
          },
        }),
        responses: {
          201: answer("made", stored),
          400: errors[400],
          422: answer("the app did not reach its ready point; the message is what pvx said", error),
        },
      },
      get: { summary: "every template", responses: { 200: answer("the templates", { type: "array", items: stored }) } },
    },
    "/templates/{id}": onStored("template"),
    "/snapshots": {
      get: {
        summary: "every snapshot the daemon keeps",
        responses: { 200: answer("the snapshots", { type: "array", items: stored }) },
      },
    },
    "/snapshots/{id}": onStored("snapshot"),
    "/instances/{id}/logs": {
      get: {
        summary: "stdout and stderr as server-sent events (event stdout|stderr, data a JSON string), then exit",
        parameters: [
          id,
          { name: "follow", in: "query", schema: { type: "boolean" }, description: "keep streaming until it exits" },
          { name: "tail", in: "query", schema: { type: "number" }, description: "KiB of each stream to replay" },
        ],
        responses: {
          200: { description: "events", content: { "text/event-stream": { schema: { type: "string" } } } },
          ...errors,
        },
      },
    },
  },
};
