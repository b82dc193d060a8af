// CreateFileW's options for the drive's tests: open an existing file for reading, shared every way,
// unless the test says otherwise.

import type { OpenOptions } from "../../abi/fileview.ts";
import { SHARE_ALL } from "../../abi/open_files.ts";
import { win32Constants as W } from "../../abi/win32.ts";

export function openOptions(o: Partial<OpenOptions> = {}): OpenOptions {
  return {
    read: true,
    write: false,
    deleteAccess: false,
    disposition: W.OPEN_EXISTING,
    share: SHARE_ALL,
    attributes: 0,
    flags: 0,
    ...o,
  };
}
