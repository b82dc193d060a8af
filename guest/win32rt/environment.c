/* The process's environment. It starts as the host's, read through
 * hypercalls; the first change by the app copies it into a block of its own
 * on the process heap, which every call reads from then on. Kept in guest
 * memory, a changed environment is part of what a snapshot carries. The block
 * is sorted by name, case-insensitively, as Windows keeps it. */
#include "codepages.h"

DWORD WINAPI pvx_host_environment_variable(LPCWSTR name, LPWSTR out, DWORD size); /* tools/win32_runtime.ts */

static LPWSTR own; /* NULL until the app changes a variable */
/* Held only while a block is read or rebuilt, never across a call that could wait on another thread. */
static struct pvx_lock busy;

/* Characters in `block`, both final NULs included. */
static SIZE_T block_length(LPCWCH block) {
  SIZE_T n = 0;
  while (block[n] || block[n + 1]) n++;
  return n + 2;
}

static LPWSTR copy_block(LPCWCH block) {
  SIZE_T n = block_length(block);
  LPWSTR copy = HeapAlloc(GetProcessHeap(), 0, n * sizeof(WCHAR));
  if (copy) memcpy(copy, block, n * sizeof(WCHAR));
  else SetLastError(ERROR_NOT_ENOUGH_MEMORY);
  return copy;
}

static LPWSTR host_block(void) {
  for (;;) {
    DWORD n = PvxGetEnvironmentBlock(0, NULL);
    LPWSTR block = HeapAlloc(GetProcessHeap(), 0, n * sizeof(WCHAR));
    if (!block) {
      SetLastError(ERROR_NOT_ENOUGH_MEMORY);
      return NULL;
    }
    if (PvxGetEnvironmentBlock(n, block) == n) return block;
    HeapFree(GetProcessHeap(), 0, block); /* it grew in between */
  }
}

/* The length of an entry's name: up to its first '=' after the first character ("=C:=C:\x" is named "=C:"). */
static SIZE_T name_length(LPCWSTR entry) {
  SIZE_T n = 1;
  while (entry[n] && entry[n] != '=') n++;
  return n;
}

/* The entry named `name` (`n` characters) in `block`, or NULL; `*at` is where it is or would be inserted. */
static LPCWSTR find(LPCWSTR block, LPCWSTR name, SIZE_T n, LPCWSTR *at) {
  LPCWSTR e = block;
  for (; *e; e += pvx_wcslen(e) + 1) {
    int order = CompareStringOrdinal(e, (int)name_length(e), name, (int)n, TRUE);
    if (order == CSTR_EQUAL) break;
    if (order == CSTR_GREATER_THAN) {
      *at = e;
      return NULL;
    }
  }
  *at = e;
  return *e ? e : NULL;
}

EXPORT LPWCH WINAPI GetEnvironmentStringsW(void) {
  pvx_lock(&busy);
  LPWSTR block = own ? copy_block(own) : NULL;
  BOOL changed = own != NULL;
  pvx_unlock(&busy);
  return changed ? block : host_block();
}

EXPORT DWORD WINAPI GetEnvironmentVariableW(LPCWSTR name, LPWSTR out, DWORD size) {
  pvx_lock(&busy);
  if (!own) {
    pvx_unlock(&busy);
    return pvx_host_environment_variable(name, out, size);
  }
  LPCWSTR at, entry = name ? find(own, name, pvx_wcslen(name), &at) : NULL;
  DWORD r = 0;
  if (!entry) {
    SetLastError(ERROR_ENVVAR_NOT_FOUND);
  } else {
    LPCWSTR value = entry + name_length(entry) + 1;
    DWORD n = (DWORD)pvx_wcslen(value);
    if (out && size > n) {
      memcpy(out, value, (n + 1) * sizeof(WCHAR));
      r = n; /* 0 for an empty value, the last error left as it was */
    } else {
      r = n + 1;
    }
  }
  pvx_unlock(&busy);
  return r;
}

