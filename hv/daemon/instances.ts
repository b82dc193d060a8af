// The daemon's instances, each supervised in a child process of its own: a
// `pvx run|restore --api SOCKET`, given to a warm process (hv/warm_processes.ts),
// whose console is piped to the daemon and whose pause, resume and snapshot are
// forwarded to that socket. A crash of one instance's host side (a KVM error, a
// bug in a hypercall handler, a SIGKILL) ends that process only: the daemon sees
// it exit and says so.

import { dirname, join } from "../../abi/host_path.ts";
import { callControlApi, ControlApiError, NOT_SERVING } from "../control_api.ts";
import { ConsoleLog, type Stream } from "./console.ts";
import type { CreateSource, InstanceCounts, Metrics } from "./metrics.ts";
import { addTotals, type HypercallTotals, noHypercalls } from "../hypercall_stats.ts";
import type { ExitKind, InstanceRecord, InstanceState, MigratedTo, Records } from "./records.ts";
import type { ShareSpec } from "../../abi/share.ts";
import { WarmProcesses } from "../warm_processes.ts";
import { hexBytes } from "../../abi/hex.ts";

/** The request does not fit the instance's state (409). */
export class InstanceConflict extends Error {}

/** A forwarded request the instance's own API refused, with its status and field. */
export class InstanceRefused extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The daemon is at one of its host-wide limits (429 for instances, 507 for memory); the message names it. */
export class AtCapacity extends Error {
  constructor(readonly status: 429 | 507, message: string) {
    super(message);
  }
}

/** What the create names cannot be run: not a bundle, a damaged snapshot (400 on that field). */
export class BadSource extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

export interface CreateSpec {
  from: InstanceRecord["from"];
  args: string[];
  env: Record<string, string>;
  cpus?: number;
  /** Guest RAM of a bundle's instance in place of the bundle's own; a snapshot's is its own. */
  memoryMiB?: number;
  maxHandles?: number;
  overlayQuotaBytes?: number;
  cpuLimitMs?: number;
  timeoutMs?: number;
  shares?: ShareSpec[];
  /** Kept by the caller; by default the daemon makes one beside the record and removes it with the instance. */
  overlay?: string;
  /** Its id, taken with Instances.newId() beforehand; by default a new one. */
  id?: string;
  /** For a snapshot's instance: where its bundle is, if not where the snapshot says. */
  bundleFile?: string;
  /** What its console printed before it came to this daemon: a migrated instance's, replayed to its readers first. */
  printedBefore?: { stream: Stream; text: string }[];
  /** The migration bringing it here: it is restored paused, and waits for takeOver() (InstanceRecord.incoming). */
  incoming?: string;
}

/** How long a killed instance has, unless told otherwise, to stop its guest and report before it is killed outright. */
export const KILL_GRACE_MS = 10_000;
/** The longest grace a kill may give: a day, well inside what setTimeout can wait. */
export const MAX_KILL_GRACE_MS = 86_400_000;
/**
 * Between two probes of a starting instance's control API, doubling up to the last: under the
 * nested accelerator each probe is a process in the helper VM, and there a start takes seconds.
 */
const PROBE_INTERVAL_MS = { first: 10, last: 1000 };
/** How long a scrape waits for one instance's counts before it reports the last it had. */
const SCRAPE_WAIT_MS = 5000;

/** An instance process's GET /stats answer (hv/instance.ts `stats`). */
export interface InstanceStats {
  hypercalls: HypercallTotals;
  residentPages: number;
}

export class Instance {
  readonly console = new ConsoleLog();
  private child?: Deno.ChildProcess;
  private stdin?: WritableStreamDefaultWriter<Uint8Array>;
  private startedAt = 0;
  private endedAt?: number;
  private killing = false;
  private stopsAtSnapshot = false;
  private migratedTo?: MigratedTo;
  /** While paused: each thread and the call it is blocked in, as the instance's API told it. */
  private pausedThreads?: { threadId: number; cpu: number; blockedIn?: number }[];
  private exited: Promise<void>;
  private serving: Promise<void>;
  /** The last counts its process reported: live from its API, then the final ones it wrote as it ended. */
  private lastStats?: InstanceStats;

