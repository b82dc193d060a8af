// The migration part of `deno task bench`: two `pvx serve` daemons on this
// machine, an instance of a 64 MiB guest that writes its memory at a set rate
// (tests/guests/dirty.c, the guest tests/migration_test.ts moves), moved from
// one to the other and back. Each trip's downtime (no vCPU of the app runs),
// total time and bytes sent are measured against a cold start of the same app
// through the same daemon, from its create to its first line.

import { requestControlApi } from "../../hv/control_api.ts";

/** Prints one line of the bench: pvx's figure, the baseline's, and the goal (tools/bench.ts `line`). */
export type Report = (what: string, value: number, base: number, unit: string, goal: string, baseline: string) => void;

const MiB = 1 << 20;

interface Daemon {
  socket: string;
  url: string;
  child: Deno.ChildProcess;
}

async function serve(pvx: string[], dir: string, port: number, tokenFile: string): Promise<Daemon> {
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
  return { socket, url, child };
}

async function call(daemon: Daemon, method: string, route: string, body?: unknown) {
  const r = await requestControlApi(
    daemon.socket,
    method,
    route,
    body === undefined ? undefined : JSON.stringify(body),
  );
  const json = JSON.parse(r.body);
  if (r.status >= 300) throw new Error(`${method} ${route}: ${r.status} ${json.error?.message}`);
  return json;
}

/** Resolves once instance `id`'s console has printed `text` (its server-sent events carry the text as JSON). */
async function printed(daemon: Daemon, id: string, text: string) {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: daemon.socket } });
  try {
    const response = await fetch(`http://pvx/instances/${id}/logs?follow=true`, { client });
    let events = "", output = "";
    for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) {
      events += chunk;
      for (let end; (end = events.indexOf("\n\n")) >= 0; events = events.slice(end + 2)) {
        const data = events.slice(0, end).split("\n").find((l) => l.startsWith("data: "));
        if (data && events.startsWith("event: stdout")) output += JSON.parse(data.slice("data: ".length));
      }
      if (output.includes(text)) return;
    }
    throw new Error(`instance ${id} ended before it printed ${JSON.stringify(text)}: ${output}`);
  } finally {
    client.close();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** `bundle` is the dirty guest packed with room for 64 MiB; `pvx` runs the pvx command. */
export async function migrations(bundle: string, pvx: string[], dir: string, repeats: number, report: Report) {
  const tokenFile = `${dir}/token`;
  await Deno.writeTextFile(tokenFile, crypto.randomUUID());
  const token = (await Deno.readTextFile(tokenFile)).trim();
  const hosts = [await serve(pvx, `${dir}/a`, 7471, tokenFile), await serve(pvx, `${dir}/b`, 7472, tokenFile)];
  try {
    const cold: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      const { id } = await call(hosts[0], "POST", "/instances", { bundle, args: ["64"] });
      await printed(hosts[0], id, "committed\n");
      cold.push(performance.now() - t0);
      await call(hosts[0], "DELETE", `/instances/${id}?force=true`);
    }
    for (const rate of [0, 1, 16]) {
      let { id } = await call(hosts[0], "POST", "/instances", { bundle, args: ["64", String(rate)] });
      await printed(hosts[0], id, "tick 0\n");
      const trips: { downtimeMs: number; totalMs: number; bytesSent: number; rounds: unknown[] }[] = [];
      for (let i = 0; i < repeats; i++) {
        const [from, to] = i % 2 ? [hosts[1], hosts[0]] : [hosts[0], hosts[1]];
        const trip = await call(from, "POST", `/instances/${id}/migrate`, { to: to.url, token });
        trips.push(trip);
        id = trip.to.instance;
        console.error(
          `pvx bench: ${rate} MiB/s, trip ${i + 1}: ${trip.rounds.length} rounds, ${trip.bytesSent} bytes, ` +
            `down ${trip.downtimeMs} ms (final round ${trip.downtime.finalRoundMs}, restore ` +
            `${trip.downtime.commitMs}, start ${trip.downtime.startMs})`,
        );
      }
      await call(hosts[repeats % 2], "DELETE", `/instances/${id}?force=true`);
      const what = rate ? `dirtying ${rate} MiB/s` : "idle";
      report(
        `migration downtime, 64 MiB ${what}`,
        median(trips.map((t) => t.downtimeMs)),
        median(cold),
        "ms",
        "<= 10 ms",
        "cold start",
      );
      report(`  total time`, median(trips.map((t) => t.totalMs)), median(cold), "ms", "-", "cold start");
      report(`  bytes sent, first trip vs guest RAM`, trips[0].bytesSent / MiB, 64, "MiB", "~1x", "RAM");
      const later = trips.slice(1).map((t) => t.bytesSent / MiB);
      if (later.length) {
        report(`  bytes sent, later trips vs first`, median(later), trips[0].bytesSent / MiB, "MiB", "<< 1x", "first");
      }
    }
  } finally {
    for (const host of hosts) {
      host.child.kill("SIGTERM");
      await host.child.status;
    }
  }
}
