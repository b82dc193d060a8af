// Finding the symbol an address falls in, for the ELF and PE symbolizers alike.

/** How many of `sorted` (ascending by `key`) have a key at or below `value`: the index just past the last such one. */
export function upperBound<T>(sorted: readonly T[], key: (item: T) => number, value: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(sorted[mid]) <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
