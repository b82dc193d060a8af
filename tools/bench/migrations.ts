// The migration part of `deno task bench`: two `pvx serve` daemons on this
// machine, an instance of a 64 MiB guest that writes its memory at a set rate
// (tests/guests/dirty.c, the guest tests/migration_test.ts moves), moved from
// one to the other and back. Each trip's downtime (no vCPU of the app runs),
// total time and bytes sent are measured, and so is a start of the same
// app through the same daemon, from its create to its first line: the
// baseline tools/bench.ts reports them against.

import { call } from "../daemon_client.ts";
import { type Host, printed, serve, stop } from "./daemons.ts";

/** What a trip reports (hv/daemon/migration_source.ts MigrationReport), of it what the bench uses. */
export interface Trip {
  downtimeMs: number;
  totalMs: number;
  bytesSent: number;
  rounds: unknown[];
  downtime: { finalRoundMs: number; commitMs: number; startMs: number };
  to: { instance: string };
}

/**
 * `bundle` is the dirty guest packed with room for 64 MiB; `pvx` runs the pvx command. Returns the starts'
 * times, and for each rate of writing (MiB/s) its `repeats` trips, there and back in turn.
 */
export async function measureMigrations(bundle: string, pvx: string[], dir: string, repeats: number) {
  const tokenFile = `${dir}/token`;
  const token = crypto.randomUUID();
  await Deno.writeTextFile(tokenFile, token);
  const hosts: Host[] = [
    await serve(pvx, `${dir}/a`, { port: 7471, tokenFile }),
    await serve(pvx, `${dir}/b`, { port: 7472, tokenFile }),
  ];
  try {
    const startMs: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      const { id } = await call(hosts[0].daemon, "POST", "/instances", { bundle, args: ["64"] });
      await printed(hosts[0], id, "committed\n");
      startMs.push(performance.now() - t0);
      await call(hosts[0].daemon, "DELETE", `/instances/${id}?force=true`);
    }
    const rates: { rate: number; trips: Trip[] }[] = [];
    for (const rate of [0, 1, 16]) {
      let { id } = await call(hosts[0].daemon, "POST", "/instances", { bundle, args: ["64", String(rate)] });
      await printed(hosts[0], id, "tick 0\n");
      const trips: Trip[] = [];
      for (let i = 0; i < repeats; i++) {
        const [from, to] = i % 2 ? [hosts[1], hosts[0]] : [hosts[0], hosts[1]];
        const trip: Trip = await call(from.daemon, "POST", `/instances/${id}/migrate`, { to: to.url, token });
        trips.push(trip);
        id = trip.to.instance;
        console.error(
          `pvx bench: ${rate} MiB/s, trip ${i + 1}: ${trip.rounds.length} rounds, ${trip.bytesSent} bytes, ` +
            `down ${trip.downtimeMs} ms (final round ${trip.downtime.finalRoundMs}, restore ` +
            `${trip.downtime.commitMs}, start ${trip.downtime.startMs})`,
        );
      }
      await call(hosts[repeats % 2].daemon, "DELETE", `/instances/${id}?force=true`);
      rates.push({ rate, trips });
    }
    return { startMs, rates };
  } finally {
    await stop(hosts);
  }
}
