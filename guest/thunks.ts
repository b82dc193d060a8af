// Code pvx writes into a guest's user-mode thunk area (memory_map.thunksBase):
// kernel32 thunks that turn the Windows x64 calling convention into a
// hypercall, stubs for imports pvx lacks, and the guest runtime routines
// (guest/runtime.ts). Each is emitted once, the first time it is asked for.

import { Asm, Reg } from "./x86.ts";
import { type CallDef, callsByName } from "../abi/calls.ts";
import { DOORBELL_BASE, MISSING_IMPORT_DOORBELL } from "../abi/doorbell.ts";
import { type RuntimeName, runtimeRoutines, SHADOW_SPACE } from "./runtime.ts";
import { PAGE, pageUp, thunksBase, thunksSize } from "../abi/memory_map.ts";
import type { PageTables } from "./paging.ts";

const REGISTER_ARGS = [Reg.rcx, Reg.rdx, Reg.r8, Reg.r9];

/** The thunk for one call: Windows x64 arguments (rcx, rdx, r8, r9, then the stack) into a frame, ring, return `ret`. */
function emitThunk(asm: Asm, call: CallDef): void {
  const slots = 1 + call.params.length;
  const frame = Math.ceil((8 * slots) / 16) * 16;
  asm.subRsp(frame);
  call.params.forEach((_, i) => {
    if (i < REGISTER_ARGS.length) {
      asm.storeToStack(8 * (i + 1), REGISTER_ARGS[i]);
    } else {
      // Past our frame: the return address, the caller's shadow space, then the fifth argument on.
      asm.loadFromStack(Reg.rax, frame + 8 + SHADOW_SPACE + 8 * (i - REGISTER_ARGS.length));
      asm.storeToStack(8 * (i + 1), Reg.rax);
    }
  });
  // Only volatile registers change, so rbx, rbp, rsi, rdi, r12-r15 and xmm6-15 survive as the ABI requires.
  asm.movEaxEsp().movEdxImm(DOORBELL_BASE + 4 * call.nr).movMemRdxEax();
  asm.loadFromStack(Reg.rax, 0).addRsp(frame).ret();
}

function emitMissingStub(asm: Asm, index: number): void {
  asm.movImm32(Reg.rax, index).movEdxImm(MISSING_IMPORT_DOORBELL).movMemRdxEax().ud2();
}

/** Every hypercall a guest makes once it uses `call`, the ones it implies included. */
export function callsOf(call: CallDef): string[] {
  return [call.name, ...call.implies ?? []];
}

export class ThunkWriter {
  readonly asm = new Asm(thunksBase);
  readonly #thunks = new Map<string, number>();
  readonly #used = new Set<string>();
  readonly #routines = new Map<RuntimeName, number>();
  readonly missing: string[] = [];
  readonly #missingAt = new Map<string, number>();

  /** The ms-ABI thunk of `call`, which the emitted code then makes. */
  call(call: CallDef): number {
    for (const name of callsOf(call)) this.#used.add(name);
    return this.#thunk(call);
  }

  #thunk(call: CallDef): number {
    let at = this.#thunks.get(call.name);
    if (at === undefined) {
      this.asm.alignTo(16);
      at = this.asm.here;
      emitThunk(this.asm, call);
      this.#thunks.set(call.name, at);
    }
    return at;
  }

  /**
   * A thunk for every call an app may make, so that GetProcAddress finds any
   * of them; the ones nothing imported are not counted as used, and the
   * dispatcher takes them to the special call unless the manifest allows them.
   */
  exportEveryCall(calls: Iterable<CallDef>): void {
    for (const call of calls) if (!call.name.startsWith("Pvx")) this.#thunk(call);
  }

  /** A guest runtime routine (guest/runtime.ts), with the thunks it calls. */
  routine(name: RuntimeName): number {
    let at = this.#routines.get(name);
    if (at === undefined) {
      const thunk = (call: string) => this.call(callsByName.get(call)!);
      // Thunks first: a routine's own code must stay contiguous.
      const thunks = Object.fromEntries(runtimeRoutines[name].calls.map((c) => [c, thunk(c)]));
      this.asm.alignTo(16);
      at = this.asm.here;
      runtimeRoutines[name].emit(this.asm, thunks, name);
      this.#routines.set(name, at);
    }
    return at;
  }

  missingImport(label: string): number {
    let at = this.#missingAt.get(label);
    if (at === undefined) {
      this.asm.alignTo(16);
      at = this.asm.here;
      emitMissingStub(this.asm, this.missing.length);
      this.missing.push(label);
      this.#missingAt.set(label, at);
    }
    return at;
  }

  /** The hypercalls the emitted code can make: what the bundle's manifest must allow. */
  get usedCalls(): string[] {
    return [...this.#used].sort();
  }

  /** The routines as kernel32's exports, by name. */
  get routineExports(): [string, number, number][] {
    return [...this.#routines].map(([name, address]) => [name, 0, address]);
  }

  /** The call thunks as kernel32's exports, by name. */
  get callExports(): [string, number, number][] {
    // pvx's own calls are the runtime's to make (guest/windows.ts resolveImport), never found by a lookup.
    return [...this.#thunks].filter(([name]) => !name.startsWith("Pvx")).map(([name, address]) => [name, 0, address]);
  }

  /** Writes the code into guest memory, user read-execute. */
  install(ram: Uint8Array, pt: PageTables, what: string): void {
    const code = this.asm.finish();
    if (code.length > thunksSize) throw new Error(`${what}: ${code.length} bytes of thunks exceed ${thunksSize}`);
    ram.set(code, thunksBase);
    pt.map(thunksBase, Math.max(PAGE, pageUp(code.length)), { write: false, exec: true });
  }
}
