// The nested accelerator: a QEMU TCG guest whose emulated CPU has AMD SVM, so
// its Linux has a real, hardware-style /dev/kvm. It sees the host's root over
// 9p and runs jobs, each a command with the host's paths, through its agent.

import { join } from "../../abi/host_path.ts";
import { type NestedImage, nestedImage, qemuBinary } from "./image.ts";
import {
  decodeText,
  type ExitStatus,
  type Frame,
  FrameWriter,
  type JobSpec,
  json,
  Kind,
  parseJson,
  readFrames,
  text,
} from "./protocol.ts";
import type { JobRunner, JobSink, RunningJob } from "./jobs.ts";

export interface NestedVmOptions {
  cpus: number;
  memoryMiB: number;
}

export const defaultNestedVm: NestedVmOptions = { cpus: 2, memoryMiB: 4096 };

const agentScript = new URL("./agent.ts", import.meta.url).pathname;

/**
 * `-cpu max` is the only TCG model with SVM and nested paging that is also fast;
 * SMAP is off because QEMU 7.2's TCG mis-emulates it (user-mode iretq oopses the guest).
 */
const cpuModel = "max,-smap";

/**
 * The first line of `log` that means the helper kernel will not recover: a panic, an oops, or a CPU
 * stuck for a minute (a slow emulated CPU can trip the 20-second lockup warning and recover).
 */
export function fatalConsoleLine(log: string): string | undefined {
  for (const line of log.split("\n")) {
    const stuck = /soft lockup - CPU#\d+ stuck for (\d+)s/.exec(line);
    if ((stuck && Number(stuck[1]) >= 60) || /Kernel panic|Oops:|general protection fault|BUG: unable/.test(line)) {
      return line.replace(/^\[\s*[\d.]+\]\s*/, "");
    }
  }
}

/**
 * Each vCPU's RIP as QEMU's monitor (`info registers -a`) has it, or "" when the monitor does not answer
 * within a few seconds. Debian's kernel package carries no real System.map, so these stay addresses.
 */
