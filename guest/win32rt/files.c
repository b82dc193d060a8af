/* The legacy 32-bit file-pointer and size calls, on top of their 64-bit
 * forms, what a handle tells of its file (times, ntdll's information
 * classes), on top of GetFileInformationByHandle, and LockFileEx's waits. */
#include "pvxrt.h"

EXPORT DWORD WINAPI SetFilePointer(HANDLE h, LONG distance, PLONG distance_high, DWORD method) {
  LARGE_INTEGER move, now;
  move.QuadPart = distance_high ? ((LONGLONG)*distance_high << 32) | (DWORD)distance : distance;
  if (!SetFilePointerEx(h, move, &now, method)) return INVALID_SET_FILE_POINTER;
  if (distance_high) *distance_high = now.HighPart;
  else if (now.HighPart) {
    /* Without a high half to report, a position past 4 GiB cannot be told apart from an error. */
    SetLastError(ERROR_INVALID_PARAMETER);
    return INVALID_SET_FILE_POINTER;
  }
  if (now.LowPart == INVALID_SET_FILE_POINTER) SetLastError(NO_ERROR);
  return now.LowPart;
}

EXPORT DWORD WINAPI GetFileSize(HANDLE h, LPDWORD high) {
  LARGE_INTEGER size;
  if (!GetFileSizeEx(h, &size)) return INVALID_FILE_SIZE;
  if (high) *high = size.HighPart;
  if (size.LowPart == INVALID_FILE_SIZE) SetLastError(NO_ERROR);
  return size.LowPart;
}

EXPORT BOOL WINAPI GetFileTime(HANDLE h, LPFILETIME creation, LPFILETIME access, LPFILETIME write) {
  BY_HANDLE_FILE_INFORMATION info;
  if (!GetFileInformationByHandle(h, &info)) return FALSE;
  if (creation) *creation = info.ftCreationTime;
  if (access) *access = info.ftLastAccessTime;
  if (write) *write = info.ftLastWriteTime;
  return TRUE;
}

#define STATUS_INVALID_INFO_CLASS ((NTSTATUS)0xC0000003)
#define STATUS_INFO_LENGTH_MISMATCH ((NTSTATUS)0xC0000004)
#define ALLOCATION_UNIT 4096 /* what a 4 KiB-cluster NTFS volume rounds a file's allocation to */

static LONGLONG filetime_value(FILETIME t) { return (LONGLONG)(((ULONG64)t.dwHighDateTime << 32) | t.dwLowDateTime); }

/* The classes a C runtime asks about an open file: basic (times and
 * attributes), standard (sizes, links, directory) and its position. */
EXPORT NTSTATUS NTAPI NtQueryInformationFile(HANDLE h, PIO_STATUS_BLOCK io, PVOID out, ULONG length,
                                             FILE_INFORMATION_CLASS cls) {
  ULONG needed = cls == FileBasicInformation      ? sizeof(FILE_BASIC_INFORMATION)
                 : cls == FileStandardInformation ? sizeof(FILE_STANDARD_INFORMATION)
                 : cls == FilePositionInformation ? sizeof(FILE_POSITION_INFORMATION)
                                                  : 0;
  if (!needed) return STATUS_INVALID_INFO_CLASS;
  if (length < needed) return STATUS_INFO_LENGTH_MISMATCH;
  BY_HANDLE_FILE_INFORMATION info;
  LARGE_INTEGER zero = { .QuadPart = 0 }, position;
  if (cls == FilePositionInformation ? !SetFilePointerEx(h, zero, &position, FILE_CURRENT)
                                     : !GetFileInformationByHandle(h, &info))
    return STATUS_INVALID_HANDLE; /* the one way either fails on a handle pvx gave out */
  LONGLONG size = ((LONGLONG)info.nFileSizeHigh << 32) | info.nFileSizeLow;
  if (cls == FileBasicInformation) {
    FILE_BASIC_INFORMATION *b = out;
    b->CreationTime.QuadPart = filetime_value(info.ftCreationTime);
    b->LastAccessTime.QuadPart = filetime_value(info.ftLastAccessTime);
    b->LastWriteTime.QuadPart = b->ChangeTime.QuadPart = filetime_value(info.ftLastWriteTime);
    b->FileAttributes = info.dwFileAttributes;
  } else if (cls == FileStandardInformation) {
    FILE_STANDARD_INFORMATION *s = out;
    s->AllocationSize.QuadPart = (size + ALLOCATION_UNIT - 1) & -(LONGLONG)ALLOCATION_UNIT;
    s->EndOfFile.QuadPart = size;
    s->NumberOfLinks = info.nNumberOfLinks;
    s->DeletePending = FALSE;
    s->Directory = (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
  } else ((FILE_POSITION_INFORMATION *)out)->CurrentByteOffset = position;
  io->Status = STATUS_SUCCESS;
  io->Information = needed;
  return STATUS_SUCCESS;
}

/* Linux keeps no creation time to set, so only the access and write times
 * change; a NULL pointer, or a time of 0 or ~0, leaves one as it is. */
EXPORT BOOL WINAPI SetFileTime(HANDLE h, const FILETIME *creation, const FILETIME *access, const FILETIME *write) {
  (void)creation;
  return PvxSetFileTime(h, access ? (ULONGLONG)filetime_value(*access) : 0, write ? (ULONGLONG)filetime_value(*write) : 0);
}

/* The range an OVERLAPPED gives LockFileEx and UnlockFileEx: they take their offset from it, not the file pointer. */
static BOOL overlapped_range(DWORD reserved, LPOVERLAPPED at, DWORD low, DWORD high, ULONGLONG *offset,
                             ULONGLONG *length) {
  if (reserved || !at) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  *offset = ((ULONGLONG)at->OffsetHigh << 32) | at->Offset;
  *length = ((ULONGLONG)high << 32) | low;
  return TRUE;
}

/* How long a waiting LockFileEx sleeps between tries, at most. The host tells no one when a lock goes, so a
 * waiter looks again, sooner at first: a lock held briefly is taken soon after it goes, a long one costs few
 * tries. */
#define LOCK_RETRY_MAX_MS 16

EXPORT BOOL WINAPI LockFileEx(HANDLE file, DWORD flags, DWORD reserved, DWORD low, DWORD high, LPOVERLAPPED at) {
  ULONGLONG offset, length;
  if (!overlapped_range(reserved, at, low, high, &offset, &length)) return FALSE;
  for (DWORD pause = 1;; pause = pause < LOCK_RETRY_MAX_MS ? pause * 2 : LOCK_RETRY_MAX_MS) {
    if (PvxLockFileEx(file, flags, offset, length)) return TRUE;
    if ((flags & LOCKFILE_FAIL_IMMEDIATELY) || GetLastError() != ERROR_LOCK_VIOLATION) return FALSE;
    Sleep(pause);
  }
}

EXPORT BOOL WINAPI UnlockFileEx(HANDLE file, DWORD reserved, DWORD low, DWORD high, LPOVERLAPPED at) {
  ULONGLONG offset, length;
  if (!overlapped_range(reserved, at, low, high, &offset, &length)) return FALSE;
  return UnlockFile(file, (DWORD)offset, (DWORD)(offset >> 32), (DWORD)length, (DWORD)(length >> 32));
}
