// `deno task bench`: pvx against the same work done in C, both measured in
// this run on this machine. The VMM baseline (tools/bench/baseline.c) runs
// the same kind of guest (ring 3, doorbell hypercalls); the file baseline
// (tools/bench/file_io_baseline.c) does with read()/write() what the guest
// does with ReadFile/WriteFile; the thread baselines (parallel_sum_baseline.c,
// thread_create_baseline.c) do with pthreads what the guests do with
// CreateThread. Speed lives here, never in tests; each line prints both
// numbers and their ratio.

import { compileGuest, run } from "./guest_cc.ts";
import { defaultPackOptions, packApp } from "./pack.ts";
import { type Bundle, parseBundle, readBundle, writeBundle } from "../hv/bundle.ts";
import { launchBundle } from "../hv/launch.ts";
import { prewarm, stopIdleThreads } from "../hv/vcpu_threads.ts";
import { kvmAccess } from "../hv/kvm_access.ts";
import { IN_NESTED_ENV, runDenoNested } from "./accel.ts";
import { defaultNestedVm } from "./nested/vm.ts";
import { measureMigrations } from "./bench/migrations.ts";
import { measureDaemonStarts } from "./bench/starts.ts";

// Figures from the nested accelerator are an emulated CPU's: run everything there, pvx and its
// baselines alike, so the ratios compare like with like, and label every figure.
const access = kvmAccess();
if (!access.ok) {
  if (!Deno.args.includes("--accel=nested")) {
    console.error(
      `pvx bench: needs /dev/kvm: ${access.cause}. \`deno task bench --accel=nested\` runs the whole bench, ` +
        "pvx and its baselines, inside the nested accelerator's emulated CPU, and labels every figure so.",
    );
    Deno.exit(1);
  }
  const args = Deno.args.filter((a) => a !== "--accel=nested");
  // Room for the clones part's 50 instances, each a Deno process of its own.
  const vm = { ...defaultNestedVm, memoryMiB: 12 * 1024 };
  Deno.exit(await runDenoNested(["run", "-A", new URL(import.meta.url).pathname, ...args], undefined, vm));
}
const label = Deno.env.get(IN_NESTED_ENV) ? "nested (emulated SVM) " : "";
/** `--only=vmm|threads|windows|snapshots|clones|diffs|migrations` runs one part of the bench. */
const only = Deno.args.find((a) => a.startsWith("--only="))?.slice("--only=".length);
const parts = ["vmm", "threads", "windows", "snapshots", "clones", "diffs", "migrations"];
if (only !== undefined && !parts.includes(only)) {
  console.error(`pvx bench: --only=${only}: expected one of ${parts.join(", ")}`);
  Deno.exit(2);
}
const wanted = (part: string) => only === undefined || only === part;

const here = new URL("./bench/", import.meta.url).pathname;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const REPEATS = Number(Deno.env.get("PVX_BENCH_REPEATS") ?? 5);
/** Instances started together from one template to measure what each costs in memory. */
const CLONES = Number(Deno.env.get("PVX_BENCH_CLONES") ?? 50);