export async function vcpuPlaces(monitor: string): Promise<string> {
  let dump = "";
  try {
    using conn = await Deno.connect({ transport: "unix", path: monitor });
    await conn.write(new TextEncoder().encode("info registers -a\n"));
    const decoder = new TextDecoder();
    const buf = new Uint8Array(65536);
    const deadline = performance.now() + 5000;
    // The answer ends at the prompt after the command's; the banner has one of its own.
    while ((dump.match(/\(qemu\)/g) ?? []).length < 2 && performance.now() < deadline) {
      const n = await Promise.race([conn.read(buf), new Promise<null>((r) => setTimeout(() => r(null), 1000))]);
      if (n) dump += decoder.decode(buf.subarray(0, n), { stream: true });
    }
  } catch {
    return "";
  }
  return [...dump.matchAll(/CPU#(\d+)[\s\S]*?RIP=([0-9a-f]{16})/g)].map(([, cpu, rip]) =>
    `vCPU ${cpu} at RIP ${rip}${rip.startsWith("ffff") ? " (kernel)" : ""}`
  ).join(", ");
}

/** Even a loaded emulated guest turns its agent's event loop within this; longer means a wedged kernel. */
const agentSilenceLimitMs = 90_000;

interface Pending {
  sink: JobSink;
  /** The job's output so far, written in order; the VM's other jobs never wait for it. */
  written: Promise<void>;
  resolve(s: ExitStatus): void;
  reject(e: Error): void;
}

export class NestedVm implements JobRunner {
  #jobs = new Map<number, Pending>();
  #nextJob = 1;
  #stopped?: Error;
  #lockedUp?: string;
  #lastPong = performance.now();
  #ended = Promise.withResolvers<string>();
  /** Resolves, with why, once the VM has stopped serving jobs. */
  readonly ended = this.#ended.promise;

  private constructor(
    readonly image: NestedImage,
    private readonly qemu: Deno.ChildProcess,
    private readonly out: FrameWriter,
    private readonly workDir: string,
    readonly exited: Promise<Deno.CommandStatus>,
  ) {}

  /** Boots the VM and waits for its agent; progress goes to stderr. */
  static async boot(opts: NestedVmOptions = defaultNestedVm): Promise<NestedVm> {
    const image = await nestedImage();
    for (const [what, path] of [["the Deno binary", Deno.execPath()], ["the agent", agentScript]]) {
      if (/\s/.test(path)) throw new Error(`the nested accelerator cannot pass ${what}'s path ${path}: it has a space`);
    }
    const workDir = await Deno.makeTempDir({ prefix: "pvx-nested-" });
    const socket = join(workDir, "agent.sock");
    const consoleLog = join(workDir, "console.log");
    const listener = Deno.listen({ transport: "unix", path: socket });
    const started = performance.now();
    console.error(
      `pvx: nested: booting ${image.version} in QEMU TCG (emulated AMD SVM, ${opts.cpus} vCPUs, ${opts.memoryMiB} MiB)`,
    );
    const qemu = new Deno.Command(qemuBinary, {
      args: [
        ...["-accel", "tcg,thread=multi", "-machine", "q35", "-cpu", cpuModel],
        ...["-smp", String(opts.cpus), "-m", String(opts.memoryMiB)],
        ...["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", `file:${consoleLog}`],
        // For a person looking into a stuck VM: `socat - UNIX-CONNECT:<dir>/monitor.sock`, then `info registers`.
        ...["-monitor", `unix:${join(workDir, "monitor.sock")},server=on,wait=off`],
        ...["-kernel", image.kernel, "-initrd", image.initrd],
        "-append",
        // Speculation mitigations guard nothing on an emulated CPU and cost every guest syscall.
        `console=ttyS0 loglevel=${
          Deno.env.get("PVX_NESTED_LOGLEVEL") ?? 4
        } panic=-1 mitigations=off pvx_deno=${Deno.execPath()} pvx_agent=${agentScript}`,
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap",
        ...["-device", "virtio-serial-pci", "-chardev", `socket,id=agent,path=${socket}`],
        ...["-device", "virtserialport,chardev=agent,name=pvx.agent"],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const qemuOutput = qemu.output();
    const exited = qemuOutput.then((o) => o as Deno.CommandStatus);
    const failure = async (why: string) => {
      const out = await Promise.race([qemuOutput, new Promise<undefined>((r) => setTimeout(() => r(undefined), 2000))]);
      const said = out ? new TextDecoder().decode(out.stderr).trim() : "";
      const log = await Deno.readTextFile(consoleLog).catch(() => "");
      await Deno.remove(workDir, { recursive: true }).catch(() => {});
      return new Error(
        `the nested VM ${why}` + (said ? `\nqemu: ${said}` : "") +
          (log ? `\nits console's last lines:\n${log.trimEnd().split("\n").slice(-15).join("\n")}` : ""),
      );
    };
    const conn = await Promise.race([listener.accept(), exited.then(() => undefined)]);
    listener.close();
    if (!conn) {
      throw await failure("did not start");
    }
    const vm = new NestedVm(image, qemu, new FrameWriter(conn), workDir, exited);
    const frames = readFrames(conn, "the nested VM's agent");
    const first = await Promise.race([frames.next(), exited.then(() => undefined)]);
    if (!first || first.done || first.value.kind !== Kind.Ready) {
      qemu.kill("SIGKILL");
      throw await failure("stopped before its agent was ready");
    }
    console.error(`pvx: nested: ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    vm.#dispatch(frames, consoleLog);
    vm.#watchConsole(consoleLog);
    return vm;
  }

  /**
   * A helper kernel that has locked up never answers again: rather than let every job hang,
   * end the VM as soon as its console says so, and fail its jobs with what it said.
   */
  async #watchConsole(consoleLog: string): Promise<void> {
    let seen = 0;
    for (let finished = false; !finished;) {
      finished = await Promise.race([
        this.exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 1000)),
      ]);
      const log = await Deno.readTextFile(consoleLog).catch(() => "");
      const whole = log.lastIndexOf("\n") + 1; // a line still being written is read next time
      let fatal = fatalConsoleLine(log.slice(seen, whole));
      seen = Math.max(seen, whole);
      // Some lockups print nothing at all: an agent that stops answering pings is one too.
      this.out.send(0, Kind.Ping).catch(() => {});
      const silentMs = performance.now() - this.#lastPong;
      if (!finished && silentMs > agentSilenceLimitMs) {
        fatal ??= `its agent has not answered for ${Math.round(silentMs / 1000)} s`;
      }
      if (fatal && !this.#stopped && !this.#lockedUp) {
        // Where each vCPU of the helper kernel stood is the one clue to what locked it up.
        const where = await vcpuPlaces(join(this.workDir, "monitor.sock"));
        this.#lockedUp = `the nested VM's kernel failed: ${fatal}${where ? `; ${where}` : ""}`;
        this.qemu.kill("SIGKILL");
      }
    }
  }

  async #dispatch(frames: AsyncGenerator<Frame>, consoleLog: string): Promise<void> {
    let why = "the nested VM's agent closed its port";
    try {
      for await (const f of frames) {
        if (f.kind === Kind.Pong) this.#lastPong = performance.now();
        const job = this.#jobs.get(f.job);
        if (!job) continue;
        // A client that reads slowly holds up its own job only, so its output waits in memory here.
        const { sink, payload } = { sink: job.sink, payload: f.payload };
        if (f.kind === Kind.Stdout) job.written = job.written.then(() => sink.stdout(payload));
        else if (f.kind === Kind.Stderr) job.written = job.written.then(() => sink.stderr(payload));
        else if (f.kind === Kind.Exit) {
          this.#jobs.delete(f.job);
          const status = parseJson<ExitStatus>(payload);
          job.written.then(() => job.resolve(status), job.reject);
        } else if (f.kind === Kind.Failed) {
          this.#jobs.delete(f.job);
          job.written.finally(() => job.reject(new Error(decodeText(payload))));
        }
      }
    } catch (e) {
      why = (e as Error).message;
    }
    const log = await Deno.readTextFile(consoleLog).catch(() => "");
    if (this.#lockedUp) why = this.#lockedUp;
    this.#stopped = new Error(`${why}\nits console's last lines:\n${log.trimEnd().split("\n").slice(-15).join("\n")}`);
    for (const job of this.#jobs.values()) job.reject(this.#stopped);
    this.#jobs.clear();
    this.#ended.resolve(why);
  }

  start(spec: JobSpec, sink: JobSink): Promise<RunningJob> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const id = this.#nextJob++;
    const done = new Promise<ExitStatus>((resolve, reject) =>
      this.#jobs.set(id, { sink, resolve, reject, written: Promise.resolve() })
    );
    const send = (kind: Kind, payload?: Uint8Array) => this.out.send(id, kind, payload).catch(() => {});
    return this.out.send(id, Kind.Start, json(spec)).then(() => ({
      stdin: (b: Uint8Array) => send(Kind.Stdin, b),
      endStdin: () => send(Kind.StdinEnd),
      signal: (name: Deno.Signal) => send(Kind.Signal, text(name)),
      done,
    }));
  }

  /** Ends every job and the VM. */
  async shutdown(): Promise<void> {
    await this.out.send(0, Kind.Shutdown).catch(() => {});
    const timer = setTimeout(() => this.qemu.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
    await Deno.remove(this.workDir, { recursive: true }).catch(() => {});
  }
}

/**
 * A nested VM that is booted again whenever it dies, for a long run of jobs (the
 * test command): a helper kernel that locks up fails the jobs it had, not the rest.
 */
export class RestartingVm implements JobRunner {
  #current: Promise<NestedVm>;
  #closing = false;
  /** Why each VM before the current one ended. */
  readonly failures: string[] = [];

  constructor(private readonly opts: NestedVmOptions = defaultNestedVm) {
    this.#current = this.#boot();
  }

  #boot(): Promise<NestedVm> {
    const booted = NestedVm.boot(this.opts);
    booted.then((vm) =>
      vm.ended.then((why) => {
        if (this.#closing) return;
        this.failures.push(why);
        console.error(`pvx: nested: the VM stopped (${why}); booting another`);
        this.#current = this.#boot();
      })
    ).catch(() => {});
    return booted;
  }

  /** Resolves once the first VM is up; rejects if it cannot boot. */
  ready(): Promise<unknown> {
    return this.#current;
  }

  async start(spec: JobSpec, sink: JobSink): Promise<RunningJob> {
    return (await this.#current).start(spec, sink);
  }

  async shutdown(): Promise<void> {
    this.#closing = true;
    await (await this.#current.catch(() => undefined))?.shutdown();
  }
}
