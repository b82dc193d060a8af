// The pvx command line: pack, inspect and run bundles.

import { parseArgs } from "node:util";
import {
  BundleError,
  describeBundle,
  isPe,
  parseBundle,
  readBundle,
  readHead,
  sha256Hex,
  writeBundle,
} from "../hv/bundle.ts";
import { ElfError } from "../guest/elf.ts";
import { launchBundle } from "../hv/launch.ts";
import { prewarm } from "../hv/vcpu_threads.ts";
import { describeOutcome, EXIT_PVX_ERROR, exitStatus } from "./report.ts";
import { analysePe, describeAnalysis } from "./analyse.ts";
import { describeTrace, readTrace, TraceError } from "./dynamic_imports.ts";
import { basename, resolve } from "../abi/host_path.ts";
import { PeError } from "../guest/pe_image.ts";
import { AccelError, chooseAccel } from "./accel.ts";
import { runPvxNested } from "./nested/api_relay.ts";
import { MissingPiece } from "./nested/image.ts";
import { MissingPackages } from "./packages.ts";
import { onStopSignals } from "./signals.ts";
import { parseRunOptions, parseSpecialCallPolicy, UsageError } from "./run_options.ts";
import { SnapshotError } from "../hv/snapshot_format.ts";
import { isSealed, KeyFileError } from "../hv/sealed_snapshot.ts";
import { InstanceStateError } from "../hv/instance.ts";
import type { InstanceSession, SnapshotResult } from "../hv/snapshot.ts";
import type { ReadyPoint } from "../hv/vcpu_thread.ts";
import { ControlApiError } from "../hv/control_api.ts";
import {
  apiCommand,
  apiServer,
  describeSealed,
  describeSnapshot,
  isSnapshot,
  keyCommand,
  pauseCommand,
  restoreCommand,
  resumeCommand,
  snapshotCommand,
} from "./snapshot_cli.ts";
import { overlayCommand } from "./overlay_cli.ts";
import { warmCommand } from "./warm.ts";
import {
  cachedBundle,
  defaultPackOptions,
  MissingImportsError,
  packApp,
  type PackOptions,
  windowsDlls,
} from "./pack.ts";
import {
  attachCommand,
  changeStateCommand,
  daemonSnapshotCommand,
  daemonTemplateCommand,
  killCommand,
  logsCommand,
  migrateCommand,
  psCommand,
  rmCommand,
  startCommand,
  statsCommand,
  storedCommand,
  waitCommand,
} from "./daemon_cli.ts";
import { DaemonError } from "./daemon_client.ts";
import { serveCommand } from "./serve_cli.ts";