/** Runs a program and returns what it printed, trimmed. */
async function printed(bin: string, args: string[], cwd?: string, env?: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(bin, { args, cwd, env, stdout: "piped", stderr: "inherit" }).output();
  if (!out.success) throw new Error(`${bin} ${args.join(" ")} exited ${out.code}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** Runs a program that prints one number of nanoseconds, and returns it. */
async function cNanoseconds(bin: string, args: string[], cwd?: string, env?: Record<string, string>): Promise<number> {
  return Number(await printed(bin, args, cwd, env));
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

/** The `pvx run` command line for a bench guest, as a user would run it. */
function pvxCommand(bundlePath: string, args: string[], overlayDir: string): string[] {
  const cli = ["run", "-A", new URL("./pvx.ts", import.meta.url).pathname, "run", "--overlay", overlayDir, bundlePath];
  return [...cli, "--", ...args];
}

/** Runs a bench guest through the `pvx` command, as a user would, and returns the number it printed. */
function pvxPrinted(bundlePath: string, args: string[], overlayDir: string): Promise<number> {
  return cNanoseconds(Deno.execPath(), pvxCommand(bundlePath, args, overlayDir));
}

/** Prints pvx / C: a time ratio (lower is better) or, for throughput, a speed ratio (higher is better). */
function line(what: string, pvxValue: number, cValue: number, unit: string, goal: string, baseline = "C"): void {
  const ratio = pvxValue / cValue;
  const f = (v: number) => v.toFixed(2).padStart(9);
  console.log(
    `${label}${what.padEnd(46)} pvx ${f(pvxValue)} ${unit}   ${baseline} ${f(cValue)} ${unit}   ${
      ratio.toFixed(2)
    }x  (goal ${goal})`,
  );
}

async function pack(source: string, dir: string, memoryMiB = defaultPackOptions.memoryMiB): Promise<string> {
  const name = source.replace(/^.*\//, "").replace(/\.c$/, "");
  await compileGuest(source.startsWith("/") ? source : `${here}${source}`, `${dir}/${name}.elf`);
  await writeBundle(`${dir}/${name}.pvx`, await packApp(`${dir}/${name}.elf`, { ...defaultPackOptions, memoryMiB }));
  return `${dir}/${name}.pvx`;
}

/** Milliseconds a whole command takes, start to exit, as a user waits for it; `input` is all its stdin. */
async function wallMs(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; input?: string; exitCode?: number } = {},
): Promise<number> {
  const { input, exitCode = 0, ...where } = opts;
  const t0 = performance.now();
  const child = new Deno.Command(cmd, { args, ...where, stdin: "piped", stdout: "null", stderr: "null" }).spawn();
  const stdin = child.stdin.getWriter();
  if (input) await stdin.write(new TextEncoder().encode(input));
  await stdin.close();
  const status = await child.status;
  if (status.code !== exitCode) throw new Error(`${cmd} ${args.join(" ")} exited ${status.code}`);
  return performance.now() - t0;
}

/**
 * CPU-bound work (tools/bench/parallel_sum_work.h) split over 1 and 2 threads, as a guest with CreateThread
 * and as native C with pthreads. Both time the parallel section inside the program and print
 * "<nanoseconds> <sum>"; the sum is the same for every run, which is checked (it is not a timing).
 * The speed-ups are medians of each repeat's own 1-thread / 2-thread pair.
 */
async function threads(dir: string): Promise<void> {
  const native = `${dir}/parallel_sum_baseline`;
  await run("gcc", ["-O2", "-pthread", "-o", native, `${here}parallel_sum_baseline.c`]);
  const guest = await pack("parallel_sum.c", dir);
  const overlay = await Deno.makeTempDir({ dir });
  // About 0.6 s on one thread of the machine this was written on.
  const iterations = 800_000_000;
  const sums = new Set<string>();
  const parse = (text: string) => {
    const [ns, sum] = text.split(/\s+/);
    sums.add(sum);
    return Number(ns) / 1e6;
  };
  const pvxMs = (n: number) =>
    printed(Deno.execPath(), pvxCommand(guest, [`${n}`, `${iterations}`], overlay)).then(parse);
  const cMs = (n: number) => printed(native, [`${n}`, `${iterations}`]).then(parse);
  const pvxOne: number[] = [], cOne: number[] = [], pvxSpeedUp: number[] = [], cSpeedUp: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const [p1, p2, c1, c2] = [await pvxMs(1), await pvxMs(2), await cMs(1), await cMs(2)];
    pvxOne.push(p1);
    cOne.push(c1);
    pvxSpeedUp.push(p1 / p2);
    cSpeedUp.push(c1 / c2);
  }
  if (sums.size !== 1) throw new Error(`parallel_sum: runs disagree on the sum: ${[...sums].join(", ")}`);
  line("CPU work, 1 thread vs C 1 thread", median(pvxOne), median(cOne), "ms", "~1.0x");
  line("CPU work, speed-up of 2 threads over 1", median(pvxSpeedUp), median(cSpeedUp), "x", "pvx >= 1.8x");

  const nativeCreate = `${dir}/thread_create_baseline`;
  await run("gcc", ["-O2", "-pthread", "-o", nativeCreate, `${here}thread_create_baseline.c`]);
  const create = await pack("thread_create.c", dir);
  const count = 200;
  const pvxCreate: number[] = [], cCreate: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    pvxCreate.push(await pvxPrinted(create, [`${count}`], overlay) / count / 1000);
    cCreate.push(await cNanoseconds(nativeCreate, [`${count}`]) / count / 1000);
  }
  line("CreateThread+Wait+CloseHandle vs pthread", median(pvxCreate), median(cCreate), "µs", "-");
}

/**
 * The same unmodified Windows programs under pvx and under Wine: start-up, standalone and through `pvx serve`
 * (tools/bench/starts.ts), and a file copy's throughput.
 */
async function windowsVsWine(dir: string): Promise<void> {
  const mingw = ["-O2", "-nostdlib", "-fno-builtin", "-e", "mainCRTStartup"];
  const [hello, greet, copy] = ["win_hello", "win_greet", "win_copy"].map((name) => `${dir}/${name}.exe`);
  for (const exe of [hello, greet, copy]) {
    const source = `${here}${exe.slice(dir.length + 1, -4)}.c`;
    await run("x86_64-w64-mingw32-gcc", [...mingw, "-o", exe, source, "-lkernel32"]);
  }
  const wineEnv = { WINEPREFIX: `${dir}/wine-prefix`, WINEDEBUG: "-all" };
  const pvxEnv = { PVX_CACHE_DIR: `${dir}/bundle-cache` };
  const pvxCli = ["run", "-A", new URL("./pvx.ts", import.meta.url).pathname, "run"];
  const stopWineserver = () => new Deno.Command("wineserver", { args: ["-k"], env: wineEnv }).output();
  await wallMs("wine", [hello], { env: wineEnv }); // creates the prefix, which is no part of a start
  await wallMs(Deno.execPath(), [...pvxCli, hello], { env: pvxEnv }); // packs into the cache once

  const pvxStart: number[] = [], coldWine: number[] = [], warmWine: number[] = [], warmWineGreet: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    pvxStart.push(await wallMs(Deno.execPath(), [...pvxCli, hello], { env: pvxEnv }));
    await stopWineserver();
    coldWine.push(await wallMs("wine", [hello], { env: wineEnv }));
  }
  const server = new Deno.Command("wineserver", { args: ["-p", "-f"], env: wineEnv, stdout: "null", stderr: "null" })
    .spawn();
  try {
    await wallMs("wine", [hello], { env: wineEnv });
    for (let i = 0; i < REPEATS; i++) {
      warmWine.push(await wallMs("wine", [hello], { env: wineEnv }));
      warmWineGreet.push(await wallMs("wine", [greet], { env: wineEnv, input: "x\n" }));
    }
  } finally {
    await stopWineserver();
    await server.status;
  }
  line("Windows hello, start to exit", median(pvxStart), median(coldWine), "ms", "-", "cold Wine");
  line("Windows hello, start to exit", median(pvxStart), median(warmWine), "ms", "< 1x", "warm Wine");
  const pvx = [Deno.execPath(), "run", "-A", new URL("./pvx.ts", import.meta.url).pathname];
  const bundles = await Promise.all([hello, greet].map(async (exe) => {
    const bundle = exe.replace(/\.exe$/, ".pvx");
    await writeBundle(bundle, await packApp(exe, defaultPackOptions));
    return bundle;
  }));
  const served = await measureDaemonStarts(pvx, await Deno.makeTempDir({ dir }), bundles[0], bundles[1], REPEATS);
  line(
    "  via pvx serve, POST /instances to first output",
    median(served.firstOutput),
    median(warmWine),
    "ms",
    "-",
    "warm Wine exit",
  );
  line("  via pvx serve, POST /instances to exit", median(served.exit), median(warmWine), "ms", "< 1x", "warm Wine");
  line(
    "  the same from a template at its first read",
    median(served.fromTemplate),
    median(warmWineGreet),
    "ms",
    "< 1x",
    "warm Wine",
  );

  const sizeMiB = 64;
  const source = new Uint8Array(sizeMiB << 20).map((_, i) => i * 31);
  const wineCwd = await Deno.makeTempDir({ dir }), overlay = await Deno.makeTempDir({ dir });
  await Deno.writeFile(`${wineCwd}/src.dat`, source);
  await Deno.mkdir(`${overlay}/files`, { recursive: true });
  await Deno.writeFile(`${overlay}/files/src.dat`, source);
  const pvxCopy: number[] = [], wineCopy: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    pvxCopy.push(sizeMiB / (await cNanoseconds(Deno.execPath(), [...pvxCli, "--overlay", overlay, copy]) / 1e9));
    wineCopy.push(sizeMiB / (await cNanoseconds("wine", [copy], wineCwd, wineEnv) / 1e9));
  }
  line("Windows file copy (1 MiB chunks)", median(pvxCopy), median(wineCopy), "MiB/s", "-", "Wine");
  await stopWineserver();
  await defaultMingwVsWine(dir, wineEnv, pvxEnv, pvxCli);
  // The server saves the prefix's registry as it exits: let it, before the prefix is deleted.
  await new Deno.Command("wineserver", { args: ["-w"], env: wineEnv }).output();
}

/**
 * Default mingw builds, their C runtime (Wine's msvcrt) bundled: the hello's start to exit against cold and warm
 * Wine, a CRT-heavy program's work against the same under Wine, and what the bundle weighs with its DLLs.
 */
async function defaultMingwVsWine(
  dir: string,
  wineEnv: Record<string, string>,
  pvxEnv: Record<string, string>,
  pvxCli: string[],
): Promise<void> {
  const hello = `${dir}/crt_hello.exe`, work = `${dir}/crt_work.exe`;
  await run("x86_64-w64-mingw32-gcc", ["-O2", "-o", hello, new URL("../tests/crt/hello.c", import.meta.url).pathname]);
  await run("x86_64-w64-mingw32-gcc", ["-O2", "-o", work, `${here}crt_work.c`]);
  await wallMs(Deno.execPath(), [...pvxCli, hello], { env: pvxEnv, exitCode: 7 }); // packs into the cache once
  const stopWineserver = () => new Deno.Command("wineserver", { args: ["-k"], env: wineEnv }).output();
  const pvxStart: number[] = [], coldWine: number[] = [], warmWine: number[] = [];
  const pvxWork: number[] = [], wineWork: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    pvxStart.push(await wallMs(Deno.execPath(), [...pvxCli, hello], { env: pvxEnv, exitCode: 7 }));
    await stopWineserver();
    coldWine.push(await wallMs("wine", [hello], { env: wineEnv, exitCode: 7 }));
  }
  const server = new Deno.Command("wineserver", { args: ["-p", "-f"], env: wineEnv, stdout: "null", stderr: "null" })
    .spawn();
  try {
    await wallMs("wine", [hello], { env: wineEnv, exitCode: 7 });
    for (let i = 0; i < REPEATS; i++) {
      warmWine.push(await wallMs("wine", [hello], { env: wineEnv, exitCode: 7 }));
      pvxWork.push(await cNanoseconds(Deno.execPath(), [...pvxCli, work], undefined, pvxEnv) / 1e6);
      wineWork.push(await cNanoseconds("wine", [work], undefined, wineEnv) / 1e6);
    }
  } finally {
    await stopWineserver();
    await server.status;
  }
  line("mingw hello (msvcrt), start to exit", median(pvxStart), median(coldWine), "ms", "-", "cold Wine");
  line("mingw hello (msvcrt), start to exit", median(pvxStart), median(warmWine), "ms", "< 1x", "warm Wine");
  line("CRT work: format, parse, sort, malloc", median(pvxWork), median(wineWork), "ms", "-", "Wine");
  const bundle = await parseBundle(await packApp(hello, defaultPackOptions), hello);
  const sizes = bundle.manifest.files.map((f) => `${f.path} ${(f.size / 1024).toFixed(0)} KiB`).join(", ");
  const total = bundle.manifest.files.reduce((n, f) => n + f.size, 0);
  console.log(`${label}mingw hello's bundle: ${(total / 1048576).toFixed(2)} MiB of files (${sizes})`);
}

/**
 * Kilobytes of `pid`'s mapping of `file`: its proportional set size (its share of the pages it maps), and
 * its private pages (those no other process maps: the pages it wrote itself, copied on write).
 */
async function mappedKiB(pid: number, file: string): Promise<{ pss: number; own: number }> {
  const smaps = await Deno.readTextFile(`/proc/${pid}/smaps`);
  const kib = { pss: 0, own: 0 };
  let inFile = false;
  for (const l of smaps.split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(l)) inFile = l.endsWith(file);
    else if (inFile && l.startsWith("Pss:")) kib.pss += Number(l.split(/\s+/)[1]);
    else if (inFile && /^Private_(Clean|Dirty):/.test(l)) kib.own += Number(l.split(/\s+/)[1]);
  }
  return kib;
}

