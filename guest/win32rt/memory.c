/* The IsBad*Ptr probes. As on Windows, they touch one byte of each page;
 * a fault in a probe resumes at pvx_probe_failed (seh.c), so good memory
 * costs no exit. A thread already inside a fault's dispatch would take a
 * second fault to the host, which ends the app, so it asks VirtualQuery. */
#include "pvxrt.h"

#define PAGE 0x1000

/* The write probe ORs in zero atomically: it stores what is there even while another thread changes it. */
__asm__(".globl pvx_probe_read\n"
        "pvx_probe_read:\n"
        "  movb (%rcx), %al\n"
        "  movl $1, %eax\n"
        "  ret\n"
        ".globl pvx_probe_write\n"
        "pvx_probe_write:\n"
        "  lock orb $0, (%rcx)\n"
        "  movl $1, %eax\n"
        "  ret\n"
        ".globl pvx_probe_failed\n"
        "pvx_probe_failed:\n"
        "  xorl %eax, %eax\n"
        "  ret\n");

static BOOL page_allows(ULONG_PTR address, BOOL write) {
  /* The doorbell page is the host's, not memory: a touch there would be taken for a call. */
  if (address - PVX_DOORBELL_BASE < PVX_DOORBELL_SIZE) return FALSE;
  if (!*pvx_in_fault())
    return write ? pvx_probe_write(address) : pvx_probe_read(address);
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
