// The sending half of a live migration (docs/migration.md). Pre-copy in
// rounds of snapshots: a full one, then diffs of the pages the guest wrote
// since the one before (KVM's dirty log), each taken in a brief pause while the
// guest otherwise runs, and each round's chunks sent as soon as it is taken.
// The final round is a stop-and-copy: the instance stays paused while its last
// diff (pages, CPU and host state, overlay) goes over and the target restores
// the chain, paused before its first instruction. Then the source says start,
// and ends its own instance once the target answers that its copy runs. Until
// the target has answered the commit, or an abort, the source cannot know that
// the copy will never run: it resumes only once it knows, and else stays paused
// rather than let the app run on both hosts.

import { join } from "../../abi/host_path.ts";
import { type ChunkStore, FileChunks, type Recipe } from "../chunks.ts";
import { openSnapshot } from "../snapshot_file.ts";
import type { SnapshotResult } from "../snapshot.ts";
import { callPeer, type Peer, PeerError, pushChunks } from "./chunks_api.ts";
import { RING_BYTES } from "./console.ts";
import { type Instance, InstanceConflict, InstanceRefused } from "./instances.ts";
import type { MigratedTo } from "./records.ts";

/** Pre-copy rounds before the final one, unless the request says otherwise. */
export const DEFAULT_ROUNDS = 4;
export const MAX_ROUNDS = 32;
/** Pre-copy stops once a round carried at most this many pages (1 MiB): the final round then carries about that. */
export const CONVERGED_PAGES = 256;
/** A commit's answer waits for the target to restore, which under emulation takes many seconds. */
export const COMMIT_TIMEOUT_MS = 10 * 60_000;
/** Tries of a start or an abort whose answer did not come: a lost answer leaves the source unsure. */
const TRIES = 3;

/** When pre-copy did not converge: stop and copy all the same (a longer pause), or give up and run on here. */
export const UNCONVERGED = ["stop-and-copy", "fail"] as const;

export interface MigrateRequest {
  to: Peer;
  /** This daemon's chunk store: it keeps what it sends, so that a migration back here sends only what changed. */
  keep?: ChunkStore;
  /** Pre-copy rounds at most, the first (full) one included, before the stop-and-copy. */
  maxRounds: number;
  unconverged: typeof UNCONVERGED[number];
}

export interface Round {
  kind: "full" | "diff";
  /** Guest pages the round's snapshot stores. */
  pages: number;
  /** Chunk bytes it sent: what the target lacked of it. */
  bytesSent: number;
  /** How long the snapshot took, its pause included (the guest runs again after it, but for the final round). */
  snapshotMs: number;
}

export interface MigrationReport {
  id: string;
  to: MigratedTo;
  rounds: Round[];
  /** The last pre-copy round carried at most CONVERGED_PAGES; if not, the rounds ran out first. */
  converged: boolean;
  /** Chunk bytes sent in all, and chunks: sent, and in the files' recipes together. */
  bytesSent: number;
  chunksSent: number;
  chunks: number;
  /** From the final pause until the target answered that its copy runs: no vCPU of the app ran meanwhile. */
  downtimeMs: number;
  /** Of the downtime: the final round's snapshot and send, the commit (the target's restore), and the start. */
  downtime: { finalRoundMs: number; commitMs: number; startMs: number };
  totalMs: number;
}

/**
 * A migration that failed, and so left the source instance running (or paused, as it was, or as it must stay
 * when the target could not say that its copy will never run): what went wrong, where.
 */
export class MigrationError extends Error {
  override name = "MigrationError";
  /**
   * 502 when the target refused or could not be reached; otherwise the instance's own refusal's, or 409.
   * `keptPaused`: the target did not answer whether it runs the app, so the source instance was left paused.
   */
  constructor(readonly status: 409 | 502, message: string, readonly keptPaused = false) {
    super(message);
  }
}

