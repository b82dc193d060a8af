// From bundle to outcome: parse the entry, build the guest, run it, clean up.

import type { Bundle } from "./bundle.ts";
import { type ElfImage, nearestSymbol, parseElf } from "../guest/elf.ts";
import { bootGuest, type GuestApp } from "../guest/boot.ts";
import { windowsSymbolizer } from "../guest/windows.ts";
import { MiB } from "../abi/memory_map.ts";
import { windowsCommandLine } from "../abi/command_line.ts";
import type { ShareSpec } from "../abi/share.ts";
import { Instance, type InstanceOptions, type Outcome } from "./instance.ts";
import type { HostLimits } from "./host_state.ts";
import { FIRST_THREAD_ID } from "./guest_threads.ts";
import { type BootState, type BundleFile, InstanceSession, type LoadedSnapshot } from "./snapshot.ts";
import { bootSregs } from "../guest/kernel.ts";
import { unpackOverlay } from "../abi/overlay_archive.ts";
import { mapSnapshotChain } from "./snapshot_file.ts";
import { resolve } from "../abi/host_path.ts";
import type { SpecialCallPolicy, SpecialCallRules } from "../abi/special_calls.ts";

export interface LaunchOptions {
  args: readonly string[];
  timeoutMs?: number;
  shares?: readonly ShareSpec[];
  environment?: ReadonlyMap<string, string>;
  /** Keep the instance's writes here; by default they go to a temporary overlay removed afterwards. */
  overlayDir?: string;
  /** At most this many guest threads run at once. */
  cpus?: number;
  /** Open handles and the overlay's bytes the guest may have (abi/handles.ts, abi/disk_quota.ts). */
  limits?: HostLimits;
  /** Stop the guest once the instance has used this much CPU time. */
  cpuLimitMs?: number;
  /** Stops the guest, reporting where every thread was, when it aborts. */
  interrupt?: AbortSignal;
  /** The bundle file, which snapshots name by its SHA-256 (and where it was, to find it again). */
  bundleFile?: BundleFile;
  /** Called once the guest is about to run, with what pauses and snapshots it. */
  onSession?: (session: InstanceSession) => void;
  /** A template's ready point, and what to do when the app reaches it (it then waits there to be paused). */
  ready?: InstanceOptions["ready"];
  /** Start with every vCPU parked, waiting for a resume (a migration's target, until its source lets go). */
  startPaused?: boolean;
  /** A Windows app's special calls: another policy than its manifest's, and where to trace its lookups. */
  specialCalls?: { policy?: SpecialCallPolicy; tracePath?: string };
}

export interface Launched {
  outcome: Outcome;
  /** Names a guest address as `<symbol+offset>` from the app's ELF symbols. */
  symbolize(address: number): string;
  /** Milliseconds from creating the VM to the guest's first exit (its first hypercall). */
  bootMs?: number;
}

export function symbolizer(elf: ElfImage): (address: number) => string {
  return (address) => {
    const s = nearestSymbol(elf, address);
    return s ? `<${s.name}+0x${s.offset.toString(16)}>` : "<no symbol>";
  };
}

/** The bundle's entry as something the guest can boot, and how to name addresses in it. */
function guestApp(bundle: Bundle): { app: GuestApp; symbolize?: (address: number) => string } {
  const m = bundle.manifest;
  const bytes = bundle.entryBytes();
  if (m.kind === "pe") {
    return { app: { kind: "pe", files: bundle.files, entry: m.entry, libraries: m.specialCalls.libraries } };
  }
  const image = parseElf(bytes, `${m.name}:${m.entry}`);
  return { app: { kind: "elf", image, bytes }, symbolize: symbolizer(image) };
}

export async function launchBundle(bundle: Bundle, opts: LaunchOptions): Promise<Launched> {
  const m = bundle.manifest;
  const { app, symbolize } = guestApp(bundle);
  const argv = [m.name, ...(opts.args.length ? opts.args : m.args)];
  const overlayDir = opts.overlayDir ?? await Deno.makeTempDir({ prefix: "pvx-overlay-" });
  const createdAt = performance.timeOrigin + performance.now();
  const instance = Instance.create(m.memoryMiB * MiB);
  try {
    const plan = bootGuest(instance.ram.bytes, app, {
      argv,
      envp: [],
      commandLine: windowsCommandLine(argv),
      mainThreadId: FIRST_THREAD_ID,
    });
    const boot: BootState = {
      app: m.name,
      memoryBytes: instance.ram.size,
      pageTableRoot: plan.pageTableRoot,
      missingImports: plan.windows?.missingImports ?? [],
      ...(plan.threadStart === undefined ? {} : { threadStart: plan.threadStart }),
      startedAt: createdAt,
      shares: [...opts.shares ?? []],
      host: {
        environment: [...opts.environment ?? []],
        heap: plan.heap,
        virtual: plan.virtual,
        commandLineAddress: plan.commandLineAddress,
        modules: plan.windows?.moduleTable ?? { exe: plan.imageStart, modules: [] },
      },
    };
    opts.onSession?.(new InstanceSession(instance, boot, opts.bundleFile, overlayDir));
    const outcome = await instance.run(plan, runOptions(bundle, boot, overlayDir, opts));
    const bootMs = instance.firstExitAt === undefined ? undefined : instance.firstExitAt - createdAt;
    return { outcome, symbolize: symbolize ?? windowsSymbolizer(plan.windows!), bootMs };
  } finally {
    instance.close();
    if (!opts.overlayDir) await Deno.remove(overlayDir, { recursive: true });
  }
}