const usage = `usage:
  pvx run <app.pvx> [--timeout <seconds|Nms>] [--share <host dir>:<guest dir>[:ro]]... [--env NAME=VALUE]...
          [--overlay <dir>] [--cpus <N>] [--memory <MiB>] [--accel auto|kvm|nested] [--api <socket>] [-- args...]
  pvx pack <app.elf> -o <app.pvx> [--name <name>] [--memory <MiB>] [--file <host>[:<bundle path>]]... [--arg <a>]...
  pvx run ... --api <socket>      serve the instance's control API (pause, resume, snapshot) on a Unix socket
  pvx run|restore ... --stats-file <file>   once stopped, write its hypercall counts and latencies there (JSON)
  pvx pause|resume --api <socket>
  pvx snapshot --api <socket> -o <snap> [--diff-from <snap0> | --seal --key-file <key> [--expires <30m|12h|7d>]] [--stop]
                                  --diff-from: only the pages written since snap0, the instance's last snapshot
                                  --seal: one blob, AES-256-GCM under the key file's key, that only its holder can open
  pvx key create -o <key>         a new key file for sealed snapshots (32 random bytes, mode 0600)
  pvx snapshot merge <snap> -o <full snap>    a diff and the chain below it, compacted into one full snapshot
  pvx api <socket> GET|POST <route> [< body]   one raw request; prints the status, then the body
  pvx restore <snap> [--bundle <app.pvx>] [--key-file <key>] [--no-verify] [--paused] [--api <socket>] [--share ...] [--overlay <dir>] [--timeout ...] [--cpus N]
  pvx template create <app.pvx|app.exe> -o <tpl> --ready first-input|call|ms:<N> [run options] [-- args...]
  pvx run --from <tpl> [run options]    a new instance from a template (a restore of it)
  pvx inspect <app.pvx|snap|sealed snap>
  pvx analyse <app.exe> [--dll-dir <dir>] [--trace [-o <trace>] [-- args]]
                                  --trace: runs it with every special call allowed and lists what it looked up at
                                  run time (GetProcAddress, LoadLibrary) and opened; pack --trace <trace> takes that in
  pvx overlay merge|sync|reset ...   (pvx overlay for its usage)
  pvx serve [--socket <path>] [--listen <host>:<port> --token-file <file>] [--state-dir <dir>] [--key-file <key>]
        [--peer-timeout <T>] [--warm <N>]
                                  a daemon that runs many instances, each in its own process, over an HTTP API;
                                  N processes (default 2) wait, loaded, for the next creates
  pvx ps | start <app.pvx|app.exe>|--from <tpl>|--snapshot <snap> [--cpus N] [--timeout T] [--env N=V]...
        [--share <host dir>:<guest dir>[:ro]]... [--upload] [-- args]
  pvx logs [-f] [--tail <KiB>] <id> | wait <id> | kill [--grace T] <id> | rm [-f] <id> | pause|resume <id>
  pvx attach [--tail <KiB>] [--no-stdin] <id>   its console here, typed input to its stdin; Ctrl-C detaches
  pvx migrate <id> --to <url> [--to-token-file <file>] [--max-rounds N] [--unconverged stop-and-copy|fail]
                                  live, to another pvx serve
  pvx stats <id>                  its hypercalls by name, time in the host, guest pages resident
  pvx snapshot <id> [-o <snap>] [--diff-from <snap0|id> | --seal [--expires <T>]] [--stop]   --seal: under serve's key
  pvx template create <app> --ready ... [-- args]    without -o the daemon makes and keeps it
  pvx template ls|inspect|rm [<id>] | snapshot ls|inspect|rm [<id>] | bundle ls|inspect|rm [<id>]    what the daemon keeps
  pvx bundle upload <app.pvx|app.exe>   for a daemon on another machine; start and template create
                                  upload by themselves over TCP (or with --upload)
                                  clients of pvx serve: --host <socket|http://host:port> (or PVX_HOST), --token-file
                                  <file> (or PVX_TOKEN_FILE), --json for scripts
A Windows .exe can be given to run (packed on the fly into a cached bundle) and to pack, with [--allow-missing]
and [--dll-dir <dir>]: where system DLLs (msvcrt, ucrtbase, ...) come from, by default Wine's PE DLLs.
A Windows app's special calls, a lookup or DLL load its analysis never saw: pack and run take
[--special-calls deny|allow|stop] (deny, the default: the Win32 error and a log line; allow: a log line; stop),
pack [--trace <trace>]... (what traced runs saw is then allowed), run [--trace <trace>] (appends what it looks up).`;

async function runCommand(argv: string[]): Promise<number> {
  const at = argv.indexOf("--from");
  if (at >= 0 && at < (argv.includes("--") ? argv.indexOf("--") : argv.length)) {
    // A template is a snapshot taken at its ready point: each run from it is a restore.
    if (argv.includes("--")) throw new UsageError("run --from: a template's arguments were fixed when it was made");
    return await restoreCommand([...argv.slice(0, at), ...argv.slice(at + 1)]);
  }
  return await runApp("run", argv);
}

/**
 * `pvx template create app -o TPL --ready first-input|call|ms:N [run options] [-- args]`:
 * runs the app to its ready point, then snapshots and stops it.
 */
async function templateCommand(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb !== "create") throw new UsageError(`template ${verb ?? ""}: the only verb is create`);
  const end = rest.includes("--") ? rest.indexOf("--") : rest.length;
  const take = (name: string, short?: string) => {
    const i = rest.slice(0, end).findIndex((a) => a === name || a === short);
    if (i < 0 || i + 1 >= end) throw new UsageError(`template create needs ${name}`);
    return rest.splice(i, 2)[1];
  };
  const output = take("--output", "-o");
  const ready = take("--ready");
  const m = /^(?:(first-input|call)|ms:(\d+))$/.exec(ready);
  if (!m) throw new UsageError(`--ready ${JSON.stringify(ready)}: expected first-input, call or ms:<milliseconds>`);
  return await runApp("template", rest, {
    output: resolve(output),
    ...(m[1] ? { at: m[1] as ReadyPoint } : { afterMs: Number(m[2]) }),
  }, argv);
}

/** Where `pvx template create` snapshots the app: at its first console read, its PvxReady call, or after a time. */
interface TemplateReady {
  output: string;
  at?: ReadyPoint;
  afterMs?: number;
}

