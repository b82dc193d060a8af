/* The ANSI (...A) forms of the file, directory, environment and named-object calls: each
 * converts its strings through the ANSI code page (pvx's file APIs are never
 * switched to OEM) and calls the wide form, as kernel32 does. */
#include "codepages.h"

/* A wide copy on the process heap, or NULL with the last error set. */
static LPWSTR wide(LPCSTR s) {
  if (!s) return NULL;
  int n = MultiByteToWideChar(CP_ACP, 0, s, -1, NULL, 0);
  LPWSTR w = HeapAlloc(GetProcessHeap(), 0, n * sizeof(WCHAR));
  if (!w) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return NULL;
  }
  MultiByteToWideChar(CP_ACP, 0, s, -1, w, n);
  return w;
}

static void release(LPWSTR w) {
  if (w) HeapFree(GetProcessHeap(), 0, w);
}

/* A wide answer of `n` characters (NUL excluded) into an ANSI buffer, with the Win32 size contract:
 * the length on success, else the size needed including the NUL. */
static DWORD narrow_answer(LPCWSTR w, DWORD n, LPSTR out, DWORD size) {
  int need = WideCharToMultiByte(CP_ACP, 0, w, n + 1, NULL, 0, NULL, NULL);
  if ((DWORD)need > size) return need;
  WideCharToMultiByte(CP_ACP, 0, w, n + 1, out, size, NULL, NULL);
  return need - 1;
}

#define WITH_WIDE(arg, w, fail, call) \
  LPWSTR w = wide(arg);               \
  if (arg && !w) return fail;         \
  __typeof__(call) r = call;          \
  release(w);                         \
  return r;

/* Two names, for calls that answer FALSE on failure. */
#define WITH_WIDE2(a, wa, b, wb, call)                      \
  LPWSTR wa = wide(a), wb = wide(b);                        \
  BOOL r = (!a || wa) && (!b || wb) ? (BOOL)(call) : FALSE; \
  release(wa), release(wb);                                 \
  return r;

EXPORT HANDLE WINAPI CreateFileA(LPCSTR name, DWORD access, DWORD share, LPSECURITY_ATTRIBUTES sa, DWORD disposition,
                                 DWORD flags, HANDLE tmpl) {
  WITH_WIDE(name, w, INVALID_HANDLE_VALUE, CreateFileW(w, access, share, sa, disposition, flags, tmpl))
}
EXPORT BOOL WINAPI DeleteFileA(LPCSTR name) { WITH_WIDE(name, w, FALSE, DeleteFileW(w)) }
EXPORT BOOL WINAPI CreateDirectoryA(LPCSTR name, LPSECURITY_ATTRIBUTES sa) {
  WITH_WIDE(name, w, FALSE, CreateDirectoryW(w, sa))
}
EXPORT BOOL WINAPI RemoveDirectoryA(LPCSTR name) { WITH_WIDE(name, w, FALSE, RemoveDirectoryW(w)) }

EXPORT BOOL WINAPI SetFileAttributesA(LPCSTR name, DWORD attributes) {
  WITH_WIDE(name, w, FALSE, SetFileAttributesW(w, attributes))
}
EXPORT DWORD WINAPI GetFileAttributesA(LPCSTR name) { WITH_WIDE(name, w, INVALID_FILE_ATTRIBUTES, GetFileAttributesW(w)) }
EXPORT BOOL WINAPI SetCurrentDirectoryA(LPCSTR name) { WITH_WIDE(name, w, FALSE, SetCurrentDirectoryW(w)) }
EXPORT BOOL WINAPI GetFileAttributesExA(LPCSTR name, GET_FILEEX_INFO_LEVELS level, LPVOID info) {
  WITH_WIDE(name, w, FALSE, GetFileAttributesExW(w, level, info))
}

EXPORT BOOL WINAPI MoveFileExA(LPCSTR from, LPCSTR to, DWORD flags) {
  WITH_WIDE2(from, wf, to, wt, MoveFileExW(wf, wt, flags))
}
EXPORT BOOL WINAPI CopyFileA(LPCSTR from, LPCSTR to, BOOL fail_if_exists) {
  WITH_WIDE2(from, wf, to, wt, CopyFileW(wf, wt, fail_if_exists))
}
EXPORT BOOLEAN WINAPI CreateSymbolicLinkA(LPCSTR link, LPCSTR target, DWORD flags) {
  WITH_WIDE2(link, wl, target, wt, CreateSymbolicLinkW(wl, wt, flags))
}
EXPORT BOOL WINAPI CreateHardLinkA(LPCSTR link, LPCSTR existing, LPSECURITY_ATTRIBUTES sa) {
  WITH_WIDE2(link, wl, existing, we, CreateHardLinkW(wl, we, sa))
}
EXPORT BOOL WINAPI MoveFileA(LPCSTR from, LPCSTR to) { return MoveFileExA(from, to, MOVEFILE_COPY_ALLOWED); }
EXPORT BOOL WINAPI MoveFileW(LPCWSTR from, LPCWSTR to) { return MoveFileExW(from, to, MOVEFILE_COPY_ALLOWED); }

