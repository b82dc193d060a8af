// The nested accelerator: a QEMU TCG guest whose emulated CPU has AMD SVM, so
// its Linux has a real, hardware-style /dev/kvm. It sees the host's root over
// 9p and runs jobs, each a command with the host's paths, through its agent.

import { join } from "node:path";
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

interface Pending {
  sink: JobSink;
  resolve(s: ExitStatus): void;
  reject(e: Error): void;
}

export class NestedVm implements JobRunner {
  #jobs = new Map<number, Pending>();
  #nextJob = 1;
  #stopped?: Error;

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
    return vm;
  }

  async #dispatch(frames: AsyncGenerator<Frame>, consoleLog: string): Promise<void> {
    let why = "the nested VM's agent closed its port";
    try {
      for await (const f of frames) {
        const job = this.#jobs.get(f.job);
        if (!job) continue;
        if (f.kind === Kind.Stdout) await job.sink.stdout(f.payload);
        else if (f.kind === Kind.Stderr) await job.sink.stderr(f.payload);
        else if (f.kind === Kind.Exit) {
          this.#jobs.delete(f.job);
          job.resolve(parseJson<ExitStatus>(f.payload));
        } else if (f.kind === Kind.Failed) {
          this.#jobs.delete(f.job);
          job.reject(new Error(decodeText(f.payload)));
        }
      }
    } catch (e) {
      why = (e as Error).message;
    }
    const log = await Deno.readTextFile(consoleLog).catch(() => "");
    this.#stopped = new Error(`${why}\nits console's last lines:\n${log.trimEnd().split("\n").slice(-15).join("\n")}`);
    for (const job of this.#jobs.values()) job.reject(this.#stopped);
    this.#jobs.clear();
  }

  start(spec: JobSpec, sink: JobSink): Promise<RunningJob> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const id = this.#nextJob++;
    const done = new Promise<ExitStatus>((resolve, reject) => this.#jobs.set(id, { sink, resolve, reject }));
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
