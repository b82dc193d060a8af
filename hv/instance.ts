// One app in one VM. The main thread builds the guest, hands vCPU 0 to its
// own Worker, and can stop it at any moment (timeout) through kvm_run's
// immediate_exit plus a signal to the vCPU thread.

import { libc, SIGURG } from "../ffi/libc.ts";
import { Kvm, mapKvmRun, type Vm } from "./kvm.ts";
import { type GuestRam, mapGuestRam, unmapGuestRam } from "./memory.ts";
import { requestImmediateExit } from "./vcpu.ts";
import { Control, CONTROL_REQUEST, CONTROL_TID, CONTROL_WORDS, type VcpuInit, type VcpuReport } from "./vcpu_thread.ts";
import type { BootPlan } from "../guest/boot.ts";
import { releaseThread, takeThread } from "./vcpu_threads.ts";
import type { HostInit } from "./host_state.ts";

export interface InstanceOptions {
  allowedCalls: readonly string[];
  host: HostInit;
  /** Stop the guest after this many milliseconds. */
  timeoutMs?: number;
}

/** How a run ended, from the host's point of view. */
export type Outcome =
  | { kind: "exit"; code: number }
  | { kind: "fault"; cpu: number; frame: Record<string, bigint> }
  | { kind: "timeout"; cpu: number; rip: bigint; afterMs: number }
  | { kind: "violation"; cpu: number; message: string; rip: bigint }
  | { kind: "crash"; cpu: number; message: string; rip?: bigint };

export class Instance {
  #kvm: Kvm;
  #vm: Vm;
  readonly ram: GuestRam;
  #vcpuFd = -1;
  #runPage: Deno.PointerObject | null = null;
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

  /** Runs vCPU 0 from `plan` until the guest exits, faults, breaks the ABI or times out. */
  async run(plan: BootPlan, opts: InstanceOptions): Promise<Outcome> {
    this.#vcpuFd = this.#vm.createVcpu(0);
    this.#runPage = mapKvmRun(this.#vcpuFd, this.#vm.vcpuMmapSize);
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
    const init: VcpuInit = {
      vcpuFd: this.#vcpuFd,
      runPage: BigInt(Deno.UnsafePointer.value(this.#runPage)),
      runSize: this.#vm.vcpuMmapSize,
      ram: { hostAddress: this.ram.hostAddress, size: this.ram.size },
      pageTableRoot: plan.pageTableRoot,
      sregs: plan.sregs(0),
      entry: plan.entry,
      stackPointer: plan.stackPointer,
      gsBase: plan.gsBase,
      missingImports: plan.windows?.missingImports ?? [],
      cpuid: this.#kvm.supportedCpuid(),
      allowedCalls: [...opts.allowedCalls],
      host: opts.host,
      control: control.buffer as SharedArrayBuffer,
    };

    // The kick only has to interrupt KVM_RUN or a console poll(); while a listener is installed the
    // kernel delivers it to the vCPU thread instead of ignoring it.
    const onSignal = () => {};
    Deno.addSignalListener("SIGURG", onSignal);
    const worker = takeThread();
    let healthy = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    try {
      const report = new Promise<VcpuReport>((resolve) => {
        worker.onmessage = (e: MessageEvent<VcpuReport>) => resolve(e.data);
        worker.onerror = (e) => {
          e.preventDefault();
          resolve({ kind: "host-error", message: e.message });
        };
      });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          timedOut = true;
          this.#stop(control);
        }, opts.timeoutMs);
      }
      worker.postMessage(init);
      const r = await report;
      healthy = r.kind !== "host-error";
      this.firstExitAt = r.firstExitAt;
      switch (r.kind) {
        case "exit":
          return r;
        case "fault":
          return { kind: "fault", cpu: 0, frame: r.frame };
        case "stopped":
          if (timedOut) return { kind: "timeout", cpu: 0, rip: r.rip, afterMs: opts.timeoutMs! };
          return { kind: "crash", cpu: 0, message: "vCPU stopped without a stop request", rip: r.rip };
        case "violation":
          return { kind: "violation", cpu: 0, message: r.message, rip: r.rip };
        case "crash":
          return { kind: "crash", cpu: 0, message: r.message, rip: r.rip };
        case "host-error":
          throw new Error(`vCPU 0 thread failed: ${r.message}`);
      }
    } finally {
      clearTimeout(timer);
      releaseThread(worker, healthy);
      Deno.removeSignalListener("SIGURG", onSignal);
    }
  }

  /** Makes the vCPU leave KVM_RUN: immediate_exit covers a thread between runs, the signal one inside. */
  #stop(control: Int32Array): void {
    Atomics.store(control, CONTROL_REQUEST, Control.Stop);
    Atomics.notify(control, CONTROL_REQUEST);
    requestImmediateExit(this.#runPage!, true);
    const tid = Atomics.load(control, CONTROL_TID);
    if (tid !== 0) libc().tgkill(libc().getpid(), tid, SIGURG);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#runPage) libc().munmap(this.#runPage, BigInt(this.#vm.vcpuMmapSize));
    if (this.#vcpuFd >= 0) libc().close(this.#vcpuFd);
    this.#vm.close();
    unmapGuestRam(this.ram);
    this.#kvm.close();
  }
}
