// One app in one VM. The main thread builds the guest, gives every guest
// thread a vCPU and a Worker of its own, and ends the instance when the app
// exits, faults or breaks the ABI on any thread, or times out: every vCPU is
// then pulled out of the guest and out of any wait (hv/control_block.ts).

import { libc, processCpuMicros } from "../ffi/libc.ts";
import { Kvm, mapKvmRun, type Vm } from "./kvm.ts";
import { type GuestRam, mapGuestRam, unmapGuestRam } from "./memory.ts";
import type {
  ParkedThread,
  ReadyPoint,
  ServiceInit,
  ServiceMessage,
  SharedRam,
  ThreadRestore,
  VcpuInit,
  VcpuMessage,
  VcpuReport,
} from "./vcpu_thread.ts";
import type { ThreadStart } from "./guest_threads.ts";
import type { BootPlan } from "../guest/boot.ts";
import { releaseThread, takeThread } from "./vcpu_threads.ts";
import type { HostInit, HostState } from "./host_state.ts";
import type { GuestThreadsState } from "./guest_threads.ts";
import type { SyncObjectsState } from "../abi/sync_objects.ts";
import { ControlBlock } from "./control_block.ts";
import { type HypercallStats, type HypercallTotals, noHypercalls } from "./hypercall_stats.ts";
import { DirtyLog } from "./dirty_log.ts";
import { maxVcpus, PAGE } from "../abi/memory_map.ts";
import { FIRST_THREAD_ID } from "./guest_threads.ts";

export interface InstanceOptions {
  allowedCalls: readonly string[];
  host: HostInit;
  /** Stop the guest after this many milliseconds. */
  timeoutMs?: number;
  /** Stop the guest once this process has used this many milliseconds of CPU time since the run began. */
  cpuLimitMs?: number;
  /** Stop the guest when this aborts (its reason, such as "SIGINT", is reported), as a timeout does. */
  interrupt?: AbortSignal;
  /** At most this many vCPUs in the guest at once (default: no cap beyond the host's scheduler). */
  cpus?: number;
  /** Guest-clock milliseconds the instance counts GetTickCount64 from. */
  startedAt: number;
  /** Rebuild the guest from a snapshot's state instead of starting it at its entry point. */
  restore?: PausedState;
  /** A template's ready point: `reached` is called when the app gets there, where it then waits to be paused. */
  ready?: { at: ReadyPoint; reached(): void };
  /** Park every vCPU before the guest runs an instruction: the instance waits, paused, for a resume. */
  startPaused?: boolean;
}

/** What `run` needs of a boot: where the first thread starts and what every vCPU is set up with. */
export type RunPlan =
  & Pick<BootPlan, "entry" | "stackPointer" | "gsBase" | "pageTableRoot" | "threadStart" | "sregs">
  & { windows?: { missingImports: string[] } };

/**
 * A paused instance, every vCPU parked: its threads where they stood, the
 * guest clock at the pause, and the host state they share. A snapshot saves
 * it; a restored instance starts from it.
 */
export interface PausedState {
  threads: ParkedThread[];
  guestNow: number;
  host: HostState;
  /** The threads the app created, when it can create any. */
  guestThreads?: GuestThreadsState;
  sync: SyncObjectsState;
  liveThreads: number;
}

/** Refused to pause, snapshot or resume, with the reason. */
export class InstanceStateError extends Error {
  override name = "InstanceStateError";
}

/** Where on the guest something happened. */
interface At {
  cpu: number;
  threadId: number;
}

/** How a run ended, from the host's point of view. */
export type Outcome =
  | { kind: "exit"; code: number }
  | At & { kind: "fault"; frame: Record<string, bigint> }
  | { kind: "timeout"; afterMs: number; threads: (At & { rip: bigint })[] }
  | { kind: "cpu-limit"; limitMs: number; threads: (At & { rip: bigint })[] }
  | { kind: "interrupted"; reason: string; threads: (At & { rip: bigint })[] }
  | At & { kind: "violation"; message: string; rip: bigint }
  | At & { kind: "crash"; message: string; rip?: bigint }
  | { kind: "snapshotted"; to: string };

interface LiveRun {
  control: ControlBlock;
  pause?: {
    guestNow: number;
    parked: Map<number, ParkedThread>;
    /** From the thread that keeps it: the only vCPU's, or the host-services thread, asked once all have parked. */
    host?: HostState;
    guestThreads?: GuestThreadsState;
    settled: () => void;
    /** Resolves once every vCPU has parked, or the app has ended. */
    done: Promise<void>;
  };
  threaded: boolean;
  ended: boolean;
  stopAfterSnapshot(to: string): void;
}

