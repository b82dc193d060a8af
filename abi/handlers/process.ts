// Process-wide facts: standard handles, command line, environment.

import type { Handler } from "../dispatch.ts";
import { Win32Error } from "../call_errors.ts";
import type { Host } from "../handler_context.ts";
import { win32Errors } from "../win32.ts";
import { copyOutWide, writeWide } from "./strings.ts";

export function processHandlers(host: Host) {
  return {
    GetStdHandle: (a) => {
      const h = host.handles.std.get(a.nStdHandle as number);
      if (h === undefined) throw new Win32Error(win32Errors.ERROR_INVALID_HANDLE);
      return h;
    },
    GetCommandLineW: () => host.commandLineAddress,
    GetEnvironmentVariableW: (a) => {
      const value = host.environment.get((a.lpName as string).toUpperCase());
      if (value === undefined) throw new Win32Error(win32Errors.ERROR_ENVVAR_NOT_FOUND);
      return copyOutWide(a.lpBuffer as Uint8Array, value);
    },
    PvxGetEnvironmentBlock: (a) => {
      const entries = [...host.environment].sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0)
        .map(([name, value]) => `${name}=${value}\0`).join("");
      const block = (entries || "\0") + "\0"; // two NULs end it even when it is empty
      const out = a.lpBuffer as Uint8Array;
      if (out.length / 2 < block.length) return block.length;
      writeWide(out, 0, block.slice(0, -1));
      return block.length;
    },
  } satisfies Record<string, Handler>;
}