/** A `pvx` command in a new process. */
type Pvx = (args: string[], stdin?: "null" | "piped", stdout?: "null" | "piped") => Deno.Command;

function pvxProcess(): Pvx {
  const pvx = new URL("./pvx.ts", import.meta.url).pathname;
  return (args, stdin = "null", stdout = "null") =>
    new Deno.Command(Deno.execPath(), { args: ["run", "-A", pvx, ...args], stdin, stdout, stderr: "inherit" });
}

/**
 * Templates and snapshots, against a cold boot of the same app through the
 * same `pvx` command: the guest writes N MiB, then waits on the console, the
 * template's ready point; every start from the template skips that work.
 */
async function snapshots(dir: string): Promise<void> {
  const touch = await pack("touch.c", dir, 128);
  const deno = pvxProcess();
  for (const mib of [1, 16, 32]) {
    const tpl = `${dir}/touch-${mib}.tpl`;
    const cold: number[] = [], make: number[] = [], warm: number[] = [], trusted: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      let t0 = performance.now();
      if (!(await deno(["run", touch, "--", `${mib}`]).output()).success) throw new Error("touch guest failed");
      cold.push(performance.now() - t0);
      t0 = performance.now();
      const made = await deno(["template", "create", touch, "-o", tpl, "--ready", "first-input", "--", `${mib}`])
        .output();
      if (!made.success) throw new Error("template create failed");
      make.push(performance.now() - t0);
      t0 = performance.now();
      if (!(await deno(["run", "--from", tpl]).output()).success) throw new Error("run --from failed");
      warm.push(performance.now() - t0);
      t0 = performance.now();
      if (!(await deno(["run", "--from", tpl, "--no-verify"]).output()).success) throw new Error("--no-verify failed");
      trusted.push(performance.now() - t0);
    }
    const stored = (await Deno.stat(tpl)).blocks! * 512 / (1 << 20);
    line(`start from template (${mib} MiB written) vs cold`, median(warm), median(cold), "ms", "< 1x", "cold run");
    line(`  the same, --no-verify`, median(trusted), median(cold), "ms", "< 1x", "cold run");
    line(`template create (${mib} MiB written) vs cold run`, median(make), median(cold), "ms", "-", "cold run");
    line(`snapshot size on disk vs memory written`, stored, mib, "MiB", "~1x", "written");
  }
}

