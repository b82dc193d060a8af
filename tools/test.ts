// The test command: every test file runs here, natively. Where this host has
// no usable /dev/kvm (or with --accel nested), one nested VM is booted for the
// whole run and every guest a test starts runs on its KVM: each `pvx run`
// finds it through PVX_NESTED_SOCKET, and so do tests/support's KVM helpers.
//   deno run -A tools/test.ts [--accel auto|kvm|nested] [test files or deno test flags...]

import { join } from "node:path";
import { kvmAccess } from "../hv/kvm_access.ts";
import { ACCEL_ENV, NESTED_SOCKET_ENV } from "./accel.ts";
import { NestedVm } from "./nested/vm.ts";
import { serveJobs } from "./nested/jobs.ts";

// Everything but --accel goes to `deno test` as it is.
const testArgs = [...Deno.args];
let accel = "auto";
const at = testArgs.findIndex((a) => a === "--accel" || a.startsWith("--accel="));
if (at >= 0) accel = testArgs[at].includes("=") ? testArgs.splice(at, 1)[0].slice(8) : testArgs.splice(at, 2)[1];
if (!["auto", "kvm", "nested"].includes(accel)) {
  console.error(`pvx test: --accel ${JSON.stringify(accel)}: expected auto, kvm or nested`);
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
let vm: NestedVm | undefined;
let stopServing = () => {};
let socketDir: string | undefined;
const started = performance.now();
if (nested) {
  try {
    vm = await NestedVm.boot();
  } catch (e) {
    console.error(`pvx test: ${(e as Error).message}`);
    Deno.exit(1);
  }
  socketDir = await Deno.makeTempDir({ prefix: "pvx-test-nested-" });
  const socket = join(socketDir, "jobs.sock");
  stopServing = serveJobs(vm, socket);
  env[NESTED_SOCKET_ENV] = socket;
  env[ACCEL_ENV] = "nested";
}

let code: number;
try {
  const test = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--no-check", "--parallel", ...testArgs],
    env,
    stdin: "null",
  }).spawn();
  code = (await test.status).code;
} finally {
  stopServing();
  await vm?.shutdown();
  if (socketDir) await Deno.remove(socketDir, { recursive: true });
}
if (nested) console.error(`pvx test: the nested run took ${((performance.now() - started) / 1000).toFixed(0)} s`);
Deno.exit(code);
