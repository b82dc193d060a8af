/* Path calls that need no host: full paths (Windows' rules, in which ".." at
 * a root stays there), the exe's own name, and attributes read through a
 * directory listing. pvx has one drive, C:, fixed. */
#include "pvxrt.h"

static BOOL is_sep(WCHAR c) { return c == '\\' || c == '/'; }

/* Appends `src` (n chars) to dst at *len, resolving "." and ".." against what is there; dst starts "X:\". */
static void append_components(WCHAR *dst, DWORD *len, LPCWSTR src, DWORD cap) {
  DWORD i = 0, n = (DWORD)pvx_wcslen(src);
  while (i < n) {
    while (i < n && is_sep(src[i])) i++;
    DWORD start = i;
    while (i < n && !is_sep(src[i])) i++;
    DWORD clen = i - start;
    if (clen == 0) break;
    if (clen == 1 && src[start] == '.') continue;
    if (clen == 2 && src[start] == '.' && src[start + 1] == '.') {
      if (*len > 3) { /* never above the root */
        (*len)--;
        while (*len > 3 && dst[*len - 1] != '\\') (*len)--;
        if (*len > 3) (*len)--;
        else *len = 3;
      }
      continue;
    }
    if (*len > 3 && *len < cap) dst[(*len)++] = '\\';
    for (DWORD k = 0; k < clen && *len < cap; k++) dst[(*len)++] = src[start + k];
  }
  /* A trailing separator in the input keeps its place. */
  if (n && is_sep(src[n - 1]) && *len > 3 && *len < cap) dst[(*len)++] = '\\';
}

EXPORT DWORD WINAPI GetFullPathNameW(LPCWSTR name, DWORD size, LPWSTR out, LPWSTR *file_part) {
  if (!name || !*name) {
    SetLastError(ERROR_INVALID_NAME);
    return 0;
  }
  enum { CAP = 32768 };
  WCHAR *full = HeapAlloc(GetProcessHeap(), 0, CAP * sizeof(WCHAR));
  if (!full) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return 0;
  }
  DWORD len = 0;
  if (name[0] == '\\' && name[1] == '\\' && (name[2] == '?' || name[2] == '.') && name[3] == '\\') {
    len = (DWORD)pvx_wcslen(name); /* device and verbatim paths are taken as they are */
    if (len >= CAP) len = CAP - 1;
    memcpy(full, name, len * sizeof(WCHAR));
  } else {
    WCHAR cwd[MAX_PATH + 1];
    DWORD cwd_len = GetCurrentDirectoryW(MAX_PATH + 1, cwd);
    if (!cwd_len || cwd_len > MAX_PATH) cwd[0] = 'C', cwd[1] = ':', cwd[2] = '\\', cwd[3] = 0;
    LPCWSTR rest = name;
    BOOL has_drive = ((name[0] | 32) >= 'a' && (name[0] | 32) <= 'z') && name[1] == ':';
    full[0] = has_drive ? name[0] & ~32 : cwd[0] & ~32, full[1] = ':', full[2] = '\\', len = 3;
    if (has_drive) {
      rest = name + 2;
      /* "C:x" is relative to the current directory when it is on that drive. */
      if (!is_sep(rest[0]) && (cwd[0] & ~32) == full[0]) append_components(full, &len, cwd + 3, CAP);
    } else if (!is_sep(name[0])) {
      append_components(full, &len, cwd + 3, CAP);
    }
    append_components(full, &len, rest, CAP);
  }
  full[len] = 0;
  DWORD r;
  if (len + 1 > size) {
    r = len + 1;
  } else {
    memcpy(out, full, (len + 1) * sizeof(WCHAR));
    r = len;
    if (file_part) {
      LPWSTR last = NULL;
      for (DWORD i = 0; i < len; i++) if (out[i] == '\\') last = out + i + 1;
      *file_part = last && *last ? last : NULL;
    }
  }
  HeapFree(GetProcessHeap(), 0, full);
  return r;
}

/* The loader leaves the exe's path in the PEB's process parameters (guest/windows.ts). */
static const UNICODE_STRING *image_path(void) {
  char *params = *(char **)(peb() + 0x20);
  return (const UNICODE_STRING *)(params + 0x60);
}

EXPORT DWORD WINAPI GetModuleFileNameW(HMODULE module, LPWSTR out, DWORD size) {
  if (module && module != *(HMODULE *)(peb() + 0x10)) {
    /* Only the exe's own path is kept; a DLL's module handle is valid but its path is not known here. */
    SetLastError(ERROR_MOD_NOT_FOUND);
    return 0;
  }
  const UNICODE_STRING *path = image_path();
  DWORD len = path->Length / sizeof(WCHAR);
  if (!size) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return 0;
  }
  DWORD n = len < size ? len : size - 1;
  memcpy(out, path->Buffer, n * sizeof(WCHAR));
  out[n] = 0;
  if (n < len) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return size;
  }
  return n;
}

