// File and directory calls over the instance's sandboxed virtual drive
// (abi/fileview.ts). Each CreateFileW gives a handle its own file pointer, as on Windows; a duplicate
// (DuplicateHandle, in handles.ts) shares its source's.

import type { Args, Handler, OutU32 } from "../dispatch.ts";
import { Win32Error } from "../call_errors.ts";
import type { Host } from "../handler_context.ts";
import type { FileInformation, FindEntry } from "../fileview.ts";
import { filetimeDate } from "../filetime.ts";
import type { ByteRange } from "../open_files.ts";
import type { ConsoleStream } from "../handles.ts";
import { win32Constants as W, win32Errors as E } from "../win32.ts";
import { BY_HANDLE_INFO_SIZE, FIND_DATA_SIZE } from "../calls.ts";
import { copyOutWide, writeWide } from "./strings.ts";

// Specific access rights that imply reading, writing or deleting, besides the GENERIC_* ones.
const FILE_READ_DATA = 0x1, FILE_WRITE_DATA = 0x2, FILE_APPEND_DATA = 0x4;
const READ_RIGHTS = W.GENERIC_READ | W.GENERIC_ALL | FILE_READ_DATA;
const WRITE_RIGHTS = W.GENERIC_WRITE | W.GENERIC_ALL | FILE_WRITE_DATA | FILE_APPEND_DATA;
const DELETE_RIGHTS = W.DELETE | W.GENERIC_ALL;
const MOVEFILE_DELAY_UNTIL_REBOOT = 0x4;

/** WIN32_FIND_DATAW field offsets (x64 Windows). */
const FIND = { attributes: 0, creation: 4, access: 12, write: 20, sizeHigh: 28, sizeLow: 32, name: 44 } as const;

function writeFindData(out: Uint8Array, e: FindEntry): void {
  out.fill(0, 0, FIND_DATA_SIZE);
  const dv = new DataView(out.buffer, out.byteOffset, FIND_DATA_SIZE);
  dv.setUint32(FIND.attributes, e.attributes, true);
  for (const at of [FIND.creation, FIND.access, FIND.write]) dv.setBigUint64(at, e.lastWrite, true);
  dv.setUint32(FIND.sizeHigh, Math.floor(e.size / 2 ** 32), true);
  dv.setUint32(FIND.sizeLow, e.size >>> 0, true);
  writeWide(out, FIND.name, e.name.slice(0, 259));
}

/** BY_HANDLE_FILE_INFORMATION field offsets (x64 Windows). */
const BY_HANDLE = {
  attributes: 0,
  creation: 4,
  access: 12,
  write: 20,
  volume: 28,
  sizeHigh: 32,
  sizeLow: 36,
  links: 40,
  indexHigh: 44,
  indexLow: 48,
} as const;
/** The drive's volume serial number, as GetVolumeInformation would give it: "PVX1". */
const VOLUME_SERIAL = 0x50565831;

/** FNV-1a, 64-bit: a stable file index from a file's identity. */
function fileIndex(identity: string): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(identity)) {
    hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * 0x100000001b3n);
  }
  return hash;
}

function writeHandleInfo(out: Uint8Array, e: FileInformation): void {
  out.fill(0, 0, BY_HANDLE_INFO_SIZE);
  const dv = new DataView(out.buffer, out.byteOffset, BY_HANDLE_INFO_SIZE);
  dv.setUint32(BY_HANDLE.attributes, e.attributes, true);
  // Linux keeps no creation time: the last write stands in for it, as in find data.
  for (const at of [BY_HANDLE.creation, BY_HANDLE.write]) dv.setBigUint64(at, e.lastWrite, true);
  dv.setBigUint64(BY_HANDLE.access, e.lastAccess, true);
  dv.setUint32(BY_HANDLE.volume, VOLUME_SERIAL, true);
  dv.setUint32(BY_HANDLE.sizeHigh, Math.floor(e.size / 2 ** 32), true);
  dv.setUint32(BY_HANDLE.sizeLow, e.size >>> 0, true);
  dv.setUint32(BY_HANDLE.links, 1, true);
  const index = fileIndex(e.identity);
  dv.setUint32(BY_HANDLE.indexHigh, Number(index >> 32n), true);
  dv.setUint32(BY_HANDLE.indexLow, Number(index & 0xffffffffn), true);
}

/**
 * The console's device names, which open the console rather than a file:
 * CONIN$ and CONOUT$ by name, CON by the access asked for.
 */
function consoleDevice(name: string, read: boolean, write: boolean): ConsoleStream | undefined {
  const device = name.toUpperCase().replace(/^\\\\\.\\/, "");
  if (device === "CONIN$" || (device === "CON" && read && !write)) return "stdin";
  if (device === "CONOUT$" || (device === "CON" && write && !read)) return "stdout";
  return undefined;
}

