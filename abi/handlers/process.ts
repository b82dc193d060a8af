// Process-wide calls: exit, standard handles, command line, environment, last error.

import type { Handler } from "../dispatch.ts";
import { Win32Error } from "../dispatch.ts";
import type { Host } from "../host.ts";
import { win32Errors } from "../win32.ts";
import { copyOutWide } from "./strings.ts";

export function processHandlers(host: Host) {
  return {
    PvxNull: () => 0,
    ExitProcess: (a) => {
      host.exit(a.uExitCode as number);
      return 0;
    },
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
    GetLastError: (_a, t) => t.lastError,
    SetLastError: (a, t) => {
      t.lastError = a.dwErrCode as number;
      return 0;
    },
  } satisfies Record<string, Handler>;
}
