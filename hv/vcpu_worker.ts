// Worker entry: runs one guest thread on one vCPU. Every KVM_RUN is a
// synchronous FFI call on this thread, so the vCPU never migrates, and the
// calls a thread makes about itself (waits, sleeps, exits, last error, time)
// are answered here; the rest go to the instance's host services.

/// <reference lib="deno.worker" />
import { libc } from "../ffi/libc.ts";
import { requestImmediateExit, Vcpu, type VmExit } from "./vcpu.ts";
import type { ParkedThread, VcpuInit, VcpuMessage, VcpuReport } from "./vcpu_thread.ts";
import { restoreVcpu, saveVcpu } from "./vcpu_state.ts";
import type { WaitControl } from "../abi/sync_objects.ts";
import { GuestRam } from "./memory.ts";
import { PageTables } from "../guest/paging.ts";
import { HostWrites } from "../abi/host_writes.ts";
import { faultFrameFields, faultFrameSize, kernelModeSregs, STAR, UPDATE_PAGE_TABLES } from "../guest/kernel.ts";
import { pageTableUpdates, pebBase } from "../abi/memory_map.ts";
import { Dispatcher, type Thread } from "../abi/dispatch.ts";
import { AbiViolation } from "../abi/call_errors.ts";
import { SpecialCalls } from "../abi/special_calls.ts";
import type { ThreadContext } from "../abi/handler_context.ts";
import { threadHandlers } from "../abi/handlers/threads.ts";
import { win32Constants } from "../abi/win32.ts";
import { callsByNr } from "../abi/calls.ts";
import {
  FAULT_DOORBELL,
  hypercallNumber,
  MISSING_IMPORT_DOORBELL,
  PAGE_TABLES_UPDATED_DOORBELL,
} from "../abi/doorbell.ts";
import { msrs } from "../ffi/kvm.ts";
import { ControlBlock, THREAD_EXITED } from "./control_block.ts";
import { TEB_LAST_ERROR, tebAddress } from "../guest/teb.ts";
import {
  CONTEXT_SIZE,
  EXCEPTION_FRAME_SIZE,
  faultException,
  PEB_FAULT_ENTRY,
  TEB_IN_FAULT,
  writeExceptionFrame,
} from "../guest/exception_frame.ts";
import { HostService } from "./host_service.ts";

const INFINITE = win32Constants.INFINITE;

/** Epoch milliseconds, comparable across threads. */
const now = () => performance.timeOrigin + performance.now();

