// Calls on a handle of any kind (console, file, event, mutex, semaphore, thread): closing and duplicating it.

import type { Handler } from "../dispatch.ts";
import { Win32Error } from "../call_errors.ts";
import type { Host } from "../handler_context.ts";
import { win32Errors as E } from "../win32.ts";

const DUPLICATE_CLOSE_SOURCE = 0x1;

export function handleHandlers(host: Host) {
  /** CloseHandle of any handle; find handles close with FindClose and the heap never does, as on Windows. */
  const closeHandle = (h: number) => {
    if (host.sync.close(h)) return;
    const kind = host.handles.kindOf(h);
    if (kind === undefined || kind === "find" || kind === "heap") throw new Win32Error(E.ERROR_INVALID_HANDLE);
    const o = host.handles.take(h);
    if (o?.kind === "file") o.file.close();
  };

  return {
    CloseHandle: (a) => {
      closeHandle(a.hObject as number);
      return 1;
    },
    PvxDuplicateHandle: (a) => {
      const source = a.hSourceHandle as number, out = a.lpTargetHandle as Uint8Array | null;
      const duplicate = () => {
        const waitable = host.sync.resolve(source) !== undefined, kind = host.handles.kindOf(source);
        if (!waitable && kind !== "console" && kind !== "file") throw new Win32Error(E.ERROR_INVALID_HANDLE);
        if (!out) return;
        const twin = waitable ? host.sync.duplicate(source) : host.handles.duplicate(source);
        if (twin === undefined) {
          throw new Win32Error(
            waitable ? E.ERROR_NOT_ENOUGH_MEMORY : E.ERROR_TOO_MANY_OPEN_FILES,
            waitable ? "the object has all the handles it may have" : "the handle table is full",
          );
        }
        new DataView(out.buffer, out.byteOffset, 8).setBigUint64(0, BigInt(twin), true);
      };
      // Windows closes the source whatever became of the duplicate.
      const closeSourceIfAsked = () => {
        if (!((a.dwOptions as number) & DUPLICATE_CLOSE_SOURCE)) return;
        try {
          closeHandle(source);
        } catch (e) {
          if (!(e instanceof Win32Error)) throw e;
        }
      };
      try {
        duplicate();
      } catch (e) {
        closeSourceIfAsked();
        throw e;
      }
      closeSourceIfAsked();
      return 1;
    },
  } satisfies Record<string, Handler>;
}
