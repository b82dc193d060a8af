// One app in one VM. The main thread builds the guest, gives every guest
// thread a vCPU and a Worker of its own, and ends the instance when the app
// exits, faults or breaks the ABI on any thread, or times out: every vCPU is
// then pulled out of the guest and out of any wait (hv/control_block.ts).

import { libc } from "../ffi/libc.ts";
import { Kvm, mapKvmRun, type Vm } from "./kvm.ts";
import { type GuestRam, mapGuestRam, unmapGuestRam } from "./memory.ts";
import type { ServiceInit, ServiceMessage, ThreadStart, VcpuInit, VcpuReport } from "./vcpu_thread.ts";
import type { BootPlan } from "../guest/boot.ts";
import { releaseThread, takeThread } from "./vcpu_threads.ts";
import type { HostInit } from "./host_state.ts";
import { ControlBlock } from "./control_block.ts";
import { maxVcpus } from "../guest/memory_map.ts";
import { FIRST_THREAD_ID } from "./guest_threads.ts";

export interface InstanceOptions {
  allowedCalls: readonly string[];
  host: HostInit;
  /** Stop the guest after this many milliseconds. */
  timeoutMs?: number;
  /** Stop the guest when this aborts (its reason, such as "SIGINT", is reported), as a timeout does. */
  interrupt?: AbortSignal;
  /** At most this many vCPUs in the guest at once (default: no cap beyond the host's scheduler). */
  cpus?: number;
  /** Epoch milliseconds the instance counts GetTickCount64 from. */
  startedAt: number;
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
  | { kind: "interrupted"; reason: string; threads: (At & { rip: bigint })[] }
  | At & { kind: "violation"; message: string; rip: bigint }
  | At & { kind: "crash"; message: string; rip?: bigint };

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
  readonly #vcpus = new Map<number, VcpuSlot>();
  #closed = false;
  /** Epoch ms when the guest first exited to the host: the end of boot. */
  firstExitAt?: number;

  private constructor(kvm: Kvm, vm: Vm, ram: GuestRam) {
    this.#kvm = kvm;
    this.#vm = vm;
    this.ram = ram;
  }

  /** Creates the VM and its RAM; the caller writes the guest image into `ram` before `run`. */
  static create(memoryBytes: number): Instance {
    const kvm = new Kvm();
    let vm: Vm | undefined;
    let ram: GuestRam | undefined;
    try {
      vm = kvm.createVm();
      ram = mapGuestRam(memoryBytes);
      vm.setUserMemoryRegion({
        slot: 0,
        flags: 0,
        guestPhysAddr: 0n,
        size: BigInt(memoryBytes),
        hostAddr: ram.hostAddress,
      });
      return new Instance(kvm, vm, ram);
    } catch (e) {
      if (ram) unmapGuestRam(ram);
      vm?.close();
      kvm.close();
      throw e;
    }
  }

  /** Runs the app from `plan` until it exits, faults, breaks the ABI or times out, on any of its threads. */
  async run(plan: BootPlan, opts: InstanceOptions): Promise<Outcome> {
    const control = new ControlBlock({ cpus: Math.min(opts.cpus ?? maxVcpus, maxVcpus) });
    const threaded = plan.threadStart !== undefined && opts.allowedCalls.includes("CreateThread");
    const ram = { hostAddress: this.ram.hostAddress, size: this.ram.size };
    const cpuid = this.#kvm.supportedCpuid();
    const pending = new Map<number, ThreadStart>();
    let outcome: Outcome | undefined;
    let hostError: string | undefined;
    /** Why every thread is being stopped and reported, when nothing inside the guest ended it. */
    let stoppedFromOutside: { kind: "timeout" } | { kind: "interrupted"; reason: string } | undefined;
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
        outcome = stoppedFromOutside.kind === "timeout"
          ? { kind: "timeout", afterMs: opts.timeoutMs!, threads }
          : { kind: "interrupted", reason: stoppedFromOutside.reason, threads };
      }
      if (serviceRunning) return control.quitService();
      finish();
    };

    const start = (thread: ThreadStart) => {
      if (outcome !== undefined || hostError !== undefined) return;
      let slot = this.#vcpus.get(thread.cpu);
      if (slot?.threadId !== undefined) {
        // The slot's last thread has ended but its Worker has not said so yet.
        pending.set(thread.cpu, thread);
        return;
      }
      try {
        slot ??= this.#newVcpu(thread.cpu, (r) => report(thread.cpu, r));
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
        host: threaded ? undefined : opts.host,
        control: control.buffer,
        startedAt: opts.startedAt,
      };
      slot.fresh = false;
      slot.worker.postMessage(init);
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
          else if (m.kind === "host-error") end({ hostError: `host services failed: ${m.message}` });
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
        };
        service.postMessage(init);
      }
      start({
        cpu: 0,
        threadId: FIRST_THREAD_ID,
        rip: plan.entry,
        rsp: plan.stackPointer,
        rbx: 0n,
        parameter: 0n,
        gsBase: plan.gsBase,
      });
      await finished;
      if (hostError !== undefined) throw new Error(hostError);
      return outcome!;
    } finally {
      clearTimeout(timer);
      opts.interrupt?.removeEventListener("abort", onInterrupt);
      service?.terminate();
      for (const slot of this.#vcpus.values()) {
        releaseThread(slot.worker, slot.healthy);
      }
      Deno.removeSignalListener("SIGURG", onSignal);
    }
  }

  #newVcpu(cpu: number, onReport: (r: VcpuReport) => void): VcpuSlot {
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
