// The "special call": the one place where a request the app's analysis never
// saw is decided. A bundle's manifest lists what the packer found the app
// reaches besides its static imports (names its code spells out, and what a
// traced run looked up); at run time a GetProcAddress of anything else, a
// LoadLibrary of a DLL the bundle lacks, or a hypercall outside the manifest
// comes here, and the manifest's policy says what happens to it.

import { AbiViolation, Win32Error } from "./call_errors.ts";

export const SPECIAL_CALL_POLICIES = ["deny", "allow", "stop"] as const;
/**
 * deny: the app gets the Win32 error it would get if the thing did not exist, and pvx logs it;
 * allow: pvx logs it, lets it through and, when tracing, records it for the next pack; stop: the app stops.
 */
export type SpecialCallPolicy = (typeof SPECIAL_CALL_POLICIES)[number];

/** Plain data, so it crosses to every thread that serves calls. */
export interface SpecialCallRules {
  policy: SpecialCallPolicy;
  /** Functions the analysis saw looked up, "module!function" with the module's file name in lower case. */
  procs: string[];
  /** DLL names the analysis saw loaded, lower case. */
  libraries: string[];
  /** A file every dynamic lookup, DLL load and file open is appended to, one JSON line each (`pvx run --trace`). */
  tracePath?: string;
}

/** One line of a trace file (docs/bundle.md, "Dynamic imports"). */
export type TraceEvent =
  | { kind: "proc"; module: string; name: string; found: boolean }
  | { kind: "library"; name: string; found: boolean }
  | { kind: "call"; name: string }
  | { kind: "file"; path: string; write: boolean };

/** What came through the hook, named the way a user reads it. */
function describe(e: TraceEvent): string {
  switch (e.kind) {
    case "proc":
      return `GetProcAddress(${e.module}, ${e.name})`;
    case "library":
      return `LoadLibrary(${e.name})`;
    case "call":
      return `hypercall ${e.name}`;
    case "file":
      return `CreateFile(${e.path})`;
  }
}

const NOT_SEEN = "which the bundle's analysis never saw";
/** How a stop by the special call starts its AbiViolation's message, so that a report can tell it from an ABI break. */
const STOPPED = "special call: ";

/** What a special call that stopped the app said, given the violation's message; undefined for any other violation. */
export function specialCallStop(violation: string): string | undefined {
  const at = violation.indexOf(STOPPED);
  return at < 0 ? undefined : violation.slice(at + STOPPED.length);
}

export class SpecialCalls {
  readonly #procs: Set<string>;
  readonly #libraries: Set<string>;
  readonly #logged = new Set<string>();
  readonly #traced = new Set<string>();

  constructor(readonly rules: SpecialCallRules, private readonly log = logToStderr) {
    this.#procs = new Set(rules.procs);
    this.#libraries = new Set(rules.libraries);
  }

  /** Whether the analysis saw `module!name` (or `module!#ordinal`) looked up. */
  sawProc(module: string, name: string): boolean {
    return this.#procs.has(`${module}!${name}`);
  }

  sawLibrary(name: string): boolean {
    return this.#libraries.has(name);
  }

  /** Appends to the trace, once per distinct event. */
  trace(event: TraceEvent): void {
    const path = this.rules.tracePath;
    if (path === undefined) return;
    const line = JSON.stringify(event);
    if (this.#traced.has(line)) return;
    this.#traced.add(line);
    // One write of one line on an O_APPEND file: lines from several threads never interleave.
    Deno.writeTextFileSync(path, `${line}\n`, { append: true, create: true });
  }

  /**
   * Decides `event`, which the analysis never saw: returns when the policy lets it through, throws the
   * Win32Error `denied` when it denies it, and an AbiViolation when it stops the app.
   */
  unseen(event: TraceEvent, call: string, denied: number): void {
    const what = `${describe(event)}, ${NOT_SEEN}`;
    const policy = this.rules.policy;
    if (policy === "stop") throw new AbiViolation(call, `${STOPPED}${what}; the policy is stop`);
    const key = JSON.stringify(event);
    if (!this.#logged.has(key)) {
      this.#logged.add(key);
      this.log(
        policy === "deny"
          ? `pvx: special call: ${what}, denied (Win32 error ${denied}; pvx analyse --trace records it)`
          : `pvx: special call: ${what}, allowed${this.rules.tracePath === undefined ? "" : " and recorded"}`,
      );
    }
    if (policy === "deny") throw new Win32Error(denied);
    this.trace(event);
  }
}

function logToStderr(line: string): void {
  const bytes = new TextEncoder().encode(`${line}\n`);
  for (let off = 0; off < bytes.length;) off += Deno.stderr.writeSync(bytes.subarray(off));
}
