// The test command: every test file runs here, natively. Where this host has
// no usable /dev/kvm (or with --accel nested), one nested VM is booted for the
// whole run and every guest a test starts runs on its KVM: each `pvx run`
// finds it through PVX_NESTED_SOCKET, and so do tests/support's KVM helpers.
//   deno run -A tools/test.ts [--accel auto|kvm|nested] [test files or deno test flags...]

import { parseArgs } from "node:util";
import { join } from "node:path";
import { kvmAccess } from "../hv/kvm_access.ts";
import { ACCEL_ENV, NESTED_SOCKET_ENV } from "./accel.ts";
import { NestedVm } from "./nested/vm.ts";
import { serveJobs } from "./nested/jobs.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  strict: false,
  options: { accel: { type: "string", default: "auto" } },
});
const accel = values.accel as string;
if (!["auto", "kvm", "nested"].includes(accel)) {
  console.error(`pvx test: --accel ${JSON.stringify(accel)}: expected auto, kvm or nested`);
  Deno.exit(2);
}
const testArgs = positionals.length ? positionals : ["tests/"];

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
