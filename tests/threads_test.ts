// Guest threads end to end: real C guests, one vCPU per thread, through the
// real `pvx` command and in process. How Win32 thread calls behave is in
// tests/win32 (built both ways, checked against Wine); this is what pvx
// itself must get right: stopping every thread, reporting which one failed,
// capping running vCPUs, and leaking nothing.

import assert from "node:assert/strict";
import { guestBundle, pvxStart, runGuest, whereKvm } from "./support/guests.ts";

const leakProbe = new URL("./support/leak_probe.ts", import.meta.url).pathname;
import { EXIT_GUEST_FAILED } from "../tools/report.ts";

Deno.test("ExitProcess on a second thread ends the process while the first waits for ever", async () => {
  const r = await runGuest("threads", ["exit"]);
  assert.equal(r.stderr, "");
  assert.equal(r.code, 7);
});

Deno.test("a fault on a second thread names that thread and stops the instance", async () => {
  const r = await runGuest("threads", ["fault"]);
  assert.equal(r.code, EXIT_GUEST_FAILED);
  assert.match(r.stderr, /faulted on thread 12 \(vCPU 1\): #PF page fault/);
  assert.match(r.stderr, /at RIP 0x[0-9a-f]+ <null_write\+0x[0-9a-f]+>/);
});

Deno.test("VirtualProtect on one thread takes effect on another that is running in the guest", async () => {
  // The writer spins on the page without ever leaving the guest: only pulling its vCPU out to
  // flush translations makes its next write fault, instead of it running until the timeout.
  const r = await runGuest("threads", ["protect"], ["--timeout", "20s"]);
  assert.equal(r.code, EXIT_GUEST_FAILED, r.stderr);
  assert.match(r.stderr, /faulted on thread 12 \(vCPU 1\): #PF page fault/);
  assert.match(r.stderr, /<write_forever\+0x[0-9a-f]+>/);
  assert.match(r.stderr, /write of 0x[0-9a-f]+: protection violation/);
});

Deno.test("a second thread that overflows its stack faults on the guard page below it", async () => {
  const r = await runGuest("threads", ["overflow"]);
  assert.equal(r.code, EXIT_GUEST_FAILED, r.stderr);
  assert.match(r.stderr, /faulted on thread 12 \(vCPU 1\): #PF page fault/);
  assert.match(r.stderr, /<recurse\+0x[0-9a-f]+>/);
  assert.match(r.stderr, /write of 0x[0-9a-f]+: page not mapped/);
});

Deno.test("a stop from outside (SIGINT, as --timeout) stops every vCPU, spinning or blocked", async () => {
  const pvx = pvxStart(["run", await guestBundle("threads"), "--", "spin"]);
  await pvx.printed("spinning\n"); // once all six threads are running
  pvx.kill("SIGINT");
  const r = await pvx.result;
  assert.equal(r.code, 130, r.stderr);
  assert.equal(r.stdout, "spinning\n");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines[0], "pvx: threads was interrupted by SIGINT; stopped 7 thread(s):");
  assert.match(lines[1], /^ {2}thread 8 \(vCPU 0\) at RIP 0x[0-9a-f]+ <(\w+\+0x[0-9a-f]+|no symbol)>$/);
  // Four spinning, three blocked (main among them) in a wait or on the way to it, each named once.
  assert.equal(lines.filter((l) => /<spin\+/.test(l)).length, 4);
  assert.equal(new Set(lines.slice(1).map((l) => /thread (\d+)/.exec(l)![1])).size, 7);
});

Deno.test("closing a handle wakes the thread blocked on it with ERROR_INVALID_HANDLE", async () => {
  const r = await runGuest("threads", ["close"]);
  assert.equal(r.stderr, "");
  assert.equal(
    r.stdout,
    "  CloseHandle(event) = 1\n  wait for the waiter = 0\n  waiter saw WAIT_FAILED, ERROR_INVALID_HANDLE = 1\n",
  );
});

Deno.test("31 threads live beside the first; a 32nd is refused; ended threads free their vCPU slot", async () => {
  const r = await runGuest("threads", ["limit"]);
  assert.equal(r.stderr, "");
  assert.equal(
    r.stdout,
    "  CreateThread failed at = 31\n    with error = 8\n  threads alive at once = 31\n" +
      "  threads created one after another = 100\n",
  );
});

Deno.test("a thread starts with the default SSE state even on a vCPU whose last thread changed it", async () => {
  const r = await runGuest("threads", ["mxcsr"]);
  assert.equal(r.stderr, "");
  assert.equal(r.stdout, `  MXCSR of the next thread = ${0x1f80}\n`);
});

Deno.test("the process ends with its last thread, with that thread's exit code", async () => {
  const r = await runGuest("threads", ["xit"]);
  assert.equal(r.stderr, "");
  assert.equal(r.code, 5);
});

for (const cpus of ["1", "2"]) {
  Deno.test(`--cpus ${cpus}: four CPU-bound threads share ${cpus} running vCPU(s) and all finish`, async () => {
    const r = await runGuest("threads", ["work"], ["--cpus", cpus]);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, "  wait all = 0\n  threads with their result = 4\n  count = 8000\n");
  });
}

Deno.test("many threaded runs leak no host thread and no descriptor", async () => {
  // A leak of even one thread or descriptor per run shows as growth of 8; the check below allows 2.
  const runs = 8;
  const probe = await whereKvm(["run", "-A", leakProbe, await guestBundle("threads"), String(runs), "work"]);
  assert.equal(probe.code, 0, probe.stderr);
  const { before, after, outcomes } = JSON.parse(probe.stdout.trimEnd().split("\n").at(-1)!);
  assert.deepEqual(outcomes, Array(runs + 1).fill({ kind: "exit", code: 0 }));
  assert.equal(after.fds, before.fds, "descriptors leaked");
  // Each run has six host threads (five vCPUs, the host services); Deno's own blocking-I/O pool
  // comes and goes by a thread or two, so only growth on the scale of the runs is a leak.
  assert.ok(after.threads - before.threads < runs / 4, `host threads ${before.threads} -> ${after.threads}`);
});
