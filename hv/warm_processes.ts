// Processes started before they have work (tools/warm.ts, `pvx warm`): a job given to one skips
// Deno's start and the loading of pvx. The pool keeps `keep` of them waiting, and starts another
// in the place of each it gives out once its owner says the job is under way. One that is still
// loading takes its job all the same, as it is further along than a new one would be.

/** A warm process's job, the first line of its stdin: `pvx <args>`, in `cwd` with exactly `env` if given. */
export interface WarmJob {
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
}

export interface StartedJob {
  child: Deno.ChildProcess;
  /** Its stdin, after the job's line: the app's input. */
  stdin: WritableStreamDefaultWriter<Uint8Array>;
}

export class WarmProcesses {
  readonly #waiting: Deno.ChildProcess[] = [];
  #closed = false;

  /** `command` starts a warm process (`deno run -A pvx.ts warm`, say); every stream of it is piped. */
  constructor(private readonly command: string[], private readonly keep: number) {
    this.refill();
  }

  #spawn(): Deno.ChildProcess {
    return new Deno.Command(this.command[0], {
      args: this.command.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  }

  refill() {
    while (!this.#closed && this.#waiting.length < this.keep) {
      const child = this.#spawn();
      this.#waiting.push(child);
      // One that dies while it waits (killed, or pvx cannot load) is dropped, not replaced until the next refill.
      child.status.then(() => {
        const at = this.#waiting.indexOf(child);
        if (at < 0) return;
        this.#waiting.splice(at, 1);
        child.stdin.close().catch(() => {});
        child.stdout.cancel().catch(() => {});
        child.stderr.cancel().catch(() => {});
      });
    }
  }

  /**
   * Gives `job` to the longest-waiting process, or a new one if none waits. Its place is filled by refill(),
   * which the caller calls once the job is under way: a process warming up beside it would slow its start.
   */
  start(job: WarmJob): StartedJob {
    const child = this.#waiting.shift() ?? this.#spawn();
    const stdin = child.stdin.getWriter();
    // Queued before anything the caller writes, which is the app's.
    stdin.write(new TextEncoder().encode(JSON.stringify(job) + "\n")).catch(() => {});
    return { child, stdin };
  }

  /** Ends the waiting processes, which have nothing of anyone's yet, and starts no more. */
  async close() {
    this.#closed = true;
    const waiting = this.#waiting.splice(0);
    await Promise.all(waiting.map(async (child) => {
      child.kill("SIGTERM"); // which a rehearsal stops at, and cleans up after
      await Promise.all([
        child.status,
        child.stdin.close().catch(() => {}),
        child.stdout.cancel(),
        child.stderr.cancel(),
      ]);
    }));
  }
}
