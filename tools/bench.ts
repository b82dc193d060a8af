// `deno task bench`: pvx against the same work done in C, both measured in
// this run on this machine. The VMM baseline (tools/bench/baseline.c) runs
// the same kind of guest (ring 3, doorbell hypercalls); the file baseline
// (tools/bench/file_io_baseline.c) does with read()/write() what the guest
// does with ReadFile/WriteFile. Speed lives here, never in tests; each line
// prints both numbers and their ratio.

import { compileGuest, run } from "./guest_cc.ts";
import { main as pvx } from "./pvx.ts";
import { type Bundle, readBundle } from "./bundle.ts";
import { launchBundle } from "../hv/launch.ts";
import { prewarm, stopIdleThreads } from "../hv/vcpu_threads.ts";

const here = new URL("./bench/", import.meta.url).pathname;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const REPEATS = Number(Deno.env.get("PVX_BENCH_REPEATS") ?? 5);

async function cNanoseconds(bin: string, args: string[], cwd?: string): Promise<number> {
  const out = await new Deno.Command(bin, { args, cwd, stdout: "piped", stderr: "inherit" }).output();
  if (!out.success) throw new Error(`${bin} ${args.join(" ")} exited ${out.code}`);
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/** Runs a bench guest in this process; returns its wall time and boot time. */
async function pvxRun(bundle: Bundle, args: string[]) {
  const t0 = performance.now();
  const r = await launchBundle(bundle, { args });
  const wallMs = performance.now() - t0;
  if (r.outcome.kind !== "exit" || r.outcome.code !== 0) {
    throw new Error(`bench guest failed: ${JSON.stringify(r.outcome)}`);
  }
  return { wallMs, bootMs: r.bootMs! };
}

/** Runs a bench guest through the `pvx` command, as a user would, and returns the number it printed. */
function pvxPrinted(bundlePath: string, args: string[], overlayDir: string): Promise<number> {
  const cli = ["run", "-A", new URL("./pvx.ts", import.meta.url).pathname, "run", "--overlay", overlayDir, bundlePath];
  return cNanoseconds(Deno.execPath(), [...cli, "--", ...args]);
}

/** Prints pvx / C: a time ratio (lower is better) or, for throughput, a speed ratio (higher is better). */
function line(what: string, pvxValue: number, cValue: number, unit: string, goal: string): void {
  const ratio = pvxValue / cValue;
  const f = (v: number) => v.toFixed(2).padStart(9);
  console.log(
    `${what.padEnd(46)} pvx ${f(pvxValue)} ${unit}   C ${f(cValue)} ${unit}   ${ratio.toFixed(2)}x  (goal ${goal})`,
  );
}

async function pack(source: string, dir: string): Promise<string> {
  const name = source.replace(/\.c$/, "");
  await compileGuest(`${here}${source}`, `${dir}/${name}.elf`);
  await pvx(["pack", `${dir}/${name}.elf`, "-o", `${dir}/${name}.pvx`]);
  return `${dir}/${name}.pvx`;
}

const dir = await Deno.makeTempDir({ prefix: "pvx-bench-" });
const log = console.log;
try {
  const vmm = `${dir}/baseline`, files = `${dir}/file_io_baseline`;
  await run("gcc", ["-O2", "-o", vmm, `${here}baseline.c`]);
  await run("gcc", ["-O2", "-o", files, `${here}file_io_baseline.c`]);
  console.log = () => {};
  const nullLoop = await readBundle(await pack("null_loop.c", dir));
  const fileIo = await pack("file_io.c", dir);
  console.log = log;

  // A hypercall's cost is the slope between a short and a long run, so start-up cancels out.
  const [few, many] = [2_000, 12_000];
  const cNull: number[] = [], pvxNull: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    cNull.push(
      (await cNanoseconds(vmm, ["null", `${many}`]) - await cNanoseconds(vmm, ["null", `${few}`])) / (many - few) /
        1000,
    );
    pvxNull.push(
      ((await pvxRun(nullLoop, [`${many}`])).wallMs - (await pvxRun(nullLoop, [`${few}`])).wallMs) * 1000 /
        (many - few),
    );
  }
  line("null hypercall round trip", median(pvxNull), median(cNull), "µs", "<= 1.1x");

  const cBoot: number[] = [], coldBoot: number[] = [], warmBoot: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    cBoot.push(await cNanoseconds(vmm, ["boot"]) / 1e6);
    coldBoot.push((await pvxRun(nullLoop, ["0"])).bootMs);
  }
  prewarm();
  await pvxRun(nullLoop, ["0"]);
  for (let i = 0; i < REPEATS; i++) warmBoot.push((await pvxRun(nullLoop, ["0"])).bootMs);
  line("VM create -> first guest exit (warm thread)", median(warmBoot), median(cBoot), "ms", "<= 1.5x");
  line("VM create -> first guest exit (new thread)", median(coldBoot), median(cBoot), "ms", "-");

  // File throughput: the same file size both ways, in page cache, timed inside each program.
  const totalMiB = 64;
  for (const chunk of [4096, 1 << 20]) {
    for (const mode of ["write", "read"]) {
      const overlay = await Deno.makeTempDir({ dir }), cwd = await Deno.makeTempDir({ dir });
      const pvxMiBs: number[] = [], cMiBs: number[] = [];
      for (let i = 0; i < REPEATS; i++) {
        if (mode === "read") {
          await pvxPrinted(fileIo, ["write", `${chunk}`, `${totalMiB}`], overlay);
          await cNanoseconds(files, ["write", `${chunk}`, `${totalMiB}`], cwd);
        }
        pvxMiBs.push(totalMiB / (await pvxPrinted(fileIo, [mode, `${chunk}`, `${totalMiB}`], overlay) / 1e9));
        cMiBs.push(totalMiB / (await cNanoseconds(files, [mode, `${chunk}`, `${totalMiB}`], cwd) / 1e9));
      }
      const goal = chunk === 1 << 20 ? ">= 0.8x" : "-";
      line(
        `${mode === "read" ? "ReadFile" : "WriteFile"} ${chunk === 4096 ? "4 KiB" : "1 MiB"} chunks vs ${mode}()`,
        median(pvxMiBs),
        median(cMiBs),
        "MiB/s",
        goal,
      );
    }
  }
  const opens = 2000;
  const overlay = await Deno.makeTempDir({ dir }), cwd = await Deno.makeTempDir({ dir });
  const pvxOpen: number[] = [], cOpen: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    pvxOpen.push(await pvxPrinted(fileIo, ["openclose", `${opens}`], overlay) / opens / 1000);
    cOpen.push(await cNanoseconds(files, ["openclose", `${opens}`], cwd) / opens / 1000);
  }
  line("CreateFileW+CloseHandle vs open+close", median(pvxOpen), median(cOpen), "µs", "-");
} finally {
  console.log = log;
  stopIdleThreads();
  await Deno.remove(dir, { recursive: true });
}
