/* The environment block: a copy for each caller, as Windows hands out, in
 * wide or ANSI form. The variables themselves are the host's. */
#include "codepages.h"

EXPORT LPWCH WINAPI GetEnvironmentStringsW(void) {
  for (;;) {
    DWORD n = PvxGetEnvironmentBlock(0, NULL);
    LPWCH block = HeapAlloc(GetProcessHeap(), 0, n * sizeof(WCHAR));
    if (!block) {
      SetLastError(ERROR_NOT_ENOUGH_MEMORY);
      return NULL;
    }
    if (PvxGetEnvironmentBlock(n, block) == n) return block;
    HeapFree(GetProcessHeap(), 0, block); /* it grew in between */
  }
}

static DWORD block_length(LPCWCH block) {
  DWORD n = 0;
  while (block[n] || block[n + 1]) n++;
  return n + 2;
}

#undef GetEnvironmentStringsA /* mingw's header renames it GetEnvironmentStrings; kernel32 exports both */
EXPORT LPCH WINAPI GetEnvironmentStringsA(void) {
  LPWCH wide = GetEnvironmentStringsW();
  if (!wide) return NULL;
  DWORD n = block_length(wide);
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
