/* Memory: VirtualAlloc reserve/commit/protect/free and the process heap. */
#include "common.h"

int main(void) {
  DWORD old;
  char *p = VirtualAlloc(NULL, 3 * 4096, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  result("VirtualAlloc reserve+commit 3 pages", p != NULL);
  value("aligned to 64 KiB", ((uintptr_t)p & 0xffff) == 0);
  value("committed memory reads zero", p[0] == 0 && p[3 * 4096 - 1] == 0);
  p[0] = 7;
  p[8191] = 9;
  result("VirtualProtect read-only", VirtualProtect(p, 4096, PAGE_READONLY, &old));
  value("old protection was PAGE_READWRITE", old == PAGE_READWRITE);
  value("still readable", p[0] == 7);
  result("VirtualProtect back to read-write", VirtualProtect(p, 4096, PAGE_READWRITE, &old));
  value("old protection was PAGE_READONLY", old == PAGE_READONLY);
  result("VirtualFree decommit page 2", VirtualFree(p + 4096, 4096, MEM_DECOMMIT));
  result("VirtualProtect a decommitted page", VirtualProtect(p + 4096, 4096, PAGE_READWRITE, &old));
  char *again = VirtualAlloc(p + 4096, 4096, MEM_COMMIT, PAGE_READWRITE);
  result("VirtualAlloc recommit page 2", again == p + 4096);
  value("recommitted page is zero again", again[8191 - 4096] == 0);
  result("VirtualFree release with a size", VirtualFree(p, 4096, MEM_RELEASE));
  result("VirtualFree release", VirtualFree(p, 0, MEM_RELEASE));
  result("VirtualFree release twice", VirtualFree(p, 0, MEM_RELEASE));
  char *r = VirtualAlloc(NULL, 65536, MEM_RESERVE, PAGE_NOACCESS);
  result("VirtualAlloc reserve only", r != NULL);
  char *c = VirtualAlloc(r + 8192, 100, MEM_COMMIT, PAGE_READWRITE);
  result("VirtualAlloc commit inside the reservation", c == r + 8192);
  c[99] = 1;
  result("VirtualAlloc size 0", VirtualAlloc(NULL, 0, MEM_COMMIT, PAGE_READWRITE) != NULL);
  result("VirtualFree release reservation", VirtualFree(r, 0, MEM_RELEASE));

  HANDLE heap = GetProcessHeap();
  result("GetProcessHeap", heap != NULL);
  unsigned char *a = HeapAlloc(heap, HEAP_ZERO_MEMORY, 100);
  result("HeapAlloc 100 zeroed", a != NULL);
  int zero = 1;
  for (int i = 0; i < 100; i++) zero &= a[i] == 0;
  value("zeroed", zero);
  value("HeapSize", (long long)HeapSize(heap, 0, a));
  for (int i = 0; i < 100; i++) a[i] = (unsigned char)i;
  unsigned char *b = HeapReAlloc(heap, 0, a, 10000);
  result("HeapReAlloc to 10000", b != NULL);
  int kept = 1;
  for (int i = 0; i < 100; i++) kept &= b[i] == i;
  value("contents kept", kept);
  value("HeapSize", (long long)HeapSize(heap, 0, b));
  result("HeapFree", HeapFree(heap, 0, b));
  result("HeapFree NULL", HeapFree(heap, 0, NULL));
  void *blocks[64];
  for (int i = 0; i < 64; i++) blocks[i] = HeapAlloc(heap, 0, 1000 + i);
  int distinct = 1;
  for (int i = 1; i < 64; i++) distinct &= blocks[i] != blocks[i - 1];
  value("64 live blocks are distinct", distinct);
  for (int i = 0; i < 64; i++) HeapFree(heap, 0, blocks[i]);
  return 0;
}
