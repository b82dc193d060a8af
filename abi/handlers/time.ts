// Clocks: answered on the calling vCPU's own thread.

import type { Handler } from "../dispatch.ts";
import type { ThreadContext } from "../host.ts";

/** 100 ns units between 1601-01-01 (FILETIME's epoch) and 1970-01-01. */
const FILETIME_UNIX_EPOCH = 116444736000000000n;
/** QueryPerformanceCounter ticks per second: 10 MHz, what current Windows reports. */
const QPC_FREQUENCY = 10_000_000n;

function setU64(out: Uint8Array, value: bigint): void {
  new DataView(out.buffer, out.byteOffset, 8).setBigUint64(0, value, true);
}

export function timeHandlers(ctx: ThreadContext) {
  return {
    GetSystemTimeAsFileTime: (a) => {
      setU64(a.lpSystemTimeAsFileTime as Uint8Array, FILETIME_UNIX_EPOCH + BigInt(Date.now()) * 10_000n);
      return 0;
    },
    QueryPerformanceCounter: (a) => {
      setU64(a.lpPerformanceCount as Uint8Array, BigInt(Math.round(ctx.waits.now() * 10_000)));
      return 1;
    },
    QueryPerformanceFrequency: (a) => {
      setU64(a.lpFrequency as Uint8Array, QPC_FREQUENCY);
      return 1;
    },
    GetTickCount64: () => BigInt(Math.floor(ctx.waits.now() - ctx.startedAt)),
  } satisfies Record<string, Handler>;
}
