// Checks on the plain data a component is rebuilt from when a snapshot is
// restored. A section's hash proves it is what was written, not that pvx wrote
// it: a crafted file hashes right too. So each field is checked for its type
// and range before it is used, and the first bad one is named, with where it
// is ("snapshot: heap: blocks[3][1]"), rather than surfacing as a TypeError.

/** The state a snapshot holds cannot be what the component saved. */
export class StateError extends Error {
  override name = "StateError";
}

/** A reader of one component's state; `where` ("snapshot: handles") starts every message. */
export class PlainState {
  constructor(readonly where: string) {}

  /** `path` names the field in the state ("blocks[3] size"); empty for the state as a whole. */
  fail(path: string, what: string): never {
    throw new StateError([this.where, path, what].filter(Boolean).join(": "));
  }

  record(value: unknown, path: string): Record<string, unknown> {
    if (typeof value !== "object" || value === null || Array.isArray(value)) this.fail(path, "is not an object");
    return value as Record<string, unknown>;
  }

  list(value: unknown, path: string, length?: number): unknown[] {
    if (!Array.isArray(value)) this.fail(path, "is not a list");
    if (length !== undefined && value.length !== length) this.fail(path, `has ${value.length} items, not ${length}`);
    return value;
  }

  integer(value: unknown, path: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
      this.fail(path, `is not a whole number from ${min} to ${max}`);
    }
    return value as number;
  }

  text(value: unknown, path: string): string {
    if (typeof value !== "string") this.fail(path, "is not a string");
    return value;
  }

  flag(value: unknown, path: string): boolean {
    if (typeof value !== "boolean") this.fail(path, "is not true or false");
    return value;
  }

  oneOf<T extends string>(value: unknown, path: string, options: readonly T[]): T {
    if (!options.includes(value as T)) this.fail(path, `is not one of ${options.join(", ")}`);
    return value as T;
  }

  /** A 64-bit value saved as a decimal string (JSON has no BigInt). */
  bigint(value: unknown, path: string): bigint {
    if (typeof value !== "string" || !/^-?\d{1,20}$/.test(value)) this.fail(path, "is not a 64-bit number");
    return BigInt(value);
  }
}
