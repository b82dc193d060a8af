// What `GET /metrics` reports, in Prometheus's text exposition format: the
// instances by state (read from the registry when scraped, so it cannot drift),
// guest RAM against the daemon's limits, exits by kind, how long a create takes
// to reach a serving instance (a restore is a create from a snapshot or a
// template), migrations out of it by outcome with their downtime and bytes
// sent, and what the instances' own processes count: hypercalls by name,
// their latency, and guest pages resident.

import { HYPERCALL_BUCKETS, type HypercallTotals } from "../hypercall_stats.ts";

/** Upper bounds, in seconds: a create is ~0.1 s on KVM and several seconds under the nested accelerator. */
const CREATE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Upper bounds, in seconds, of a migration's downtime: the goal is 10 ms; a restore in a new process is ~0.5 s. */
const DOWNTIME_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** How a migration out of this daemon ended: the app moved, or it runs on here, or it was kept paused here. */
export type MigrationOutcome = "moved" | "failed" | "kept-paused";

/** What an instance is created from, the label that tells a cold start from a restore. */
export type CreateSource = "bundle" | "template" | "snapshot";

/** What the instances' processes report, summed by the daemon (hv/daemon/instances.ts). */
export interface InstanceCounts {
  hypercalls: HypercallTotals;
  /** Live instances' guest pages resident in host memory, by instance id. */
  residentPages: Record<string, number>;
}

export interface Capacity {
  /** The live instances' guest RAM, and the daemon's limits where it has them. */
  memoryMiB: number;
  maxInstances?: number;
  maxMemoryMiB?: number;
}

const label = (v: string) => JSON.stringify(v); // Prometheus escapes \, " and newline as JSON does

/** A histogram's series; `counts` has one per bound then the overflow, not cumulative. */
function histogram(name: string, labels: string, bounds: readonly number[], counts: number[], sum: number) {
  const at = (le: string) => `${name}_bucket{${labels}${labels ? "," : ""}le="${le}"}`;
  const inner = labels ? `{${labels}}` : "";
  let cumulative = 0;
  return [
    ...bounds.map((bound, i) => `${at(String(bound))} ${cumulative += counts[i]}`),
    `${at("+Inf")} ${cumulative += counts[bounds.length]}`,
    `${name}_sum${inner} ${sum}`,
    `${name}_count${inner} ${cumulative}`,
  ];
}

/** Observations counted into buckets as they come. */
class Histogram {
  readonly counts: number[];
  sum = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = Array(bounds.length + 1).fill(0);
  }

  observe(value: number) {
    const bucket = this.bounds.findIndex((bound) => value <= bound);
    this.counts[bucket < 0 ? this.bounds.length : bucket]++;
    this.sum += value;
  }

  series(name: string, labels = "") {
    return histogram(name, labels, this.bounds, this.counts, this.sum);
  }
}

export class Metrics {
  private readonly exits = new Map<string, number>();
  private readonly creates = new Map<CreateSource, Histogram>();
  private readonly migrations = new Map<MigrationOutcome, number>();
  private readonly downtime = new Histogram(DOWNTIME_BUCKETS);
  private migrationBytes = 0;

  exited(kind: string) {
    this.exits.set(kind, (this.exits.get(kind) ?? 0) + 1);
  }

  /** From the create request to the instance's own control API answering. */
  created(from: CreateSource, seconds: number) {
    let h = this.creates.get(from);
    if (!h) this.creates.set(from, h = new Histogram(CREATE_BUCKETS));
    h.observe(seconds);
  }

  /** A migration out of this daemon ended; one that moved the app says its downtime and the bytes it sent. */
  migrated(outcome: MigrationOutcome, moved?: { downtimeSeconds: number; bytesSent: number }) {
    this.migrations.set(outcome, (this.migrations.get(outcome) ?? 0) + 1);
    if (moved) {
      this.downtime.observe(moved.downtimeSeconds);
      this.migrationBytes += moved.bytesSent;
    }
  }

  render(byState: Record<string, number>, capacity: Capacity, counts: InstanceCounts): string {
    const { hypercalls } = counts;
    return [
      "# HELP pvx_instances Instances the daemon knows, by state.",
      "# TYPE pvx_instances gauge",
      ...Object.entries(byState).map(([state, n]) => `pvx_instances{state=${label(state)}} ${n}`),
      "# HELP pvx_guest_memory_mib Guest RAM of the live instances, counted against --max-memory.",
      "# TYPE pvx_guest_memory_mib gauge",
      `pvx_guest_memory_mib ${capacity.memoryMiB}`,
      ...(capacity.maxInstances === undefined ? [] : [
        "# HELP pvx_max_instances --max-instances: live instances past which a create is refused (429).",
        "# TYPE pvx_max_instances gauge",
        `pvx_max_instances ${capacity.maxInstances}`,
      ]),
      ...(capacity.maxMemoryMiB === undefined ? [] : [
        "# HELP pvx_max_memory_mib --max-memory: guest RAM past which a create is refused (507).",
        "# TYPE pvx_max_memory_mib gauge",
        `pvx_max_memory_mib ${capacity.maxMemoryMiB}`,
      ]),
      "# HELP pvx_guest_pages_resident Guest pages of a live instance in host memory (4 KiB each).",
      "# TYPE pvx_guest_pages_resident gauge",
      ...Object.entries(counts.residentPages).map(([id, n]) => `pvx_guest_pages_resident{instance=${label(id)}} ${n}`),
      "# HELP pvx_instance_exits_total Instances that ended since the daemon started, by how.",
      "# TYPE pvx_instance_exits_total counter",
      ...[...this.exits].map(([kind, n]) => `pvx_instance_exits_total{kind=${label(kind)}} ${n}`),
      "# HELP pvx_instance_create_seconds From POST /instances to the instance's control API serving, by source.",
      "# TYPE pvx_instance_create_seconds histogram",
      ...[...this.creates].flatMap(([from, h]) => h.series("pvx_instance_create_seconds", `from=${label(from)}`)),
      "# HELP pvx_migrations_total Migrations out of this daemon, by outcome (kept-paused: the target may run it).",
      "# TYPE pvx_migrations_total counter",
      ...[...this.migrations].map(([outcome, n]) => `pvx_migrations_total{outcome=${label(outcome)}} ${n}`),
      "# HELP pvx_migration_downtime_seconds From a moved app's final pause to its target's answer that it runs.",
      "# TYPE pvx_migration_downtime_seconds histogram",
      ...this.downtime.series("pvx_migration_downtime_seconds"),
      "# HELP pvx_migration_sent_bytes_total Chunk bytes the migrations that moved an app sent.",
      "# TYPE pvx_migration_sent_bytes_total counter",
      `pvx_migration_sent_bytes_total ${this.migrationBytes}`,
      "# HELP pvx_hypercalls_total Hypercalls the instances made, by call.",
      "# TYPE pvx_hypercalls_total counter",
      ...Object.entries(hypercalls.calls).map(([name, n]) => `pvx_hypercalls_total{call=${label(name)}} ${n}`),
      "# HELP pvx_hypercall_seconds From a hypercall's exit to the guest's return, a blocking call's wait included.",
      "# TYPE pvx_hypercall_seconds histogram",
      ...histogram("pvx_hypercall_seconds", "", HYPERCALL_BUCKETS, hypercalls.buckets, hypercalls.seconds),
      "",
    ].join("\n");
  }
}