EXPORT DWORD WINAPI GetCurrentDirectoryA(DWORD size, LPSTR out) {
  WCHAR buf[MAX_PATH + 1];
  DWORD n = GetCurrentDirectoryW(MAX_PATH + 1, buf);
  return n && n <= MAX_PATH ? narrow_answer(buf, n, out, size) : 0;
}

EXPORT DWORD WINAPI GetEnvironmentVariableA(LPCSTR name, LPSTR out, DWORD size) {
  LPWSTR w = wide(name);
  if (!w) return 0;
  DWORD need = GetEnvironmentVariableW(w, NULL, 0);
  DWORD r = 0;
  LPWSTR value = need ? HeapAlloc(GetProcessHeap(), 0, need * sizeof(WCHAR)) : NULL;
  if (value) {
    DWORD n = GetEnvironmentVariableW(w, value, need);
    r = narrow_answer(value, n, out, size);
    HeapFree(GetProcessHeap(), 0, value);
  }
  release(w);
  return r;
}

EXPORT BOOL WINAPI SetEnvironmentVariableA(LPCSTR name, LPCSTR value) {
  LPWSTR n = wide(name), v = wide(value);
  BOOL r = (!name || n) && (!value || v) ? SetEnvironmentVariableW(n, v) : FALSE;
  release(n);
  release(v);
  return r;
}

