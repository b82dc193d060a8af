// The pvx command line: pack, inspect and run bundles.

import { parseArgs } from "node:util";
import { BundleError, describeBundle, encodeBundle, readBundle, writeBundle } from "./bundle.ts";
import { ElfError, parseElf } from "../guest/elf.ts";
import { launchBundle } from "../hv/launch.ts";
import { parseShareSpec } from "../abi/fileview.ts";
import { prewarm, stopIdleThreads } from "../hv/vcpu_threads.ts";
import { describeOutcome, EXIT_PVX_ERROR, exitStatus } from "./report.ts";
import { ABI_VERSION, callsByName } from "../abi/calls.ts";
import { callsUsedByElf } from "./analyse.ts";
import { basename } from "node:path";

const usage = `usage:
  pvx run <app.pvx> [--timeout <seconds|Nms>] [--share <host dir>:<guest dir>[:ro]]... [--env NAME=VALUE]...
          [--overlay <dir>] [-- args...]
  pvx pack <app.elf> -o <app.pvx> [--name <name>] [--memory <MiB>] [--file <host>[:<bundle path>]]... [--arg <a>]...
  pvx inspect <app.pvx>`;

class UsageError extends Error {}

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text);
  if (!m) {
    throw new UsageError(`--timeout ${JSON.stringify(text)}: expected seconds (e.g. 2.5) or milliseconds (e.g. 300ms)`);
  }
  return m[2] === "ms" ? Number(m[1]) : Number(m[1]) * 1000;
}

async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      timeout: { type: "string" },
      share: { type: "string", multiple: true, default: [] },
      env: { type: "string", multiple: true, default: [] },
      overlay: { type: "string" },
    },
  });
  const [path, ...args] = positionals;
  if (!path) throw new UsageError("run needs a bundle");
  const timeoutMs = values.timeout === undefined ? undefined : parseDuration(values.timeout);
  const shares = values.share.map((spec) => {
    try {
      return parseShareSpec(spec);
    } catch (e) {
      throw new UsageError(`--share ${spec}: ${(e as Error).message}`);
    }
  });
  const environment = new Map(values.env.map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`--env ${JSON.stringify(pair)}: expected NAME=VALUE`);
    return [pair.slice(0, eq), pair.slice(eq + 1)] as const;
  }));
  if (values.overlay) await Deno.mkdir(values.overlay, { recursive: true });
  prewarm(); // the vCPU thread starts while the bundle is read and checked
  try {
    const bundle = await readBundle(path);
    const { outcome, symbolize } = await launchBundle(bundle, {
      args,
      timeoutMs,
      shares,
      environment,
      overlayDir: values.overlay,
    });
    if (outcome.kind !== "exit") console.error(describeOutcome(outcome, bundle.manifest.name, symbolize));
    return exitStatus(outcome);
  } finally {
    stopIdleThreads();
  }
}

async function packCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o" },
      name: { type: "string" },
      memory: { type: "string", default: "64" },
      file: { type: "string", multiple: true, default: [] },
      arg: { type: "string", multiple: true, default: [] },
    },
  });
  const [entryPath] = positionals;
  if (!entryPath || !values.output) throw new UsageError("pack needs an ELF and -o <app.pvx>");
  const entryBytes = await Deno.readFile(entryPath);
  const entry = basename(entryPath);
  parseElf(entryBytes, entryPath);
  const allowedCalls = callsUsedByElf(entryBytes, entryPath);
  for (const name of allowedCalls) {
    if (!callsByName.has(name)) {
      throw new Error(`${entryPath}: uses hypercall ${name}, which ABI v${ABI_VERSION} lacks`);
    }
  }
  const files = [{ path: entry, bytes: entryBytes }];
  for (const spec of values.file) {
    const colon = spec.indexOf(":");
    const host = colon < 0 ? spec : spec.slice(0, colon);
    files.push({ path: colon < 0 ? basename(spec) : spec.slice(colon + 1), bytes: await Deno.readFile(host) });
  }
  const memoryMiB = Number(values.memory);
  const name = values.name ?? entry.replace(/\.[^.]*$/, "");
  const bytes = await encodeBundle(
    { name, entry, kind: "elf", memoryMiB, abiVersion: ABI_VERSION, allowedCalls, args: values.arg },
    files,
  );
  await writeBundle(values.output, bytes);
  console.log(`packed ${values.output}: ${name}, ${files.length} file(s), calls: ${allowedCalls.join(", ")}`);
  return 0;
}

async function inspectCommand(argv: string[]): Promise<number> {
  const [path] = argv;
  if (!path) throw new UsageError("inspect needs a bundle");
  console.log(describeBundle(await readBundle(path)));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "run":
        return await runCommand(rest);
      case "pack":
        return await packCommand(rest);
      case "inspect":
        return await inspectCommand(rest);
      default:
        throw new UsageError(command ? `unknown command ${command}` : "no command");
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`pvx: ${e.message}\n${usage}`);
      return 2;
    }
    // Bad input is the user's to fix and needs no stack; anything else is a pvx bug and does.
    const expected = e instanceof BundleError || e instanceof ElfError || e instanceof Deno.errors.NotFound;
    console.error(`pvx: ${expected ? (e as Error).message : e instanceof Error ? e.stack : String(e)}`);
    return EXIT_PVX_ERROR;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
