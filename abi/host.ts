// What host handlers may reach, and the table of every call's handler. The
// handlers themselves live in abi/handlers/, one module per domain.

import type { CallName } from "./calls.ts";
import type { Handler } from "./dispatch.ts";
import type { ConsoleStream, HandleTable } from "./handles.ts";
import type { FileView } from "./fileview.ts";
import type { GuestHeap } from "./heap.ts";
import type { VirtualMemory } from "./virtual_memory.ts";
import { processHandlers } from "./handlers/process.ts";
import { fileHandlers } from "./handlers/files.ts";
import { memoryHandlers } from "./handlers/memory.ts";
import { timeHandlers } from "./handlers/time.ts";
import { moduleHandlers, type ModuleTable } from "./handlers/modules.ts";

export interface ConsoleIo {
  write(stream: ConsoleStream, bytes: Uint8Array): void;
  /** Blocks until input arrives; 0 at end of input. */
  read(into: Uint8Array): number;
}

/** Everything a handler can touch on the host: nothing else is reachable from the guest. */
export interface Host {
  readonly handles: HandleTable;
  readonly files: FileView;
  readonly heap: GuestHeap;
  readonly memory: VirtualMemory;
  /** Names upper-cased: Windows looks variables up case-insensitively. */
  readonly environment: ReadonlyMap<string, string>;
  /** Loaded modules and their exports, for GetModuleHandleW and GetProcAddress. */
  readonly modules: ModuleTable;
  /** Guest address of the UTF-16 command line the kernel left on the initial stack. */
  readonly commandLineAddress: number;
  readonly console: ConsoleIo;
  /** Epoch milliseconds when the instance started, for GetTickCount64. */
  readonly startedAt: number;
  /** Blocks the calling vCPU thread for `ms` (0 = yield), returning early if the instance is stopping. */
  sleep(ms: number): void;
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

export function hostHandlers(host: Host): Record<CallName, Handler> {
  return {
    ...processHandlers(host),
    ...fileHandlers(host),
    ...memoryHandlers(host),
    ...timeHandlers(host),
    ...moduleHandlers(host),
  };
}
