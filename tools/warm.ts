// A pvx process started before it has a job, so that the job skips Deno's start, the loading of
// pvx and the start of a vCPU thread: the nested accelerator's agent keeps one, where under
// emulation those take seconds, and `pvx serve` keeps a few for its creates (hv/warm_processes.ts).
//
// A process's first run of a guest is also several times slower than its next: the JIT has
// compiled none of the bundle checks, the boot, the exit loop or the dispatcher yet, and the vCPU
// thread has bound none of its FFI calls. With --rehearse, where guests run on this host's KVM, the
// process first runs, as `pvx run --api`, an ELF and a Windows app of its own that exit at once,
// unless its job has come already.
//
// The job is the first line of stdin, read a byte at a time so that the rest stays the guest's input.

import { join } from "../abi/host_path.ts";
import { prewarm } from "../hv/vcpu_threads.ts";
import { kvmAccess } from "../hv/kvm_access.ts";
import { EINTR, lastErrno, libc, stdinReady } from "../ffi/libc.ts";
import type { WarmJob } from "../hv/warm_processes.ts";
import { codeAddress, writeElf } from "../guest/elf.ts";
import { writePe, writtenPe } from "../guest/pe_writer.ts";
import { MiB, minMemory } from "../abi/memory_map.ts";
import { Asm, Reg } from "../guest/x86.ts";
import { DOORBELL_BASE } from "../abi/doorbell.ts";
import { ABI_VERSION, callsByName } from "../abi/calls.ts";
import { encodeBundle, writeBundle } from "../hv/bundle.ts";
import { ACCEL_ENV } from "./accel.ts";
import { analysePe } from "./analyse.ts";

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
  stopWithParent();
  if (job.cwd) Deno.chdir(job.cwd);
  if (job.env) {
    for (const name of Object.keys(Deno.env.toObject())) Deno.env.delete(name);
    for (const [name, value] of Object.entries(job.env)) Deno.env.set(name, value);
  }
  return await main(job.args);
}

/** How often a job's process checks that whoever gave it the job is still there. */
const PARENT_CHECK_MS = 1000;

/**
 * A job outlives its giver otherwise: a paused app would wait for ever, and nobody reads its console. The next
 * daemon on the same state would kill it, but there may be none. So once the parent is gone, the job is stopped as
 * a SIGTERM stops it, reporting where it stood to nobody.
 */
function stopWithParent() {
  const parent = libc().getppid();
  const timer = setInterval(() => {
    if (libc().getppid() !== parent) Deno.kill(Deno.pid, "SIGTERM");
  }, PARENT_CHECK_MS);
  Deno.unrefTimer(timer);
}

/** read(2) itself: a Deno.stdin.readSync costs a third of a millisecond, and the line is read a byte at a time. */
function readJob(): WarmJob | undefined {
  const line: number[] = [];
  const byte = new Uint8Array(1);
  for (;;) {
    const n = libc().read(0, byte, 1n);
    if (n < 0n && lastErrno() === EINTR) continue;
    if (n <= 0n) return undefined; // its end, or a stdin it cannot read: no job will come
    if (byte[0] === 0x0a) break;
    line.push(byte[0]);
  }
  return JSON.parse(new TextDecoder().decode(new Uint8Array(line))) as WarmJob;
}

/** ELF: ExitProcess(0) as pvx.h makes it, a frame on the stack ([result, exit code]) stored to its doorbell. */
function elfExitingAtOnce(): Uint8Array {
  return writeElf(
    new Asm(codeAddress())
      .pushImm(0)
      .pushImm(0)
      .movEaxEsp()
      .movEdxImm(DOORBELL_BASE + 4 * callsByName.get("ExitProcess")!.nr)
      .movMemRdxEax()
      .ud2() // the host ends the guest at the store
      .finish(),
  );
}

/** PE: kernel32's ExitProcess(0), called through the import address table as a compiler calls it. */
function peExitingAtOnce(): Uint8Array {
  const code = new Asm(writtenPe.code)
    .subRsp(40) // the callee's shadow space, and rsp 16-byte aligned at the call
    .zero(Reg.rcx)
    .movImm64(Reg.rax, BigInt(writtenPe.iat))
    .loadMem64(Reg.rax, Reg.rax, 0)
    .callReg(Reg.rax)
    .ud2()
    .finish();
  return writePe(code, "KERNEL32.dll", ["ExitProcess"]);
}

/** One run of each kind of app, each as `pvx run --api --stats-file` runs it; the first status that is not 0. */
async function rehearse(main: Main): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "pvx-rehearsal-" });
  try {
    const apps = [
      { kind: "elf" as const, bytes: elfExitingAtOnce(), allowedCalls: ["ExitProcess"] },
      { kind: "pe" as const, bytes: peExitingAtOnce() },
    ];
    for (const app of apps) {
      const bundle = join(dir, `${app.kind}.pvx`);
      const files = [{ path: `rehearsal.${app.kind}`, bytes: app.bytes }];
      const allowedCalls = app.allowedCalls ??
        analysePe(new Map(files.map((f) => [f.path, f.bytes])), files[0].path).usedCalls;
      const manifest = {
        name: "rehearsal",
        entry: files[0].path,
        kind: app.kind,
        memoryMiB: minMemory / MiB,
        abiVersion: ABI_VERSION,
        allowedCalls,
        args: [],
      };
      await writeBundle(bundle, await encodeBundle(manifest, files));
      const api = join(dir, "api.sock"), stats = join(dir, "stats.json");
      const status = await main(["run", bundle, "--api", api, "--stats-file", stats]);
      if (status !== 0) return status;
    }
    return 0;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