function run(init: VcpuInit, control: ControlBlock, times: { firstExitAt?: number }): VcpuReport {
  const { cpu, threadId } = init.thread;
  const runPage = Deno.UnsafePointer.create(init.runPage)!;
  const vcpu = new Vcpu(init.vcpuFd, runPage, init.runSize);
  if (init.restore) {
    restoreVcpu(vcpu, init.restore.vcpu);
  } else {
    if (init.fresh) vcpu.setCpuid(init.cpuid);
    startThread(vcpu, init);
  }

  const ram = new GuestRam(init.ram.hostAddress, init.ram.size);
  const writes = new HostWrites(init.ram.writes);
  const pages = new PageTables(ram.bytes, init.pageTableRoot, writes);
  const lastErrorAt = tebAddress(cpu) + TEB_LAST_ERROR;
  const thread: Thread = {
    id: threadId,
    get lastError() {
      return ram.view.getUint32(lastErrorAt, true);
    },
    set lastError(code: number) {
      ram.view.setUint32(lastErrorAt, code >>> 0, true);
      writes.mark(lastErrorAt, 4);
    },
  };
  if (init.restore) thread.lastError = init.restore.lastError;
  /** The hypercall being served, for a snapshot taken while it waits. */
  let serving: { nr: number; frame: number } | undefined;
  /** The last exit was a hypercall's doorbell write, which KVM completes only on the next KVM_RUN. */
  let doorbellPending = false;
  /** The deadline a remade wait keeps (ThreadContext.deadline), consumed by its first use. */
  let restoredDeadline = init.restore?.pending ? init.restore.pending.deadline ?? Infinity : undefined;

  /**
   * Parks this thread for a pause: its vCPU state (and the host state, when
   * this thread keeps it) goes to the instance, then it waits for resume or
   * stop. `deadline` is set when it parks inside a blocked hypercall.
   */
  const finishDoorbell = () => {
    if (!doorbellPending) return;
    // api.rst: re-entering with immediate_exit finishes the MMIO write without running the guest further.
    requestImmediateExit(runPage, true);
    vcpu.run();
    requestImmediateExit(runPage, false);
    doorbellPending = false;
  };

  /**
   * Hands a fault in the app's own code to its exception handlers
   * (guest/exception_frame.ts); false when it cannot go there: no runtime
   * dispatcher, a fault in the kernel, one already being dispatched, or no
   * stack left to lay the frame on.
   */
  const deliverFault = (frame: Record<string, bigint>): boolean => {
    const entry = ram.view.getBigUint64(pebBase + PEB_FAULT_ENTRY, true);
    const inFaultAt = tebAddress(cpu) + TEB_IN_FAULT;
    const exception = faultException(frame);
    if (!entry || (frame.cs & 3n) !== 3n || !exception || ram.view.getUint32(inFaultAt, true)) return false;
    const at = Number((frame.rsp & ~15n) - BigInt(EXCEPTION_FRAME_SIZE));
    if (at < 0 || !pages.accessible(at, EXCEPTION_FRAME_SIZE, true)) return false;
    doorbellPending = true;
    finishDoorbell();
    writeExceptionFrame(ram.view, at, frame, exception);
    writes.mark(at, EXCEPTION_FRAME_SIZE);
    ram.view.setUint32(inFaultAt, 1, true);
    writes.mark(inFaultAt, 4);
    // Back to user mode; the rest of the state (GS base on the TEB, CR3) is the thread's already.
    const sregs = vcpu.getSregs();
    vcpu.setSregs({ ...sregs, cs: init.sregs.cs, ss: init.sregs.ss });
    const regs = vcpu.getRegs();
    regs.rip = entry;
    regs.rsp = BigInt(at);
    regs.rcx = BigInt(at + CONTEXT_SIZE);
    regs.rdx = BigInt(at);
    regs.rflags = (frame.rflags & ~0x100n) | 2n; // no single-step into the dispatcher
    vcpu.setRegs(regs);
    return true;
  };

  /** The thread object its exit signals: CreateThread's, or one PvxOpenCurrentThread made; a snapshot keeps it. */
  let object = init.thread.object;
  const park = (deadline?: number) => {
    finishDoorbell();
    const pending = deadline !== undefined && serving
      ? { ...serving, deadline: deadline === Infinity ? null : deadline }
      : undefined;
    const parked: ParkedThread = {
      cpu,
      threadId,
      ...(object ? { object } : {}),
      lastError: thread.lastError,
      vcpu: saveVcpu(vcpu),
      ...(pending ? { pending } : {}),
    };
    self.postMessage(
      { kind: "parked", thread: parked, ...(local ? { host: local.save() } : {}) } satisfies VcpuMessage,
    );
    control.waitWhilePaused();
  };
  const reachedReady = () => self.postMessage({ kind: "ready" } satisfies VcpuMessage);
  /** Stopping the instance, or this thread, asked to end. */
  const ending = () => control.stopRequested() || control.terminating(cpu) !== undefined;
  const waits: WaitControl = {
    now: () => control.now(),
    // A suspended thread holds inside its wait, which goes on when it is resumed.
    checkpoint: (deadline) => {
      for (;;) {
        if (ending()) return true;
        if (control.pauseRequested()) park(deadline);
        else if (control.suspendCount(cpu) > 0) control.holdWhileSuspended(cpu);
        else return false;
      }
    },
  };
  // An app that cannot create threads is served right here, with no hop to another thread.
  const local = init.host && new HostService({
    ...init,
    host: init.host,
    control,
    waits,
    restore: init.restore?.host,
    ...(init.readyAt === "first-input" ? { onFirstRead: reachedReady } : {}),
  });
  const services = (nr: number, frame: number) =>
    local ? local.dispatch(cpu, nr, frame, thread) : control.call(cpu, nr, frame, thread);

  let end: VcpuReport | undefined;
  const context: ThreadContext = {
    sync: control.sync,
    threads: control,
    threadId,
    startedAt: init.startedAt,
    waits,
    deadline: (ms) => {
      const kept = restoredDeadline;
      restoredDeadline = undefined;
      return kept ?? (ms === INFINITE ? Infinity : control.now() + ms);
    },
    sleep: (ms) => {
      if (ms === 0) return libc().sched_yield();
      const deadline = context.deadline(ms);
      while (!control.sleepUntil(deadline, cpu) && control.now() < deadline) {
        if (waits.checkpoint(deadline)) return;
      }
    },
    ready: () => {
      if (init.readyAt !== "call") return;
      reachedReady();
      // The snapshot's pause finds this thread here; a restore makes the call again, outside a template.
      while (!waits.checkpoint(Infinity)) control.sleepUntil(Infinity, cpu);
    },
    serializeOtherThreads: () => control.pullOutOthers(cpu),
    exitProcess: (code) => end = { kind: "exit", code },
    openCurrentThread: () => {
      const opened = control.sync.openThread(threadId, object);
      if (opened) object = opened.object;
      return opened?.handle;
    },
    exitThread: (code) => {
      control.sync.threadExited(threadId, code, object);
      control.release(cpu);
      // The process ends with its last thread, with that thread's exit code.
      end = control.threadEnded() === 0 ? { kind: "exit", code } : { kind: "thread-exit" };
    },
  };
  const handlers = threadHandlers(context);
  const own = new Dispatcher(
    { bytes: ram.bytes, view: ram.view, pages, writes },
    handlers,
    init.allowedCalls,
    init.specialCalls && new SpecialCalls(init.specialCalls),
  );
  const rip = () => vcpu.getRegs().rip;
  /**
   * Every return clears immediate_exit before it counts (ControlBlock.pullOutOthers): a kick before the
   * clear is answered by this return, and one after it ends the next KVM_RUN at once.
   */
  const runGuest = (): VmExit => {
    try {
      return vcpu.run();
    } finally {
      requestImmediateExit(runPage, false);
      control.returnedFromGuest(cpu);
    }
  };
  // A vCPU that ran an earlier thread may still cache translations from before page tables changed while it
  // was idle (KVM_SET_SREGS with the same CR3 flushes nothing): it flushes before it first enters.
  let translations = init.fresh ? control.tlbGeneration() : undefined;
  /** The last hypercall this thread made, for a report when nothing else is left to tell. */
  let lastCall: number | undefined;

  /**
   * Runs the kernel's page-table routine (guest/kernel.ts) over the `count`
   * entries the host services left in this vCPU's list, or with none only to
   * reload CR3, then resumes the app where it was; false when the instance
   * stopped meanwhile. A CR3 write by the guest is the flush every x86 TLB
   * honours; one made through KVM_SET_SREGS rests on KVM's MMU bookkeeping.
   */
  const runPageTableRoutine = (count: number): boolean => {
    const regs = vcpu.getRegs(), sregs = vcpu.getSregs();
    vcpu.setSregs(kernelModeSregs(sregs));
    vcpu.setRegs({
      ...regs,
      rip: BigInt(UPDATE_PAGE_TABLES),
      rsi: BigInt(pageTableUpdates(cpu)),
      rcx: BigInt(count),
      rflags: 2n,
    });
    let done = false;
    for (;;) {
      const exit = runGuest();
      done = exit.kind === "mmio" && exit.isWrite && exit.address === BigInt(PAGE_TABLES_UPDATED_DOORBELL);
      if (done || (exit.kind === "interrupted" && control.stopRequested())) break;
      if (exit.kind !== "interrupted") {
        throw new Error(`the kernel's page-table routine stopped with a ${exit.kind} exit`);
      }
    }
    // A stopped thread is reported where the app was, not inside the kernel.
    vcpu.setSregs(sregs);
    vcpu.setRegs(regs);
    return done;
  };
  const updatePageTables = (count: number): boolean => {
    if (count === 0) return true;
    if (!runPageTableRoutine(count)) return false;
    // This vCPU's TLB is current; others are pulled out of the guest to flush theirs.
    translations = control.invalidateTranslations(cpu);
    return true;
  };

  /** Serves hypercall `nr`; how the thread ended, if it did. */
  const hypercall = (nr: number, frame: number): VcpuReport | undefined => {
    lastCall = nr;
    serving = { nr, frame };
    const calledAt = performance.now();
    try {
      if (own.serves(nr)) own.dispatch(nr, frame, thread);
      else {
        let served = services(nr, frame);
        while (served.interrupted) {
          park(Infinity);
          if (control.stopRequested()) return { kind: "stopped", rip: rip() };
          served = services(nr, frame);
        }
        if (!updatePageTables(served.pageTableUpdates)) return { kind: "stopped", rip: rip() };
      }
    } catch (e) {
      if (e instanceof AbiViolation) return { kind: "violation", message: e.message, rip: rip() };
      throw e;
    } finally {
      serving = undefined;
      restoredDeadline = undefined;
      control.hypercalls.record(nr, performance.now() - calledAt);
    }
    if (end) return afterThreadExit();
    if (control.stopRequested()) return { kind: "stopped", rip: rip() };
    return terminated();
  };
  /** The thread has ended: its stack goes back to the app's free memory, which the hypervisor must see too. */
  const afterThreadExit = (): VcpuReport => {
    if (end!.kind === "thread-exit" && !local) {
      updatePageTables(control.call(cpu, THREAD_EXITED, 0, thread).pageTableUpdates);
    }
    return end!;
  };
  /** TerminateThread from another thread (or this one): it ends here, with no more of its code run. */
  const terminated = (): VcpuReport | undefined => {
    const code = control.terminating(cpu);
    if (code === undefined || control.stopRequested()) return undefined;
    context.exitThread(code);
    return afterThreadExit();
  };

  try {
    // A thread a snapshot caught inside a hypercall makes it again: it had not completed.
    const pending = init.restore?.pending;
    const ended = pending && hypercall(pending.nr, pending.frame);
    if (ended) return ended;
    for (;;) {
      const gone = terminated();
      if (gone) return gone;
      if (control.pauseRequested() && !control.stopRequested()) {
        park();
        continue;
      }
      if (control.suspendCount(cpu) > 0 && !ending()) {
        control.holdWhileSuspended(cpu);
        continue;
      }
      if (!control.enterGuest(cpu)) {
        if (control.stopRequested()) return { kind: "stopped", rip: rip() };
        continue;
      }
      let exit: VmExit;
      try {
        // A flush's own run may take the kick of a later change: look again until none is left.
        for (let generation = control.tlbGeneration(); generation !== translations;) {
          if (!runPageTableRoutine(0)) return { kind: "stopped", rip: rip() };
          translations = generation;
          generation = control.tlbGeneration();
        }
        exit = runGuest();
        doorbellPending = false;
      } finally {
        control.leftGuest(cpu);
      }
      times.firstExitAt ??= now();
      switch (exit.kind) {
        case "mmio": {
          const frame = Number(exit.data & 0xffffffffn);
          const nr = exit.isWrite && exit.length === 4 ? hypercallNumber(exit.address) : undefined;
          if (nr !== undefined) {
            doorbellPending = true;
            const ended = hypercall(nr, frame);
            if (ended) return ended;
            continue;
          }
          if (exit.isWrite && exit.length === 4 && exit.address === BigInt(FAULT_DOORBELL)) {
            const fault = readFaultFrame(ram, frame);
            if (deliverFault(fault)) continue;
            return { kind: "fault", frame: fault };
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
            message: `port I/O to 0x${
              exit.port.toString(16)
            }: pvx guests call the host through the doorbell, not ports`,
            rip: rip(),
          };
        case "interrupted":
          if (control.stopRequested()) return { kind: "stopped", rip: rip() };
          // A kick for preemption, a TLB flush or a pause: all are handled on the way back in.
          continue;
        case "hlt":
          return { kind: "crash", message: "guest executed HLT with interrupts off: it can never resume", rip: rip() };
        case "shutdown": {
          // AMD's KVM resets a vCPU that triple-faults, so its registers say nothing of the fault.
          const reset = vcpu.getRegs().rip === 0xfff0n;
          const after = lastCall === undefined
            ? "before its first hypercall"
            : `after ${callsByNr[lastCall]?.name ?? `hypercall ${lastCall}`}`;
          return {
            kind: "crash",
            message: `triple fault (the exception handlers themselves faulted) ${after}` +
              (reset ? "; the hypervisor reset the vCPU, so RIP is the reset vector's" : ""),
            rip: rip(),
          };
        }
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
  } finally {
    local?.close();
  }
}

/** A new guest thread's registers: at its entry point, in user mode, with its TEB in GS. */
function startThread(vcpu: Vcpu, init: VcpuInit): void {
  vcpu.setSregs(init.sregs);
  vcpu.setMsrs(new Map([[msrs.MSR_STAR, STAR], [msrs.MSR_GS_BASE, BigInt(init.thread.gsBase)]]));
  const regs = vcpu.getRegs();
  for (const k of Object.keys(regs) as (keyof typeof regs)[]) regs[k] = 0n;
  regs.rip = BigInt(init.thread.rip);
  regs.rsp = BigInt(init.thread.rsp);
  regs.rbx = init.thread.rbx;
  regs.rcx = regs.rdi = init.thread.parameter;
  regs.rflags = 2n;
  vcpu.setRegs(regs);
}

function readFaultFrame(ram: GuestRam, address: number): Record<string, bigint> {
  ram.check(address, faultFrameSize);
  const frame: Record<string, bigint> = {};
  faultFrameFields.forEach((name, i) => frame[name] = ram.view.getBigUint64(address + 8 * i, true));
  return frame;
}

self.onmessage = (e: MessageEvent<VcpuInit>) => {
  const times: { firstExitAt?: number } = {};
  const control = new ControlBlock(e.data.control);
  control.attach(e.data.thread.cpu, e.data.runPage);
  let report: VcpuReport;
  try {
    report = run(e.data, control, times);
  } catch (err) {
    report = { kind: "host-error", message: err instanceof Error ? `${err.message}\n${err.stack}` : String(err) };
  } finally {
    control.detach(e.data.thread.cpu);
  }
  self.postMessage({ ...report, ...times });
};
