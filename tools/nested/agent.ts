// Runs inside the nested accelerator's VM, chrooted into the host's root:
// starts each job the host sends over the virtio port, streams its output
// back, and reports how it ended. The port is its stdin and stdout (init.ts).

import {
  decodeText,
  type ExitStatus,
  FrameWriter,
  type JobSpec,
  json,
  Kind,
  parseJson,
  readFrames,
  text,
} from "./protocol.ts";
import { pump } from "./pump.ts";

const port = Deno.args[0];
const input = Deno.stdin;
const out = new FrameWriter(Deno.stdout);

interface Job {
  child: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
}
const jobs = new Map<number, Job>();

function start(id: number, spec: JobSpec): void {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(spec.argv[0], {
      args: spec.argv.slice(1),
      cwd: spec.cwd,
      // Jobs share the agent's Deno cache, in guest memory, unless they name another.
      env: { DENO_DIR: Deno.env.get("DENO_DIR") ?? "", ...spec.env },
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    out.send(id, Kind.Failed, text(`cannot start ${spec.argv[0]} in ${spec.cwd}: ${(e as Error).message}`));
    return;
  }
  const job = { child, stdin: child.stdin.getWriter() };
  jobs.set(id, job);
  (async () => {
    await Promise.all([
      pump(child.stdout, (b) => out.send(id, Kind.Stdout, b)),
      pump(child.stderr, (b) => out.send(id, Kind.Stderr, b)),
    ]);
    const status = await child.status;
    jobs.delete(id);
    job.stdin.close().catch(() => {});
    const exit: ExitStatus = { code: status.code, signal: status.signal };
    await out.send(id, Kind.Exit, json(exit));
  })();
}

await out.send(0, Kind.Ready);
for await (const f of readFrames(input, port)) {
  const job = jobs.get(f.job);
  switch (f.kind) {
    case Kind.Start:
      start(f.job, parseJson<JobSpec>(f.payload));
      break;
    case Kind.Stdin:
      // A job that has stopped reading its input is not waited for.
      job?.stdin.write(f.payload).catch(() => {});
      break;
    case Kind.StdinEnd:
      job?.stdin.close().catch(() => {});
      break;
    case Kind.Signal:
      try {
        job?.child.kill(decodeText(f.payload) as Deno.Signal);
      } catch { /* it has just ended */ }
      break;
    case Kind.Shutdown:
      for (const j of jobs.values()) j.child.kill("SIGKILL");
      Deno.exit(0);
  }
}
