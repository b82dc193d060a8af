/* The legacy 32-bit file-pointer and size calls, on top of their 64-bit forms. */
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
