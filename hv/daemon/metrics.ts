// What `GET /metrics` reports, in Prometheus's text exposition format: the
// instances by state (read from the registry when scraped, so it cannot drift),
// guest RAM against the daemon's limits, exits by kind, and how long a create
// takes to reach a serving instance.

/** Upper bounds, in seconds: a create is ~0.1 s on KVM and several seconds under the nested accelerator. */
const CREATE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class Metrics {
  private readonly exits = new Map<string, number>();
  private readonly createCounts = CREATE_BUCKETS.map(() => 0);
  private createSum = 0;
  private createCount = 0;

  exited(kind: string) {
    this.exits.set(kind, (this.exits.get(kind) ?? 0) + 1);
  }

  /** From the create request to the instance's own control API answering. */
  created(seconds: number) {
    CREATE_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) this.createCounts[i]++;
    });
    this.createSum += seconds;
    this.createCount++;
  }

  /** `capacity` is the live instances' guest RAM and the daemon's limits, where it has them. */
  render(
    byState: Record<string, number>,
    capacity: { memoryMiB: number; maxInstances?: number; maxMemoryMiB?: number },
  ): string {
    const label = (v: string) => JSON.stringify(v); // Prometheus escapes \, " and newline as JSON does
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
      "# HELP pvx_instance_exits_total Instances that ended since the daemon started, by how.",
      "# TYPE pvx_instance_exits_total counter",
      ...[...this.exits].map(([kind, n]) => `pvx_instance_exits_total{kind=${label(kind)}} ${n}`),
      "# HELP pvx_instance_create_seconds From POST /instances to the instance's control API serving.",
      "# TYPE pvx_instance_create_seconds histogram",
      ...CREATE_BUCKETS.map((bound, i) => `pvx_instance_create_seconds_bucket{le="${bound}"} ${this.createCounts[i]}`),
      `pvx_instance_create_seconds_bucket{le="+Inf"} ${this.createCount}`,
      `pvx_instance_create_seconds_sum ${this.createSum}`,
      `pvx_instance_create_seconds_count ${this.createCount}`,
      "",
    ].join("\n");
  }
}
