// A pvx process started before it has a job, so that the job skips Deno's start, the loading of
// pvx and the start of a vCPU thread: the nested accelerator's agent keeps one, where under
// emulation those take seconds, and `pvx serve` keeps a few for its creates (hv/warm_processes.ts).
//
// A process's first run of a guest is also several times slower than its next: the JIT has
// compiled none of the bundle checks, the boot, the exit loop or the dispatcher yet, and the vCPU
// thread has bound none of its FFI calls. With --rehearse, where guests run on this host's KVM, the
// process first runs, as `pvx run --api`, a guest of its own that exits at once, unless its job has
// come already.
//
// The job is the first line of stdin, read a byte at a time so that the rest stays the guest's input.

import { join } from "node:path";
import { prewarm } from "../hv/vcpu_threads.ts";
import { kvmAccess } from "../hv/kvm_access.ts";
import { stdinReady } from "../ffi/libc.ts";
import type { WarmJob } from "../hv/warm_processes.ts";
import { codeAddress, writeElf } from "../guest/elf.ts";
import { MiB, minMemory } from "../guest/memory_map.ts";
import { Asm } from "../guest/x86.ts";
import { DOORBELL_BASE } from "../abi/doorbell.ts";
import { ABI_VERSION, callsByName } from "../abi/calls.ts";
import { encodeBundle, writeBundle } from "./bundle.ts";
import { ACCEL_ENV } from "./accel.ts";

type Main = (args: string[]) => Promise<number>;

/** `pvx warm [--rehearse]`: waits for its job, then runs it as `pvx <args>`; a closed stdin ends it quietly. */
export async function warmCommand(argv: string[], main: Main): Promise<number> {
  prewarm();
  const onKvm = (Deno.env.get(ACCEL_ENV) ?? "auto") !== "nested" && kvmAccess().ok;
  if (argv.includes("--rehearse") && onKvm && !stdinReady(0)) {
    // A rehearsal that fails means that no guest can run here, and one stopped by a signal was meant for the job.
    const status = await rehearse(main);
    if (status !== 0) return status;
  }
  const job = readJob();
  if (!job) return 0;
  if (job.cwd) Deno.chdir(job.cwd);
  if (job.env) {
    for (const name of Object.keys(Deno.env.toObject())) Deno.env.delete(name);
    for (const [name, value] of Object.entries(job.env)) Deno.env.set(name, value);
  }
  return await main(job.args);
}

function readJob(): WarmJob | undefined {
  const line: number[] = [];
  const byte = new Uint8Array(1);
  for (;;) {
    const n = Deno.stdin.readSync(byte);
    if (n === null) return undefined;
    if (byte[0] === 0x0a) break;
    line.push(byte[0]);
  }
  return JSON.parse(new TextDecoder().decode(new Uint8Array(line))) as WarmJob;
}

/** ExitProcess(0), from a frame on the stack: [result, exit code]. */
function exitAtOnce(): Uint8Array {
  return new Asm(codeAddress())
    .pushImm(0)
    .pushImm(0)
    .movEaxEsp()
    .movEdxImm(DOORBELL_BASE + 4 * callsByName.get("ExitProcess")!.nr)
    .movMemRdxEax()
    .ud2() // the host ends the guest at the store
    .finish();
}

async function rehearse(main: Main): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "pvx-rehearsal-" });
  try {
    const bundle = join(dir, "rehearsal.pvx");
    const manifest = {
      name: "rehearsal",
      entry: "rehearsal",
      kind: "elf" as const,
      memoryMiB: minMemory / MiB,
      abiVersion: ABI_VERSION,
      allowedCalls: ["ExitProcess"],
      args: [],
    };
    await writeBundle(bundle, await encodeBundle(manifest, [{ path: "rehearsal", bytes: writeElf(exitAtOnce()) }]));
    return await main(["run", bundle, "--api", join(dir, "api.sock"), "--stats-file", join(dir, "stats.json")]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