/** What a Windows app's lookups may reach: the manifest's rules, under the run's policy and trace when given. */
function specialCallRules(bundle: Bundle, opts: LaunchOptions): SpecialCallRules | undefined {
  const m = bundle.manifest;
  if (m.kind !== "pe") return undefined;
  const { policy, procs, libraries } = m.specialCalls;
  const tracePath = opts.specialCalls?.tracePath;
  return {
    policy: opts.specialCalls?.policy ?? policy,
    procs,
    libraries,
    ...(tracePath === undefined ? {} : { tracePath: resolve(tracePath) }),
  };
}

function runOptions(bundle: Bundle, boot: BootState, overlayDir: string, opts: LaunchOptions) {
  const specialCalls = specialCallRules(bundle, opts);
  return {
    allowedCalls: bundle.manifest.allowedCalls,
    timeoutMs: opts.timeoutMs,
    cpuLimitMs: opts.cpuLimitMs,
    cpus: opts.cpus,
    interrupt: opts.interrupt,
    ready: opts.ready,
    startPaused: opts.startPaused,
    startedAt: boot.startedAt,
    host: {
      ...boot.host,
      bundleFiles: [...bundle.files],
      overlayDir,
      shares: [...opts.shares ?? []],
      limits: opts.limits ?? {},
      ...(specialCalls ? { specialCalls } : {}),
    },
  };
}

/**
 * Starts a new instance from a snapshot of `bundle`: its RAM mapped from the
 * snapshot file (pages are read as the guest touches them), its overlay
 * unpacked into a fresh directory, its threads back where they stood.
 */
export async function restoreSnapshot(
  bundle: Bundle,
  snapshot: LoadedSnapshot,
  opts: LaunchOptions,
): Promise<Launched> {
  const { state } = snapshot;
  const boot = state.boot;
  const where = snapshot.sealedFrom ?? snapshot.file.path;
  if (bundle.manifest.name !== boot.app) {
    throw new Error(`${where}: the snapshot is of ${boot.app}, not ${bundle.manifest.name}`);
  }
  // Bundle paths and the app's own files may be on other host paths here, but the guest must see the same drive.
  const mounted = new Set((opts.shares ?? []).map((s) => s.guestPath.toLowerCase()));
  const missing = boot.shares.filter((s) => !mounted.has(s.guestPath.toLowerCase()));
  if (missing.length) {
    throw new Error(
      `${where}: the app had ${missing.map((s) => s.guestPath).join(", ")} shared; ` +
        `restore with --share <host dir>:${missing[0].guestPath}`,
    );
  }
  const symbolize = guestApp(bundle).symbolize ?? ((address: number) => `0x${address.toString(16)}`);
  const overlayDir = opts.overlayDir ?? await Deno.makeTempDir({ prefix: "pvx-overlay-" });
  const instance = Instance.adopt(mapSnapshotChain(snapshot.chain));
  try {
    unpackOverlay(snapshot.overlay, overlayDir, `${where}: overlay`);
    const pageTableRoot = boot.pageTableRoot;
    const plan = {
      entry: 0,
      stackPointer: 0,
      gsBase: 0,
      pageTableRoot,
      threadStart: boot.threadStart,
      windows: { missingImports: boot.missingImports },
      sregs: (cpu: number) => bootSregs(cpu, pageTableRoot),
    };
    const base = { id: snapshot.file.id, path: resolve(where), ...(snapshot.sealedFrom ? { sealed: true } : {}) };
    opts.onSession?.(new InstanceSession(instance, boot, opts.bundleFile, overlayDir, base));
    const outcome = await instance.run(plan, {
      ...runOptions(bundle, boot, overlayDir, opts),
      restore: state.paused,
    });
    return { outcome, symbolize };
  } finally {
    instance.close();
    if (!opts.overlayDir) await Deno.remove(overlayDir, { recursive: true });
  }
}
