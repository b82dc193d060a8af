// The table of every call answered with the instance's shared state. The handlers themselves live in
// abi/handlers/, one module per domain.

import type { CallName } from "./calls.ts";
import type { Handler } from "./dispatch.ts";
import type { Host } from "./handler_context.ts";
import { processHandlers } from "./handlers/process.ts";
import { fileHandlers } from "./handlers/files.ts";
import { handleHandlers } from "./handlers/handles.ts";
import { memoryHandlers } from "./handlers/memory.ts";
import { moduleHandlers } from "./handlers/modules.ts";
import { threadObjectHandlers } from "./handlers/threads.ts";

/** Handlers of the calls that need the instance's shared state (handle table, drive, memory). */
export function hostHandlers(host: Host) {
  return {
    ...processHandlers(host),
    ...handleHandlers(host),
    ...fileHandlers(host),
    ...memoryHandlers(host),
    ...moduleHandlers(host),
    ...threadObjectHandlers(host),
  } satisfies Partial<Record<CallName, Handler>>;
}