  constructor(readonly record: InstanceRecord, private readonly registry: Instances) {
    // A record a previous daemon left: there is no process to watch.
    this.exited = Promise.resolve();
    this.serving = Promise.reject(new InstanceConflict(`instance ${record.id} is ${record.state}`));
    this.serving.catch(() => {});
  }

  get socket(): string {
    return this.registry.records.socket(this.record.id);
  }

  private get statsFile(): string {
    return this.registry.records.statsFile(this.record.id);
  }

  get running(): boolean {
    return this.record.state !== "exited" && this.record.state !== "lost";
  }

  /** Starts the instance's process; `requestedAt` is when the create request came in. */
  static spawn(
    record: InstanceRecord,
    registry: Instances,
    requestedAt: number,
    printedBefore: CreateSpec["printedBefore"] = [],
  ): Instance {
    const instance = new Instance(record, registry);
    const encoder = new TextEncoder();
    for (const { stream, text } of printedBefore) instance.console.append(stream, encoder.encode(text));
    const { child, stdin } = registry.warm.start({ args: instance.commandLine() });
    instance.child = child;
    instance.stdin = stdin;
    instance.startedAt = performance.now();
    record.pid = child.pid;
    registry.records.save(record);
    const pump = async (stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr") => {
      try {
        for await (const bytes of stream) instance.console.append(name, bytes);
      } catch {
        // A broken pipe ends the stream; how the process ended is its status's to say.
      }
    };
    const ended = Promise.all([child.status, pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]);
    instance.exited = ended.then(async ([status]) => {
      await instance.readFinalStats();
      instance.ended(status);
    });
    instance.serving = instance.probe(requestedAt);
    instance.serving.catch(() => {});
    // The next warm process starts once this one's guest runs, or once it has ended, rather than slow its start.
    Promise.race([instance.serving, instance.exited]).finally(() => registry.warm.refill()).catch(() => {});
    return instance;
  }

  private commandLine(): string[] {
    const r = this.record;
    const options = [
      "--api",
      this.socket,
      "--overlay",
      r.overlay,
      "--stats-file",
      this.statsFile,
      ...(r.cpus === undefined ? [] : ["--cpus", String(r.cpus)]),
      ...("bundle" in r.from ? ["--memory", String(r.memoryMiB)] : []),
      ...(r.maxHandles === undefined ? [] : ["--max-handles", String(r.maxHandles)]),
      ...(r.overlayQuotaBytes === undefined ? [] : ["--overlay-quota", String(r.overlayQuotaBytes)]),
      ...(r.cpuLimitMs === undefined ? [] : ["--cpu-limit", `${r.cpuLimitMs}ms`]),
      ...(r.timeoutMs === undefined ? [] : ["--timeout", `${r.timeoutMs}ms`]),
      ...(r.shares ?? []).flatMap((s) => ["--share", `${s.hostPath}:${s.guestPath}${s.readOnly ? ":ro" : ""}`]),
      ...Object.entries(r.env).flatMap(([name, value]) => ["--env", `${name}=${value}`]),
    ];
    if ("bundle" in r.from) return ["run", r.from.bundle, ...options, ...(r.args.length ? ["--", ...r.args] : [])];
    if ("snapshot" in r.from) {
      const key = this.registry.keyFile;
      const bundle = r.bundleFile ? ["--bundle", r.bundleFile] : [];
      // A migration's files were rebuilt from chunks each checked against its hash as it came: checking every page
      // again would only lengthen the pause it is restored in.
      const migrated = r.incoming ? ["--paused", "--no-verify"] : [];
      return ["restore", r.from.snapshot, ...bundle, ...migrated, ...(key ? ["--key-file", key] : []), ...options];
    }
    return ["run", "--from", r.from.template, ...options];
  }

