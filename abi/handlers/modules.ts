// Modules as a Windows app sees them: the exe, the DLLs it shipped (loaded at
// boot), and kernel32, whose "exports" are the thunks of every call the ABI
// has. pvx loads no code after boot, so a LoadLibrary finds a loaded module
// or nothing; what a lookup may reach beyond what the bundle's analysis saw
// is the special call's to decide (abi/special_calls.ts).

import type { Handler } from "../dispatch.ts";
import { Win32Error } from "../call_errors.ts";
import type { Host } from "../handler_context.ts";
import { win32Errors as E } from "../win32.ts";

/** Windows matches module names case-insensitively, by file name, adding ".dll" when there is no extension. */
export function moduleKey(name: string): string {
  const file = name.slice(Math.max(name.lastIndexOf("\\"), name.lastIndexOf("/")) + 1).toLowerCase();
  return file.includes(".") ? file : `${file}.dll`;
}

export function moduleHandlers(host: Host) {
  const special = host.special;
  const byName = new Map(host.modules.modules.map(([name, handle]) => [name, handle]));
  const nameOf = new Map<number, string>();
  const exportsOf = new Map<number, [string | null, number, number][]>();
  for (const [name, handle, exports] of host.modules.modules) {
    if (!nameOf.has(handle)) nameOf.set(handle, name);
    exportsOf.set(handle, exports);
  }
  const find = (name: string, dynamic: boolean) => {
    const key = moduleKey(name);
    const handle = byName.get(key);
    if (handle !== undefined) return handle;
    if (dynamic) {
      if (special.sawLibrary(key)) special.trace({ kind: "library", name: key, found: false });
      else special.unseen({ kind: "library", name: key, found: false }, "LoadLibraryW", E.ERROR_MOD_NOT_FOUND);
    }
    // Allowed or not, a DLL the bundle lacks cannot be loaded.
    throw new Win32Error(E.ERROR_MOD_NOT_FOUND);
  };
  return {
    GetModuleHandleW: (a) => a.lpModuleName === null ? host.modules.exe : find(a.lpModuleName as string, false),
    LoadLibraryW: (a) => find(a.lpLibFileName as string, true),
    GetProcAddress: (a) => {
      const handle = Number(a.hModule as bigint);
      const exports = exportsOf.get(handle);
      if (!exports) throw new Win32Error(E.ERROR_MOD_NOT_FOUND);
      const wanted = a.lpProcName as string | number;
      const found = exports.find(([name, ordinal]) =>
        typeof wanted === "number" ? ordinal === wanted : name === wanted
      );
      const event = {
        kind: "proc" as const,
        module: nameOf.get(handle)!,
        name: typeof wanted === "number" ? `#${wanted}` : wanted,
        found: found !== undefined,
      };
      // A function that exists nowhere grants nothing: the app hears so, as from Windows, whatever the policy.
      if (found && !special.sawProc(event.module, event.name)) {
        special.unseen(event, "GetProcAddress", E.ERROR_PROC_NOT_FOUND);
      } else special.trace(event);
      if (!found) throw new Win32Error(E.ERROR_PROC_NOT_FOUND);
      return found[2];
    },
  } satisfies Record<string, Handler>;
}
