// `pvx warm`, the process `pvx serve` (and the nested accelerator's agent) keeps
// waiting for a job: what it reads of its stdin, and its rehearsal, seen from
// outside as a user of it would, through its output and the files it makes.

import assert from "node:assert/strict";
import { guestBundle, pvxStart } from "./support/guests.ts";
import { kvmAccess } from "../hv/kvm_access.ts";
import { ACCEL_ENV } from "../tools/accel.ts";

const job = (args: string[]) => JSON.stringify({ args }) + "\n";

Deno.test("pvx warm runs the job on its stdin's first line; the rest, in the same write, is the guest's input", async () => {
  const bundle = await guestBundle("counter");
  const r = await pvxStart(["warm"], job(["run", bundle, "--", "1", "0"]) + "ok\n").result;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "tick 0\nread 3 bytes\ndone\n");
});

Deno.test("pvx warm ends quietly when its stdin ends before a job comes", async () => {
  const r = await pvxStart(["warm", "--rehearse"], "").result;
  assert.deepEqual(r, { code: 0, stdout: "", stderr: "" });
});

Deno.test("pvx warm --rehearse runs a guest of its own first where guests run on this host's KVM, then the job", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "pvx-warm-test-" });
  const watcher = Deno.watchFs(tmp, { recursive: false });
  try {
    const bundle = await guestBundle("hello");
    const warm = pvxStart(["warm", "--rehearse"], { keepOpen: true }, { TMPDIR: tmp });
    const rehearses = (Deno.env.get(ACCEL_ENV) ?? "auto") !== "nested" && kvmAccess().ok;
    if (rehearses) {
      // Its rehearsal's files appear, and go once its guest has run.
      const seen = new Set<string>();
      const rehearsed = (async () => {
        for await (const event of watcher) {
          for (const path of event.paths) seen.add(`${event.kind} ${path.slice(tmp.length + 1)}`);
          if ([...seen].some((e) => /^remove pvx-rehearsal-\w+$/.test(e))) return;
        }
      })();
      const ended = warm.result.then((r) => {
        throw new Error(`pvx warm ended (${r.code}) before its rehearsal had: ${r.stderr}`);
      });
      await Promise.race([rehearsed, ended]);
      assert.ok([...seen].some((e) => /^create pvx-rehearsal-\w+$/.test(e)), [...seen].join("\n"));
    }
    await warm.type(job(["run", bundle, "--", "x"]));
    await warm.endInput();
    const r = await warm.result;
    assert.equal(r.code, 2, r.stderr); // argc
    assert.match(r.stdout, /^argc=2\nargv\[0\]=hello\nargv\[1\]=x\n/);
    // Nothing of the rehearsal is left behind.
    const left = [...Deno.readDirSync(tmp)].map((e) => e.name).filter((name) => name.startsWith("pvx-rehearsal-"));
    assert.deepEqual(left, []);
  } finally {
    watcher.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
