// The daemon's state directory: one JSON record per instance, rewritten
// atomically on every change of state, so that a daemon killed at any moment
// leaves each record whole, and the next daemon can say what became of them.
//
//   <state dir>/instances/<id>.json     the record
//   <state dir>/instances/<id>/         the instance's API socket, and its overlay unless one was given

import { join } from "../../abi/host_path.ts";
import { writeFileAtomic } from "../../abi/host_files.ts";
import type { ShareSpec } from "../../abi/share.ts";

export type InstanceState = "starting" | "running" | "paused" | "exited" | "lost";

/** How an instance ended. */
export type ExitKind =
  | "exit" // the app exited: exitCode is its code
  | "snapshotted" // stopped by a snapshot with stop
  | "migrated" // moved to another daemon, which runs it on: exit.to says where
  | "timeout" // its timeoutMs expired
  | "cpu-limit" // it used up its cpuLimitMs
  | "killed" // by kill or rm --force
  | "fault" // the app faulted, broke the ABI or called a missing import
  | "error" // pvx could not run it (bad bundle or snapshot, KVM error)
  | "interrupted" // its process was signalled by someone other than the daemon
  | "crashed"; // its process died without saying how the app ended

/** Where a migrated instance went: the daemon, and its id there. */
export interface MigratedTo {
  url: string;
  instance: string;
}

export interface InstanceRecord {
  id: string;
  createdAt: string;
  from: { bundle: string } | { snapshot: string } | { template: string };
  args: string[];
  env: Record<string, string>;
  cpus?: number;
  /** Its guest RAM: the bundle's, the create's memoryMiB, or the snapshot's. */
  memoryMiB: number;
  maxHandles?: number;
  overlayQuotaBytes?: number;
  cpuLimitMs?: number;
  timeoutMs?: number;
  /** Host directories the guest sees, as `pvx run --share` gives them; a restore must give the same guest paths. */
  shares?: ShareSpec[];
  /** Where its restore finds the bundle, when not where the snapshot says: a migrated-in instance's. */
  bundleFile?: string;
  /**
   * The migration that brought it, while its source has not yet let go: it waits paused, and is no instance of this
   * host's until then. A daemon that starts drops such a one, since its source resumes its own copy.
   */
  incoming?: string;
  overlay: string;
  /** The daemon made the overlay, and removes it with the instance. */
  ownOverlay: boolean;
  state: InstanceState;
  pid?: number;
  exit?: { code: number; kind: ExitKind; at: string; to?: MigratedTo };
}

export class Records {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, "instances");
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** The directory an instance's files live in. */
  home(id: string): string {
    return join(this.dir, id);
  }

  /** Where its process serves its control API. */
  socket(id: string): string {
    return join(this.home(id), "api.sock");
  }

  /** Where the snapshot chain and bundle a migration brought it are put, until it is removed. */
  migrated(id: string): string {
    return join(this.home(id), "migrated");
  }

  /** Where its process writes what it counted as it ends (`pvx run --stats-file`). */
  statsFile(id: string): string {
    return join(this.home(id), "stats.json");
  }

  save(record: InstanceRecord) {
    writeFileAtomic(join(this.dir, `${record.id}.json`), new TextEncoder().encode(JSON.stringify(record)), this.dir);
  }

  /** Forgets the instance, and its overlay if the daemon made it. */
  async remove(record: InstanceRecord) {
    await Deno.remove(join(this.dir, `${record.id}.json`)).catch(ignoreMissing);
    const home = this.home(record.id);
    if (record.ownOverlay) return await Deno.remove(home, { recursive: true }).catch(ignoreMissing);
    // The overlay the create named is the caller's: only the daemon's own files go, then the directory if empty.
    for (const file of [this.socket(record.id), this.statsFile(record.id)]) {
      await Deno.remove(file).catch(ignoreMissing);
    }
    await Deno.remove(this.migrated(record.id), { recursive: true }).catch(ignoreMissing);
    await Deno.remove(home).catch(() => {});
  }

  /**
   * Every record a previous daemon left. Those of instances that had not exited
   * are now `lost`: their process went with that daemon. A migration's that its
   * source had not let go of is dropped, with everything in its home.
   */
  load(): InstanceRecord[] {
    const records = readJsonRecords<InstanceRecord>(this.dir, "an instance record").filter((record) => {
      if (record.incoming === undefined) return true;
      killOrphan(record.pid, this.home(record.id));
      for (const path of [this.home(record.id), join(this.dir, `${record.id}.json`)]) {
        try {
          Deno.removeSync(path, { recursive: true });
        } catch (e) {
          ignoreMissing(e);
        }
      }
      return false;
    });
    for (const record of records) {
      if (record.state !== "exited" && record.state !== "lost") {
        killOrphan(record.pid, this.home(record.id));
        record.state = "lost";
        delete record.pid;
        this.save(record);
      }
    }
    return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }
}

/** Every `<name>.json` record in `dir`, each `what` the daemon keeps. */
export function readJsonRecords<T>(dir: string, what: string): T[] {
  const records: T[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".json")) continue; // a temp file a kill left midway
    const path = join(dir, entry.name);
    try {
      records.push(JSON.parse(Deno.readTextFileSync(path)));
    } catch (e) {
      // Records are replaced atomically, so this one was damaged by something other than a daemon.
      throw new Error(`${path}: not ${what}: ${(e as Error).message}`);
    }
  }
  return records;
}

/**
 * An instance's process can outlive a daemon killed with SIGKILL, with nobody
 * left to read its console or stop it. It is known by its command line, which
 * names the instance's directory, so a pid reused by something else is left alone.
 */
function killOrphan(pid: number | undefined, home: string) {
  if (pid === undefined) return;
  try {
    if (Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").some((arg) => arg.startsWith(home))) {
      Deno.kill(pid, "SIGKILL");
    }
  } catch {
    // Gone already.
  }
}

function ignoreMissing(e: unknown) {
  if (!(e instanceof Deno.errors.NotFound)) throw e;
}
