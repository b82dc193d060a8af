// Thread environment blocks: one user page per vCPU slot, found through GS.
// Windows code reads its stack bounds and ids there without asking kernel32,
// and the guest runtime's critical sections read the thread id (guest/runtime.ts).

import { maxVcpus, pebBase, tebBase, tebSize } from "../abi/memory_map.ts";
import { PROCESS_ID } from "../abi/win32.ts";
import type { PageTables } from "./paging.ts";

/** NT_TIB.Self: how code finds the TEB through GS. */
const TEB_SELF = 0x30;
const TEB_STACK_BASE = 0x08, TEB_STACK_LIMIT = 0x10, TEB_PROCESS_ID = 0x40, TEB_PEB = 0x60;
/**
 * LastErrorValue: Windows code (Wine's DLLs among it) reads and writes it
 * without asking kernel32, so a thread's last error lives here, for the host
 * as for the guest.
 */
export const TEB_LAST_ERROR = 0x68;
/** ClientId.UniqueThread: what GetCurrentThreadId returns. */
export const TEB_THREAD_ID = 0x48;

export function tebAddress(cpu: number): number {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= maxVcpus) {
    throw new Error(`vCPU slot ${cpu} outside 0..${maxVcpus - 1}`);
  }
  return tebBase + cpu * tebSize;
}

/** Maps every slot's TEB; each is filled when a thread starts on that slot. */
export function mapTebs(pt: PageTables): void {
  pt.map(tebBase, maxVcpus * tebSize, { write: true, exec: false });
}

/** Fills the TEB of the thread `threadId` about to run on vCPU slot `cpu`; returns its address (the GS base). */
export function writeTeb(
  ram: Uint8Array,
  cpu: number,
  threadId: number,
  stack: { start: number; end: number },
): number {
  const at = tebAddress(cpu);
  ram.fill(0, at, at + tebSize);
  const dv = new DataView(ram.buffer, ram.byteOffset, ram.byteLength);
  const field = (offset: number, value: number) => dv.setBigUint64(at + offset, BigInt(value), true);
  field(TEB_STACK_BASE, stack.end);
  field(TEB_STACK_LIMIT, stack.start);
  field(TEB_SELF, at);
  field(TEB_PROCESS_ID, PROCESS_ID);
  field(TEB_THREAD_ID, threadId);
  field(TEB_PEB, pebBase);
  return at;
}
