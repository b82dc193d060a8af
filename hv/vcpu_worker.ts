// Worker entry: owns one vCPU for its whole life and runs the exit loop. Every
// KVM_RUN is a synchronous FFI call on this thread, so the vCPU never migrates.

/// <reference lib="deno.worker" />
import { libc } from "../ffi/libc.ts";
import { Vcpu, type VmExit } from "./vcpu.ts";
import { Control, CONTROL_REQUEST, CONTROL_TID, type VcpuInit, type VcpuReport } from "./vcpu_thread.ts";
import { GuestRam } from "./memory.ts";
import { PageTables } from "../guest/paging.ts";
import { faultFrameFields, faultFrameSize, STAR } from "../guest/kernel.ts";
import { AbiViolation, Dispatcher, type Thread } from "../abi/dispatch.ts";
import { hostHandlers } from "../abi/host.ts";
import { createHost } from "./host_state.ts";
import { win32Constants } from "../abi/win32.ts";
import { FAULT_DOORBELL, hypercallNumber, MISSING_IMPORT_DOORBELL } from "../abi/doorbell.ts";
import { msrs } from "../ffi/kvm.ts";

const INFINITE = win32Constants.INFINITE;

/** Epoch milliseconds, comparable across threads. */
const now = () => performance.timeOrigin + performance.now();

function run(init: VcpuInit, times: { firstExitAt?: number }): VcpuReport {
  const control = new Int32Array(init.control);
  Atomics.store(control, CONTROL_TID, libc().gettid());
  const vcpu = new Vcpu(init.vcpuFd, Deno.UnsafePointer.create(init.runPage)!, init.runSize);
  vcpu.setCpuid(init.cpuid);
  vcpu.setSregs(init.sregs);
  // SYSCALL is not used yet, but a sane STAR keeps a stray one from loading garbage selectors.
  vcpu.setMsrs(new Map([[msrs.MSR_STAR, STAR], [msrs.MSR_GS_BASE, BigInt(init.gsBase)]]));
  const regs = vcpu.getRegs();
  for (const k of Object.keys(regs) as (keyof typeof regs)[]) regs[k] = 0n;
  regs.rip = BigInt(init.entry);
  regs.rsp = BigInt(init.stackPointer);
  regs.rflags = 2n;
  vcpu.setRegs(regs);

  const ram = new GuestRam(init.ram.hostAddress, init.ram.size);
  const pages = new PageTables(ram.bytes, init.pageTableRoot);
  let exitCode: number | undefined;
  const host = createHost(init.host, ram.bytes, pages, {
    exit: (code) => exitCode = code,
    stopping: () => Atomics.load(control, CONTROL_REQUEST) === Control.Stop,
    // Waiting on the control word lets a stop request (timeout, exit) cut a sleep short.
    sleep: (ms) => {
      if (ms === 0) libc().sched_yield();
      else Atomics.wait(control, CONTROL_REQUEST, Control.Run, ms === INFINITE ? undefined : ms);
    },
  });
  const dispatcher = new Dispatcher({ bytes: ram.bytes, view: ram.view, pages }, hostHandlers(host), init.allowedCalls);
  const thread: Thread = { lastError: 0 };
  const rip = () => vcpu.getRegs().rip;

  for (;;) {
    const exit: VmExit = vcpu.run();
    times.firstExitAt ??= now();
    switch (exit.kind) {
      case "mmio": {
        const frame = Number(exit.data & 0xffffffffn);
        const nr = exit.isWrite && exit.length === 4 ? hypercallNumber(exit.address) : undefined;
        if (nr !== undefined) {
          try {
            if (dispatcher.dispatch(nr, frame, thread).flushesTlb) vcpu.flushTranslations();
          } catch (e) {
            if (e instanceof AbiViolation) return { kind: "violation", message: e.message, rip: rip() };
            throw e;
          }
          if (exitCode !== undefined) return { kind: "exit", code: exitCode };
          continue;
        }
        if (exit.isWrite && exit.length === 4 && exit.address === BigInt(FAULT_DOORBELL)) {
          return { kind: "fault", frame: readFaultFrame(ram, frame) };
        }
        if (exit.isWrite && exit.length === 4 && exit.address === BigInt(MISSING_IMPORT_DOORBELL)) {
          const name = init.missingImports[frame] ?? `import #${frame}`;
          return { kind: "crash", message: `called ${name}, which pvx does not implement`, rip: rip() };
        }
        const what = exit.isWrite ? `${exit.length}-byte write to` : `${exit.length}-byte read from`;
        return {
          kind: "crash",
          message: `${what} unbacked guest-physical address 0x${exit.address.toString(16)}`,
          rip: rip(),
        };
      }
      case "io-out":
      case "io-in":
        return {
          kind: "crash",
          message: `port I/O to 0x${exit.port.toString(16)}: pvx guests call the host through the doorbell, not ports`,
          rip: rip(),
        };
      case "interrupted":
        if (Atomics.load(control, CONTROL_REQUEST) === Control.Stop) return { kind: "stopped", rip: rip() };
        continue;
      case "hlt":
        return { kind: "crash", message: "guest executed HLT with interrupts off: it can never resume", rip: rip() };
      case "shutdown":
        return { kind: "crash", message: "triple fault (the exception handlers themselves faulted)", rip: rip() };
      case "fail-entry":
        return {
          kind: "crash",
          message: `KVM could not enter the guest (hardware reason 0x${exit.reason.toString(16)})`,
        };
      case "internal-error":
        return { kind: "crash", message: `KVM internal error, suberror ${exit.suberror}`, rip: rip() };
      case "system-event":
        return { kind: "crash", message: `KVM system event ${exit.type}`, rip: rip() };
      case "unknown":
        return { kind: "crash", message: `unhandled KVM exit reason ${exit.reason}`, rip: rip() };
    }
  }
}

function readFaultFrame(ram: GuestRam, address: number): Record<string, bigint> {
  ram.check(address, faultFrameSize);
  const frame: Record<string, bigint> = {};
  faultFrameFields.forEach((name, i) => frame[name] = ram.view.getBigUint64(address + 8 * i, true));
  return frame;
}

self.onmessage = (e: MessageEvent<VcpuInit>) => {
  const times: { firstExitAt?: number } = {};
  let report: VcpuReport;
  try {
    report = run(e.data, times);
  } catch (err) {
    report = { kind: "host-error", message: err instanceof Error ? `${err.message}\n${err.stack}` : String(err) };
  }
  self.postMessage({ ...report, ...times });
};