function lockRange(a: Args): ByteRange {
  const wide = (low: unknown, high: unknown) => BigInt(high as number) << 32n | BigInt(low as number);
  return {
    offset: wide(a.dwFileOffsetLow, a.dwFileOffsetHigh),
    length: wide(a.nNumberOfBytesToLockLow, a.nNumberOfBytesToLockHigh),
  };
}

export function fileHandlers(host: Host) {
  const file = (a: Args, name = "hFile") => {
    const f = host.handles.get(a[name] as number, "file");
    if (!f) throw new Win32Error(E.ERROR_INVALID_HANDLE);
    return f;
  };
  // The console is a character device, which NT answers STATUS_INVALID_DEVICE_REQUEST.
  const lockable = (a: Args) => {
    if (host.handles.kindOf(a.hFile as number) === "console") throw new Win32Error(E.ERROR_INVALID_FUNCTION);
    return file(a).file;
  };
  const ok = (action: () => void) => {
    action();
    return 1;
  };

  return {
    CreateFileW: (a, t) => {
      const access = a.dwDesiredAccess as number;
      const flagsAndAttributes = a.dwFlagsAndAttributes as number;
      const disposition = a.dwCreationDisposition as number;
      if (disposition < W.CREATE_NEW || disposition > W.TRUNCATE_EXISTING) {
        throw new Win32Error(E.ERROR_INVALID_PARAMETER);
      }
      // pvx has no asynchronous I/O; an app that asks for it must not get silently synchronous handles.
      if (flagsAndAttributes & W.FILE_FLAG_OVERLAPPED) throw new Win32Error(E.ERROR_INVALID_PARAMETER);
      const read = (access & READ_RIGHTS) !== 0, write = (access & WRITE_RIGHTS) !== 0;
      const device = consoleDevice(a.lpFileName as string, read, write);
      if (device) {
        const handle = host.handles.open({ kind: "console", stream: device });
        if (handle === undefined) throw new Win32Error(E.ERROR_TOO_MANY_OPEN_FILES);
        return handle;
      }
      host.special.trace({ kind: "file", path: a.lpFileName as string, write });
      const options = {
        read,
        write,
        deleteAccess: (access & DELETE_RIGHTS) !== 0,
        disposition: disposition as 1 | 2 | 3 | 4 | 5,
        share: a.dwShareMode as number,
        attributes: flagsAndAttributes & 0xffff,
        flags: (flagsAndAttributes & 0xffff0000) >>> 0,
      };
      const { file: opened, existed } = host.files.open(a.lpFileName as string, options);
      const handle = host.handles.open({ kind: "file", file: opened, options, position: 0, read, write });
      if (handle === undefined) {
        opened.close();
        throw new Win32Error(E.ERROR_TOO_MANY_OPEN_FILES);
      }
      const reportsExisting = disposition === W.CREATE_ALWAYS || disposition === W.OPEN_ALWAYS;
      t.lastError = existed && reportsExisting ? E.ERROR_ALREADY_EXISTS : E.ERROR_SUCCESS;
      return handle;
    },
    ReadFile: (a) => {
      const into = a.lpBuffer as Uint8Array;
      const done = a.lpNumberOfBytesRead as OutU32 | null;
      done?.set(0); // Windows zeroes the count before any check, so a failed call reports 0

      const console = host.handles.get(a.hFile as number, "console");
      let n: number;
      if (console) {
        if (console.stream !== "stdin") throw new Win32Error(E.ERROR_ACCESS_DENIED);
        n = host.console.read(into);
      } else {
        const f = file(a);
        if (!f.read) throw new Win32Error(E.ERROR_ACCESS_DENIED);
        n = f.file.read(into, f.position);
        f.position += n;
      }
      done?.set(n);
      return 1;
    },
    WriteFile: (a) => {
      const from = a.lpBuffer as Uint8Array;
      const done = a.lpNumberOfBytesWritten as OutU32 | null;
      done?.set(0); // Windows zeroes the count before any check, so a failed call reports 0

      const console = host.handles.get(a.hFile as number, "console");
      let n: number;
      if (console) {
        if (console.stream === "stdin") throw new Win32Error(E.ERROR_ACCESS_DENIED);
        host.console.write(console.stream, from);
        n = from.length;
      } else {
        const f = file(a);
        if (!f.write) throw new Win32Error(E.ERROR_ACCESS_DENIED);
        n = f.file.write(from, f.position);
        f.position += n;
      }
      done?.set(n);
      return 1;
    },
    GetFileType: (a) => {
      const kind = host.handles.kindOf(a.hFile as number);
      if (kind === "console") return W.FILE_TYPE_PIPE;
      if (kind === "file") return W.FILE_TYPE_DISK;
      throw new Win32Error(E.ERROR_INVALID_HANDLE);
    },
    SetFilePointerEx: (a) => {
      const f = file(a);
      const distance = Number(BigInt.asIntN(64, a.liDistanceToMove as bigint));
      const origin = [0, f.position, f.file.size()][a.dwMoveMethod as number];
      if (origin === undefined) throw new Win32Error(E.ERROR_INVALID_PARAMETER);
      const target = origin + distance;
      if (target < 0) throw new Win32Error(E.ERROR_NEGATIVE_SEEK);
      f.position = target;
      const out = a.lpNewFilePointer as Uint8Array | null;
      if (out) new DataView(out.buffer, out.byteOffset, 8).setBigInt64(0, BigInt(target), true);
      return 1;
    },
    GetFileSizeEx: (a) => {
      const out = a.lpFileSize as Uint8Array;
      new DataView(out.buffer, out.byteOffset, 8).setBigInt64(0, BigInt(file(a).file.size()), true);
      return 1;
    },
    FlushFileBuffers: (a) => {
      const f = file(a);
      if (!f.write) throw new Win32Error(E.ERROR_ACCESS_DENIED);
      return ok(() => f.file.flush());
    },
    SetEndOfFile: (a) => {
      const f = file(a);
      if (!f.write) throw new Win32Error(E.ERROR_ACCESS_DENIED);
      return ok(() => f.file.setSize(f.position));
    },
    DeleteFileW: (a) => ok(() => host.files.delete(a.lpFileName as string)),
    MoveFileExW: (a) => {
      const flags = a.dwFlags as number;
      if (a.lpNewFileName === null || flags & MOVEFILE_DELAY_UNTIL_REBOOT) {
        throw new Win32Error(E.ERROR_INVALID_PARAMETER);
      }
      return ok(() =>
        host.files.move(
          a.lpExistingFileName as string,
          a.lpNewFileName as string,
          (flags & W.MOVEFILE_REPLACE_EXISTING) !== 0,
        )
      );
    },
    CreateDirectoryW: (a) => ok(() => host.files.createDirectory(a.lpPathName as string)),
    RemoveDirectoryW: (a) => ok(() => host.files.removeDirectory(a.lpPathName as string)),
    GetFileAttributesW: (a) => host.files.attributes(a.lpFileName as string),
    SetFileAttributesW: (a) => ok(() => host.files.setAttributes(a.lpFileName as string, a.dwFileAttributes as number)),
    GetFileInformationByHandle: (a) => {
      writeHandleInfo(a.lpFileInformation as Uint8Array, host.files.fileInformation(file(a).file.path));
      return 1;
    },
    PvxSetFileTime: (a) => {
      // 0 and ~0 leave a time as it is, as on Windows.
      const date = (t: bigint) => t === 0n || t === 0xffffffffffffffffn ? null : filetimeDate(t);
      file(a).file.setTimes(date(a.ftLastAccessTime as bigint), date(a.ftLastWriteTime as bigint));
      return 1;
    },
    LockFile: (a) => ok(() => lockable(a).lock(lockRange(a))),
    UnlockFile: (a) => ok(() => lockable(a).unlock(lockRange(a))),
    PvxLockFileEx: (a) =>
      ok(() =>
        lockable(a).lock({
          offset: a.Offset as bigint,
          length: a.Length as bigint,
          shared: ((a.dwFlags as number) & W.LOCKFILE_EXCLUSIVE_LOCK) === 0,
        })
      ),
    GetDiskFreeSpaceExW: (a) => {
      const space = host.files.freeSpace(a.lpDirectoryName as string | null);
      const fields = [
        [a.lpFreeBytesAvailableToCaller, space.available],
        [a.lpTotalNumberOfBytes, space.total],
        [a.lpTotalNumberOfFreeBytes, space.free],
      ] as const;
      for (const [out, bytes] of fields) {
        if (out) {
          new DataView((out as Uint8Array).buffer, (out as Uint8Array).byteOffset, 8).setBigUint64(
            0,
            BigInt(bytes),
            true,
          );
        }
      }
      return 1;
    },
    FindFirstFileW: (a) => {
      const entries = host.files.find(a.lpFileName as string);
      const handle = host.handles.open({ kind: "find", entries, next: 1 });
      if (handle === undefined) throw new Win32Error(E.ERROR_TOO_MANY_OPEN_FILES);
      writeFindData(a.lpFindFileData as Uint8Array, entries[0]);
      return handle;
    },
    FindNextFileW: (a) => {
      const find = host.handles.get(a.hFindFile as number, "find");
      if (!find) throw new Win32Error(E.ERROR_INVALID_HANDLE);
      if (find.next >= find.entries.length) throw new Win32Error(E.ERROR_NO_MORE_FILES);
      writeFindData(a.lpFindFileData as Uint8Array, find.entries[find.next++]);
      return 1;
    },
    FindClose: (a) => {
      if (host.handles.kindOf(a.hFindFile as number) !== "find") throw new Win32Error(E.ERROR_INVALID_HANDLE);
      host.handles.take(a.hFindFile as number);
      return 1;
    },
    GetCurrentDirectoryW: (a) => copyOutWide(a.lpBuffer as Uint8Array, host.files.currentDirectory),
    SetCurrentDirectoryW: (a) => ok(() => host.files.setCurrentDirectory(a.lpPathName as string)),
  } satisfies Record<string, Handler>;
}
