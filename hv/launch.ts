// From bundle to outcome: parse the entry, build the guest, run it, clean up.

import type { Bundle } from "../tools/bundle.ts";
import { type ElfImage, nearestSymbol, parseElf } from "../guest/elf.ts";
import { bootGuest, type GuestApp } from "../guest/boot.ts";
import { windowsSymbolizer } from "../guest/windows.ts";
import { MiB } from "../guest/memory_map.ts";
import { windowsCommandLine } from "../abi/host.ts";
import type { ShareSpec } from "../abi/fileview.ts";
import { Instance, type Outcome } from "./instance.ts";
import { FIRST_THREAD_ID } from "./guest_threads.ts";

export interface LaunchOptions {
  args: readonly string[];
  timeoutMs?: number;
  shares?: readonly ShareSpec[];
  environment?: ReadonlyMap<string, string>;
  /** Keep the instance's writes here; by default they go to a temporary overlay removed afterwards. */
  overlayDir?: string;
  /** At most this many guest threads run at once. */
  cpus?: number;
  /** Stops the guest, reporting where every thread was, when it aborts. */
  interrupt?: AbortSignal;
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
  if (m.kind === "pe") return { app: { kind: "pe", files: bundle.files, entry: m.entry } };
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
    const outcome = await instance.run(plan, {
      allowedCalls: m.allowedCalls,
      timeoutMs: opts.timeoutMs,
      cpus: opts.cpus,
      interrupt: opts.interrupt,
      startedAt: createdAt,
      host: {
        bundleFiles: [...bundle.files],
        overlayDir,
        shares: [...opts.shares ?? []],
        environment: [...opts.environment ?? []],
        heap: plan.heap,
        virtual: plan.virtual,
        commandLineAddress: plan.commandLineAddress,
        modules: plan.windows?.moduleTable ?? { exe: plan.imageStart, modules: [] },
      },
    });
    const bootMs = instance.firstExitAt === undefined ? undefined : instance.firstExitAt - createdAt;
    return { outcome, symbolize: symbolize ?? windowsSymbolizer(plan.windows!), bootMs };
  } finally {
    instance.close();
    if (!opts.overlayDir) await Deno.remove(overlayDir, { recursive: true });
  }
}
