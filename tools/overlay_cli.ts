// `pvx overlay ...`: an overlay's life cycle from the command line. abi/overlay.ts does the work
// and documents the rules; this layer parses arguments, shows progress and prints reports.

import { parseArgs } from "node:util";
import {
  mergeOverlay,
  type MergeReport,
  type OnProgress,
  OverlayError,
  resetOverlay,
  type ResetReport,
  syncOverlay,
  type SyncReport,
} from "../abi/overlay.ts";
import { EXIT_PVX_ERROR } from "./report.ts";

export const overlayUsage = `usage:
  pvx overlay merge <src overlay> --into <dest overlay> [--json]
  pvx overlay sync <overlay> --to <host dir> [--dry-run] [--json]
  pvx overlay reset <overlay> [--if-larger <MiB>] [--json]
merge: SRC's files, directories and whiteouts go into DEST; a file replaces DEST's only if newer,
       SRC's whiteouts delete what DEST has at their paths. SRC is only read.
sync:  the overlay's changes applied to plain host files: whiteouts delete, files are copied in.
reset: empties the overlay, unconditionally unless --if-larger; nothing records what was merged
       or synced, so merge or sync first what should be kept.
No instance may be using the overlays involved.`;

class UsageError extends Error {}

const MiB = 1024 * 1024;

/** Progress on stderr: redrawn in place on a terminal, a line every few seconds in a log. */
function progressOnStderr(): { onProgress: OnProgress; end(): void } {
  const terminal = Deno.stderr.isTerminal();
  const every = terminal ? 100 : 3000;
  const encoder = new TextEncoder();
  const write = (text: string) => Deno.stderr.writeSync(encoder.encode(text));
  // Nothing is shown for work that finishes within the first interval.
  let last = performance.now();
  let drawn = false;
  return {
    onProgress: (p) => {
      const now = performance.now();
      if (now - last < every) return;
      last = now;
      const line = `pvx overlay: step ${p.step}/${p.steps}, ${(p.bytes / MiB).toFixed(1)}/` +
        `${(p.totalBytes / MiB).toFixed(1)} MiB, ${p.path}`;
      if (!terminal) return write(`${line}\n`);
      write(`\r\x1b[K${line.slice(0, Deno.consoleSize().columns - 1)}`);
      drawn = true;
    },
    end: () => {
      if (drawn) write("\r\x1b[K");
    },
  };
}

