// FILETIME, Windows' clock: 100 ns units since 1601.

const UNIX_EPOCH_FILETIME = 116444736000000000n;

/**
 * `time` as a FILETIME, none before 1601. Without a time (a bundle entry has none) it is the Unix
 * epoch, so listings stay deterministic.
 */
export function filetime(time: Date | null): bigint {
  const t = UNIX_EPOCH_FILETIME + BigInt(time?.getTime() ?? 0) * 10000n;
  return t < 0n ? 0n : t;
}

/** A FILETIME as a Date, to the millisecond the host filesystem keeps. */
export function filetimeDate(t: bigint): Date {
  return new Date(Number((t - UNIX_EPOCH_FILETIME) / 10000n));
}