  /**
   * Asks the instance's API until it answers: its socket appears only once its guest is about to run. It asks
   * again at each change in the socket's directory (the socket made, then its mode set), so that a migration's
   * downtime does not wait out an interval, and after each interval for what a watch can miss.
   */
  private async probe(requestedAt: number): Promise<void> {
    let done = false, changed = false, wake = () => {};
    this.exited.then(() => (done = true, wake()));
    const changes = Deno.watchFs(dirname(this.socket), { recursive: false });
    (async () => {
      for await (const _ of changes) changed = true, wake();
    })().catch(() => {}); // a watch that breaks leaves the intervals
    try {
      for (let interval = PROBE_INTERVAL_MS.first; !done;) {
        changed = false;
        try {
          const answer = await callControlApi(this.socket, "GET", "/");
          if (this.running) {
            this.setState(answer.state === "paused" ? "paused" : "running");
            const from = Object.keys(this.record.from)[0] as CreateSource;
            this.registry.metrics.created(from, (performance.now() - requestedAt) / 1000);
          }
          return;
        } catch (e) {
          if (!(e instanceof ControlApiError)) throw e;
        }
        // A change while that probe was under way is a reason to ask again at once, as one during the wait is.
        if (changed) continue;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const waited = await new Promise<boolean>((resolve) => (
          wake = () => resolve(false), timer = setTimeout(() => resolve(true), interval)
        ));
        clearTimeout(timer);
        if (waited) interval = Math.min(2 * interval, PROBE_INTERVAL_MS.last);
      }
    } finally {
      changes.close();
    }
    throw new InstanceConflict(`instance ${this.record.id} exited before its control API served`);
  }

  /** What the process wrote as it stopped; one that crashed wrote nothing, and its last scrape stands. */
  private async readFinalStats() {
    try {
      const final = JSON.parse(await Deno.readTextFile(this.statsFile)) as InstanceStats;
      this.lastStats = { hypercalls: final.hypercalls, residentPages: 0 };
    } catch {
      if (this.lastStats) this.lastStats.residentPages = 0;
    }
  }

