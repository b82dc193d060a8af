// How often each hypercall was made and how long the host took to serve it,
// kept in the instance's shared memory: every vCPU thread adds its own calls
// with atomics, and the main thread reads the sums whenever it is asked (the
// control API's GET /stats, the daemon's /metrics), with no message between.

import { callsByNr } from "../abi/calls.ts";

/**
 * Upper bounds of the latency histogram, in seconds: a doorbell exit is ~5 µs on KVM and ~40 µs
 * under the nested accelerator; a blocking call (a wait, a sleep) takes as long as it blocks.
 */
export const HYPERCALL_BUCKETS = [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 1e-1, 1, 10] as const;

const CALLS = callsByNr.length;
const BUCKETS = HYPERCALL_BUCKETS.length + 1; // the last is +Inf
const SUM_NS = CALLS + BUCKETS;
export const HYPERCALL_STATS_BYTES = 8 * (SUM_NS + 1);

/** The sums so far, as JSON carries them: counts by call name, and the histogram's buckets (not cumulative). */
export interface HypercallTotals {
  calls: Record<string, number>;
  /** One count per bound of HYPERCALL_BUCKETS, then the calls slower than the last. */
  buckets: number[];
  seconds: number;
}

export class HypercallStats {
  readonly #words: BigInt64Array;

  /** A view of `length` bytes at `offset` in `buffer` (8-byte aligned), shared by every thread of one instance. */
  constructor(buffer: SharedArrayBuffer, offset: number) {
    this.#words = new BigInt64Array(buffer, offset, HYPERCALL_STATS_BYTES / 8);
  }

  /** Call `nr` was served in `ms` milliseconds. */
  record(nr: number, ms: number): void {
    if (nr >= 0 && nr < CALLS) Atomics.add(this.#words, nr, 1n);
    const seconds = ms / 1000;
    let bucket = HYPERCALL_BUCKETS.findIndex((bound) => seconds <= bound);
    if (bucket < 0) bucket = BUCKETS - 1;
    Atomics.add(this.#words, CALLS + bucket, 1n);
    Atomics.add(this.#words, SUM_NS, BigInt(Math.round(ms * 1e6)));
  }

  totals(): HypercallTotals {
    const calls: Record<string, number> = {};
    for (let nr = 0; nr < CALLS; nr++) {
      const n = Number(Atomics.load(this.#words, nr));
      if (n) calls[callsByNr[nr]?.name ?? `#${nr}`] = n;
    }
    const buckets = Array.from({ length: BUCKETS }, (_, i) => Number(Atomics.load(this.#words, CALLS + i)));
    return { calls, buckets, seconds: Number(Atomics.load(this.#words, SUM_NS)) / 1e9 };
  }
}

/** The sum of several instances' totals, which is what a daemon reports. */
export function addTotals(into: HypercallTotals, more: HypercallTotals): HypercallTotals {
  for (const [name, n] of Object.entries(more.calls)) into.calls[name] = (into.calls[name] ?? 0) + n;
  more.buckets.forEach((n, i) => into.buckets[i] = (into.buckets[i] ?? 0) + n);
  into.seconds += more.seconds;
  return into;
}

export const noHypercalls = (): HypercallTotals => ({ calls: {}, buckets: Array(BUCKETS).fill(0), seconds: 0 });
