/* CopyFile, built on the calls any app may make so the copy passes every
 * check the app's own would (sandbox, share modes, quota), and the two link
 * calls, which pvx's drive does not offer. */
#include "pvxrt.h"

#define COPY_CHUNK (64 * 1024)

static BOOL copy_data(HANDLE from, HANDLE to) {
  BYTE *chunk = HeapAlloc(GetProcessHeap(), 0, COPY_CHUNK);
  if (!chunk) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return FALSE;
  }
  BOOL ok = TRUE;
  for (DWORD got, put; ok && (ok = ReadFile(from, chunk, COPY_CHUNK, &got, NULL)) && got;)
    for (DWORD done = 0; ok && done < got; done += put) ok = WriteFile(to, chunk + done, got - done, &put, NULL);
  HeapFree(GetProcessHeap(), 0, chunk);
  return ok;
}

EXPORT BOOL WINAPI CopyFileW(LPCWSTR from, LPCWSTR to, BOOL fail_if_exists) {
  if (!from || !to) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  /* Not sharing write makes a copy onto the source itself fail with ERROR_SHARING_VIOLATION, as on Windows,
   * before its truncation could lose the data. */
  HANDLE src = CreateFileW(from, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, OPEN_EXISTING, 0, NULL);
  if (src == INVALID_HANDLE_VALUE) return FALSE;
  BY_HANDLE_FILE_INFORMATION info;
  HANDLE dst = INVALID_HANDLE_VALUE;
  if (GetFileInformationByHandle(src, &info))
    dst = CreateFileW(to, GENERIC_WRITE, 0, NULL, fail_if_exists ? CREATE_NEW : CREATE_ALWAYS, info.dwFileAttributes,
                      NULL);
  if (dst == INVALID_HANDLE_VALUE) {
    DWORD error = GetLastError();
    CloseHandle(src);
    SetLastError(error);
    return FALSE;
  }
  /* The copy keeps the source's write time; its creation and access times are the copy's own. */
  BOOL ok = copy_data(src, dst) && SetFileTime(dst, NULL, NULL, &info.ftLastWriteTime);
  DWORD error = GetLastError();
  CloseHandle(src);
  CloseHandle(dst);
  /* A copy cut short (the quota, say) leaves no partial file behind. */
  if (!ok) DeleteFileW(to);
  SetLastError(ok ? NO_ERROR : error);
  return ok;
}

EXPORT BOOLEAN WINAPI CreateSymbolicLinkW(LPCWSTR link, LPCWSTR target, DWORD flags) {
  (void)link, (void)target, (void)flags;
  /* Windows asks for SeCreateSymbolicLinkPrivilege or developer mode, which an app under pvx, like a standard
   * user's, does not have. */
  SetLastError(ERROR_PRIVILEGE_NOT_HELD);
  return FALSE;
}

EXPORT BOOL WINAPI CreateHardLinkW(LPCWSTR link, LPCWSTR existing, LPSECURITY_ATTRIBUTES sa) {
  (void)link, (void)existing, (void)sa;
  /* A name on the overlay linked to a bundle file would lose it at the first copy-up; pvx's drive answers as a
   * volume without hard links (FAT) does. */
  SetLastError(ERROR_INVALID_FUNCTION);
  return FALSE;
}
