// The guest runtime: the few routines that must run inside the guest rather
// than as a hypercall, written once in x86 for Windows apps (bound to their
// kernel32 imports) and pvx.h guests (reached through the info page).
//
// A critical section is Windows' RTL_CRITICAL_SECTION (40 bytes): LockCount
// (+8) is a futex-style word, 0 free, 1 held, 2 held with waiters (Drepper,
// "Futexes Are Tricky", mutex2); RecursionCount (+12) and OwningThread (+16)
// make it recursive. Taking a free lock costs no exit; only a contended
// one waits in the host (PvxWaitOnAddress), so a waiter costs no CPU.

import { type Asm, Reg } from "./x86.ts";
import { TEB_THREAD_ID } from "./teb.ts";
import { win32Constants } from "../abi/win32.ts";

const LOCK = 8, RECURSION = 12, OWNER = 16;
/** All SSE exceptions masked, round to nearest. */
const DEFAULT_MXCSR = 0x1f80;
/** sizeof(RTL_CRITICAL_SECTION) on x64. */
export const CRITICAL_SECTION_SIZE = 40;
/** What a Windows x64 caller reserves above the return address for the callee's four register arguments. */
export const SHADOW_SPACE = 32;

interface Routine {
  /** Hypercalls the routine makes, through their ms-ABI thunks. */
  calls: readonly string[];
  /** Emits the routine at the current position; `label` prefixes its local labels. */
  emit(asm: Asm, thunks: Record<string, number>, label: string): void;
}

function initialize(asm: Asm, returnsTrue: boolean): void {
  for (let at = 0; at < CRITICAL_SECTION_SIZE; at += 8) asm.storeMem64Imm(Reg.rcx, at, 0);
  if (returnsTrue) asm.movImm32(Reg.rax, 1);
  asm.ret();
}

/** Takes a free lock (0 -> 1) or jumps to `busy`; on success falls through with rdx = our thread id. */
function tryLock(asm: Asm, l: string, busy: string): void {
  asm.movFromGs(Reg.rdx, TEB_THREAD_ID);
  asm.cmpMem64(Reg.rcx, OWNER, Reg.rdx).jcc("e", `${l}.recurse`);
  asm.zero(Reg.rax).movImm32(Reg.r8, 1).lockCmpxchgMem32(Reg.rcx, LOCK, Reg.r8).jcc("ne", busy);
}

/** Records the new owner (rdx) once the lock word is ours. */
function own(asm: Asm, l: string): void {
  asm.label(`${l}.owned`).storeMem64(Reg.rcx, OWNER, Reg.rdx).storeMem32Imm(Reg.rcx, RECURSION, 1);
}

export const runtimeRoutines = {
  /**
   * Where every thread but the first starts: rbx = start routine, rcx = rdi =
   * its parameter (either ABI). The x87 and SSE state start at their defaults,
   * as the first thread's do, whatever a thread before left on this vCPU.
   */
  PvxThreadStart: {
    calls: ["ExitThread"],
    emit(asm, thunks) {
      asm.pushImm(DEFAULT_MXCSR).ldmxcsrFromStack().fninit().addRsp(8);
      asm.subRsp(SHADOW_SPACE).callReg(Reg.rbx);
      asm.movReg32(Reg.rcx, Reg.rax).movImm64(Reg.rax, BigInt(thunks.ExitThread)).callReg(Reg.rax).ud2();
    },
  },
  InitializeCriticalSection: { calls: [], emit: (asm) => initialize(asm, false) },
  InitializeCriticalSectionAndSpinCount: { calls: [], emit: (asm) => initialize(asm, true) },
  DeleteCriticalSection: { calls: [], emit: (asm) => void asm.ret() },
  EnterCriticalSection: {
    calls: ["PvxWaitOnAddress"],
    emit(asm, thunks, l) {
      tryLock(asm, l, `${l}.contended`);
      own(asm, l);
      asm.ret();
      asm.label(`${l}.recurse`).incMem32(Reg.rcx, RECURSION).ret();
      // Mark the lock contended; if it was free in the meantime it is ours.
      asm.label(`${l}.contended`).movImm32(Reg.rax, 2).xchgMem32(Reg.rcx, LOCK, Reg.rax);
      asm.test32(Reg.rax, Reg.rax).jcc("e", `${l}.owned`);
      // PvxWaitOnAddress(&LockCount, 2, INFINITE); two pushes and 40 bytes keep rsp 16-aligned at the call.
      asm.push(Reg.rcx).push(Reg.rdx).subRsp(SHADOW_SPACE + 8);
      asm.lea(Reg.rcx, Reg.rcx, LOCK).movImm32(Reg.rdx, 2).movImm32(Reg.r8, win32Constants.INFINITE);
      asm.movImm64(Reg.rax, BigInt(thunks.PvxWaitOnAddress)).callReg(Reg.rax);
      asm.addRsp(SHADOW_SPACE + 8).pop(Reg.rdx).pop(Reg.rcx).jmp(`${l}.contended`);
    },
  },
  TryEnterCriticalSection: {
    calls: [],
    emit(asm, _thunks, l) {
      tryLock(asm, l, `${l}.busy`);
      own(asm, l);
      asm.movImm32(Reg.rax, 1).ret();
      asm.label(`${l}.recurse`).incMem32(Reg.rcx, RECURSION).movImm32(Reg.rax, 1).ret();
      asm.label(`${l}.busy`).zero(Reg.rax).ret();
    },
  },
  LeaveCriticalSection: {
    calls: ["PvxWakeByAddress"],
    emit(asm, thunks, l) {
      asm.decMem32(Reg.rcx, RECURSION).jcc("ne", `${l}.done`);
      asm.storeMem64Imm(Reg.rcx, OWNER, 0);
      // Old value 1: nobody waits. Otherwise free it and wake a waiter.
      asm.movImm32(Reg.rax, 0xffffffff).lockXaddMem32(Reg.rcx, LOCK, Reg.rax).dec32(Reg.rax).jcc("e", `${l}.done`);
      asm.storeMem32Imm(Reg.rcx, LOCK, 0);
      asm.subRsp(SHADOW_SPACE + 8).lea(Reg.rcx, Reg.rcx, LOCK);
      asm.movImm64(Reg.rax, BigInt(thunks.PvxWakeByAddress)).callReg(Reg.rax).addRsp(SHADOW_SPACE + 8);
      asm.label(`${l}.done`).ret();
    },
  },
} as const satisfies Record<string, Routine>;

export type RuntimeName = keyof typeof runtimeRoutines;

/** The routines a Windows app may import from kernel32 (PvxThreadStart is pvx's own). */
export function kernel32Routine(name: string | undefined): RuntimeName | undefined {
  return name !== undefined && name in runtimeRoutines && !name.startsWith("Pvx") ? name as RuntimeName : undefined;
}
