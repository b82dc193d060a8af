/* Heaps as console programs use them: private heaps created, grown, walked,
 * validated and destroyed; a fixed heap that fills up; blocks resized in
 * place and moved, zeroed where asked; many threads allocating from one heap
 * at once; and malloc/realloc/free through the C runtime beside them. Only
 * what Windows promises is printed: no addresses, overheads or region sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

static int walk_finds(HANDLE heap, void *block, SIZE_T size, int *regions) {
  PROCESS_HEAP_ENTRY e = {0};
  int found = 0;
  *regions = 0;
  while (HeapWalk(heap, &e)) {
    if (e.wFlags & PROCESS_HEAP_REGION) ++*regions;
    if ((e.wFlags & PROCESS_HEAP_ENTRY_BUSY) && e.lpData == block) found = e.cbData == size ? 1 : -1;
  }
  printf("  walk ends with error %lu\n", GetLastError());
  return found;
}

static DWORD heap_count(void) { return GetProcessHeaps(0, NULL); }

static HANDLE shared;
static DWORD WINAPI churn(void *arg) {
  unsigned seed = (unsigned)(ULONG_PTR)arg, bad = 0;
  void *live[32] = {0};
  for (int i = 0; i < 20000; i++) {
    seed = seed * 1103515245u + 12345u;
    unsigned slot = (seed >> 8) % 32, size = (seed >> 16) % 700;
    if (live[slot]) {
      bad += *(unsigned char *)live[slot] != (unsigned char)slot;
      HeapFree(shared, 0, live[slot]);
      live[slot] = NULL;
    } else if ((live[slot] = HeapAlloc(shared, 0, size + 1))) memset(live[slot], slot, size + 1);
  }
  for (int i = 0; i < 32; i++) HeapFree(shared, 0, live[i]);
  return bad;
}

int main(void) {
  DWORD before = heap_count();
  HANDLE heap = HeapCreate(0, 0, 0);
  printf("HeapCreate growable: %d, one more heap: %d\n", heap != NULL, heap_count() == before + 1);
  HANDLE listed[64];
  DWORD n = GetProcessHeaps(64, listed);
  int seen = 0;
  for (DWORD i = 0; i < n && i < 64; i++) seen |= listed[i] == heap;
  printf("GetProcessHeaps lists it: %d, and the process heap: %d\n", seen, n >= 1 && listed[0] == GetProcessHeap());

  unsigned char *a = HeapAlloc(heap, HEAP_ZERO_MEMORY, 300);
  int zero = 1;
  for (int i = 0; i < 300; i++) zero &= a[i] == 0;
  printf("HeapAlloc 300 zeroed: %d, size %llu, 16-byte aligned %d\n", zero, (unsigned long long)HeapSize(heap, 0, a),
         ((ULONG_PTR)a & 15) == 0);
  memset(a, 0xab, 300);
  unsigned char *shrunk = HeapReAlloc(heap, HEAP_REALLOC_IN_PLACE_ONLY, a, 100);
  printf("shrunk in place: %d, size %llu, kept %d\n", shrunk == a, (unsigned long long)HeapSize(heap, 0, a),
         a[99] == 0xab);
  unsigned char *grown = HeapReAlloc(heap, HEAP_ZERO_MEMORY, a, 5000);
  int kept = 1, zeroed = 1;
  for (int i = 0; i < 100; i++) kept &= grown[i] == 0xab;
  for (int i = 100; i < 5000; i++) zeroed &= grown[i] == 0;
  printf("grown to 5000: size %llu, kept %d, the new bytes zeroed %d\n", (unsigned long long)HeapSize(heap, 0, grown),
         kept, zeroed);
  int regions;
  printf("HeapWalk finds the block at its size: %d\n", walk_finds(heap, grown, 5000, &regions));
  printf("  at least one region: %d\n", regions >= 1);
  printf("HeapValidate the heap: %d, the block: %d\n", HeapValidate(heap, 0, NULL), HeapValidate(heap, 0, grown));

  void *big = HeapAlloc(heap, 0, 3 << 20);
  printf("a 3 MiB block in a growable heap: %d, size %llu\n", big != NULL, (unsigned long long)HeapSize(heap, 0, big));
  memset(big, 1, 3 << 20);
  BOOL freed = HeapFree(heap, 0, big);
  printf("HeapFree it: %d, the heap still valid: %d\n", freed, HeapValidate(heap, 0, NULL));
  void *many[2000];
  for (int i = 0; i < 2000; i++) many[i] = HeapAlloc(heap, 0, 16 + i % 200);
  for (int i = 0; i < 2000; i += 2) HeapFree(heap, 0, many[i]);
  printf("2000 blocks, every other one freed, valid: %d\n", HeapValidate(heap, 0, NULL));
  for (int i = 1; i < 2000; i += 2) HeapFree(heap, 0, many[i]);
  printf("HeapFree: %d\n", HeapFree(heap, 0, grown));
  printf("HeapWalk no longer finds it busy: %d\n", walk_finds(heap, grown, 5000, &regions) == 0);
  BOOL locked = HeapLock(heap);
  printf("HeapLock: %d, HeapUnlock: %d\n", locked, HeapUnlock(heap));
  DWORD live = heap_count();
  BOOL destroyed = HeapDestroy(heap);
  printf("HeapDestroy: %d, one heap fewer: %d\n", destroyed, heap_count() == live - 1);

  HANDLE fixed = HeapCreate(0, 0x10000, 0x10000);
  int blocks = 0;
  while (blocks < 1000 && HeapAlloc(fixed, 0, 1000)) blocks++;
  printf("a 64 KiB fixed heap fills up: %d\n", blocks < 1000);
  printf("HeapDestroy the full heap: %d\n", HeapDestroy(fixed));

  shared = HeapCreate(0, 0, 0);
  HANDLE threads[4];
  for (int i = 0; i < 4; i++) threads[i] = CreateThread(NULL, 0, churn, (void *)(ULONG_PTR)(i + 1), 0, NULL);
  WaitForMultipleObjects(4, threads, TRUE, INFINITE);
  DWORD bad = 0;
  for (int i = 0; i < 4; i++) {
    DWORD code;
    GetExitCodeThread(threads[i], &code);
    bad += code;
    CloseHandle(threads[i]);
  }
  printf("4 threads, one heap: corrupted blocks %lu, heap valid %d\n", bad, HeapValidate(shared, 0, NULL));
  HeapDestroy(shared);

  char *s = malloc(10);
  strcpy(s, "pvx heap");
  s = realloc(s, 100000);
  printf("malloc then realloc: \"%s\"\n", s);
  free(s);
  void *local = LocalAlloc(LMEM_ZEROINIT, 64);
  printf("LocalAlloc 64 zeroed: %d, LocalFree: %d\n", local && !((char *)local)[63], LocalFree(local) == NULL);
  return 0;
}
