// The DOS attributes a file keeps beyond its data, held in its host mode bits
// much as Samba's "map readonly", "map hidden" and "map system" hold them, so
// they stay with the file through renames, copies, merges and syncs with no
// metadata beside it. The overlay's archive (abi/overlay.ts) carries them too.
//   READONLY  the owner's write bit cleared
//   HIDDEN    others' execute bit
//   SYSTEM    the group's execute bit
//   ARCHIVE   the sticky bit cleared (Linux ignores it on files), so a file made on the host has it, as a new
//             file on Windows does
// A directory keeps none of them.

import { win32Constants as W } from "./win32.ts";

/** What SetFileAttributes keeps on a file in the overlay. */
export const KEPT_ATTRIBUTES = W.FILE_ATTRIBUTE_READONLY | W.FILE_ATTRIBUTE_HIDDEN | W.FILE_ATTRIBUTE_SYSTEM |
  W.FILE_ATTRIBUTE_ARCHIVE;

const OWNER_WRITE = 0o200, GROUP_EXECUTE = 0o010, OTHERS_EXECUTE = 0o001, STICKY = 0o1000;

/**
 * The kept attributes a host file's mode holds. A share's files are the user's own, whose execute bits
 * mean what they mean on the host: with `readOnlyOnly` only the write bit counts, and they are archived.
 */
export function modeAttributes(mode: number, readOnlyOnly = false): number {
  const readOnly = (mode & OWNER_WRITE) === 0 ? W.FILE_ATTRIBUTE_READONLY : 0;
  if (readOnlyOnly) return readOnly | W.FILE_ATTRIBUTE_ARCHIVE;
  return readOnly | (mode & OTHERS_EXECUTE ? W.FILE_ATTRIBUTE_HIDDEN : 0) |
    (mode & GROUP_EXECUTE ? W.FILE_ATTRIBUTE_SYSTEM : 0) | (mode & STICKY ? 0 : W.FILE_ATTRIBUTE_ARCHIVE);
}

/** `mode` changed to hold `attributes` (only the kept ones count; `readOnlyOnly` as above). */
export function attributesMode(mode: number, attributes: number, readOnlyOnly = false): number {
  const bits = readOnlyOnly ? OWNER_WRITE : OWNER_WRITE | GROUP_EXECUTE | OTHERS_EXECUTE | STICKY;
  const wanted = (attributes & W.FILE_ATTRIBUTE_READONLY ? 0 : OWNER_WRITE) |
    (attributes & W.FILE_ATTRIBUTE_HIDDEN ? OTHERS_EXECUTE : 0) |
    (attributes & W.FILE_ATTRIBUTE_SYSTEM ? GROUP_EXECUTE : 0) |
    (attributes & W.FILE_ATTRIBUTE_ARCHIVE ? 0 : STICKY);
  return (mode & 0o7777 & ~bits) | (wanted & bits);
}