/**
 * Instances of one template map one file: each adds only the pages it writes itself. Every clone is
 * given one line, reads back all the memory the template holds, and waits; then the proportional set
 * size of each clone's mapping of the template is its share of the pages they all use, and its private
 * pages are what it costs on its own.
 */
async function clones(dir: string): Promise<void> {
  const touch = await pack("touch.c", dir, 128);
  const deno = pvxProcess();
  const tpl = `${dir}/touch-clones.tpl`, writtenMiB = 32;
  const made = await deno(["template", "create", touch, "-o", tpl, "--ready", "first-input", "--", `${writtenMiB}`])
    .output();
  if (!made.success) throw new Error("template create failed");
  const children = Array.from({ length: CLONES }, () => deno(["run", "--from", tpl], "piped").spawn());
  const writers = children.map((c) => c.stdin.getWriter());
  await Promise.all(writers.map((w) => w.write(new TextEncoder().encode("go\n"))));
  try {
    const name = tpl.split("/").pop()!, share = writtenMiB * 1024 / CLONES;
    const readBack = (kib: number[]) => kib.filter((k) => k > 0.9 * share).length;
    const settled = (kib: number[]) => readBack(kib) === CLONES && Math.max(...kib) - Math.min(...kib) < 256;
    let mapped: { pss: number; own: number }[];
    let pss: number[];
    for (
      let tries = 0, shown = -1;
      !settled(pss = (mapped = await Promise.all(children.map((c) => mappedKiB(c.pid, name)))).map((m) => m.pss));
    ) {
      if (readBack(pss) !== shown) {
        shown = readBack(pss);
        console.error(
          `pvx bench: ${shown} of ${CLONES} clones read back (PSS ${Math.min(...pss)}-${Math.max(...pss)} KiB)`,
        );
      }
      if (++tries === 3000) throw new Error(`${CLONES} clones of the template did not read it back in 10 minutes`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    line(`guest RAM per clone, ${CLONES} from one template`, median(pss) / 1024, writtenMiB, "MiB", "<< 1x", "written");
    line(
      `  of it its own (copied on write)`,
      median(mapped.map((m) => m.own)) / 1024,
      writtenMiB,
      "MiB",
      "~0x",
      "written",
    );
  } finally {
    for (const w of writers) await w.close();
    await Promise.all(children.map((c) => c.status));
  }
}

/**
 * Diff snapshots of instances from a template of the touch guest with 32 MiB written, each after
 * rewriting N MiB of it: a diff from the template against a full snapshot of the same moment, in
 * size and in time.
 */
async function diffSnapshots(dir: string): Promise<void> {
  const deno = pvxProcess();
  // The API socket's directory is tmpfs: inside the nested accelerator the bench's own files are on 9p, where a
  // Unix socket cannot be bound.
  const sockets = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "pvx-bench-" });
  const tpl = `${dir}/touch-32-diffs.tpl`, api = `${sockets}/diff.sock`;
  const touch = await pack("touch.c", dir, 128);
  if (!(await deno(["template", "create", touch, "-o", tpl, "--ready", "first-input", "--", "32"]).output()).success) {
    throw new Error("template create failed");
  }
  const timed = async (args: string[]) => {
    const t0 = performance.now();
    if (!(await deno(args).output()).success) throw new Error(`pvx ${args.join(" ")} failed`);
    return performance.now() - t0;
  };
  for (const mib of [1, 8]) {
    const diffMs: number[] = [], fullMs: number[] = [], diffMiB: number[] = [], fullMiB: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      // The template waits in its first read, whose line says how many MiB to write again.
      const child = deno(["run", "--from", tpl, "--api", api], "piped", "piped").spawn();
      const input = child.stdin.getWriter();
      await input.write(new TextEncoder().encode(`${mib}\n`));
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      for (let said = ""; !said.includes("\n");) said += (await reader.read()).value ?? "";
      await timed(["pause", "--api", api]);
      diffMs.push(await timed(["snapshot", "--api", api, "-o", `${dir}/d.snap`, "--diff-from", tpl]));
      fullMs.push(await timed(["snapshot", "--api", api, "-o", `${dir}/f.snap`, "--stop"]));
      await input.close();
      await reader.cancel();
      await child.status;
      for (const [name, into] of [["d.snap", diffMiB], ["f.snap", fullMiB]] as const) {
        into.push((await Deno.stat(`${dir}/${name}`)).blocks! * 512 / (1 << 20));
      }
    }
    line(`diff snapshot size (${mib} MiB rewritten) vs rewritten`, median(diffMiB), mib, "MiB", "~1x", "rewritten");
    line(`  vs a full snapshot of the same moment`, median(diffMiB), median(fullMiB), "MiB", "<< 1x", "full");
    line(`diff snapshot time (${mib} MiB rewritten) vs full`, median(diffMs), median(fullMs), "ms", "< 1x", "full");
  }
  await Deno.remove(sockets, { recursive: true });
}

