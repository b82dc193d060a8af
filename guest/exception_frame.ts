// A hardware fault in a Windows app's own code goes to the app's exception
// handlers, as on Windows: the host lays an EXCEPTION_RECORD and a CONTEXT on
// the faulting thread's stack, with the faulting RIP/RSP above them as a
// machine frame, and resumes the thread in the runtime's dispatcher
// (guest/win32rt/context.c, pvx_fault_entry), whose unwind info undoes
// exactly that. Only when no handler takes the fault does the app end with
// pvx's fault report: the dispatcher then resumes the faulting instruction
// with the thread's TEB marked, and the host reports the second fault.

import { vectorNames } from "./kernel.ts";

/** sizeof(CONTEXT), sizeof(EXCEPTION_RECORD) and the machine frame (rip, cs, rflags, rsp, ss) on x64. */
export const CONTEXT_SIZE = 0x4d0, EXCEPTION_RECORD_SIZE = 152, MACHINE_FRAME_SIZE = 40;
export const EXCEPTION_FRAME_SIZE = CONTEXT_SIZE + EXCEPTION_RECORD_SIZE + MACHINE_FRAME_SIZE;
/** TEB field (past Windows' 0x1838 bytes) set while a fault is being dispatched in the guest. */
export const TEB_IN_FAULT = 0x1900;
/** Where the loader leaves the dispatcher's address (0: none, the app's faults end it), in the PEB's page. */
export const PEB_FAULT_ENTRY = 0x9f8;
/** The runtime's export the host resumes a faulting thread at. */
export const FAULT_ENTRY_EXPORT = "pvx_fault_entry";

const CONTEXT_CONTROL_INTEGER_SEGMENTS = 0x100007;
const GPR_OFFSETS: Record<string, number> = {
  rax: 0x78,
  rcx: 0x80,
  rdx: 0x88,
  rbx: 0x90,
  rbp: 0xa0,
  rsi: 0xa8,
  rdi: 0xb0,
  r8: 0xb8,
  r9: 0xc0,
  r10: 0xc8,
  r11: 0xd0,
  r12: 0xd8,
  r13: 0xe0,
  r14: 0xe8,
  r15: 0xf0,
};

const EXCEPTION_ACCESS_VIOLATION = 0xc0000005;
const vectorNumber = (name: string) => vectorNames.indexOf(name);

/** The NTSTATUS and parameters Windows raises for a fault, or undefined for one an app cannot handle. */
export function faultException(
  frame: Record<string, bigint>,
): { code: number; params: bigint[]; rip: bigint } | undefined {
  const vector = Number(frame.vector), rip = frame.rip;
  switch (vector) {
    case vectorNumber("#DE divide error"):
      return { code: 0xc0000094, params: [], rip }; // EXCEPTION_INT_DIVIDE_BY_ZERO
    case vectorNumber("#BP breakpoint"):
      return { code: 0x80000003, params: [0n], rip: rip - 1n }; // int3 traps after itself
    case vectorNumber("#OF overflow"):
      return { code: 0xc0000095, params: [], rip }; // EXCEPTION_INT_OVERFLOW
    case vectorNumber("#UD invalid opcode"):
      return { code: 0xc000001d, params: [], rip }; // EXCEPTION_ILLEGAL_INSTRUCTION
    case vectorNumber("#GP general protection"):
      return { code: EXCEPTION_ACCESS_VIOLATION, params: [0n, 0xffffffffffffffffn], rip };
    case vectorNumber("#PF page fault"): {
      const error = frame.error;
      const kind = error & 0x10n ? 8n : error & 0x2n ? 1n : 0n; // execute, write, read
      return { code: EXCEPTION_ACCESS_VIOLATION, params: [kind, frame.cr2], rip };
    }
    case vectorNumber("#AC alignment check"):
      return { code: 0x80000002, params: [], rip }; // EXCEPTION_DATATYPE_MISALIGNMENT
    default:
      return undefined;
  }
}

/**
 * Writes the frame at `at` (16-aligned, EXCEPTION_FRAME_SIZE writable bytes):
 * the CONTEXT first, then the record, then the machine frame. The dispatcher
 * saves the FPU state itself, which nothing between the fault and it touches.
 */
export function writeExceptionFrame(
  view: DataView,
  at: number,
  frame: Record<string, bigint>,
  exception: { code: number; params: bigint[]; rip: bigint },
): void {
  for (let i = 0; i < EXCEPTION_FRAME_SIZE; i += 8) view.setBigUint64(at + i, 0n, true);
  view.setUint32(at + 0x30, CONTEXT_CONTROL_INTEGER_SEGMENTS, true);
  view.setUint16(at + 0x38, Number(frame.cs), true);
  view.setUint16(at + 0x42, Number(frame.ss), true);
  view.setUint32(at + 0x44, Number(frame.rflags & 0xffffffffn), true);
  for (const [reg, offset] of Object.entries(GPR_OFFSETS)) view.setBigUint64(at + offset, frame[reg], true);
  view.setBigUint64(at + 0x98, frame.rsp, true);
  view.setBigUint64(at + 0xf8, exception.rip, true);
  const record = at + CONTEXT_SIZE;
  view.setUint32(record, exception.code, true);
  view.setBigUint64(record + 16, exception.rip, true); // ExceptionAddress
  view.setUint32(record + 24, exception.params.length, true);
  exception.params.forEach((p, i) => view.setBigUint64(record + 32 + 8 * i, p, true));
  const machine = record + EXCEPTION_RECORD_SIZE;
  [exception.rip, frame.cs, frame.rflags, frame.rsp, frame.ss].forEach((v, i) =>
    view.setBigUint64(machine + 8 * i, v, true)
  );
}