EXPORT BOOL WINAPI GetFileAttributesExW(LPCWSTR name, GET_FILEEX_INFO_LEVELS level, LPVOID info) {
  if (level != GetFileExInfoStandard) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  WIN32_FILE_ATTRIBUTE_DATA *data = info;
  for (LPCWSTR p = name; *p; p++) {
    if (*p == '*' || *p == '?') {
      SetLastError(ERROR_INVALID_NAME);
      return FALSE;
    }
  }
  WIN32_FIND_DATAW found;
  HANDLE h = FindFirstFileW(name, &found);
  if (h == INVALID_HANDLE_VALUE) {
    /* A root lists its contents, not itself: its attributes are all there is to give. */
    DWORD attributes = GetFileAttributesW(name);
    if (attributes == INVALID_FILE_ATTRIBUTES) return FALSE;
    memset(data, 0, sizeof *data);
    data->dwFileAttributes = attributes;
    return TRUE;
  }
  FindClose(h);
  data->dwFileAttributes = found.dwFileAttributes;
  data->ftCreationTime = found.ftCreationTime;
  data->ftLastAccessTime = found.ftLastAccessTime;
  data->ftLastWriteTime = found.ftLastWriteTime;
  data->nFileSizeHigh = found.nFileSizeHigh;
  data->nFileSizeLow = found.nFileSizeLow;
  return TRUE;
}

EXPORT UINT WINAPI GetDriveTypeW(LPCWSTR root) {
  if (!root || ((root[0] | 32) == 'c' && root[1] == ':' && (!root[2] || (is_sep(root[2]) && !root[3]))))
    return DRIVE_FIXED;
  return root[0] == '\\' || root[0] == '/' ? DRIVE_FIXED : DRIVE_NO_ROOT_DIR;
}
EXPORT UINT WINAPI GetDriveTypeA(LPCSTR root) {
  WCHAR w[4] = {0};
  for (int i = 0; root && i < 3 && root[i]; i++) w[i] = (unsigned char)root[i];
  return GetDriveTypeW(root ? w : NULL);
}
EXPORT DWORD WINAPI GetLogicalDrives(void) { return 1u << ('C' - 'A'); }

/* %TMP%, else %TEMP%, else the root, as Windows falls back; with the trailing backslash Windows adds. */
EXPORT DWORD WINAPI GetTempPathW(DWORD size, LPWSTR out) {
  WCHAR dir[MAX_PATH + 1], full[MAX_PATH + 2];
  DWORD n = GetEnvironmentVariableW(L"TMP", dir, MAX_PATH + 1);
  if (!n || n > MAX_PATH) n = GetEnvironmentVariableW(L"TEMP", dir, MAX_PATH + 1);
  if (!n || n > MAX_PATH) dir[0] = 'C', dir[1] = ':', dir[2] = '\\', dir[3] = 0;
  n = GetFullPathNameW(dir, MAX_PATH, full, NULL);
  if (!n || n >= MAX_PATH) return 0;
  if (full[n - 1] != '\\') full[n++] = '\\', full[n] = 0;
  if (n + 1 > size) return n + 1;
  memcpy(out, full, (n + 1) * sizeof(WCHAR));
  return n;
}

/* "<dir>\<first 3 of prefix><hex>.TMP": with `unique` as given (the file is not created), else the first free
 * number from the tick count on, created empty so no one else takes it. */
EXPORT UINT WINAPI GetTempFileNameW(LPCWSTR dir, LPCWSTR prefix, UINT unique, LPWSTR out) {
  DWORD len = (DWORD)pvx_wcslen(dir);
  if (len + 13 >= MAX_PATH) {
    SetLastError(ERROR_BUFFER_OVERFLOW);
    return 0;
  }
  UINT number = unique ? unique & 0xffff : (GetTickCount() & 0xffff) | 1;
  for (UINT tries = 0; tries < 0x10000; tries++, number = (number + 1) & 0xffff ? (number + 1) & 0xffff : 1) {
    DWORD at = len;
    memcpy(out, dir, len * sizeof(WCHAR));
    if (at && out[at - 1] != '\\') out[at++] = '\\';
    for (int i = 0; prefix && i < 3 && prefix[i]; i++) out[at++] = prefix[i];
    for (int shift = 12; shift >= 0; shift -= 4) {
      unsigned digit = (number >> shift) & 0xf;
      if (shift < 12 || digit) out[at++] = "0123456789ABCDEF"[digit];
    }
    const WCHAR ext[] = L".TMP";
    memcpy(out + at, ext, sizeof ext);
    if (unique) return number;
    HANDLE h = CreateFileW(out, GENERIC_WRITE, 0, NULL, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h != INVALID_HANDLE_VALUE) {
      CloseHandle(h);
      return number;
    }
    if (GetLastError() != ERROR_FILE_EXISTS && GetLastError() != ERROR_ALREADY_EXISTS) return 0;
  }
  SetLastError(ERROR_FILE_EXISTS);
  return 0;
}

/* The legacy form in clusters of eight 512-byte sectors, as NTFS formats a
 * volume by default; counts past 32 bits stop at the largest DWORD. */
#define BYTES_PER_SECTOR 512
#define SECTORS_PER_CLUSTER 8

static DWORD clusters(ULONGLONG bytes) {
  ULONGLONG n = bytes / (BYTES_PER_SECTOR * SECTORS_PER_CLUSTER);
  return n > 0xffffffffu ? 0xffffffffu : (DWORD)n;
}

EXPORT BOOL WINAPI GetDiskFreeSpaceW(LPCWSTR root, LPDWORD sectors_per_cluster, LPDWORD bytes_per_sector,
                                     LPDWORD free_clusters, LPDWORD total_clusters) {
  ULARGE_INTEGER available, total;
  if (!GetDiskFreeSpaceExW(root, &available, &total, NULL)) return FALSE;
  if (sectors_per_cluster) *sectors_per_cluster = SECTORS_PER_CLUSTER;
  if (bytes_per_sector) *bytes_per_sector = BYTES_PER_SECTOR;
  if (free_clusters) *free_clusters = clusters(available.QuadPart);
  if (total_clusters) *total_clusters = clusters(total.QuadPart);
  return TRUE;
}
