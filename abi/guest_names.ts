// Guest file names as the guest sees them: compared ignoring case, shown under drive C:, and the rules a
// name must keep to be stored on the host or in an archive.

const DRIVE = "C:";

/**
 * The case-insensitive comparison key of a name or path, as a Windows app would compare them. Folding through
 * both cases also catches pairs that only meet in one direction (KELVIN SIGN and "k", LONG S and "s"), so it
 * equates a superset of what Windows calls equal.
 */
export function fold(name: string): string {
  return name.toUpperCase().toLowerCase();
}

export function foldPath(names: readonly string[]): string {
  return names.map(fold).join("\\");
}

export function guestPathString(names: readonly string[]): string {
  return `${DRIVE}\\${names.join("\\")}`;
}

/** Case-insensitive first, so an order never depends on how a host happens to list or sort names. */
export function compareNames(a: string, b: string): number {
  return compare(fold(a), fold(b)) || compare(a, b);
}

/** A directory before what it holds, siblings by compareNames: the order of a depth-first walk. */
export function comparePaths(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const order = compareNames(a[i], b[i]);
    if (order !== 0) return order;
  }
  return a.length - b.length;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const MAX_NAME_BYTES = 255;

/**
 * Why `name` cannot be one component of an overlay path, if it cannot. Guests cannot make such
 * names, and a host directory or an archive could not hold them unchanged.
 */
export function nameProblem(name: string): string | undefined {
  const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
  if (name === "" || name === "." || name === "..") return `${shown} is not a file name`;
  if (/[/\\\0]/.test(name)) return `${shown} contains "/", "\\" or NUL`;
  if (!name.isWellFormed()) return `${shown} contains a lone UTF-16 surrogate`;
  const bytes = new TextEncoder().encode(name).length;
  if (bytes > MAX_NAME_BYTES) return `${shown} is ${bytes} bytes of UTF-8, more than ${MAX_NAME_BYTES}`;
  return undefined;
}