EXPORT BOOL WINAPI SetEnvironmentVariableW(LPCWSTR name, LPCWSTR value) {
  if (!name) {
    SetLastError(ERROR_ENVVAR_NOT_FOUND);
    return FALSE;
  }
  SIZE_T n = pvx_wcslen(name);
  if (!n || name_length(name) != n) { /* an empty name, or an '=' inside it */
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  LPWSTR base = NULL;
  pvx_lock(&busy);
  if (!own) {
    pvx_unlock(&busy);
    base = host_block(); /* fetched unlocked: a hypercall may wait */
    if (!base) return FALSE;
    pvx_lock(&busy);
    if (!own) own = base, base = NULL;
  }
  LPCWSTR at, entry = find(own, name, n, &at);
  SIZE_T before = at - own, old = entry ? pvx_wcslen(entry) + 1 : 0, length = block_length(own);
  SIZE_T added = value ? n + 1 + pvx_wcslen(value) + 1 : 0;
  /* One NUL more than the rest carries: a block that loses its last variable is still two NULs. */
  LPWSTR block = HeapAlloc(GetProcessHeap(), 0, (length - old + added + 1) * sizeof(WCHAR));
  if (block) {
    memcpy(block, own, before * sizeof(WCHAR));
    LPWSTR w = block + before;
    if (value) {
      memcpy(w, name, n * sizeof(WCHAR));
      w[n] = '=';
      memcpy(w + n + 1, value, (added - n - 1) * sizeof(WCHAR));
      w += added;
    }
    memcpy(w, at + old, (length - before - old) * sizeof(WCHAR));
    w[length - before - old] = 0;
    HeapFree(GetProcessHeap(), 0, own);
    own = block;
  }
  pvx_unlock(&busy);
  if (base) HeapFree(GetProcessHeap(), 0, base);
  if (!block) SetLastError(ERROR_NOT_ENOUGH_MEMORY);
  return block != NULL;
}

/* Each %NAME% of a defined variable replaced by its value; any other % text is kept as written. */
EXPORT DWORD WINAPI ExpandEnvironmentStringsW(LPCWSTR src, LPWSTR dst, DWORD size) {
  if (!src) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  DWORD need = 0;
  for (LPCWSTR s = src; *s;) {
    LPCWSTR close = s + 1;
    if (*s == '%')
      while (*close && *close != '%') close++;
    SIZE_T n = *s != '%' ? 1 : *close ? (SIZE_T)(close - s) + 1 : pvx_wcslen(s); /* a char, %...%, or the rest */
    WCHAR name[256]; /* a longer name is kept as written */
    DWORD found = 0;
    if (*s == '%' && *close && n > 2 && n - 2 < ARRAYSIZE(name)) {
      memcpy(name, s + 1, (n - 2) * sizeof(WCHAR));
      name[n - 2] = 0;
      found = GetEnvironmentVariableW(name, NULL, 0); /* the value's length + 1, or 0 */
    }
    if (found) {
      if (dst && need + found <= size) GetEnvironmentVariableW(name, dst + need, found);
      need += found - 1;
    } else {
      if (dst && need + n <= size) memcpy(dst + need, s, n * sizeof(WCHAR));
      need += (DWORD)n;
    }
    s += n;
  }
  if (dst && need < size) dst[need] = 0;
  return need + 1;
}

#undef GetEnvironmentStringsA /* mingw's header renames it GetEnvironmentStrings; kernel32 exports both */
EXPORT LPCH WINAPI GetEnvironmentStringsA(void) {
  LPWCH wide = GetEnvironmentStringsW();
  if (!wide) return NULL;
  int n = (int)block_length(wide);
  int bytes = WideCharToMultiByte(CP_ACP, 0, wide, n, NULL, 0, NULL, NULL);
  LPCH block = HeapAlloc(GetProcessHeap(), 0, bytes);
  if (block) WideCharToMultiByte(CP_ACP, 0, wide, n, block, bytes, NULL, NULL);
  else SetLastError(ERROR_NOT_ENOUGH_MEMORY);
  HeapFree(GetProcessHeap(), 0, wide);
  return block;
}

EXPORT LPCH WINAPI GetEnvironmentStrings(void) { return GetEnvironmentStringsA(); }

EXPORT BOOL WINAPI FreeEnvironmentStringsW(LPWCH block) { return HeapFree(GetProcessHeap(), 0, block); }
EXPORT BOOL WINAPI FreeEnvironmentStringsA(LPCH block) { return HeapFree(GetProcessHeap(), 0, block); }
