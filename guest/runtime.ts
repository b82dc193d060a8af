// The guest runtime: the few routines that must run inside the guest rather
// than as a hypercall, written once in x86 for Windows apps (bound to their
// kernel32 imports) and pvx.h guests (reached through the info page).
//
// A critical section is Windows' RTL_CRITICAL_SECTION (40 bytes): LockCount
// (+8) is a futex-style word, -1 free (as in Windows' static initializers,
// which Wine's DLLs use), 0 held, 1 held with waiters (Drepper, "Futexes Are
// Tricky", mutex2, shifted by one); RecursionCount (+12) and OwningThread
// (+16) make it recursive. Taking a free lock costs no exit; only a contended
// one waits in the host (PvxWaitOnAddress), so a waiter costs no CPU.

import { type Asm, Reg } from "./x86.ts";
import { TEB_THREAD_ID } from "./teb.ts";
import { pebBase } from "../abi/memory_map.ts";
import { win32Constants } from "../abi/win32.ts";

const LOCK = 8, RECURSION = 12, OWNER = 16;
/** LockCount's values, as 32-bit immediates. */
const FREE = 0xffffffff, HELD = 0, CONTENDED = 1;
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

/**
 * Where every critical section's DebugInfo points: Wine's DLLs label their
 * locks by writing DebugInfo->Spare[0], and nothing reads it back, so one
 * scratch block, past the Windows fields of the PEB page, serves them all.
 */
export const CRITICAL_SECTION_DEBUG_INFO = pebBase + 0x800;

function initialize(asm: Asm, returnsTrue: boolean): void {
  for (let at = 8; at < CRITICAL_SECTION_SIZE; at += 8) asm.storeMem64Imm(Reg.rcx, at, 0);
  asm.storeMem32Imm(Reg.rcx, LOCK, FREE);
  asm.movImm64(Reg.rax, BigInt(CRITICAL_SECTION_DEBUG_INFO)).storeMem64(Reg.rcx, 0, Reg.rax);
  if (returnsTrue) asm.movImm32(Reg.rax, 1);
  asm.ret();
}

/** Takes a free lock (FREE -> HELD) or jumps to `busy`; on success falls through with rdx = our thread id. */
function tryLock(asm: Asm, l: string, busy: string): void {
  asm.movFromGs(Reg.rdx, TEB_THREAD_ID);
  asm.cmpMem64(Reg.rcx, OWNER, Reg.rdx).jcc("e", `${l}.recurse`);
  asm.movImm32(Reg.rax, FREE).movImm32(Reg.r8, HELD).lockCmpxchgMem32(Reg.rcx, LOCK, Reg.r8).jcc("ne", busy);
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
      // Mark the lock contended; if it was free in the meantime (FREE + 1 == 0) it is ours.
      asm.label(`${l}.contended`).movImm32(Reg.rax, CONTENDED).xchgMem32(Reg.rcx, LOCK, Reg.rax);
      asm.inc32(Reg.rax).jcc("e", `${l}.owned`);
      // PvxWaitOnAddress(&LockCount, CONTENDED, INFINITE); two pushes and 40 bytes keep rsp 16-aligned at the call.
      asm.push(Reg.rcx).push(Reg.rdx).subRsp(SHADOW_SPACE + 8);
      asm.lea(Reg.rcx, Reg.rcx, LOCK).movImm32(Reg.rdx, CONTENDED).movImm32(Reg.r8, win32Constants.INFINITE);
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
      // Old value HELD: nobody waits, and the decrement freed it. Otherwise free it and wake a waiter.
      asm.movImm32(Reg.rax, 0xffffffff).lockXaddMem32(Reg.rcx, LOCK, Reg.rax).test32(Reg.rax, Reg.rax);
      asm.jcc("e", `${l}.done`);
      asm.storeMem32Imm(Reg.rcx, LOCK, FREE);
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
