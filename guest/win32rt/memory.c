/* The IsBad*Ptr probes. Windows answers them by touching the memory under
 * an exception handler; pvx asks VirtualQuery about each page first, so a
 * probe never faults. */
#include "pvxrt.h"

#define PAGE 0x1000

static BOOL page_allows(ULONG_PTR address, BOOL write) {
  MEMORY_BASIC_INFORMATION mbi;
  if (!VirtualQuery((LPCVOID)address, &mbi, sizeof mbi) || mbi.State != MEM_COMMIT) return FALSE;
  DWORD p = mbi.Protect & 0xff;
  if (write) return p == PAGE_READWRITE || p == PAGE_EXECUTE_READWRITE || p == PAGE_WRITECOPY;
  return p != PAGE_NOACCESS && p != PAGE_EXECUTE;
}

static BOOL range_bad(const void *p, UINT_PTR size, BOOL write) {
  if (!size) return FALSE;
  ULONG_PTR start = (ULONG_PTR)p, end = start + size;
  if (!p || end < start) return TRUE;
  for (ULONG_PTR page = start & ~(ULONG_PTR)(PAGE - 1); page < end; page += PAGE)
    if (!page_allows(page, write)) return TRUE;
  return FALSE;
}

EXPORT BOOL WINAPI IsBadReadPtr(const void *p, UINT_PTR size) { return range_bad(p, size, FALSE); }
EXPORT BOOL WINAPI IsBadWritePtr(LPVOID p, UINT_PTR size) { return range_bad(p, size, TRUE); }
EXPORT BOOL WINAPI IsBadCodePtr(FARPROC p) { return range_bad((const void *)p, 1, FALSE); }

EXPORT BOOL WINAPI IsBadStringPtrA(LPCSTR s, UINT_PTR max) {
  if (!max) return FALSE;
  if (!s) return TRUE;
  for (UINT_PTR i = 0; i < max; i++) {
    if (((ULONG_PTR)(s + i) & (PAGE - 1)) == 0 || i == 0)
      if (!page_allows((ULONG_PTR)(s + i), FALSE)) return TRUE;
    if (!s[i]) return FALSE;
  }
  return FALSE;
}

EXPORT BOOL WINAPI IsBadStringPtrW(LPCWSTR s, UINT_PTR max) {
  if (!max) return FALSE;
  if (!s) return TRUE;
  for (UINT_PTR i = 0; i < max; i++) {
    ULONG_PTR at = (ULONG_PTR)(s + i);
    if (i == 0 || (at & (PAGE - 1)) < sizeof(WCHAR))
      if (!page_allows(at, FALSE) || !page_allows(at + sizeof(WCHAR) - 1, FALSE)) return TRUE;
    if (!s[i]) return FALSE;
  }
  return FALSE;
}
