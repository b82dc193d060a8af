// Clocks: answered on the calling vCPU's own thread.

import type { Handler } from "../dispatch.ts";
import type { ThreadContext } from "../handler_context.ts";
import { filetime } from "../filetime.ts";

/** QueryPerformanceCounter ticks per second: 10 MHz, what current Windows reports. */
const QPC_FREQUENCY = 10_000_000n;

function setU64(out: Uint8Array, value: bigint): void {
  new DataView(out.buffer, out.byteOffset, 8).setBigUint64(0, value, true);
}

export function timeHandlers(ctx: ThreadContext) {
  return {
    GetSystemTimeAsFileTime: (a) => {
      setU64(a.lpSystemTimeAsFileTime as Uint8Array, filetime(new Date()));
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