/**
 * Live migration between two daemons here (tools/bench/migrations.ts): a 64 MiB guest's downtime and total time
 * against a start of it through the same daemon, and its bytes sent against its RAM and its first trip.
 */
async function migrations(dir: string): Promise<void> {
  const dirty = await pack(new URL("../tests/guests/dirty.c", import.meta.url).pathname, dir, 256);
  const pvx = [Deno.execPath(), "run", "-A", new URL("./pvx.ts", import.meta.url).pathname];
  const { startMs, rates } = await measureMigrations(dirty, pvx, await Deno.makeTempDir({ dir }), REPEATS);
  const MiB = 1 << 20, start = median(startMs);
  for (const { rate, trips } of rates) {
    const downtime = median(trips.map((t) => t.downtimeMs)), first = trips[0].bytesSent / MiB;
    line(
      `migration downtime, 64 MiB ${rate ? `dirtying ${rate} MiB/s` : "idle"}`,
      downtime,
      start,
      "ms",
      "<= 10 ms",
      "daemon start",
    );
    line(`  total time`, median(trips.map((t) => t.totalMs)), start, "ms", "-", "daemon start");
    line(`  bytes sent, first trip vs guest RAM`, first, 64, "MiB", "~1x", "RAM");
    const later = trips.slice(1).map((t) => t.bytesSent / MiB);
    if (later.length) line(`  bytes sent, later trips vs first`, median(later), first, "MiB", "<< 1x", "first");
  }
}

const dir = await Deno.makeTempDir({ prefix: "pvx-bench-" });
try {
  if (wanted("vmm")) {
    const vmm = `${dir}/baseline`, files = `${dir}/file_io_baseline`;
    await run("gcc", ["-O2", "-o", vmm, `${here}baseline.c`]);
    await run("gcc", ["-O2", "-o", files, `${here}file_io_baseline.c`]);
    const nullLoop = await readBundle(await pack("null_loop.c", dir));
    const fileIo = await pack("file_io.c", dir);

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
  }

  if (wanted("threads")) await threads(dir);
  if (wanted("windows")) await windowsVsWine(dir);
  if (wanted("snapshots")) await snapshots(dir);
  if (wanted("clones")) await clones(dir);
  if (wanted("diffs")) await diffSnapshots(dir);
  if (wanted("migrations")) await migrations(dir);
} finally {
  stopIdleThreads();
  await Deno.remove(dir, { recursive: true });
}
