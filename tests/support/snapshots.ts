// What the snapshot tests share: reaching an instance's API once it serves,
// scratch directories for "this machine" and "another machine", and what the
// workers guest prints.

import { pvxCli } from "./guests.ts";
import { NOT_SERVING } from "../../hv/control_api.ts";

/** `pvx <args>` until it reaches the instance: its API socket appears once its guest is about to run. */
export async function whenServing(args: string[]) {
  for (;;) {
    const r = await pvxCli(args);
    if (!r.stderr.includes(NOT_SERVING)) return r;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function inTempDirs(body: (dir: string, elsewhere: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "pvx-snap-" });
  const elsewhere = await Deno.makeTempDir({ prefix: "pvx-snap-other-" });
  try {
    await body(dir, elsewhere);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
}

/** What tests/guests/workers.c prints for `rounds` rounds and the console line `line`. */
export const workersOutput = (rounds: number, line: string) => {
  const steps = Array.from(
    { length: rounds },
    (_, r) => `round ${r}\n` + [0, 1, 2].map((w) => `worker ${w} step ${r + 1}\n`).join(""),
  );
  const exits = [0, 1, 2].map((w) => `worker ${w} exited ${100 + rounds}\n`).join("");
  return `${steps.join("")}read ${line.length} bytes\n${exits}done\n`;
};

/**
 * `count` distinct points in [from, to), in order, where a test snapshots: chosen by a seed, new each run
 * unless PVX_SNAPSHOT_SEED repeats one. Failure messages should name `seed`.
 */
export function snapshotPoints(count: number, from: number, to: number): { seed: number; points: number[] } {
  const seed = Number(Deno.env.get("PVX_SNAPSHOT_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  // mulberry32: small, and the same sequence on every machine.
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const pool = Array.from({ length: to - from }, (_, i) => from + i);
  const points = Array.from({ length: count }, () => pool.splice(Math.floor(next() * pool.length), 1)[0]);
  return { seed, points: points.sort((a, b) => a - b) };
}