EXPORT DWORD WINAPI ExpandEnvironmentStringsA(LPCSTR src, LPSTR dst, DWORD size) {
  LPWSTR w = wide(src);
  if (!w) {
    if (!src) SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  DWORD need = ExpandEnvironmentStringsW(w, NULL, 0), r = 0;
  LPWSTR expanded = HeapAlloc(GetProcessHeap(), 0, need * sizeof(WCHAR));
  if (expanded) {
    ExpandEnvironmentStringsW(w, expanded, need);
    r = narrow_answer(expanded, need - 1, dst, size);
    if (r < size) r++; /* this one counts the NUL either way */
    HeapFree(GetProcessHeap(), 0, expanded);
  } else {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
  }
  release(w);
  return r;
}

static void narrow_find_data(const WIN32_FIND_DATAW *w, LPWIN32_FIND_DATAA a) {
  a->dwFileAttributes = w->dwFileAttributes;
  a->ftCreationTime = w->ftCreationTime;
  a->ftLastAccessTime = w->ftLastAccessTime;
  a->ftLastWriteTime = w->ftLastWriteTime;
  a->nFileSizeHigh = w->nFileSizeHigh;
  a->nFileSizeLow = w->nFileSizeLow;
  a->dwReserved0 = w->dwReserved0;
  a->dwReserved1 = w->dwReserved1;
  if (!WideCharToMultiByte(CP_ACP, 0, w->cFileName, -1, a->cFileName, MAX_PATH, NULL, NULL)) a->cFileName[0] = 0;
  if (!WideCharToMultiByte(CP_ACP, 0, w->cAlternateFileName, -1, a->cAlternateFileName, 14, NULL, NULL))
    a->cAlternateFileName[0] = 0;
}

EXPORT HANDLE WINAPI FindFirstFileA(LPCSTR pattern, LPWIN32_FIND_DATAA data) {
  WIN32_FIND_DATAW w;
  LPWSTR p = wide(pattern);
  if (!p) return INVALID_HANDLE_VALUE;
  HANDLE h = FindFirstFileW(p, &w);
  release(p);
  if (h != INVALID_HANDLE_VALUE) narrow_find_data(&w, data);
  return h;
}

EXPORT BOOL WINAPI FindNextFileA(HANDLE h, LPWIN32_FIND_DATAA data) {
  WIN32_FIND_DATAW w;
  if (!FindNextFileW(h, &w)) return FALSE;
  narrow_find_data(&w, data);
  return TRUE;
}

EXPORT DWORD WINAPI GetFullPathNameA(LPCSTR name, DWORD size, LPSTR out, LPSTR *file_part) {
  WCHAR buf[MAX_PATH + 1];
  LPWSTR w = wide(name);
  if (!w) return 0;
  DWORD n = GetFullPathNameW(w, MAX_PATH + 1, buf, NULL);
  release(w);
  if (!n || n > MAX_PATH) return 0;
  DWORD r = narrow_answer(buf, n, out, size);
  if (file_part && r < size) {
    char *last = NULL;
    for (char *p = out; *p; p++) if (*p == '\\') last = p + 1;
    *file_part = last && *last ? last : NULL;
  }
  return r;
}

EXPORT DWORD WINAPI GetModuleFileNameA(HMODULE module, LPSTR out, DWORD size) {
  WCHAR buf[MAX_PATH + 1];
  DWORD n = GetModuleFileNameW(module, buf, MAX_PATH + 1);
  if (!n) return 0;
  int len = WideCharToMultiByte(CP_ACP, 0, buf, n, out, size, NULL, NULL);
  if (!len && size) {
    /* Windows truncates and NUL-terminates, reporting ERROR_INSUFFICIENT_BUFFER. */
    WideCharToMultiByte(CP_ACP, 0, buf, size - 1, out, size - 1, NULL, NULL);
    out[size - 1] = 0;
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return size;
  }
  if ((DWORD)len < size) out[len] = 0;
  return len;
}

EXPORT HMODULE WINAPI LoadLibraryA(LPCSTR name) { WITH_WIDE(name, w, NULL, LoadLibraryW(w)) }
EXPORT HMODULE WINAPI LoadLibraryExA(LPCSTR name, HANDLE file, DWORD flags) {
  WITH_WIDE(name, w, NULL, LoadLibraryExW(w, file, flags))
}
EXPORT HMODULE WINAPI GetModuleHandleA(LPCSTR name) {
  if (!name) return GetModuleHandleW(NULL);
  WITH_WIDE(name, w, NULL, GetModuleHandleW(w))
}

EXPORT DWORD WINAPI GetTempPathA(DWORD size, LPSTR out) {
  WCHAR buf[MAX_PATH + 1];
  DWORD n = GetTempPathW(MAX_PATH + 1, buf);
  return n && n <= MAX_PATH ? narrow_answer(buf, n, out, size) : 0;
}

EXPORT UINT WINAPI GetTempFileNameA(LPCSTR dir, LPCSTR prefix, UINT unique, LPSTR out) {
  LPWSTR wd = wide(dir), wp = wide(prefix);
  WCHAR name[MAX_PATH];
  UINT r = wd && (!prefix || wp) ? GetTempFileNameW(wd, wp, unique, name) : 0;
  if (r && !WideCharToMultiByte(CP_ACP, 0, name, -1, out, MAX_PATH, NULL, NULL)) r = 0;
  release(wd), release(wp);
  return r;
}

EXPORT BOOL WINAPI GetDiskFreeSpaceExA(LPCSTR dir, PULARGE_INTEGER available, PULARGE_INTEGER total,
                                       PULARGE_INTEGER free) {
  WITH_WIDE(dir, w, FALSE, GetDiskFreeSpaceExW(w, available, total, free))
}

EXPORT BOOL WINAPI GetDiskFreeSpaceA(LPCSTR root, LPDWORD sectors_per_cluster, LPDWORD bytes_per_sector,
                                     LPDWORD free_clusters, LPDWORD total_clusters) {
  WITH_WIDE(root, w, FALSE, GetDiskFreeSpaceW(w, sectors_per_cluster, bytes_per_sector, free_clusters, total_clusters))
}

EXPORT HANDLE WINAPI CreateEventA(LPSECURITY_ATTRIBUTES sa, BOOL manual, BOOL initial, LPCSTR name) {
  WITH_WIDE(name, w, NULL, CreateEventW(sa, manual, initial, w))
}
EXPORT HANDLE WINAPI CreateEventExA(LPSECURITY_ATTRIBUTES sa, LPCSTR name, DWORD flags, DWORD access) {
  WITH_WIDE(name, w, NULL, CreateEventExW(sa, w, flags, access))
}
EXPORT HANDLE WINAPI CreateMutexA(LPSECURITY_ATTRIBUTES sa, BOOL owner, LPCSTR name) {
  WITH_WIDE(name, w, NULL, CreateMutexW(sa, owner, w))
}
EXPORT HANDLE WINAPI CreateMutexExA(LPSECURITY_ATTRIBUTES sa, LPCSTR name, DWORD flags, DWORD access) {
  WITH_WIDE(name, w, NULL, CreateMutexExW(sa, w, flags, access))
}
EXPORT HANDLE WINAPI CreateSemaphoreA(LPSECURITY_ATTRIBUTES sa, LONG initial, LONG maximum, LPCSTR name) {
  WITH_WIDE(name, w, NULL, CreateSemaphoreW(sa, initial, maximum, w))
}
EXPORT HANDLE WINAPI CreateSemaphoreExA(LPSECURITY_ATTRIBUTES sa, LONG initial, LONG maximum, LPCSTR name,
                                        DWORD flags, DWORD access) {
  WITH_WIDE(name, w, NULL, CreateSemaphoreExW(sa, initial, maximum, w, flags, access))
}
EXPORT HANDLE WINAPI OpenEventA(DWORD access, BOOL inherit, LPCSTR name) {
  WITH_WIDE(name, w, NULL, OpenEventW(access, inherit, w))
}
EXPORT HANDLE WINAPI OpenMutexA(DWORD access, BOOL inherit, LPCSTR name) {
  WITH_WIDE(name, w, NULL, OpenMutexW(access, inherit, w))
}
EXPORT HANDLE WINAPI OpenSemaphoreA(DWORD access, BOOL inherit, LPCSTR name) {
  WITH_WIDE(name, w, NULL, OpenSemaphoreW(access, inherit, w))
}
