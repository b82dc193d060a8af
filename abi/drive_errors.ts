// How the drive's failures reach the guest: as Win32 error codes, with messages that say where.

import { Win32Error } from "./call_errors.ts";
import { win32Errors as E } from "./win32.ts";
import { OverlayError } from "./overlay.ts";
import type { DiskQuota } from "./disk_quota.ts";

/**
 * A call on the drive failed the Win32 way; `code` is what GetLastError returns. It is a
 * Win32Error so the dispatcher hands the code to the guest without each handler catching it.
 */
export class FileViewError extends Win32Error {
  constructor(code: number, message: string) {
    super(code, message);
    this.name = "FileViewError";
  }
}

export function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/** Which Win32 error a host errno becomes; anything unlisted is refused as ACCESS_DENIED. */
const HOST_ERRORS: Record<string, number> = {
  ENOENT: E.ERROR_FILE_NOT_FOUND,
  ENOTDIR: E.ERROR_PATH_NOT_FOUND,
  EEXIST: E.ERROR_ALREADY_EXISTS,
  ENOTEMPTY: E.ERROR_DIR_NOT_EMPTY,
  EROFS: E.ERROR_WRITE_PROTECT,
  ENOSPC: E.ERROR_DISK_FULL,
  EDQUOT: E.ERROR_DISK_FULL,
  EFBIG: E.ERROR_DISK_FULL,
  ENAMETOOLONG: E.ERROR_FILENAME_EXCED_RANGE,
  EMFILE: E.ERROR_TOO_MANY_OPEN_FILES,
  ENFILE: E.ERROR_TOO_MANY_OPEN_FILES,
  EBUSY: E.ERROR_BUSY,
  EINVAL: E.ERROR_INVALID_PARAMETER,
  EXDEV: E.ERROR_NOT_SAME_DEVICE,
};

/** Runs host I/O for `where`, turning host errors into FileViewErrors; bugs (no errno) still surface as themselves. */
export function hostCall<T>(where: string, action: () => T): T {
  try {
    return action();
  } catch (e) {
    // The overlay is pvx's own; what is wrong in it is someone else's doing, so the guest is refused.
    if (e instanceof OverlayError) throw new FileViewError(E.ERROR_ACCESS_DENIED, e.message);
    const errno = (e as { code?: unknown } | null)?.code;
    if (e instanceof FileViewError || typeof errno !== "string") throw e;
    throw new FileViewError(HOST_ERRORS[errno] ?? E.ERROR_ACCESS_DENIED, `${where}: ${(e as Error).message}`);
  }
}

/** Takes `bytes` of the overlay's quota for `where`, or refuses the guest as a full disk would. */
export function charge(quota: DiskQuota | undefined, bytes: number, where: string): void {
  if (quota && !quota.take(bytes)) {
    throw new FileViewError(
      E.ERROR_DISK_FULL,
      `${where}: the overlay's quota of ${quota.limit} bytes is full (${quota.used} used, ${bytes} more needed)`,
    );
  }
}