interface VcpuSlot {
  fd: number;
  runPage: Deno.PointerObject;
  worker: Worker;
  fresh: boolean;
  /** Running a guest thread now, with this id. */
  threadId?: number;
  healthy: boolean;
}

export class Instance {
  #kvm: Kvm;
  #vm: Vm;
  readonly ram: GuestRam;
  readonly #dirty: DirtyLog;
  readonly #vcpus = new Map<number, VcpuSlot>();
  #closed = false;
  /** Epoch ms when the guest first exited to the host: the end of boot. */
  firstExitAt?: number;
  /** Set while `run` runs: how pause, resume and stop reach it. */
  #live?: LiveRun;
  /** The last run's: kept once it ends, for a final report. */
  #hypercalls?: HypercallStats;

  private constructor(kvm: Kvm, vm: Vm, ram: GuestRam, dirty: DirtyLog) {
    this.#kvm = kvm;
    this.#vm = vm;
    this.ram = ram;
    this.#dirty = dirty;
  }

  /** Creates the VM and its RAM; the caller writes the guest image into `ram` before `run`. */
  static create(memoryBytes: number): Instance {
    return Instance.#make(mapGuestRam(memoryBytes), false);
  }

  /** Creates the VM around `ram` (a snapshot's, say), which the instance unmaps when it closes. */
  static adopt(ram: GuestRam): Instance {
    // Its snapshot is what a diff of it counts from, so its writes are logged from the start.
    return Instance.#make(ram, true);
  }