async function runApp(
  command: "run" | "template",
  argv: string[],
  ready?: TemplateReady,
  whole = argv,
): Promise<number> {
  const o = parseRunOptions(argv);
  const [path, ...args] = o.positionals;
  if (!path) throw new UsageError(`${command} needs a bundle or an exe`);
  if (chooseAccel(o.accel) === "nested") return await runPvxNested(command, whole);
  if (o.overlay) await Deno.mkdir(o.overlay, { recursive: true });
  prewarm(); // the vCPU thread starts while the bundle is read and checked
  // Ctrl-C or a kill stops the guest the way --timeout does: with where every thread was.
  const interrupt = new AbortController();
  const stopListening = onStopSignals((sig) => interrupt.abort(sig));
  let readyTimer: ReturnType<typeof setTimeout> | undefined;
  try {
    // A Windows exe runs from a bundle packed on the fly (and cached); anything else must be a bundle.
    const head = await readHead(path);
    const bundlePath = isPe(head)
      ? await cachedBundle(path, { ...defaultPackOptions, allowMissing: o.allowMissing, dllDir: o.dllDir })
      : path;
    const bundleBytes = await Deno.readFile(bundlePath);
    const packed = await parseBundle(bundleBytes, bundlePath);
    const bundle = o.memoryMiB === undefined
      ? packed
      : { ...packed, manifest: { ...packed.manifest, memoryMiB: o.memoryMiB } };
    const api = apiServer(o);
    let session: InstanceSession | undefined;
    let saved: Promise<SnapshotResult> | undefined;
    const snapshotNow = () => {
      if (saved) return;
      saved = session!.snapshot(ready!.output, { stop: true });
      saved.catch(() => {}); // awaited, and reported, once the app has stopped
    };
    try {
      const { outcome, symbolize } = await launchBundle(bundle, {
        args,
        timeoutMs: o.timeoutMs,
        shares: o.shares,
        environment: o.environment,
        overlayDir: o.overlay,
        cpus: o.cpus,
        limits: o.limits,
        cpuLimitMs: o.cpuLimitMs,
        specialCalls: o.specialCalls,
        interrupt: interrupt.signal,
        bundleFile: { path: await Deno.realPath(bundlePath), sha256: await sha256Hex(bundleBytes) },
        onSession: (s) => {
          session = s;
          api.attach(s);
          if (ready?.afterMs !== undefined) readyTimer = setTimeout(snapshotNow, ready.afterMs);
        },
        ...(ready?.at ? { ready: { at: ready.at, reached: snapshotNow } } : {}),
      });
      if (ready) {
        if (!saved) {
          console.error(describeOutcome(outcome, bundle.manifest.name, symbolize));
          throw new InstanceStateError(`${bundle.manifest.name} ended before its ready point: no template was made`);
        }
        const t = await saved;
        console.log(`template ${t.path}: ${t.threads} thread(s), ${t.pages} page(s), ${t.fileBytes} bytes, id ${t.id}`);
        return 0;
      }
      if (outcome.kind !== "exit") console.error(describeOutcome(outcome, bundle.manifest.name, symbolize));
      return exitStatus(outcome);
    } finally {
      await api.close();
    }
  } finally {
    clearTimeout(readyTimer);
    stopListening();
  }
}

const packOptions = {
  name: { type: "string" as const },
  memory: { type: "string" as const, default: "64" },
  file: { type: "string" as const, multiple: true as const, default: [] as string[] },
  arg: { type: "string" as const, multiple: true as const, default: [] as string[] },
  "allow-missing": { type: "boolean" as const, default: false },
  "dll-dir": { type: "string" as const },
  "special-calls": { type: "string" as const },
  trace: { type: "string" as const, multiple: true as const, default: [] as string[] },
};

function packOptionsFrom(
  values: {
    name?: string;
    memory: string;
    file: string[];
    arg: string[];
    "allow-missing": boolean;
    "dll-dir"?: string;
    "special-calls"?: string;
    trace: string[];
  },
): PackOptions {
  return {
    name: values.name,
    memoryMiB: Number(values.memory),
    files: values.file,
    args: values.arg,
    allowMissing: values["allow-missing"],
    dllDir: values["dll-dir"],
    specialCalls: parseSpecialCallPolicy(values["special-calls"]),
    traces: values.trace,
  };
}

async function packCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { output: { type: "string", short: "o" }, ...packOptions },
  });
  const [entryPath] = positionals;
  if (!entryPath || !values.output) throw new UsageError("pack needs an ELF or .exe and -o <app.pvx>");
  const bytes = await packApp(entryPath, packOptionsFrom(values));
  await writeBundle(values.output, bytes);
  const m = (await parseBundle(bytes, values.output)).manifest;
  console.log(`packed ${values.output}: ${m.name}, ${m.files.length} file(s), calls: ${m.allowedCalls.join(", ")}`);
  return 0;
}

/**
 * `pvx analyse app.exe [--dll-dir D] [--trace [-o TRACE]] [-- args]`: what the exe imports, what pvx
 * gives each import and which DLLs it would bundle; with --trace, also what a run of it looked up.
 */