function withProgress<T>(work: (onProgress: OnProgress) => T): T {
  const progress = progressOnStderr();
  try {
    return work(progress.onProgress);
  } finally {
    progress.end();
  }
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function describeMerge(src: string, dest: string, r: MergeReport): string {
  const lines = [
    `merged ${src} into ${dest}: ${r.added.length} added, ${r.replaced.length} replaced, ` +
    `${r.deleted.length} deleted, ${r.kept.length} kept, ${plural(r.whiteouts.length, "new whiteout")}`,
  ];
  const list = (label: string, paths: string[]) => lines.push(...paths.map((p) => `  ${label.padEnd(9)} ${p}`));
  list("added", r.added);
  list("replaced", r.replaced);
  list("deleted", r.deleted);
  list("kept", r.kept);
  list("whiteout", r.whiteouts);
  return lines.join("\n");
}

export function describeSync(overlay: string, hostDir: string, r: SyncReport): string {
  const count = (op: string) => r.actions.filter((a) => a.op === op).length;
  const summary =
    `${plural(count("delete"), "deletion")}, ${plural(count("mkdir"), "new directory", "new directories")}` +
    `, ${plural(count("copy"), "file")} copied`;
  const lines = [
    r.dryRun
      ? `dry run: syncing ${overlay} to ${hostDir} would make ${summary}; nothing was changed`
      : `synced ${overlay} to ${hostDir}: ${summary}`,
  ];
  for (const a of r.actions) {
    if (a.op === "delete") {
      const inside = a.removed.length - 1;
      lines.push(`  delete   ${a.path}${inside > 0 ? ` (and ${plural(inside, "entry", "entries")} in it)` : ""}`);
    } else if (a.op === "mkdir") lines.push(`  mkdir    ${a.path}`);
    else lines.push(`  ${a.replaces ? "replace" : "copy   "}  ${a.path} (${plural(a.size, "byte")})`);
  }
  return lines.join("\n");
}

export function describeReset(overlay: string, r: ResetReport, ifLargerMiB?: number): string {
  return r.reset
    ? `reset ${overlay}: freed ${plural(r.freed, "byte")}`
    : `left ${overlay} as it is: it holds ${plural(r.bytes, "byte")}, not more than ${ifLargerMiB} MiB`;
}

const options = {
  into: { type: "string" },
  to: { type: "string" },
  "dry-run": { type: "boolean" },
  "if-larger": { type: "string" },
  json: { type: "boolean" },
} as const;

const takes: Record<string, readonly (keyof typeof options)[]> = {
  merge: ["into", "json"],
  sync: ["to", "dry-run", "json"],
  reset: ["if-larger", "json"],
};

function parse(command: string, argv: string[]) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options });
  } catch (e) {
    throw new UsageError(`overlay ${command}: ${(e as Error).message}`);
  }
  for (const option of Object.keys(parsed.values)) {
    if (!takes[command].includes(option as keyof typeof options)) {
      throw new UsageError(`overlay ${command} does not take --${option}`);
    }
  }
  if (parsed.positionals.length !== 1) {
    throw new UsageError(`overlay ${command} needs exactly one ${command === "merge" ? "source " : ""}overlay`);
  }
  return { values: parsed.values, overlay: parsed.positionals[0] };
}

function run(argv: string[]): string {
  const [command, ...rest] = argv;
  if (!command || !Object.hasOwn(takes, command)) {
    throw new UsageError(command ? `unknown overlay command ${command}` : "overlay needs a command");
  }
  const { values, overlay } = parse(command, rest);
  switch (command) {
    case "merge": {
      const dest = values.into;
      if (dest === undefined) throw new UsageError("overlay merge needs --into <dest overlay>");
      const report = withProgress((onProgress) => mergeOverlay(overlay, dest, { onProgress }));
      return values.json ? JSON.stringify(report) : describeMerge(overlay, dest, report);
    }
    case "sync": {
      const hostDir = values.to;
      if (hostDir === undefined) throw new UsageError("overlay sync needs --to <host dir>");
      const dryRun = values["dry-run"] === true;
      const report = withProgress((onProgress) => syncOverlay(overlay, hostDir, { dryRun, onProgress }));
      return values.json ? JSON.stringify(report) : describeSync(overlay, hostDir, report);
    }
    default: {
      const text = values["if-larger"];
      const ifLargerMiB = text === undefined ? undefined : Number(text);
      if (ifLargerMiB !== undefined && !(text !== "" && Number.isFinite(ifLargerMiB) && ifLargerMiB >= 0)) {
        throw new UsageError(`overlay reset --if-larger ${JSON.stringify(text)}: expected a size in MiB, e.g. 512`);
      }
      const report = resetOverlay(overlay, { ifLargerThan: ifLargerMiB === undefined ? undefined : ifLargerMiB * MiB });
      return values.json ? JSON.stringify(report) : describeReset(overlay, report, ifLargerMiB);
    }
  }
}

/** `pvx overlay <args>`: 0 when done, 2 for bad usage, EXIT_PVX_ERROR when an overlay or the host refused. */
export function overlayCommand(argv: string[]): number {
  try {
    console.log(run(argv));
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`pvx: ${e.message}\n${overlayUsage}`);
      return 2;
    }
    // Bad overlays and host refusals (with an errno, and the path in the message) are the user's to fix.
    if (e instanceof OverlayError || typeof (e as { code?: unknown } | null)?.code === "string") {
      console.error(`pvx overlay: ${(e as Error).message}`);
      return EXIT_PVX_ERROR;
    }
    throw e;
  }
}
