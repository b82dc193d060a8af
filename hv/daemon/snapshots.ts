// The templates and snapshots the daemon keeps, as resources: a template is
// made by POST /templates, a snapshot by POST /instances/:id/snapshot without
// a path. Each is listed, inspected, started from by its id, and deleted only
// once nothing depends on it: no live instance maps it (an instance's RAM is
// the file, MAP_PRIVATE) and no kept diff is laid over it.
//
//   <state dir>/snapshots/<id>.json   the record, written last: a file without one is a make that did not finish
//   <state dir>/snapshots/<name>.snap the snapshot file, named before its id is known

import { join } from "../../abi/host_path.ts";
import { writeFileAtomic } from "../../abi/host_files.ts";
import { readJsonRecords } from "./records.ts";
import { type SnapshotResult, type SnapshotSummary, summarizeSnapshot } from "../snapshot.ts";
import { SnapshotError } from "../snapshot_format.ts";

export type StoredKind = "template" | "snapshot";

/** How `pvx template create` finds its ready point: its first console read, its PvxReady call, or a time. */
export type ReadyPoint = "first-input" | "call" | `ms:${number}`;

export interface TemplateSource {
  bundle: string;
  ready: ReadyPoint;
  args: string[];
  env: Record<string, string>;
}

export interface StoredRecord {
  /** The first 12 hex digits of the file's id, which is unique in practice, as Docker's short ids are. */
  id: string;
  kind: StoredKind;
  path: string;
  createdAt: string;
  from: TemplateSource | { instance: string };
  cpus?: number;
  /** A diff's parent, when the daemon keeps that too. */
  parent?: string;
  fileBytes: number;
}

/** A stored template or snapshot the request names does not exist (404). */
export class NoSuchStored extends Error {}

/** Deleting it would break something that depends on it (409). */
export class StoredInUse extends Error {}

/** `pvx template create` failed: the app or its bundle is at fault, not the request's shape (422). */
export class TemplateFailed extends Error {}

export const shortId = (fileId: string) => fileId.slice(0, 12);

/** What a file takes on disk: a snapshot is sparse, its zero pages holes, so its length says little. */
function diskBytes(path: string): number {
  const info = Deno.statSync(path);
  return info.blocks === null ? info.size : info.blocks * 512;
}

export class StoredSnapshots {
  readonly dir: string;
  private readonly all = new Map<string, StoredRecord>();

  constructor(stateDir: string) {
    this.dir = join(stateDir, "snapshots");
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const kept = new Set<string>();
    for (const record of readJsonRecords<StoredRecord>(this.dir, "a snapshot record")) {
      this.all.set(record.id, record);
      kept.add(record.path);
    }
    // A make the previous daemon did not see finish: nobody was told of it, so nobody can name it.
    for (const entry of Deno.readDirSync(this.dir)) {
      const path = join(this.dir, entry.name);
      if (entry.isFile && !entry.name.endsWith(".json") && !kept.has(path)) Deno.removeSync(path);
    }
  }

  /** A new file name for a snapshot or template about to be written here. */
  newPath(): string {
    return join(this.dir, `${crypto.randomUUID()}.snap`);
  }

  list(kind: StoredKind): StoredRecord[] {
    return [...this.all.values()].filter((r) => r.kind === kind).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  byId(id: string): StoredRecord | undefined {
    return this.all.get(id);
  }

  get(kind: StoredKind, id: string): StoredRecord {
    const record = this.all.get(id);
    if (!record || record.kind !== kind) throw new NoSuchStored(`no ${kind} ${JSON.stringify(id)}`);
    return record;
  }

  /** The record whose file is at `path`, if the daemon keeps it. */
  byPath(path: string): StoredRecord | undefined {
    return [...this.all.values()].find((r) => r.path === path);
  }

  /** The record and what its file holds; a file damaged since is described as such, not as an error. */
  describe(record: StoredRecord) {
    let file: SnapshotSummary | { broken: string };
    try {
      file = summarizeSnapshot(record.path);
    } catch (e) {
      if (!(e instanceof SnapshotError || e instanceof Deno.errors.NotFound)) throw e;
      file = { broken: e.message };
    }
    return { ...record, file };
  }

  /**
   * Boots the bundle in a `pvx template create` process of its own, runs it to
   * its ready point and keeps the snapshot taken there. `pvx` is the command that
   * runs tools/pvx.ts. What the app printed meanwhile is dropped; what pvx said is
   * the error if it fails.
   */
  async makeTemplate(pvx: string[], from: TemplateSource, cpus?: number): Promise<StoredRecord> {
    const path = this.newPath();
    const args = [
      ...pvx.slice(1),
      ...["template", "create", from.bundle, "-o", path, "--ready", from.ready],
      ...(cpus === undefined ? [] : ["--cpus", String(cpus)]),
      ...Object.entries(from.env).flatMap(([name, value]) => ["--env", `${name}=${value}`]),
      ...(from.args.length ? ["--", ...from.args] : []),
    ];
    const made = await new Deno.Command(pvx[0], { args, stdin: "null", stdout: "null", stderr: "piped" }).output();
    if (!made.success) {
      await Deno.remove(path).catch(() => {});
      const said = new TextDecoder().decode(made.stderr).trim().split("\n").filter((l) => !/^pvx: nested/.test(l));
      throw new TemplateFailed(
        `template create exited ${made.code}: ${said.slice(-3).join("; ") || "it said nothing"}`,
      );
    }
    const summary = summarizeSnapshot(path);
    return this.add({
      id: shortId(summary.id),
      kind: "template",
      path,
      createdAt: new Date().toISOString(),
      from,
      ...(cpus === undefined ? {} : { cpus }),
      fileBytes: diskBytes(path),
    });
  }

  /** Keeps a snapshot an instance wrote. */
  addSnapshot(result: SnapshotResult, instance: string): StoredRecord {
    const parent = result.parent === undefined ? undefined : this.all.get(shortId(result.parent));
    return this.add({
      id: shortId(result.id),
      kind: "snapshot",
      path: result.path,
      createdAt: new Date().toISOString(),
      from: { instance },
      ...(parent ? { parent: parent.id } : {}),
      fileBytes: result.fileBytes,
    });
  }

  private add(record: StoredRecord): StoredRecord {
    this.all.set(record.id, record);
    writeFileAtomic(join(this.dir, `${record.id}.json`), new TextEncoder().encode(JSON.stringify(record)), this.dir);
    return record;
  }

  /**
   * Every record `record` rests on: itself, then each parent in turn. An instance
   * from a diff maps every file of its chain.
   */
  chain(record: StoredRecord): StoredRecord[] {
    const chain = [record];
    for (let r = record; r.parent !== undefined && this.all.has(r.parent);) chain.push(r = this.all.get(r.parent)!);
    return chain;
  }

  /** Deletes it, unless a kept diff is laid over it or `liveUsers` (instances that map it) is not empty. */
  async remove(record: StoredRecord, liveUsers: string[]): Promise<void> {
    const diffs = [...this.all.values()].filter((r) => r.parent === record.id).map((r) => r.id);
    if (diffs.length) {
      throw new StoredInUse(
        `${record.kind} ${record.id} is the parent of snapshot ${diffs.join(", ")}: delete those first`,
      );
    }
    if (liveUsers.length) {
      throw new StoredInUse(`${record.kind} ${record.id} is in use by instance ${liveUsers.join(", ")}`);
    }
    this.all.delete(record.id);
    await Deno.remove(join(this.dir, `${record.id}.json`));
    await Deno.remove(record.path).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
}
