/* Heaps beyond the process heap. pvx has one guest heap, kept by the host;
 * a heap an app creates is that heap under another name, so its blocks are
 * real and HeapFree/HeapSize work on them, but HeapDestroy frees none of
 * them. LocalAlloc and GlobalAlloc are the process heap's, with fixed blocks:
 * a movable block's handle is its address. */
#include "pvxrt.h"

EXPORT HANDLE WINAPI HeapCreate(DWORD options, SIZE_T initial, SIZE_T maximum) {
  (void)options, (void)initial, (void)maximum;
  return GetProcessHeap();
}

EXPORT BOOL WINAPI HeapDestroy(HANDLE heap) {
  if (heap != GetProcessHeap()) {
    SetLastError(ERROR_INVALID_HANDLE);
    return FALSE;
  }
  return TRUE;
}

EXPORT BOOL WINAPI HeapValidate(HANDLE heap, DWORD flags, LPCVOID block) {
  (void)flags;
  if (heap != GetProcessHeap()) return FALSE;
  return !block || HeapSize(heap, 0, block) != (SIZE_T)-1;
}

EXPORT SIZE_T WINAPI HeapCompact(HANDLE heap, DWORD flags) {
  (void)heap, (void)flags;
  return 0x100000; /* the largest block it could hand out: any answer is a hint */
}

EXPORT BOOL WINAPI HeapLock(HANDLE heap) { return heap == GetProcessHeap(); }
EXPORT BOOL WINAPI HeapUnlock(HANDLE heap) { return heap == GetProcessHeap(); }

EXPORT BOOL WINAPI HeapSetInformation(HANDLE heap, HEAP_INFORMATION_CLASS cls, PVOID info, SIZE_T length) {
  (void)heap, (void)cls, (void)info, (void)length;
  return TRUE;
}

/* pvx keeps no list of a heap's blocks for a walk to follow. */
EXPORT BOOL WINAPI HeapWalk(HANDLE heap, LPPROCESS_HEAP_ENTRY entry) {
  (void)heap, (void)entry;
  SetLastError(ERROR_NO_MORE_ITEMS);
  return FALSE;
}

EXPORT DWORD WINAPI GetProcessHeaps(DWORD count, PHANDLE heaps) {
  if (count >= 1) heaps[0] = GetProcessHeap();
  return 1;
}

static DWORD heap_flags(UINT local_flags) { return local_flags & LMEM_ZEROINIT ? HEAP_ZERO_MEMORY : 0; }

EXPORT HLOCAL WINAPI LocalAlloc(UINT flags, SIZE_T bytes) { return HeapAlloc(GetProcessHeap(), heap_flags(flags), bytes); }
EXPORT HLOCAL WINAPI LocalFree(HLOCAL mem) {
  if (mem && !HeapFree(GetProcessHeap(), 0, mem)) return mem;
  return NULL;
}
EXPORT HLOCAL WINAPI LocalReAlloc(HLOCAL mem, SIZE_T bytes, UINT flags) {
  return HeapReAlloc(GetProcessHeap(), heap_flags(flags), mem, bytes);
}
EXPORT LPVOID WINAPI LocalLock(HLOCAL mem) { return mem; }
EXPORT BOOL WINAPI LocalUnlock(HLOCAL mem) { (void)mem; return FALSE; }
EXPORT SIZE_T WINAPI LocalSize(HLOCAL mem) {
  SIZE_T size = HeapSize(GetProcessHeap(), 0, mem);
  return size == (SIZE_T)-1 ? 0 : size;
}
EXPORT HGLOBAL WINAPI GlobalAlloc(UINT flags, SIZE_T bytes) { return LocalAlloc(flags, bytes); }
EXPORT HGLOBAL WINAPI GlobalFree(HGLOBAL mem) { return LocalFree(mem); }
EXPORT HGLOBAL WINAPI GlobalReAlloc(HGLOBAL mem, SIZE_T bytes, UINT flags) { return LocalReAlloc(mem, bytes, flags); }
EXPORT LPVOID WINAPI GlobalLock(HGLOBAL mem) { return mem; }
EXPORT BOOL WINAPI GlobalUnlock(HGLOBAL mem) { (void)mem; return FALSE; }
EXPORT SIZE_T WINAPI GlobalSize(HGLOBAL mem) { return LocalSize(mem); }
