// The options `pvx run` and `pvx restore` share: how long, what is shared,
// the environment, the overlay, the instance's partitions (vCPUs, guest
// memory, handles, overlay bytes, CPU time), the accelerator and the control
// API socket.

import { parseArgs } from "node:util";
import { parseShareSpec, type ShareSpec } from "../abi/share.ts";
import { maxMemory, maxVcpus, MiB, minMemory } from "../abi/memory_map.ts";
import { MAX_HANDLES, MIN_HANDLES } from "../abi/handles.ts";
import type { HostLimits } from "../hv/host_state.ts";
import { SPECIAL_CALL_POLICIES, type SpecialCallPolicy } from "../abi/special_calls.ts";

/** The command line itself is wrong: pvx prints usage along with it. */
export class UsageError extends Error {}

export function parseDuration(text: string, option = "--timeout"): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text);
  if (!m) {
    throw new UsageError(`${option} ${JSON.stringify(text)}: expected seconds (e.g. 2.5) or milliseconds (e.g. 300ms)`);
  }
  return m[2] === "ms" ? Number(m[1]) : Number(m[1]) * 1000;
}

/** `512K`, `64M`, `2G`, or bytes. */
export function parseSize(option: string, text: string): number {
  const m = /^(\d{1,15})([KMG])?$/i.exec(text);
  if (!m) throw new UsageError(`${option} ${JSON.stringify(text)}: expected a size such as 512K, 64M or 2G`);
  return Number(m[1]) * 1024 ** " KMG".indexOf((m[2] ?? " ").toUpperCase());
}

/** `--special-calls deny|allow|stop`. */
export function parseSpecialCallPolicy(text: string | undefined): SpecialCallPolicy | undefined {
  if (text === undefined || (SPECIAL_CALL_POLICIES as readonly string[]).includes(text)) {
    return text as SpecialCallPolicy | undefined;
  }
  throw new UsageError(`--special-calls ${JSON.stringify(text)}: expected one of ${SPECIAL_CALL_POLICIES.join(", ")}`);
}

/** `--env NAME=VALUE` options as [name, value] pairs. */
export function parseEnvPairs(pairs: readonly string[]): [string, string][] {
  return pairs.map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`--env ${JSON.stringify(pair)}: expected NAME=VALUE`);
    return [pair.slice(0, eq), pair.slice(eq + 1)];
  });
}

export interface RunOptions {
  positionals: string[];
  timeoutMs?: number;
  shares: ShareSpec[];
  environment: Map<string, string>;
  overlay?: string;
  cpus?: number;
  /** Guest RAM in MiB, in place of the bundle's own: the instance's memory partition. */
  memoryMiB?: number;
  /** The instance's other partitions: open handles, the overlay's bytes and CPU time. */
  limits: HostLimits;
  cpuLimitMs?: number;
  allowMissing: boolean;
  /** Where an exe's system DLLs come from when it is packed on the fly. */
  dllDir?: string;
  /** A Windows app's special calls: another policy than its manifest's, and a file to trace its lookups into. */
  specialCalls: { policy?: SpecialCallPolicy; tracePath?: string };
  accel?: string;
  /** Serve the instance's control API on this Unix socket. */
  api?: string;
  /** Where to write the instance's stats (hypercalls, resident pages) once it has stopped. */
  statsFile?: string;
}

export function parseRunOptions(argv: string[]): RunOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      timeout: { type: "string" },
      share: { type: "string", multiple: true, default: [] },
      env: { type: "string", multiple: true, default: [] },
      overlay: { type: "string" },
      cpus: { type: "string" },
      memory: { type: "string" },
      "max-handles": { type: "string" },
      "overlay-quota": { type: "string" },
      "cpu-limit": { type: "string" },
      "allow-missing": { type: "boolean", default: false },
      "dll-dir": { type: "string" },
      "special-calls": { type: "string" },
      trace: { type: "string" },
      accel: { type: "string" },
      api: { type: "string" },
      "stats-file": { type: "string" },
    },
  });
  const cpus = values.cpus === undefined ? undefined : Number(values.cpus);
  if (cpus !== undefined && !(Number.isInteger(cpus) && cpus >= 1 && cpus <= maxVcpus)) {
    throw new UsageError(`--cpus ${JSON.stringify(values.cpus)}: expected a whole number from 1 to ${maxVcpus}`);
  }
  const memoryMiB = values.memory === undefined ? undefined : Number(values.memory);
  const [minMiB, maxMiB] = [minMemory / MiB, maxMemory / MiB];
  if (memoryMiB !== undefined && !(Number.isInteger(memoryMiB) && memoryMiB >= minMiB && memoryMiB <= maxMiB)) {
    throw new UsageError(
      `--memory ${JSON.stringify(values.memory)}: expected MiB, a whole number from ${minMiB} to ${maxMiB}`,
    );
  }
  const maxHandles = values["max-handles"] === undefined ? undefined : Number(values["max-handles"]);
  if (
    maxHandles !== undefined &&
    !(Number.isInteger(maxHandles) && maxHandles >= MIN_HANDLES && maxHandles <= MAX_HANDLES)
  ) {
    throw new UsageError(
      `--max-handles ${JSON.stringify(values["max-handles"])}: expected a whole number from ${MIN_HANDLES} ` +
        `(the console's three and the process heap take ${MIN_HANDLES - 1}) to ${MAX_HANDLES}`,
    );
  }
  const quota = values["overlay-quota"];
  const limits: HostLimits = {
    ...(maxHandles === undefined ? {} : { maxHandles }),
    ...(quota === undefined ? {} : { overlayQuotaBytes: parseSize("--overlay-quota", quota) }),
  };
  const cpuLimit = values["cpu-limit"];
  const shares = values.share.map((spec) => {
    try {
      return parseShareSpec(spec);
    } catch (e) {
      throw new UsageError(`--share ${spec}: ${(e as Error).message}`);
    }
  });
  const environment = new Map(parseEnvPairs(values.env));
  return {
    positionals,
    timeoutMs: values.timeout === undefined ? undefined : parseDuration(values.timeout),
    shares,
    environment,
    overlay: values.overlay,
    cpus,
    memoryMiB,
    limits,
    ...(cpuLimit === undefined ? {} : { cpuLimitMs: parseDuration(cpuLimit, "--cpu-limit") }),
    allowMissing: values["allow-missing"],
    dllDir: values["dll-dir"],
    specialCalls: {
      ...(values["special-calls"] === undefined ? {} : { policy: parseSpecialCallPolicy(values["special-calls"]) }),
      ...(values.trace === undefined ? {} : { tracePath: values.trace }),
    },
    accel: values.accel,
    api: values.api,
    statsFile: values["stats-file"],
  };
}
