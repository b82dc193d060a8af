// One-screen explanations of how a guest run ended, for people.

import type { Outcome } from "../hv/instance.ts";
import { vectorName } from "../guest/kernel.ts";
import { guestAddressLimit, nullGuardEnd } from "../abi/memory_map.ts";
import { registerNames } from "../guest/x86.ts";
import { signalNumbers } from "./signals.ts";
import { specialCallStop } from "../abi/special_calls.ts";

export type Symbolize = (address: number) => string;

const hex = (v: bigint | number, width = 16) => "0x" + v.toString(16).padStart(width, "0");
const PAGE_FAULT = 14;

function pageFaultCause(error: bigint, cr2: bigint): string {
  const what = error & 0x10n ? "instruction fetch" : error & 2n ? "write" : "read";
  const why = error & 1n ? "protection violation" : "page not mapped";
  const where = cr2 < BigInt(nullGuardEnd) ? " (NULL pointer)" : "";
  return `${what} of ${hex(cr2, 1)}${where}: ${why}`;
}

function registers(frame: Record<string, bigint>): string {
  // The order people read them in (a, b, c, d, si, di, bp, sp), not the encoding order; then r8-r15.
  const names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", ...registerNames.slice(8)];
  const rows: string[] = [];
  for (let i = 0; i < names.length; i += 4) {
    rows.push("  " + names.slice(i, i + 4).map((n) => `${n.padStart(3)} ${hex(frame[n])}`).join("  "));
  }
  rows.push(`  rip ${hex(frame.rip)}  rflags ${hex(frame.rflags, 8)}  cs ${hex(frame.cs, 4)}  ss ${hex(frame.ss, 4)}`);
  return rows.join("\n");
}

export function describeOutcome(o: Outcome, app: string, symbolize: Symbolize): string {
  const at = (rip: bigint) => `${hex(rip, 1)} ${symbolize(Number(rip))}`;
  const where = (o: { cpu: number; threadId: number }) => `thread ${o.threadId} (vCPU ${o.cpu})`;
  // A thread stopped from outside was about to run the instruction at its RIP; one pvx never maps would have
  // faulted first, so such a RIP is the accelerator's, not the app's.
  const stopped = (t: { cpu: number; threadId: number; rip: bigint }) =>
    `  ${where(t)} at RIP ${at(t.rip)}` +
    (t.rip >= BigInt(guestAddressLimit) ? ", outside any guest mapping: the accelerator lost this vCPU's state" : "");
  switch (o.kind) {
    case "exit":
      return `${app} exited with code ${o.code}`;
    case "timeout":
      return [
        `pvx: ${app} did not finish within ${o.afterMs} ms; stopped ${o.threads.length} thread(s):`,
        ...o.threads.map(stopped),
      ].join("\n");
    case "cpu-limit":
      return [
        `pvx: ${app} used up its CPU-time limit of ${o.limitMs} ms; stopped ${o.threads.length} thread(s):`,
        ...o.threads.map(stopped),
      ].join("\n");
    case "interrupted":
      return [
        `pvx: ${app} was interrupted by ${o.reason}; stopped ${o.threads.length} thread(s):`,
        ...o.threads.map(stopped),
      ].join("\n");
    case "snapshotted":
      return `pvx: ${app} was stopped after its snapshot was saved to ${o.to}`;
    case "violation": {
      const special = specialCallStop(o.message);
      return special === undefined
        ? `pvx: ${app} broke the hypercall ABI on ${where(o)} at RIP ${at(o.rip)}: ${o.message}`
        : `pvx: ${app} was stopped on ${where(o)} at RIP ${at(o.rip)} by a special call: ${special}`;
    }
    case "crash":
      return `pvx: ${app} stopped on ${where(o)}${o.rip === undefined ? "" : ` at RIP ${at(o.rip)}`}: ${o.message}`;
    case "fault": {
      const f = o.frame;
      const vector = Number(f.vector);
      const lines = [
        `pvx: ${app} faulted on ${where(o)}: ${vectorName(vector)} (vector ${vector}), error code ${hex(f.error, 1)}`,
        `  at RIP ${at(f.rip)}`,
        vector === PAGE_FAULT ? `  ${pageFaultCause(f.error, f.cr2)}` : `  CR2 ${hex(f.cr2, 1)}`,
        registers(f),
      ];
      return lines.join("\n");
    }
  }
}

/** Process exit status for an outcome: the guest's own code, or a pvx code people can script on. */
export const EXIT_TIMEOUT = 124;
export const EXIT_PVX_ERROR = 125;
export const EXIT_GUEST_FAILED = 126;
/** 128 + SIGXCPU: what a shell reports for a program `ulimit -t` stopped. */
export const EXIT_CPU_LIMIT = 152;

export function exitStatus(o: Outcome): number {
  switch (o.kind) {
    case "exit":
      return o.code & 0xff;
    case "timeout":
      return EXIT_TIMEOUT;
    case "cpu-limit":
      return EXIT_CPU_LIMIT;
    case "interrupted":
      return 128 + (signalNumbers[o.reason] ?? 0);
    case "snapshotted":
      return 0;
    default:
      return EXIT_GUEST_FAILED;
  }
}
