// The receiving half of a live migration (docs/migration.md). A source asks
// this daemon to open an incoming migration and gets a one-time id; it sends
// the chunks this host lacks (hv/daemon/chunks_api.ts), then commits that id
// with its plan: the bundle and the snapshot chain as recipes, and the console
// so far. The target rebuilds the files from its chunk store and restores the
// instance paused, before its first instruction; it runs only when the source,
// which stays paused meanwhile, says start. Until then an abort drops it, so
// that the app never runs on both hosts. An id is good for one commit (or
// abort) and for OPEN_FOR_MS: a commit this daemon did not open, or one played
// again, is refused before anything is written.

import { join } from "../../abi/host_path.ts";
import { isDiskFull } from "../atomic_file.ts";
import { ChunkError, type ChunkStore, parseRecipe, type Recipe, RecipeError } from "../chunks.ts";
import { createHash } from "node:crypto";
import type { UploadedBundles } from "./bundles.ts";
import type { Stream } from "./console.ts";

/** How long an opened migration waits for its commit. */
export const OPEN_FOR_MS = 10 * 60_000;
/** Snapshots in one chain: a full one and the diffs of the pre-copy rounds after it. */
export const MAX_CHAIN = 64;

/** A commit for a migration this daemon did not open, or whose time ran out (404). */
export class NoSuchMigration extends Error {}
/** A commit for a migration already committed or aborted: a replay (409). */
export class MigrationSpent extends Error {}
/** The plan could not be carried out here: 507 when this host ran out of disk, else 422. */
export class MigrationFailed extends Error {
  constructor(readonly status: 422 | 507, message: string) {
    super(message);
  }
}

/** What a source commits: the files as recipes (the chain oldest first), and the console it had printed. */
export interface MigrationPlan {
  bundle: { sha256: string; recipe: Recipe };
  chain: Recipe[];
  console: { stream: Stream; text: string }[];
}

const object = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** `body`'s plan fields, each checked; a RecipeError names the field that is wrong. */
export function parsePlan(body: Record<string, unknown>): MigrationPlan {
  const bundle = body.bundle;
  if (!object(bundle) || typeof bundle.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(bundle.sha256)) {
    throw new RecipeError("bundle", 'must be {"sha256": 64 lowercase hex digits, "recipe": ...}');
  }
  const extra = Object.keys(bundle).find((k) => k !== "sha256" && k !== "recipe");
  if (extra) throw new RecipeError(`bundle.${extra}`, "unknown field; expected sha256, recipe");
  const chain = body.chain;
  if (!Array.isArray(chain) || chain.length < 1 || chain.length > MAX_CHAIN) {
    throw new RecipeError("chain", `must be an array of 1 to ${MAX_CHAIN} snapshot recipes, the full one first`);
  }
  const console = body.console ?? [];
  if (!Array.isArray(console)) throw new RecipeError("console", "must be an array of {stream, text}");
  for (const [i, c] of console.entries()) {
    const good = object(c) && (c.stream === "stdout" || c.stream === "stderr") && typeof c.text === "string" &&
      Object.keys(c).length === 2;
    if (!good) throw new RecipeError(`console[${i}]`, 'must be {"stream": "stdout" or "stderr", "text": string}');
  }
  return {
    bundle: { sha256: bundle.sha256, recipe: parseRecipe(bundle.recipe, "bundle.recipe") },
    chain: chain.map((r, i) => parseRecipe(r, `chain[${i}]`)),
    console: console as MigrationPlan["console"],
  };
}

/** A snapshot of the chain rebuilt ahead of the commit, while the source's pre-copy goes on. */
interface Staged {
  /** The recipe it was rebuilt from, as JSON: the commit's must be the same for it to be used. */
  recipe: string;
  path: string;
  /** Settles once the file is rebuilt. */
  done: Promise<void>;
}

/** Where one migration into this daemon stands. */
type Incoming =
  | { state: "open"; until: number; staged: Map<number, Staged> }
  /** Committed: `instance` resolves to the id of the instance the commit made, or to undefined if it failed. */
  | { state: "committed"; instance: Promise<string | undefined> }
  | { state: "aborted" };

export class IncomingMigrations {
  readonly #all = new Map<string, Incoming>();

  /** `dir` holds what open migrations rebuild ahead of their commits, a directory each. */
  constructor(readonly store: ChunkStore, private readonly dir: string) {}

  open(): { id: string; expiresInMs: number } {
    const now = Date.now();
    for (const [id, m] of this.#all) if (m.state === "open" && m.until <= now) this.#forget(id);
    const id = crypto.randomUUID();
    this.#all.set(id, { state: "open", until: now + OPEN_FOR_MS, staged: new Map() });
    return { id, expiresInMs: OPEN_FOR_MS };
  }

  #find(id: string): Incoming {
    const m = this.#all.get(id);
    if (!m || (m.state === "open" && m.until <= Date.now())) {
      if (m) this.#forget(id);
      throw new NoSuchMigration(`no open migration ${JSON.stringify(id)}: this daemon did not open it, or it expired`);
    }
    return m;
  }

