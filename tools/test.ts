// The test command: every test file runs here, natively. Where this host has
// no usable /dev/kvm (or with --accel nested), one nested VM is booted for the
// whole run and every guest a test starts runs on its KVM: each `pvx run`
// finds it through PVX_NESTED_SOCKET, and so do tests/support's KVM helpers.
//   deno run -A tools/test.ts [--accel auto|kvm|nested] [test files or deno test flags...]

import { join } from "../abi/host_path.ts";
import { kvmAccess } from "../hv/kvm_access.ts";
import { ACCEL_ENV, accelChoices, NESTED_SOCKET_ENV } from "./accel.ts";
import { RestartingVm } from "./nested/vm.ts";
import { serveJobs } from "./nested/jobs.ts";
import { type Failed, failuresInJunit, rerunArgs, secondTry, testFiles } from "./test_reruns.ts";

// Everything but --accel goes to `deno test` as it is.
const testArgs = [...Deno.args];
let accel = "auto";
const at = testArgs.findIndex((a) => a === "--accel" || a.startsWith("--accel="));
if (at >= 0) accel = testArgs[at].includes("=") ? testArgs.splice(at, 1)[0].slice(8) : testArgs.splice(at, 2)[1];
if (!(accelChoices as readonly string[]).includes(accel)) {
  console.error(`pvx test: --accel ${JSON.stringify(accel)}: expected one of ${accelChoices.join(", ")}`);
  Deno.exit(2);
}
if (!testArgs.length) testArgs.push("tests/");

const access = kvmAccess();
let nested = accel === "nested";
if (accel === "kvm" && !access.ok) {
  console.error(`pvx test: --accel kvm: ${access.cause}. To fix: ${access.remedy}`);
  Deno.exit(1);
}
if (!access.ok && accel === "auto") nested = true;
console.error(
  nested
    ? `pvx test: mode nested: ${access.ok ? "--accel nested" : access.cause}; ` +
      "tests run here and their guests run on KVM inside one QEMU TCG guest with emulated AMD SVM"
    : "pvx test: mode kvm: /dev/kvm works here, and every test's guests run on it",
);

const env: Record<string, string> = {};
let vm: RestartingVm | undefined;
let stopServing = () => {};
const scratch = await Deno.makeTempDir({ prefix: "pvx-test-" });
const started = performance.now();
if (nested) {
  vm = new RestartingVm();
  try {
    await vm.ready();
  } catch (e) {
    console.error(`pvx test: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const socket = join(scratch, "jobs.sock");
  stopServing = serveJobs(vm, socket);
  env[NESTED_SOCKET_ENV] = socket;
  env[ACCEL_ENV] = "nested";
}

/**
 * How many times files that failed because the helper VM died are run again. Its kernel still
 * wedges now and then under QEMU's emulation (issue 9); each rerun boots a new one.
 */
const MAX_RERUNS = 3;

/** Runs `deno test` over `args`; what failed, from its JUnit report. */
async function denoTest(args: string[]): Promise<{ code: number; failed: Failed[] }> {
  const report = join(scratch, "junit.xml");
  await Deno.remove(report).catch(() => {});
  const test = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--no-check", "--parallel", `--junit-path=${report}`, ...args],
    env,
    stdin: "null",
  }).spawn();
  const { code } = await test.status;
  const xml = await Deno.readTextFile(report).catch(() => "");
  return { code, failed: failuresInJunit(xml, testFiles(args)) };
}

let code: number;
/** Tests that failed with the nested VM alive and were run once more, to be named at the end if they passed. */
let secondTries: string[] = [];
try {
  let failuresBefore = vm?.failures.length ?? 0;
  let run = await denoTest(testArgs);
  // A helper VM that died (an emulator fault, not a test's) fails whatever it was running: those tests
  // run again on the VM booted in its place, up to MAX_RERUNS times, and the run says so. A few failures
  // with the VM alive get one more try each run (see MAX_SECOND_TRIES); one that fails again is failed.
  const passThrough = testArgs.filter((a) => /^--[^=]+=/.test(a) && !a.startsWith("--filter="));
  let secondTried = false;
  for (let rerun = 1; vm && run.code !== 0 && run.failed.length; rerun++) {
    const died = vm.failures.length > failuresBefore;
    const what = run.failed.map((f) => f.tests.length ? `${f.tests.length} test(s) of ${f.file}` : f.file);
    const again = died || secondTried ? undefined : secondTry(run.failed);
    if (!died && !again) break;
    const why = vm.failures.slice(failuresBefore).join("; ");
    if (rerun > MAX_RERUNS) {
      console.error(`pvx test: the last of ${MAX_RERUNS} reruns failed too${died ? ` (${why})` : ""}`);
      break;
    }
    if (died) {
      console.error(
        `pvx test: the nested VM failed during this run (${why}); running ${what.join(", ")} ` +
          `again on a new one (rerun ${rerun} of at most ${MAX_RERUNS})`,
      );
    } else if (again) {
      secondTried = true;
      secondTries = again;
      console.error(
        `pvx test: ${again.join("; ")} failed with the nested VM alive; QEMU's SVM emulation now and then ` +
          `mis-runs a guest, so they run once more, and one that fails again is failed (rerun ${rerun} of at most ` +
          `${MAX_RERUNS})`,
      );
    }
    failuresBefore = vm.failures.length;
    const results = [];
    for (const args of rerunArgs(passThrough, run.failed)) results.push(await denoTest(args));
    run = {
      code: results.find((r) => r.code !== 0)?.code ?? 0,
      failed: results.flatMap((r) => r.failed),
    };
  }
  code = run.code;
} finally {
  stopServing();
  await vm?.shutdown();
  await Deno.remove(scratch, { recursive: true });
}
if (code === 0 && secondTries.length) {
  console.error(`pvx test: passed, but only when run again: ${secondTries.join("; ")}`);
}
if (nested) console.error(`pvx test: the nested run took ${((performance.now() - started) / 1000).toFixed(0)} s`);
Deno.exit(code);
