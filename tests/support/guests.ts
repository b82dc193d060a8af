// Test plumbing: build a C guest from tests/guests, pack it, run it through
// the real `pvx` command in a child process, and collect what it printed.

import { compileGuest } from "../../tools/guest_cc.ts";
import { defaultPackOptions, packApp } from "../../tools/pvx.ts";
import { writeBundle } from "../../tools/bundle.ts";

const guestsDir = new URL("../guests/", import.meta.url).pathname;
const pvxScript = new URL("../../tools/pvx.ts", import.meta.url).pathname;
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
    // pvx must never hang; if it does, the test fails instead of stalling the suite.
    signal: AbortSignal.timeout(120_000),
  }).spawn();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

export async function runGuest(name: string, args: string[] = [], runFlags: string[] = []): Promise<RunResult> {
  return pvxCli(["run", ...runFlags, await guestBundle(name), ...(args.length ? ["--", ...args] : [])]);
}
