// The migration part of `deno task bench`: two `pvx serve` daemons on this
// machine, an instance of a 64 MiB guest that writes its memory at a set rate
// (tests/guests/dirty.c, the guest tests/migration_test.ts moves), moved from
// one to the other and back. Each trip's downtime (no vCPU of the app runs),
// total time and bytes sent are measured, and so is a cold start of the same
// app through the same daemon, from its create to its first line: the
// baseline tools/bench.ts reports them against.

import { call, connect, type Daemon, serverEvents } from "../daemon_cli.ts";

interface Host {
  daemon: Daemon;
  url: string;
  child: Deno.ChildProcess;
}

/** What a trip reports (hv/daemon/migration_source.ts MigrationReport), of it what the bench uses. */
export interface Trip {
  downtimeMs: number;
  totalMs: number;
  bytesSent: number;
  rounds: unknown[];
  downtime: { finalRoundMs: number; commitMs: number; startMs: number };
  to: { instance: string };
}

async function serve(pvx: string[], dir: string, port: number, tokenFile: string): Promise<Host> {
  const socket = `${dir}/serve.sock`;
  const child = new Deno.Command(pvx[0], {
    args: [...pvx.slice(1), "serve", "--socket", socket, "--listen", `127.0.0.1:${port}`, "--token-file", tokenFile]
      .concat(["--state-dir", `${dir}/state`]),
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const url = `http://127.0.0.1:${port}`;
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  for (let said = ""; !said.includes(`listening on ${url}`);) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`pvx serve on ${url} ended before it listened`);
    said += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { daemon: await connect({ host: socket }), url, child };
}

/** Resolves once instance `id`'s console has printed `text`. */
async function printed(host: Host, id: string, text: string) {
  const response = await host.daemon.fetch(`/instances/${id}/logs?follow=true`);
  let output = "";
  for await (const { event, data } of serverEvents(response)) {
    if (event === "stdout") output += data;
    // Leaving the loop cancels the stream, which would otherwise follow the app for as long as it runs.
    if (output.includes(text)) return;
  }
  throw new Error(`instance ${id} ended before it printed ${JSON.stringify(text)}: ${output}`);
}

/**
 * `bundle` is the dirty guest packed with room for 64 MiB; `pvx` runs the pvx command. Returns the cold starts'
 * times, and for each rate of writing (MiB/s) its `repeats` trips, there and back in turn.
 */
export async function measureMigrations(bundle: string, pvx: string[], dir: string, repeats: number) {
  const tokenFile = `${dir}/token`;
  const token = crypto.randomUUID();
  await Deno.writeTextFile(tokenFile, token);
  const hosts = [await serve(pvx, `${dir}/a`, 7471, tokenFile), await serve(pvx, `${dir}/b`, 7472, tokenFile)];
  try {
    const coldMs: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      const { id } = await call(hosts[0].daemon, "POST", "/instances", { bundle, args: ["64"] });
      await printed(hosts[0], id, "committed\n");
      coldMs.push(performance.now() - t0);
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
    return { coldMs, rates };
  } finally {
    for (const host of hosts) {
      host.child.kill("SIGTERM");
      await host.child.status;
    }
  }
}