  /** Drops an open migration that expired, with what it had rebuilt. */
  #forget(id: string) {
    this.#all.delete(id);
    this.#removeStaged(id);
  }

  async #removeStaged(id: string) {
    await Deno.remove(join(this.dir, id), { recursive: true }).catch(() => {});
    // The directory of them all goes too once empty: a daemon keeps no working files of migrations that ended.
    await Deno.remove(this.dir).catch(() => {});
  }

  /**
   * Rebuilds snapshot `index` of open migration `id`'s chain from `recipe`, whose chunks were sent, so that its
   * commit need not: the source stages each pre-copy round's while the guest runs on, and waits for it here.
   */
  async stage(id: string, index: number, recipe: Recipe) {
    const m = this.#open(id);
    if (!Number.isInteger(index) || index < 0 || index >= MAX_CHAIN) {
      throw new RecipeError("index", `must be a place in the chain, 0 to ${MAX_CHAIN - 1}`);
    }
    await Deno.mkdir(join(this.dir, id), { recursive: true, mode: 0o700 });
    const path = join(this.dir, id, `${String(index).padStart(2, "0")}.snap`);
    // Written aside and renamed into place (ChunkStore.assemble): a restage of a place never leaves it half written.
    const done = this.store.assemble(recipe, path);
    m.staged.set(index, { recipe: JSON.stringify(recipe), path, done });
    await done.catch((e) => {
      throw failedHere(e, `rebuilding snapshot ${index} of the chain`);
    });
  }

  /** Refuses `id` unless it is open: one this daemon did not open, or one committed or aborted already. */
  expectOpen(id: string) {
    this.#open(id);
  }

  #open(id: string): Incoming & { state: "open" } {
    const m = this.#find(id);
    if (m.state !== "open") throw new MigrationSpent(`migration ${id} was already committed or aborted`);
    return m;
  }

  /**
   * Claims `id` for its one commit, which `make` carries out, resolving to the id of the instance it made; after
   * this, a second commit is refused, and an abort waits for this one and drops what it made.
   */
  commit(id: string, make: (staged: Map<number, Staged>) => Promise<string>): Promise<string> {
    const { staged } = this.#open(id);
    const made = make(staged).finally(() => this.#removeStaged(id));
    this.#all.set(id, { state: "committed", instance: made.catch(() => undefined) });
    return made;
  }

  /** The instance a commit of `id` made, for its start; refused if it was not committed, or was aborted since. */
  async committed(id: string): Promise<string> {
    const m = this.#find(id);
    const instance = m.state === "committed" ? await m.instance : undefined;
    const why = { open: "was not committed", committed: "failed its commit", aborted: "was aborted" }[m.state];
    if (instance === undefined) throw new MigrationSpent(`migration ${id} ${why}`);
    return instance;
  }

  /**
   * Aborts `id`: an open one is closed; a committed one is waited for, and the instance it made (paused, or
   * running if its source had said start) is dropped with `drop`. A second abort is refused as a replay.
   */
  async abort(id: string, drop: (instance: string) => Promise<void>): Promise<{ dropped?: string }> {
    const m = this.#find(id);
    if (m.state === "aborted") throw new MigrationSpent(`migration ${id} was already aborted`);
    this.#all.set(id, { state: "aborted" });
    if (m.state === "open") {
      await Promise.allSettled([...m.staged.values()].map((s) => s.done));
      await this.#removeStaged(id);
    }
    const instance = m.state === "committed" ? await m.instance : undefined;
    if (instance !== undefined) await drop(instance);
    return instance === undefined ? {} : { dropped: instance };
  }

  /**
   * Rebuilds the plan's files in `dir` from the chunk store: the bundle, kept among the uploaded bundles unless
   * one with its hash is kept already, and the chain, each snapshot named by its place in it (one staged ahead
   * from the same recipe is moved there instead). Returns the bundle's path and the last snapshot's, which the
   * restore starts from (its parents are found beside it by id).
   */
  async assemble(plan: MigrationPlan, dir: string, bundles: UploadedBundles, staged: Map<number, Staged>) {
    try {
      let bundle = bundles.list().find((b) => b.sha256 === plan.bundle.sha256);
      if (!bundle) {
        const path = join(dir, "bundle.pvx");
        await this.store.assemble(plan.bundle.recipe, path);
        const bytes = await Deno.readFile(path);
        const sha256 = createHash("sha256").update(bytes).digest("hex");
        if (sha256 !== plan.bundle.sha256) {
          throw new MigrationFailed(
            422,
            `the bundle's chunks make a file of SHA-256 ${sha256}, not ${plan.bundle.sha256}`,
          );
        }
        bundle = (await bundles.add(bytes)).bundle;
        await Deno.remove(path);
      }
      const chain = plan.chain.map((_, i) => join(dir, `${String(i).padStart(2, "0")}.snap`));
      for (const [i, recipe] of plan.chain.entries()) {
        const ahead = staged.get(i);
        if (ahead?.recipe === JSON.stringify(recipe)) {
          await ahead.done;
          await Deno.rename(ahead.path, chain[i]);
        } else await this.store.assemble(recipe, chain[i]);
      }
      return { bundleFile: bundle.path, snapshot: chain.at(-1)! };
    } catch (e) {
      throw failedHere(e, "rebuilding the instance's files");
    }
  }
}

/** `e`, met while rebuilding files here, as what the source is told: a chunk that is wrong (422), a full disk (507). */
function failedHere(e: unknown, doing: string): unknown {
  if (e instanceof MigrationFailed) return e;
  if (e instanceof ChunkError) return new MigrationFailed(422, `${doing}: ${e.message}`);
  if (isDiskFull(e)) return new MigrationFailed(507, `this host's disk is full: ${(e as Error).message}`);
  return e;
}
