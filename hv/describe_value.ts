// How a value from outside input is named in an error message: the bundle's and the snapshot's
// parsers both report what they found this way.

/** A value as it should appear in an error message; never throws, whatever the value. */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
    case "number":
    case "boolean":
      return String(value);
    case "bigint":
      return `${value}n`;
    case "object":
      return value === null ? "null" : Array.isArray(value) ? "an array" : "an object";
    default:
      return typeof value;
  }
}
