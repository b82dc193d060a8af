// The host handlers of ABI v1's first slice: console output, command line,
// last error, exit. Each receives arguments the dispatcher already checked.

import type { CallName } from "./calls.ts";
import type { Args, Handler, OutU32, Thread } from "./dispatch.ts";
import type { ConsoleStream, HandleTable } from "./handles.ts";
import { win32Errors } from "./win32.ts";

export interface ConsoleSink {
  write(stream: ConsoleStream, bytes: Uint8Array): void;
}

/** What handlers may reach on the host: nothing else. */
export interface Host {
  readonly handles: HandleTable;
  readonly commandLine: string;
  readonly console: ConsoleSink;
  exit(code: number): void;
}

/** Quotes argv the way Windows' CommandLineToArgvW reads it back. */
export function windowsCommandLine(argv: readonly string[]): string {
  return argv.map((arg) => {
    if (arg !== "" && !/[ \t"]/.test(arg)) return arg;
    let out = '"';
    let slashes = 0;
    for (const ch of arg) {
      if (ch === "\\") {
        slashes++;
        continue;
      }
      out += "\\".repeat(ch === '"' ? 2 * slashes + 1 : slashes) + ch;
      slashes = 0;
    }
    return out + "\\".repeat(2 * slashes) + '"';
  }).join(" ");
}

function fail(thread: Thread, error: number): 0 {
  thread.lastError = error;
  return 0;
}

export function hostHandlers(host: Host): Record<CallName, Handler> {
  return {
    PvxNull: () => 0,
    ExitProcess: (a) => {
      host.exit(a.uExitCode as number);
      return 0;
    },
    GetStdHandle: (a, t) => {
      const h = host.handles.std.get(a.nStdHandle as number);
      if (h === undefined) {
        t.lastError = win32Errors.ERROR_INVALID_HANDLE;
        return 0xffffffffffffffffn;
      }
      return h;
    },
    WriteFile: (a: Args, t) => {
      const object = host.handles.get(a.hFile as number);
      if (!object) return fail(t, win32Errors.ERROR_INVALID_HANDLE);
      if (object.stream === "stdin") return fail(t, win32Errors.ERROR_ACCESS_DENIED);
      const data = a.lpBuffer as Uint8Array;
      host.console.write(object.stream, data);
      (a.lpNumberOfBytesWritten as OutU32 | null)?.set(data.length);
      return 1;
    },
    PvxGetCommandLineW: (a, t) => {
      const line = host.commandLine;
      const out = a.lpBuffer as Uint8Array;
      const capacity = out.length / 2;
      if (capacity < line.length + 1) {
        t.lastError = win32Errors.ERROR_INSUFFICIENT_BUFFER;
        return line.length + 1;
      }
      const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
      for (let i = 0; i < line.length; i++) dv.setUint16(2 * i, line.charCodeAt(i), true);
      dv.setUint16(2 * line.length, 0, true);
      return line.length;
    },
    GetLastError: (_a, t) => t.lastError,
    SetLastError: (a, t) => {
      t.lastError = a.dwErrCode as number;
      return 0;
    },
  };
}