  /**
   * Its counts now: asked of its process while it runs, else the last it reported. A scrape waits
   * `waitMs` at most and then takes the last answer: under the nested accelerator one ask is a process in
   * the helper VM, and takes seconds.
   */
  async stats(waitMs = Infinity): Promise<InstanceStats | undefined> {
    if (this.record.state === "running" || this.record.state === "paused") {
      const asked = callControlApi(this.socket, "GET", "/stats").then(
        (answer) => this.lastStats = { hypercalls: answer.hypercalls, residentPages: answer.residentPages },
        () => undefined,
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waited = waitMs === Infinity ? asked : Promise.race([
        asked,
        new Promise((resolve) => timer = setTimeout(resolve, waitMs)),
      ]);
      await waited;
      clearTimeout(timer);
    }
    return this.lastStats;
  }

  private ended(status: Deno.CommandStatus) {
    this.endedAt = performance.now();
    const kind = this.migratedTo ? "migrated" : exitKind(status, this.killing, this.stopsAtSnapshot);
    const to = this.migratedTo ? { to: this.migratedTo } : {};
    this.record.exit = { code: status.code, kind, at: new Date().toISOString(), ...to };
    this.setState("exited");
    this.registry.metrics.exited(kind);
    this.console.end();
    // Its end of the pipe, which nothing writes to any more: left open, every instance kept a descriptor.
    this.stdin?.close().catch(() => {});
    this.stdin = undefined;
  }

  private setState(state: InstanceState) {
    this.record.state = state;
    this.registry.records.save(this.record);
  }

  describe() {
    const { id, state, from, args, cpus, memoryMiB, maxHandles, overlayQuotaBytes, cpuLimitMs, timeoutMs, shares } =
      this.record;
    const { overlay, createdAt, pid, exit } = this.record;
    const uptimeMs = this.child ? (this.endedAt ?? performance.now()) - this.startedAt : undefined;
    return {
      id,
      state,
      from,
      args,
      ...(cpus === undefined ? {} : { cpus }),
      memoryMiB,
      ...(maxHandles === undefined ? {} : { maxHandles }),
      ...(overlayQuotaBytes === undefined ? {} : { overlayQuotaBytes }),
      ...(cpuLimitMs === undefined ? {} : { cpuLimitMs }),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(shares ? { shares } : {}),
      overlay,
      createdAt,
      ...(pid === undefined || !this.running ? {} : { pid }),
      ...(uptimeMs === undefined ? {} : { uptimeSeconds: Math.round(uptimeMs) / 1000 }),
      ...(state === "paused" && this.pausedThreads ? { threads: this.pausedThreads } : {}),
      ...(exit ? { exit } : {}),
    };
  }

  /** Resolves once its control API serves (its guest is about to run); rejects if it exits first. */
  started(): Promise<void> {
    return this.serving;
  }

  /** Ends it, for good, because `to` runs it now: it exits as "migrated". */
  async handOver(to: MigratedTo) {
    this.migratedTo = to;
    return await this.kill();
  }

  /** Resolves once the instance has exited (at once for one that is lost). */
  async wait() {
    if (this.record.state === "lost") {
      throw new InstanceConflict(`instance ${this.record.id} is lost: its process went with an earlier daemon`);
    }
    await this.exited;
    return this.describe();
  }

  /** Forwards `route` to the instance's control API once it serves; its refusals are passed on. */
  private async forward(route: string, body?: unknown) {
    if (!this.running) throw new InstanceConflict(`instance ${this.record.id} is ${this.record.state}`);
    await this.serving;
    try {
      return await callControlApi(this.socket, "POST", route, body);
    } catch (e) {
      if (!(e instanceof ControlApiError)) throw e;
      // Gone between the check and the call.
      if (e.status === 0 || e.message.includes(NOT_SERVING)) {
        throw new InstanceConflict(`instance ${this.record.id} is no longer running`);
      }
      throw new InstanceRefused(e.status, e.message.slice(e.socket.length + 2));
    }
  }

  async pause() {
    this.pausedThreads = (await this.forward("/pause")).threads;
    this.setState("paused");
    return this.describe();
  }

  async resume() {
    await this.forward("/resume");
    this.setState("running");
    return this.describe();
  }

  /** A migrated-in instance, restored paused, runs: its source has let go of it, and from now on it is this host's. */
  async takeOver() {
    if (this.record.incoming === undefined) return this.describe();
    const described = await this.resume();
    delete this.record.incoming;
    this.registry.records.save(this.record);
    return described;
  }

  async snapshot(request: { path: string; diffFrom?: string; stop?: boolean; seal?: { expiresInMs?: number } }) {
    const { seal, ...plain } = request;
    const keyFile = this.registry.keyFile;
    if (seal && !keyFile) {
      throw new InstanceConflict("this daemon has no key to seal with: start pvx serve with --key-file");
    }
    if (request.stop) this.stopsAtSnapshot = true;
    try {
      return await this.forward("/snapshot", seal ? { ...plain, seal: { ...seal, keyFile } } : plain);
    } catch (e) {
      if (request.stop) this.stopsAtSnapshot = false;
      throw e;
    }
  }

  /** Writes to the instance's stdin, then ends it with `close`. */
  async write(bytes: Uint8Array, close: boolean) {
    if (!this.running || !this.stdin) throw new InstanceConflict(`instance ${this.record.id} is ${this.record.state}`);
    const stdin = this.stdin;
    if (close) this.stdin = undefined;
    try {
      if (bytes.length) await stdin.write(bytes);
      if (close) await stdin.close();
    } catch {
      throw new InstanceConflict(`instance ${this.record.id}: its stdin is closed`);
    }
  }

  /**
   * SIGTERM, which stops the guest and reports how it stood; SIGKILL if that takes longer than `graceMs`, and at
   * once for 0.
   */
  async kill(graceMs = KILL_GRACE_MS) {
    if (!this.running) throw new InstanceConflict(`instance ${this.record.id} is ${this.record.state}`);
    this.killing = true;
    this.signal(graceMs === 0 ? "SIGKILL" : "SIGTERM");
    const grace = graceMs === 0 ? undefined : setTimeout(() => this.signal("SIGKILL"), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(grace);
    }
    return this.describe();
  }

  /**
   * A process that ended a moment ago, before its exit was seen here, cannot be signalled (Deno throws): it is
   * already what the signal was for, and its exit is on its way.
   */
  private signal(signal: Deno.Signal) {
    try {
      this.child!.kill(signal);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
    }
  }
}

function exitKind(status: Deno.CommandStatus, killed: boolean, stopsAtSnapshot: boolean): ExitKind {
  if (status.signal) return killed ? "killed" : "crashed";
  switch (status.code) {
    case 124:
      return "timeout";
    case 152:
      return "cpu-limit";
    case 125:
      return "error";
    case 126:
      return "fault";
    case 130:
    case 143:
      return killed ? "killed" : "interrupted";
    default:
      return status.code === 0 && stopsAtSnapshot ? "snapshotted" : "exit";
  }
}

/** The host-wide capacity of a daemon, and how it learns what an instance will take. */
export interface Capacity {
  /** Instances starting, running or paused at once. */
  maxInstances?: number;
  /** Their guest RAM together. */
  maxMemoryMiB?: number;
  /** The guest RAM an instance of `from` gets when its create asks for `memoryMiB` (bundles only). */
  guestMemoryMiB(from: InstanceRecord["from"], memoryMiB?: number): Promise<number>;
}

export class Instances {
  private readonly all = new Map<string, Instance>();
  private readonly reservedIds = new Set<string>();
  /** Creates that passed the capacity check and are not yet in `all`: counted against it all the same. */
  private pending = { instances: 0, memoryMiB: 0 };
  /** The hypercalls of instances removed since the daemon started, so that the totals never go down. */
  private readonly removedHypercalls = noHypercalls();

