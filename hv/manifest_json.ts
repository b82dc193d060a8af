// The JSON manifest that bundles (hv/bundle.ts) and snapshot files (hv/snapshot_file.ts) both carry
// after their header: its decoding, and the checks every field of it goes through.

import { describeValue } from "./describe_value.ts";

/** The JSON value of a manifest's bytes; `refuse` reports what is wrong with them. */
export function manifestJson(bytes: Uint8Array, refuse: (reason: string) => never): unknown {
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text, where JSON.parse refuses it: the writers never emit one.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return refuse("manifest is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    return refuse(`manifest is not valid JSON: ${(e as Error).message}`);
  }
}

/** The shapes a manifest's fields are checked for; `fail` reports the field that breaks one, and what is wrong. */
export function manifestFields(fail: (field: string, problem: string) => never) {
  const object = (value: unknown, field: string): Record<string, unknown> => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return fail(field, `must be an object, got ${describeValue(value)}`);
    }
    return value as Record<string, unknown>;
  };

  /** An object with exactly `keys`: a reader that skipped a field a newer writer relies on would act wrongly. */
  const record = (value: unknown, field: string, keys: string[]): Record<string, unknown> => {
    const fields = object(value, field);
    for (const key of Object.keys(fields)) {
      if (!keys.includes(key)) fail(field, `unknown field ${JSON.stringify(key)}`);
    }
    for (const key of keys) {
      if (!Object.hasOwn(fields, key)) fail(`${field}.${key}`, "missing");
    }
    return fields;
  };

  const string = (value: unknown, field: string): string => {
    if (typeof value !== "string") return fail(field, `must be a string, got ${describeValue(value)}`);
    return value;
  };

  const integer = (value: unknown, field: string, min: number, max: number): number => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      fail(field, `must be an integer in ${min}..${max}, got ${describeValue(value)}`);
    }
    // JSON may spell zero "-0"; adding 0 turns it into plain 0, so a manifest equals its own JSON round trip.
    return (value as number) + 0;
  };

  const array = (value: unknown, field: string): unknown[] => {
    if (!Array.isArray(value)) return fail(field, `must be an array, got ${describeValue(value)}`);
    return value;
  };

  return { object, record, string, integer, array };
}