async function analyseCommand(argv: string[]): Promise<number> {
  const { values, positionals: [exePath, ...args] } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      "dll-dir": { type: "string" },
      trace: { type: "boolean", default: false },
      output: { type: "string", short: "o" },
    },
  });
  if (!exePath) throw new UsageError("analyse needs an .exe");
  if (!values.trace && (values.output !== undefined || args.length)) {
    throw new UsageError("analyse: -o and the app's arguments go with --trace");
  }
  const exe = await Deno.readFile(exePath);
  const dlls = await windowsDlls(exePath, exe, values["dll-dir"]);
  for (const d of dlls) {
    console.log(`bundles ${d.path} from ${d.from} (${d.source}), sha256 ${await sha256Hex(d.bytes)}`);
  }
  const files = new Map([[basename(exePath), exe], ...dlls.map((d) => [d.path, d.bytes] as const)]);
  const analysis = analysePe(files, basename(exePath));
  console.log(describeAnalysis(analysis));
  if (!values.trace) return analysis.missing.length ? 1 : 0;

  // The run's trace must be where a nested run writes it too: beside the exe, never in a private /tmp.
  const trace = values.output ?? `${exePath.replace(/\.exe$/i, "")}.trace.jsonl`;
  await Deno.remove(trace).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  console.error(`pvx: analyse: running ${exePath} with every special call allowed, tracing into ${trace}`);
  const dllDir = values["dll-dir"] === undefined ? [] : ["--dll-dir", values["dll-dir"]];
  const status = await runApp("run", [
    "--special-calls",
    "allow",
    "--trace",
    trace,
    "--allow-missing",
    ...dllDir,
    exePath,
    "--",
    ...args,
  ]);
  const events = await readTrace(trace).catch((e) => {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  });
  console.log(describeTrace(events));
  console.log(`the app exited with status ${status}; pvx pack --trace ${trace} merges what it saw into a bundle`);
  return status;
}

async function inspectCommand(argv: string[]): Promise<number> {
  const [path] = argv;
  if (!path) throw new UsageError("inspect needs a bundle or a snapshot");
  const head = await readHead(path);
  console.log(
    isSnapshot(head)
      ? describeSnapshot(path)
      : isSealed(head)
      ? await describeSealed(path)
      : describeBundle(await readBundle(path)),
  );
  return 0;
}

const usesApi = (argv: string[]) => argv.some((a) => a === "--api" || a.startsWith("--api="));

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
      case "analyse":
        return await analyseCommand(rest);
      // With --api they reach one instance's own control API; without, an instance of the daemon's.
      case "pause":
        return await (usesApi(rest) ? pauseCommand(rest) : changeStateCommand("pause", rest));
      case "resume":
        return await (usesApi(rest) ? resumeCommand(rest) : changeStateCommand("resume", rest));
      case "snapshot":
        if (["ls", "inspect", "rm"].includes(rest[0])) return await storedCommand("snapshot", rest);
        return await (usesApi(rest) || rest[0] === "merge" ? snapshotCommand(rest) : daemonSnapshotCommand(rest));
      case "serve":
        return await serveCommand(rest);
      case "ps":
        return await psCommand(rest);
      case "start":
        return await startCommand(rest);
      case "logs":
        return await logsCommand(rest);
      case "attach":
        return await attachCommand(rest);
      case "stats":
        return await statsCommand(rest);
      case "migrate":
        return await migrateCommand(rest);
      case "wait":
        return await waitCommand(rest);
      case "kill":
        return await killCommand(rest);
      case "rm":
        return await rmCommand(rest);
      case "restore":
        return await restoreCommand(rest);
      case "key":
        return await keyCommand(rest);
      case "bundle":
        return await storedCommand("bundle", rest);
      case "template": {
        if (["ls", "inspect", "rm"].includes(rest[0])) return await storedCommand("template", rest);
        // Without -o, the template is the daemon's to make and keep.
        const options = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
        if (rest[0] === "create" && !options.some((a) => a === "-o" || a === "--output")) {
          return await daemonTemplateCommand(rest.slice(1));
        }
        return await templateCommand(rest);
      }
      case "api":
        return await apiCommand(rest);
      case "overlay":
        return overlayCommand(rest);
      case "warm":
        return await warmCommand(rest, main);
      default:
        throw new UsageError(command ? `unknown command ${command}` : "no command");
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`pvx: ${e.message}\n${usage}`);
      return 2;
    }
    // Bad input is the user's to fix and needs no stack; anything else is a pvx bug and does.
    const expected = e instanceof BundleError || e instanceof ElfError || e instanceof PeError ||
      e instanceof MissingImportsError || e instanceof Deno.errors.NotFound || e instanceof AccelError ||
      e instanceof MissingPiece || e instanceof MissingPackages || e instanceof SnapshotError ||
      e instanceof KeyFileError || e instanceof TraceError ||
      e instanceof InstanceStateError || e instanceof ControlApiError || e instanceof DaemonError;
    console.error(`pvx: ${expected ? (e as Error).message : e instanceof Error ? e.stack : String(e)}`);
    return EXIT_PVX_ERROR;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