/** Moves `instance` to `request.to`, working in `workDir`; `progress` is told each step as a line. */
export async function migrate(
  instance: Instance,
  request: MigrateRequest,
  workDir: string,
  progress: (line: string) => void = () => {},
): Promise<MigrationReport> {
  const startedAt = performance.now();
  const { to } = request;
  const wasPaused = instance.record.state === "paused";
  if (!instance.running) throw new InstanceConflict(`instance ${instance.record.id} is ${instance.record.state}`);
  const { id } = await callPeer(to, "POST", "/migrations", undefined).catch((e) => {
    throw failure(e, "opening the migration");
  });
  const dir = join(workDir, id);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const files = new FileChunks(request.keep);
  const rounds: Round[] = [];
  const chain: Recipe[] = [];
  let bundle: { sha256: string; recipe: Recipe } | undefined;
  let chunks = 0, chunksSent = 0;
  let paused = wasPaused;
  let pausedAt = startedAt;
  let diffs = true;
  /** Milliseconds since `t0`, to a tenth. */
  const since = (t0: number) => Math.round((performance.now() - t0) * 10) / 10;
  const roundFile = (round: number) => join(dir, `${String(round).padStart(2, "0")}.snap`);

  const send = async (recipe: Recipe, what: string) => {
    const pushed = await pushChunks(recipe.chunks.map((c) => c.id), files, to).catch((e) => {
      throw failure(e, `sending ${what}`);
    });
    chunks += pushed.chunks;
    chunksSent += pushed.sent;
    return pushed.bytes;
  };
  const round = async (final: boolean) => {
    if (final && !paused) {
      pausedAt = performance.now();
      await instance.pause();
      paused = true;
    }
    const path = roundFile(rounds.length);
    const diffFrom = rounds.length && diffs ? roundFile(rounds.length - 1) : undefined;
    const t0 = performance.now();
    let saved: SnapshotResult;
    try {
      saved = await instance.snapshot({ path, ...(diffFrom ? { diffFrom } : {}) });
    } catch (e) {
      // A host whose KVM keeps no dirty log takes only full snapshots: the chunks still spare what did not change.
      if (!(diffFrom && e instanceof InstanceRefused && /not known/.test(e.message))) throw e;
      diffs = false;
      saved = await instance.snapshot({ path });
    }
    const snapshotMs = since(t0);
    if (!diffs) chain.length = 0;
    const recipe = await files.add(path);
    let bytesSent = 0;
    if (!bundle) {
      using file = openSnapshot(path);
      const bundlePath = String(file.manifest.meta.bundlePath);
      bundle = { sha256: file.manifest.bundle.sha256, recipe: await files.add(bundlePath) };
      bytesSent += await send(bundle.recipe, `the bundle ${bundlePath}`);
    }
    bytesSent += await send(recipe, `round ${rounds.length + 1}`);
    chain.push(recipe);
    // The target rebuilds a pre-copy round's file while the guest runs on, rather than in the final pause.
    if (!final) {
      await callPeer(to, "PUT", `/migrations/${id}/chain/${chain.length - 1}`, JSON.stringify(recipe), true)
        .catch((e) => {
          throw failure(e, `staging round ${rounds.length + 1}`);
        });
    }
    rounds.push({ kind: saved.kind, pages: saved.pages, bytesSent, snapshotMs });
    progress(
      `round ${rounds.length}${final ? " (final, paused)" : ""}: ${saved.kind}, ${saved.pages} pages, ` +
        `${bytesSent} bytes sent`,
    );
  };

  /** The commit went out: from then on the target may hold a copy, until it answers an abort. */
  let committed = false;
  let converged = false;
  const downtime = { finalRoundMs: 0, commitMs: 0, startMs: 0 };
  let copy: string;
  try {
    if (!wasPaused) {
      await round(false);
      const carried = () => rounds.at(-1)!.pages;
      while (
        rounds.length < request.maxRounds && diffs && carried() > CONVERGED_PAGES &&
        (rounds.length < 2 || carried() < rounds.at(-2)!.pages)
      ) await round(false);
    }
    converged = rounds.length > 0 && rounds.at(-1)!.pages <= CONVERGED_PAGES;
    if (!converged && !wasPaused && request.unconverged === "fail") {
      throw new MigrationError(
        409,
        `pre-copy did not converge: round ${rounds.length} still carried ${rounds.at(-1)!.pages} pages ` +
          `(at most ${CONVERGED_PAGES} is converged); with unconverged "fail" the app runs on here`,
      );
    }
    let t0 = performance.now();
    await round(true);
    downtime.finalRoundMs = since(t0);
    const { cpus, maxHandles, overlayQuotaBytes, cpuLimitMs, timeoutMs, shares } = instance.record;
    const plan = {
      bundle,
      chain,
      console: instance.console.replay(RING_BYTES).map((c) => ({ stream: c.stream, text: c.text })),
      create: { cpus, maxHandles, overlayQuotaBytes, cpuLimitMs, timeoutMs, shares },
    };
    progress(`committing: ${chain.length} snapshot(s) in the chain`);
    committed = true;
    t0 = performance.now();
    const made = await callPeer(to, "POST", `/migrations/${id}`, JSON.stringify(plan), true, COMMIT_TIMEOUT_MS)
      .catch((e) => {
        throw failure(e, "restoring it there");
      });
    downtime.commitMs = since(t0);
    copy = String(made.id);
    t0 = performance.now();
    await retried(() => callPeer(to, "POST", `/migrations/${id}/start`)).catch((e) => {
      throw failure(e, `starting it there (instance ${copy})`);
    });
    downtime.startMs = since(t0);
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    const why = e instanceof MigrationError || e instanceof InstanceConflict || e instanceof InstanceRefused
      ? e
      : failure(e, "migrating");
    const abort = () => callPeer(to, "DELETE", `/migrations/${id}`);
    if (!committed) {
      // Without a commit the target holds only chunks, and the id it opened expires: an abort it misses changes nothing.
      await abort().catch(() => {});
    } else {
      // A 404 is a target that forgot the id: it restarted, and a daemon that starts drops every copy not let go of.
      const unsure = await retried(abort).then(
        () => undefined,
        (a) => a instanceof PeerError && (a.status === 404 || a.status === 409) ? undefined : a as Error,
      );
      if (unsure) {
        progress(`failed, and kept paused: ${why.message}`);
        throw new MigrationError(
          502,
          `${why.message}; and the target did not answer an abort (${unsure.message}), so it may run the app: ` +
            `this instance stays paused rather than run it twice. See GET /instances on ${to.url}, then resume ` +
            `or delete this one`,
          true,
        );
      }
    }
    if (paused && !wasPaused && instance.running) await instance.resume().catch(() => {});
    progress(`failed, and ${wasPaused ? "left paused, as it was" : "resumed here"}: ${why.message}`);
    throw why;
  }
  // The target runs it now: from here on, nothing resumes this one.
  const downtimeMs = since(pausedAt);
  const target = { url: to.url, instance: copy };
  await instance.handOver(target);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  progress(`running there as ${target.instance}; this instance has ended`);
  return {
    id,
    to: target,
    rounds,
    converged,
    bytesSent: rounds.reduce((sum, r) => sum + r.bytesSent, 0),
    chunksSent,
    chunks,
    downtimeMs,
    downtime,
    totalMs: since(startedAt),
  };
}

/** `call`, tried again (up to TRIES in all, a second apart) while its answer is lost on the way; a refusal is final. */
async function retried<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await call();
    } catch (e) {
      if (!(e instanceof PeerError && e.status === 0) || attempt === TRIES) throw e;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/** `e`, from a step of the migration, as the MigrationError the client gets. */
function failure(e: unknown, step: string): MigrationError {
  if (e instanceof MigrationError) return e;
  const message = `${step}: ${(e as Error).message}`;
  return new MigrationError(e instanceof PeerError || e instanceof TypeError ? 502 : 409, message);
}