  /**
   * `pvx` is the command that runs tools/pvx.ts (deno, its flags, the script). The
   * records of a previous daemon are read as they were, and those that were running are lost.
   * `keyFile` is the daemon's key for sealed snapshots: what it seals with, and what it gives restores.
   * `warm` processes wait, loaded and rehearsed, for the next creates (tools/warm.ts).
   */
  constructor(
    readonly records: Records,
    readonly pvx: string[],
    readonly metrics: Metrics,
    readonly capacity: Capacity,
    readonly keyFile?: string,
    warm = 0,
  ) {
    for (const record of records.load()) this.all.set(record.id, new Instance(record, this));
    this.warm = new WarmProcesses([...pvx, "warm", "--rehearse"], warm);
  }

  readonly warm: WarmProcesses;

  /** Instances that hold guest RAM now, and how much, with the creates under way. */
  inUse(): { instances: number; memoryMiB: number } {
    const live = this.list().filter((i) => i.running);
    return {
      instances: live.length + this.pending.instances,
      memoryMiB: live.reduce((sum, i) => sum + i.record.memoryMiB, 0) + this.pending.memoryMiB,
    };
  }

  /** Refuses a create that would take the daemon past a limit; otherwise counts it until it is listed. */
  private reserve(memoryMiB: number): () => void {
    const used = this.inUse(), { maxInstances, maxMemoryMiB } = this.capacity;
    if (maxInstances !== undefined && used.instances >= maxInstances) {
      throw new AtCapacity(429, `the daemon's --max-instances ${maxInstances} is reached: ${used.instances} live`);
    }
    if (maxMemoryMiB !== undefined && used.memoryMiB + memoryMiB > maxMemoryMiB) {
      throw new AtCapacity(
        507,
        `the daemon's --max-memory ${maxMemoryMiB} MiB would be exceeded: ${used.memoryMiB} MiB of guest RAM in use, ` +
          `this instance needs ${memoryMiB} MiB`,
      );
    }
    this.pending.instances++;
    this.pending.memoryMiB += memoryMiB;
    return () => {
      this.pending.instances--;
      this.pending.memoryMiB -= memoryMiB;
    };
  }

  list(): Instance[] {
    return [...this.all.values()];
  }

  get(id: string): Instance | undefined {
    return this.all.get(id);
  }

  /** What the instances' processes counted, for GET /metrics. */
  async counts(): Promise<InstanceCounts> {
    const hypercalls = addTotals(noHypercalls(), this.removedHypercalls);
    const residentPages: Record<string, number> = {};
    await Promise.all(
      this.list().map(async (instance) => {
        const stats = await instance.stats(SCRAPE_WAIT_MS);
        if (!stats) return;
        addTotals(hypercalls, stats.hypercalls);
        if (instance.running) residentPages[instance.record.id] = stats.residentPages;
      }),
    );
    return { hypercalls, residentPages };
  }

