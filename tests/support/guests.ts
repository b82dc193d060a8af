// Test plumbing: build a C guest from tests/guests, pack it, run it through
// the real `pvx` command in a child process, and collect what it printed.

import { compileGuest } from "../../tools/guest_cc.ts";
import { defaultPackOptions, packApp } from "../../tools/pack.ts";
import { writeBundle } from "../../hv/bundle.ts";
import { denoJob, NESTED_SOCKET_ENV } from "../../tools/accel.ts";
import { RemoteRunner } from "../../tools/nested/jobs.ts";

const guestsDir = new URL("../guests/", import.meta.url).pathname;
/** How long a `pvx` a test starts may take before the test kills it as hung. */
const PVX_HANG_MS = 600_000;
export const pvxScript = new URL("../../tools/pvx.ts", import.meta.url).pathname;
const built = new Map<string, Promise<string>>();
let workDir: string | undefined;

async function scratch(): Promise<string> {
  if (!workDir) {
    workDir = await Deno.makeTempDir({ prefix: "pvx-test-" });
    const dir = workDir;
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  }
  return workDir;
}

/** Compiles tests/guests/<name>.c once per test process and returns the ELF path. */
export function guestElf(name: string): Promise<string> {
  let p = built.get(name);
  if (!p) {
    p = (async () => {
      const out = `${await scratch()}/${name}.elf`;
      await compileGuest(`${guestsDir}${name}.c`, out);
      return out;
    })();
    built.set(name, p);
  }
  return p;
}

/** Packs a guest as `pvx pack` does and returns the bundle path. */
export async function guestBundle(name: string): Promise<string> {
  const bundle = `${await scratch()}/${name}.pvx`;
  await writeBundle(bundle, await packApp(await guestElf(name), defaultPackOptions));
  return bundle;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `pvx <args>` as a separate process, as a user would. With `stdinOpen`
 * its standard input is a pipe nobody writes to or closes, like an idle terminal.
 */
export async function pvxCli(args: string[], env: Record<string, string> = {}, stdinOpen = false): Promise<RunResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", pvxScript, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
    stdin: stdinOpen ? "piped" : "null",
    // pvx must never hang; if it does, the test fails instead of stalling the suite. The bound is
    // generous: under the nested accelerator, with other tests' guests beside it, a long test takes minutes.
    signal: AbortSignal.timeout(PVX_HANG_MS),
  }).spawn();
  return decoded(await child.output());
}

function decoded(out: { code: number; stdout: Uint8Array; stderr: Uint8Array }): RunResult {
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * Runs `deno <args>` where /dev/kvm is, for a test that drives the hypervisor in-process:
 * here, or in the nested VM that the test command shares through PVX_NESTED_SOCKET.
 */
export async function whereKvm(args: string[]): Promise<RunResult> {
  const socket = Deno.env.get(NESTED_SOCKET_ENV);
  if (!socket) {
    return decoded(
      await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped", stdin: "null" }).output(),
    );
  }
  const stdout: Uint8Array[] = [], stderr: Uint8Array[] = [];
  const job = await new RemoteRunner(socket).start(denoJob(args), {
    stdout: (b) => Promise.resolve(void stdout.push(b)),
    stderr: (b) => Promise.resolve(void stderr.push(b)),
  });
  await job.endStdin();
  const { code } = await job.done;
  const joined = (parts: Uint8Array[]) => new Uint8Array(parts.flatMap((p) => [...p]));
  return decoded({ code, stdout: joined(stdout), stderr: joined(stderr) });
}

export interface RunningPvx {
  /** Resolves once the guest's stdout holds `text`; rejects if pvx ends first. */
  printed(text: string): Promise<void>;
  /** Writes to its stdin, which stays open until `endInput` (when started with `{ keepOpen: true }`). */
  type(text: string): Promise<void>;
  endInput(): Promise<void>;
  kill(signal: Deno.Signal): void;
  pid: number;
  result: Promise<RunResult>;
}

/**
 * Starts `pvx <args>` and lets a test act on what the guest says while it
 * runs; `input` is its whole stdin, or it is kept open for `type`. With
 * `netns` it runs in that network namespace (`ip netns exec`, which execs it:
 * a signal reaches pvx itself).
 */
export function pvxStart(
  args: string[],
  input?: string | { keepOpen: true },
  env: Record<string, string> = {},
  netns?: string,
): RunningPvx {
  const command = [Deno.execPath(), "run", "-A", pvxScript, ...args];
  const argv = netns === undefined ? command : ["ip", "netns", "exec", netns, ...command];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    stdout: "piped",
    stderr: "piped",
    stdin: input === undefined ? "null" : "piped",
    signal: AbortSignal.timeout(PVX_HANG_MS),
  }).spawn();
  const stdin = input === undefined ? undefined : child.stdin.getWriter();
  if (typeof input === "string") stdin!.write(new TextEncoder().encode(input)).then(() => stdin!.close());
  let stdout = "";
  const waiters: { text: string; resolve(): void }[] = [];
  const dec = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of child.stdout) {
      stdout += dec.decode(chunk, { stream: true });
      for (const w of waiters.filter((w) => stdout.includes(w.text))) w.resolve();
    }
  })();
  const stderr = new Response(child.stderr).text();
  const result = (async () => {
    const [status] = await Promise.all([child.status, reading]);
    return { code: status.code, stdout, stderr: await stderr };
  })();
  return {
    printed: (text) =>
      new Promise<void>((resolve, reject) => {
        if (stdout.includes(text)) return resolve();
        waiters.push({ text, resolve });
        result.then((r) =>
          reject(new Error(`pvx ended (${r.code}) before printing ${JSON.stringify(text)}:\n${r.stderr}`))
        );
      }),
    type: (text) => stdin!.write(new TextEncoder().encode(text)),
    endInput: () => stdin!.close(),
    kill: (signal) => child.kill(signal),
    pid: child.pid,
    result,
  };
}

export async function runGuest(name: string, args: string[] = [], runFlags: string[] = []): Promise<RunResult> {
  return pvxCli(["run", ...runFlags, await guestBundle(name), ...(args.length ? ["--", ...args] : [])]);
}
