// `deno task bench`: pvx against the same work done by a minimal C VMM
// (tools/bench/baseline.c), both measured in this run on this machine.
// Speed lives here, never in tests; each line prints both numbers and their ratio.

import { compileGuest, run } from "./guest_cc.ts";
import { main as pvx } from "./pvx.ts";
import { readBundle } from "./bundle.ts";
import { launchBundle } from "../hv/launch.ts";
import { prewarm, stopIdleThreads } from "../hv/vcpu_threads.ts";
import type { Bundle } from "./bundle.ts";

const here = new URL("./bench/", import.meta.url).pathname;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const REPEATS = Number(Deno.env.get("PVX_BENCH_REPEATS") ?? 5);

async function cBaseline(bin: string, ...args: string[]): Promise<number> {
  return Number((await run(bin, args)).trim()) / 1e6; // ms
}

async function pvxRun(bundle: Bundle, arg: string): Promise<{ wallMs: number; bootMs: number }> {
  const t0 = performance.now();
  const r = await launchBundle(bundle, { args: [arg] });
  const wallMs = performance.now() - t0;
  if (r.outcome.kind !== "exit" || r.outcome.code !== 0) {
    throw new Error(`bench guest failed: ${JSON.stringify(r.outcome)}`);
  }
  return { wallMs, bootMs: r.bootMs! };
}

function line(what: string, pvxValue: number, cValue: number, unit: string, goal: string): void {
  const ratio = pvxValue / cValue;
  console.log(
    `${what.padEnd(44)} pvx ${pvxValue.toFixed(2).padStart(8)} ${unit}   C ${cValue.toFixed(2).padStart(8)} ${unit}   ${
      ratio.toFixed(2)
    }x  (goal ${goal})`,
  );
}

const dir = await Deno.makeTempDir({ prefix: "pvx-bench-" });
try {
  const baseline = `${dir}/baseline`;
  await run("gcc", ["-O2", "-o", baseline, `${here}baseline.c`]);
  await compileGuest(`${here}null_loop.c`, `${dir}/null_loop.elf`);
  console.log = ((log) => (...a: unknown[]) => String(a[0]).startsWith("packed") ? undefined : log(...a))(console.log);
  await pvx(["pack", `${dir}/null_loop.elf`, "-o", `${dir}/null_loop.pvx`]);
  const bundle = await readBundle(`${dir}/null_loop.pvx`);

  // A hypercall's cost is the slope between a short and a long run, so start-up cancels out.
  const [few, many] = [20_000, 120_000];
  const cNull: number[] = [], pvxNull: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    cNull.push(
      (await cBaseline(baseline, "null", String(many)) - await cBaseline(baseline, "null", String(few))) / (many - few),
    );
    pvxNull.push(
      ((await pvxRun(bundle, String(many))).wallMs - (await pvxRun(bundle, String(few))).wallMs) / (many - few),
    );
  }
  line("null hypercall round trip", median(pvxNull) * 1000, median(cNull) * 1000, "µs", "<= 1.1x");

  const cBoot: number[] = [], coldBoot: number[] = [], warmBoot: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    cBoot.push(await cBaseline(baseline, "boot"));
    coldBoot.push((await pvxRun(bundle, "0")).bootMs);
  }
  prewarm();
  await pvxRun(bundle, "0");
  for (let i = 0; i < REPEATS; i++) warmBoot.push((await pvxRun(bundle, "0")).bootMs);
  line("VM create -> first guest exit (warm thread)", median(warmBoot), median(cBoot), "ms", "<= 1.5x");
  line("VM create -> first guest exit (new thread)", median(coldBoot), median(cBoot), "ms", "-");
} finally {
  stopIdleThreads();
  await Deno.remove(dir, { recursive: true });
}