  countByState(): Record<InstanceState, number> {
    const counts = { starting: 0, running: 0, paused: 0, exited: 0, lost: 0 };
    for (const instance of this.all.values()) counts[instance.record.state]++;
    return counts;
  }

  async create(spec: CreateSpec, requestedAt: number): Promise<Instance> {
    let memoryMiB: number;
    try {
      memoryMiB = await this.capacity.guestMemoryMiB(spec.from, spec.memoryMiB);
    } catch (e) {
      throw new BadSource(Object.keys(spec.from)[0], (e as Error).message);
    }
    const release = this.reserve(memoryMiB);
    try {
      return await this.start(spec, memoryMiB, requestedAt);
    } finally {
      release();
    }
  }

  /** An id no instance has, nor any other newId() gave: one a create can be given, with its home made. */
  async newId(): Promise<string> {
    let id: string;
    do id = hexBytes(crypto.getRandomValues(new Uint8Array(6))); while (
      this.all.has(id) || this.reservedIds.has(id)
    );
    this.reservedIds.add(id);
    await Deno.mkdir(this.records.home(id), { recursive: true, mode: 0o700 });
    return id;
  }

  /** Forgets an id newId() gave that no create used, with what was put in its home. */
  async dropId(id: string) {
    if (!this.reservedIds.delete(id)) return;
    await Deno.remove(this.records.home(id), { recursive: true }).catch(() => {});
  }

  private async start(spec: CreateSpec, memoryMiB: number, requestedAt: number): Promise<Instance> {
    const id = spec.id ?? await this.newId();
    const home = this.records.home(id);
    await Deno.mkdir(home, { recursive: true, mode: 0o700 });
    const overlay = spec.overlay ?? join(home, "overlay");
    await Deno.mkdir(overlay, { recursive: true });
    const record: InstanceRecord = {
      id,
      createdAt: new Date().toISOString(),
      from: spec.from,
      args: spec.args,
      env: spec.env,
      ...(spec.cpus === undefined ? {} : { cpus: spec.cpus }),
      memoryMiB,
      ...(spec.maxHandles === undefined ? {} : { maxHandles: spec.maxHandles }),
      ...(spec.overlayQuotaBytes === undefined ? {} : { overlayQuotaBytes: spec.overlayQuotaBytes }),
      ...(spec.cpuLimitMs === undefined ? {} : { cpuLimitMs: spec.cpuLimitMs }),
      ...(spec.timeoutMs === undefined ? {} : { timeoutMs: spec.timeoutMs }),
      ...(spec.shares?.length ? { shares: spec.shares } : {}),
      ...(spec.bundleFile === undefined ? {} : { bundleFile: spec.bundleFile }),
      ...(spec.incoming === undefined ? {} : { incoming: spec.incoming }),
      overlay,
      ownOverlay: spec.overlay === undefined,
      state: "starting",
    };
    const instance = Instance.spawn(record, this, requestedAt, spec.printedBefore);
    this.all.set(id, instance);
    this.reservedIds.delete(id);
    return instance;
  }

  /** Forgets an instance that has ended; a running one only with `force`, which kills it first. */
  async remove(instance: Instance, force: boolean) {
    if (instance.running) {
      if (!force) {
        throw new InstanceConflict(
          `instance ${instance.record.id} is ${instance.record.state}: kill it first, or force`,
        );
      }
      await instance.kill();
    }
    this.all.delete(instance.record.id);
    const last = await instance.stats();
    if (last) addTotals(this.removedHypercalls, last.hypercalls);
    await this.records.remove(instance.record);
  }

  /** Kills every running instance, and the warm processes: the daemon is stopping, and their consoles go with it. */
  async stopAll() {
    await Promise.all([
      ...this.list().filter((i) => i.running).map((i) => i.kill().catch(() => {})),
      this.warm.close(),
    ]);
  }
}