  static #make(ram: GuestRam, logDirtyNow: boolean): Instance {
    const kvm = new Kvm();
    let vm: Vm | undefined;
    try {
      vm = kvm.createVm();
      return new Instance(kvm, vm, ram, DirtyLog.register(kvm, vm, ram, logDirtyNow));
    } catch (e) {
      unmapGuestRam(ram);
      vm?.close();
      kvm.close();
      throw e;
    }
  }

  /** Runs the app from `plan` until it exits, faults, breaks the ABI or times out, on any of its threads. */
  async run(plan: RunPlan, opts: InstanceOptions): Promise<Outcome> {
    const control = new ControlBlock({ cpus: Math.min(opts.cpus ?? maxVcpus, maxVcpus) });
    this.#hypercalls = control.hypercalls;
    const threaded = plan.threadStart !== undefined && opts.allowedCalls.includes("CreateThread");
    const ram: SharedRam = {
      hostAddress: this.ram.hostAddress,
      size: this.ram.size,
      writes: this.#dirty.hostWrites.buffer,
    };
    const cpuid = this.#kvm.supportedCpuid();
    const pending = new Map<number, ThreadStart>();
    let outcome: Outcome | undefined;
    let hostError: string | undefined;
    /** Why every thread is being stopped and reported, when nothing inside the guest ended it. */
    let stoppedFromOutside:
      | { kind: "timeout" }
      | { kind: "cpu-limit" }
      | { kind: "interrupted"; reason: string }
      | { kind: "snapshotted"; to: string }
      | undefined;
    const stoppedThreads: (At & { rip: bigint })[] = [];
    let service: Worker | undefined;
    let serviceRunning = false;
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => finish = resolve);

    const end = (o: Outcome | { hostError: string }) => {
      if (outcome === undefined && hostError === undefined) {
        if ("hostError" in o) hostError = o.hostError;
        else outcome = o;
        control.requestStop();
      }
      settle();
    };
    // Done once every vCPU has left and the host services have answered their last call.
    const settle = () => {
      if (outcome === undefined && hostError === undefined && !stoppedFromOutside) return;
      if ([...this.#vcpus.values()].some((v) => v.threadId !== undefined)) return;
      if (outcome === undefined && stoppedFromOutside) {
        const threads = stoppedThreads.sort((a, b) => a.cpu - b.cpu);
        const why = stoppedFromOutside;
        outcome = why.kind === "timeout"
          ? { kind: "timeout", afterMs: opts.timeoutMs!, threads }
          : why.kind === "cpu-limit"
          ? { kind: "cpu-limit", limitMs: opts.cpuLimitMs!, threads }
          : why.kind === "interrupted"
          ? { kind: "interrupted", reason: why.reason, threads }
          : why;
      }
      if (serviceRunning) return control.quitService();
      finish();
    };

    const start = (thread: ThreadStart, restore?: ThreadRestore) => {
      if (outcome !== undefined || hostError !== undefined) return;
      let slot = this.#vcpus.get(thread.cpu);
      if (slot?.threadId !== undefined) {
        // The slot's last thread has ended but its Worker has not said so yet.
        pending.set(thread.cpu, thread);
        return;
      }
      try {
        slot ??= this.#newVcpu(thread.cpu, (m) => onMessage(thread.cpu, m));
      } catch (e) {
        return end({ hostError: `could not start vCPU ${thread.cpu}: ${(e as Error).message}` });
      }
      slot.threadId = thread.threadId;
      const init: VcpuInit = {
        thread,
        vcpuFd: slot.fd,
        runPage: BigInt(Deno.UnsafePointer.value(slot.runPage)),
        runSize: this.#vm.vcpuMmapSize,
        fresh: slot.fresh,
        ram,
        pageTableRoot: plan.pageTableRoot,
        sregs: plan.sregs(thread.cpu),
        missingImports: plan.windows?.missingImports ?? [],
        cpuid,
        allowedCalls: [...opts.allowedCalls],
        specialCalls: opts.host.specialCalls,
        host: threaded ? undefined : opts.host,
        control: control.buffer,
        startedAt: opts.startedAt,
        ...(restore ? { restore } : {}),
        // The first console read is seen by whoever keeps the host state; a PvxReady call by any thread.
        ...(opts.ready && (opts.ready.at === "call" || !threaded) ? { readyAt: opts.ready.at } : {}),
      };
      slot.fresh = false;
      slot.worker.postMessage(init);
    };

    const live = this.#live = {
      control,
      threaded,
      ended: false,
      stopAfterSnapshot: (to: string) => stopFromOutside({ kind: "snapshotted", to }),
    } as LiveRun;
    const onMessage = (cpu: number, m: VcpuMessage) => {
      if (m.kind === "ready") return opts.ready?.reached();
      if (m.kind !== "parked") return report(cpu, m);
      if (!live.pause) return;
      live.pause.parked.set(cpu, m.thread);
      if (m.host) live.pause.host = m.host;
      live.pause.settled();
    };

    const report = (cpu: number, r: VcpuReport) => {
      const slot = this.#vcpus.get(cpu)!;
      const at = { cpu, threadId: slot.threadId! };
      slot.threadId = undefined;
      if (cpu === 0) this.firstExitAt ??= r.firstExitAt;
      switch (r.kind) {
        case "thread-exit":
          break;
        case "exit":
          end({ kind: "exit", code: r.code });
          break;
        case "fault":
          end({ ...at, kind: "fault", frame: r.frame });
          break;
        case "stopped":
          // A stop from outside reports where every thread was; any other follows the outcome that caused it.
          if (stoppedFromOutside) stoppedThreads.push({ ...at, rip: r.rip });
          else end({ ...at, kind: "crash", message: "vCPU stopped without a stop request", rip: r.rip });
          break;
        case "violation":
          end({ ...at, kind: "violation", message: r.message, rip: r.rip });
          break;
        case "crash":
          end({ ...at, kind: "crash", message: r.message, rip: r.rip });
          break;
        case "host-error":
          slot.healthy = false;
          end({ hostError: `vCPU ${cpu} thread failed: ${r.message}` });
          break;
      }
      const next = pending.get(cpu);
      pending.delete(cpu);
      if (next) start(next);
      live.pause?.settled();
      settle();
    };

    // The kick only has to interrupt KVM_RUN or a console poll(); while a listener is installed the
    // kernel delivers it to the vCPU thread instead of ignoring it.
    const onSignal = () => {};
    Deno.addSignalListener("SIGURG", onSignal);
    const stopFromOutside = (why: NonNullable<typeof stoppedFromOutside>) => {
      if (outcome !== undefined || hostError !== undefined || stoppedFromOutside) return;
      stoppedFromOutside = why;
      control.requestStop();
    };
    const timer = opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => stopFromOutside({ kind: "timeout" }), opts.timeoutMs);
    const cpuWatch = opts.cpuLimitMs === undefined
      ? undefined
      : watchCpuTime(opts.cpuLimitMs, () => stopFromOutside({ kind: "cpu-limit" }));
    const onInterrupt = () => stopFromOutside({ kind: "interrupted", reason: String(opts.interrupt!.reason) });
    if (opts.interrupt?.aborted) onInterrupt();
    opts.interrupt?.addEventListener("abort", onInterrupt);
    try {
      if (threaded) {
        service = new Worker(new URL("./host_worker.ts", import.meta.url), { type: "module" });
        serviceRunning = true;
        service.onmessage = (e: MessageEvent<ServiceMessage>) => {
          const m = e.data;
          if (m.kind === "start-thread") start(m.thread);
          else if (m.kind === "ready") opts.ready?.reached();
          else if (m.kind === "state") {
            if (live.pause) [live.pause.host, live.pause.guestThreads] = [m.host, m.threads];
            live.pause?.settled();
          } else if (m.kind === "host-error") end({ hostError: `host services failed: ${m.message}` });
          else {
            serviceRunning = false;
            settle();
          }
        };
        service.onerror = (e) => {
          e.preventDefault();
          serviceRunning = false;
          control.serviceDied();
          end({ hostError: `host services failed: ${e.message}` });
        };
        const init: ServiceInit = {
          ram,
          pageTableRoot: plan.pageTableRoot,
          allowedCalls: [...opts.allowedCalls],
          host: opts.host,
          threadStart: plan.threadStart!,
          control: control.buffer,
          ...(opts.restore ? { restore: { host: opts.restore.host, threads: opts.restore.guestThreads! } } : {}),
          ...(opts.ready?.at === "first-input" ? { readyAt: opts.ready.at } : {}),
        };
        service.postMessage(init);
      }
      const first: ThreadStart = {
        cpu: 0,
        threadId: FIRST_THREAD_ID,
        rip: plan.entry,
        rsp: plan.stackPointer,
        rbx: 0n,
        parameter: 0n,
        gsBase: plan.gsBase,
      };
      if (opts.restore) {
        const { threads, guestNow, host, guestThreads, sync, liveThreads } = opts.restore;
        if (threaded !== (guestThreads !== undefined)) {
          throw new InstanceStateError("the snapshot's app and this bundle disagree on whether it can create threads");
        }
        control.sync.restore(sync, "snapshot: sync objects");
        control.liveThreads = liveThreads;
        control.continueClockFrom(guestNow);
        // Every thread is reachable by the others (SuspendThread, TerminateThread) before any of them runs.
        for (const { cpu, threadId, requests } of threads) control.claim(cpu, threadId, requests);
        for (const { cpu, threadId, object, lastError, vcpu, pending } of threads) {
          // Without a host-services thread, the only vCPU keeps the host state.
          const restore = { lastError, vcpu, ...(pending ? { pending } : {}), ...(threaded ? {} : { host }) };
          start({ ...first, cpu, threadId, ...(object ? { object } : {}) }, restore);
        }
      } else {
        control.claim(first.cpu, first.threadId);
        start(first);
      }
      // Asked before any vCPU's thread has entered the guest: each parks at its first check.
      if (opts.startPaused) this.pause().catch(() => {});
      await finished;
      if (hostError !== undefined) throw new Error(hostError);
      return outcome!;
    } finally {
      live.ended = true;
      live.pause?.settled();
      this.#live = undefined;
      clearTimeout(timer);
      clearInterval(cpuWatch);
      opts.interrupt?.removeEventListener("abort", onInterrupt);
      service?.terminate();
      for (const slot of this.#vcpus.values()) {
        releaseThread(slot.worker, slot.healthy);
      }
      Deno.removeSignalListener("SIGURG", onSignal);
    }
  }

  /** The hypercalls this process served (a restore counts from zero), and how much of guest RAM is resident. */
  stats(): { hypercalls: HypercallTotals; residentPages: number; pages: number } {
    return {
      hypercalls: this.#hypercalls?.totals() ?? noHypercalls(),
      residentPages: this.#closed ? 0 : this.ram.residentPages(),
      pages: this.ram.size / PAGE,
    };
  }

  /**
   * Parks every vCPU (hv/vcpu_worker.ts): each stops at an instruction
   * boundary or inside the wait it is in, with no hypercall half done.
   * Resolves once all have parked, with what a snapshot needs of them.
   */
  async pause(): Promise<PausedState> {
    const live = this.#running();
    if (live.pause) throw new InstanceStateError("the instance is already paused");
    let settled!: () => void;
    const all = new Promise<void>((resolve) => settled = resolve);
    let askedService = false;
    const pause: NonNullable<LiveRun["pause"]> = live.pause = {
      guestNow: live.control.requestPause(),
      parked: new Map<number, ParkedThread>(),
      done: all,
      settled: () => {
        if (live.ended) return settled();
        const running = [...this.#vcpus].filter(([, slot]) => slot.threadId !== undefined);
        if (!running.every(([cpu]) => pause.parked.has(cpu))) return;
        // Only now can no vCPU make a call that changes what the host-services thread keeps.
        if (live.threaded && !askedService) {
          askedService = true;
          live.control.requestServiceState();
        }
        if (pause.host) settled();
      },
    };
    pause.settled();
    await all;
    if (live.ended) throw new InstanceStateError("the app ended while it was being paused");
    return this.pausedState!;
  }

  /** Unparks every vCPU; the guest's clocks skip the time it was paused. */
  resume(): void {
    const live = this.#running();
    if (!live.pause) throw new InstanceStateError("the instance is not paused");
    live.pause = undefined;
    live.control.resume();
  }

  /** The state of a paused instance, once a pause under way has settled; undefined if it is not paused. */
  async settledPause(): Promise<PausedState | undefined> {
    await this.#live?.pause?.done;
    return this.pausedState;
  }

  /** The state of a paused instance, once every vCPU has parked. */
  get pausedState(): PausedState | undefined {
    const live = this.#live, pause = live?.pause;
    if (!live || !pause?.host) return undefined;
    return {
      // Read once every vCPU has parked: what was asked of a thread after it parked is here too.
      threads: [...pause.parked.values()].sort((a, b) => a.cpu - b.cpu).map((t) => {
        const requests = live.control.requests(t.cpu);
        return requests.suspendCount || requests.terminate !== undefined ? { ...t, requests } : t;
      }),
      guestNow: pause.guestNow,
      host: pause.host,
      ...(pause.guestThreads ? { guestThreads: pause.guestThreads } : {}),
      sync: live.control.sync.save(),
      liveThreads: live.control.liveThreads,
    };
  }

  /**
   * The pages of guest RAM written, by the guest or the host, since the last call (or since a restored instance
   * was created): what a diff snapshot stores. Undefined when that is not known: at a booted instance's first
   * call, which starts the count, or where KVM cannot log. Pages that could not be saved go back with
   * `giveBackDirtyPages`.
   */
  takeDirtyPages(): number[] | undefined {
    return this.#dirty.take();
  }

  giveBackDirtyPages(pages: Iterable<number>): void {
    this.#dirty.giveBack(pages);
  }

  /** Ends a paused instance whose state was saved to `to`: `run` resolves with a "snapshotted" outcome. */
  stopAfterSnapshot(to: string): void {
    this.#running().stopAfterSnapshot(to);
  }

  #running(): LiveRun {
    if (!this.#live || this.#live.ended) throw new InstanceStateError("the instance is not running");
    return this.#live;
  }

  #newVcpu(cpu: number, onReport: (m: VcpuMessage) => void): VcpuSlot {
    const fd = this.#vm.createVcpu(cpu);
    let runPage: Deno.PointerObject;
    try {
      runPage = mapKvmRun(fd, this.#vm.vcpuMmapSize);
    } catch (e) {
      libc().close(fd);
      throw e;
    }
    const worker = takeThread();
    const slot: VcpuSlot = { fd, runPage, worker, fresh: true, healthy: true };
    worker.onmessage = (e: MessageEvent<VcpuReport>) => onReport(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      onReport({ kind: "host-error", message: e.message });
    };
    this.#vcpus.set(cpu, slot);
    return slot;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const slot of this.#vcpus.values()) {
      libc().munmap(slot.runPage, BigInt(this.#vm.vcpuMmapSize));
      libc().close(slot.fd);
    }
    this.#vm.close();
    unmapGuestRam(this.ram);
    this.#kvm.close();
  }
}

/**
 * Calls `exceeded` once this process has used `limitMs` of CPU time from now: its vCPU threads' guest time
 * (which Linux counts as theirs) and its host work together, as `ulimit -t` counts. Checked a few times per
 * limit, so it stops the guest within a tenth of the limit (and at most 250 ms) past it.
 */
function watchCpuTime(limitMs: number, exceeded: () => void): ReturnType<typeof setInterval> {
  const usedMs = () => processCpuMicros() / 1000;
  const from = usedMs();
  return setInterval(() => {
    if (usedMs() - from >= limitMs) exceeded();
  }, Math.min(250, Math.max(10, limitMs / 10)));
}
