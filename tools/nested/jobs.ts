// A job is one command run where /dev/kvm is: started with a JobSpec, fed
// stdin, signalled, and ended with an ExitStatus. The VM runs them; a Unix
// socket lets other processes hand their jobs to a VM that one of them owns,
// one connection per job, in the same frames as the agent's port.

import {
  decodeText,
  type ExitStatus,
  FrameWriter,
  type JobSpec,
  json,
  Kind,
  parseJson,
  ProtocolError,
  readFrames,
  text,
} from "./protocol.ts";
import { pump } from "./pump.ts";
import { onStopSignals, signalNumbers } from "../signals.ts";

export interface JobSink {
  stdout(chunk: Uint8Array): Promise<void>;
  stderr(chunk: Uint8Array): Promise<void>;
}

export interface RunningJob {
  stdin(chunk: Uint8Array): Promise<void>;
  endStdin(): Promise<void>;
  signal(name: Deno.Signal): Promise<void>;
  /** How it ended; rejects when it could not start or the VM went away. */
  done: Promise<ExitStatus>;
}

export interface JobRunner {
  start(spec: JobSpec, sink: JobSink): Promise<RunningJob>;
}

/** Serves jobs for other processes on `path` until the returned function is called. */
export function serveJobs(runner: JobRunner, path: string): () => void {
  const listener = Deno.listen({ transport: "unix", path });
  (async () => {
    for await (const conn of listener) serveOne(runner, conn).catch(() => {}).finally(() => conn.close());
  })().catch(() => {});
  return () => listener.close();
}

async function serveOne(runner: JobRunner, conn: Deno.UnixConn): Promise<void> {
  const out = new FrameWriter(conn);
  const frames = readFrames(conn, "a pvx job client");
  const first = await frames.next();
  if (first.done || first.value.kind !== Kind.Start) return;
  let job: RunningJob;
  try {
    // A client killed outright (kill -9) cannot be written to; the job is killed below, and its output is nobody's.
    job = await runner.start(parseJson<JobSpec>(first.value.payload), {
      stdout: (b) => out.send(0, Kind.Stdout, b).catch(() => {}),
      stderr: (b) => out.send(0, Kind.Stderr, b).catch(() => {}),
    });
  } catch (e) {
    await out.send(0, Kind.Failed, text((e as Error).message));
    return;
  }
  let ended = false;
  const relay = (async () => {
    try {
      for await (const f of frames) {
        if (f.kind === Kind.Stdin) await job.stdin(f.payload);
        else if (f.kind === Kind.StdinEnd) await job.endStdin();
        else if (f.kind === Kind.Signal) await job.signal(decodeText(f.payload) as Deno.Signal);
      }
    } catch { /* a broken client is a gone client */ }
    // The client went away without waiting for the end: nobody will read the job's output.
    if (!ended) await job.signal("SIGKILL").catch(() => {});
  })();
  try {
    const status = await job.done;
    ended = true;
    await out.send(0, Kind.Exit, json(status));
  } catch (e) {
    ended = true;
    await out.send(0, Kind.Failed, text((e as Error).message));
  }
  conn.closeWrite().catch(() => {});
  await Promise.race([relay, new Promise((r) => setTimeout(r, 1000))]);
}

/** Hands jobs to the VM that serves `path`. */
export class RemoteRunner implements JobRunner {
  constructor(readonly path: string) {}

  async start(spec: JobSpec, sink: JobSink): Promise<RunningJob> {
    const conn = await Deno.connect({ transport: "unix", path: this.path });
    const out = new FrameWriter(conn);
    await out.send(0, Kind.Start, json(spec));
    const done = (async () => {
      try {
        for await (const f of readFrames(conn, `the nested VM at ${this.path}`)) {
          if (f.kind === Kind.Stdout) await sink.stdout(f.payload);
          else if (f.kind === Kind.Stderr) await sink.stderr(f.payload);
          else if (f.kind === Kind.Exit) return parseJson<ExitStatus>(f.payload);
          else if (f.kind === Kind.Failed) throw new Error(decodeText(f.payload));
        }
        throw new ProtocolError(`the nested VM at ${this.path} closed the job without saying how it ended`);
      } finally {
        conn.close();
      }
    })();
    const quiet = (p: Promise<void>) => p.catch(() => {}); // after the end, input has nowhere to go
    return {
      stdin: (b) => quiet(out.send(0, Kind.Stdin, b)),
      endStdin: () => quiet(out.send(0, Kind.StdinEnd)),
      signal: (name) => quiet(out.send(0, Kind.Signal, text(name))),
      done,
    };
  }
}

/**
 * Runs a job as if it were this process: its output is ours, our stdin is its,
 * SIGINT and SIGTERM are passed on, and its status is returned the shell's way.
 */
export async function runAsThisProcess(runner: JobRunner, spec: JobSpec): Promise<number> {
  const stdout = Deno.stdout.writable.getWriter();
  const stderr = Deno.stderr.writable.getWriter();
  const job = await runner.start(spec, {
    stdout: (b) => stdout.write(b),
    stderr: (b) => stderr.write(b),
  });
  // The first Ctrl-C goes to the job; a second one, for a job that does not stop, ends this process.
  let signalled = false;
  const stopForwarding = onStopSignals((sig) => {
    if (signalled) Deno.exit(128 + signalNumbers[sig]);
    signalled = true;
    job.signal(sig);
  });
  pump(Deno.stdin.readable, (b) => job.stdin(b)).then(() => job.endStdin(), () => job.endStdin());
  try {
    const status = await job.done;
    return status.signal ? 128 + (signalNumbers[status.signal] ?? 0) : status.code;
  } finally {
    stopForwarding();
    await stdout.ready;
    await stderr.ready;
    stdout.releaseLock();
    stderr.releaseLock();
  }
}
