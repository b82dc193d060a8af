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
import { WarmProcesses } from "../../hv/warm_processes.ts";

const port = Deno.args[0];
const input = Deno.stdin;
const out = new FrameWriter(Deno.stdout);

interface Job {
  child: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
}
const jobs = new Map<number, Job>();

const pvxScript = new URL("../pvx.ts", import.meta.url).pathname;
const piped = { stdin: "piped", stdout: "piped", stderr: "piped" } as const;
/** Under emulation a Deno start and pvx's loading take seconds: one pvx always waits, loaded, for the next job. */
const warm = new WarmProcesses([Deno.execPath(), "run", "-A", pvxScript, "warm"], 1);

const isDirectory = (path: string) => {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
};

/** The job's process: the warm pvx when the job is this pvx, else a new one. */
function spawn(spec: JobSpec): Job {
  // Jobs share the agent's Deno cache, in guest memory, unless they name another.
  const env = { DENO_DIR: Deno.env.get("DENO_DIR") ?? "", ...spec.env };
  const [exe, verb, permissions, script, ...args] = spec.argv;
  const isPvx = exe === Deno.execPath() && verb === "run" && permissions === "-A" && script === pvxScript;
  if (isPvx && env.DENO_DIR === Deno.env.get("DENO_DIR") && isDirectory(spec.cwd)) {
    const job = warm.start({ args, cwd: spec.cwd, env });
    // Under emulation the next job comes long after this one has started, and its pvx would take seconds to load.
    warm.refill();
    return job;
  }
  const child = new Deno.Command(exe, { args: spec.argv.slice(1), cwd: spec.cwd, env, clearEnv: true, ...piped })
    .spawn();
  return { child, stdin: child.stdin.getWriter() };
}

function start(id: number, spec: JobSpec): void {
  let job: Job;
  try {
    job = spawn(spec);
  } catch (e) {
    out.send(id, Kind.Failed, text(`cannot start ${spec.argv[0]} in ${spec.cwd}: ${(e as Error).message}`));
    return;
  }
  const child = job.child;
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
    case Kind.Ping:
      out.send(0, Kind.Pong);
      break;
    case Kind.Shutdown:
      for (const j of jobs.values()) j.child.kill("SIGKILL");
      await warm.close();
      Deno.exit(0);
  }
}
