// Modules as a Windows app sees them: the exe, the DLLs it shipped (loaded at
// boot), and kernel32, whose "exports" are the thunks of the calls the
// bundle's manifest allows. pvx loads no code after boot.

import type { Handler } from "../dispatch.ts";
import { Win32Error } from "../dispatch.ts";
import type { Host } from "../host.ts";
import { win32Errors as E } from "../win32.ts";

/** Plain data, so it can cross to whichever thread serves hypercalls. */
export interface ModuleTable {
  /** The exe's HMODULE (its base address); for an ELF guest, its image start. */
  exe: number;
  /** [lower-case file name, HMODULE, [export name or null, ordinal, address][]] */
  modules: [string, number, [string | null, number, number][]][];
}

/** Windows matches module names case-insensitively, by file name, adding ".dll" when there is no extension. */
function moduleKey(name: string): string {
  const file = name.slice(Math.max(name.lastIndexOf("\\"), name.lastIndexOf("/")) + 1).toLowerCase();
  return file.includes(".") ? file : `${file}.dll`;
}

export function moduleHandlers(host: Host) {
  const byName = new Map(host.modules.modules.map(([name, handle]) => [name, handle]));
  const exportsOf = new Map(host.modules.modules.map(([, handle, exports]) => [handle, exports]));
  const find = (name: string) => {
    const handle = byName.get(moduleKey(name));
    if (handle === undefined) throw new Win32Error(E.ERROR_MOD_NOT_FOUND);
    return handle;
  };
  return {
    GetModuleHandleW: (a) => a.lpModuleName === null ? host.modules.exe : find(a.lpModuleName as string),
    LoadLibraryW: (a) => find(a.lpLibFileName as string),
    GetProcAddress: (a) => {
      const exports = exportsOf.get(Number(a.hModule as bigint));
      if (!exports) throw new Win32Error(E.ERROR_MOD_NOT_FOUND);
      const wanted = a.lpProcName as string | number;
      const found = exports.find(([name, ordinal]) =>
        typeof wanted === "number" ? ordinal === wanted : name === wanted
      );
      if (!found) throw new Win32Error(E.ERROR_PROC_NOT_FOUND);
      return found[2];
    },
  } satisfies Record<string, Handler>;
}
