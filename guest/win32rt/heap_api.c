/* kernel32's and ntdll's heap calls over the runtime's allocator (heap.c).
 * The process heap covers the range the kernel set aside for it (the info
 * page's heap_start..heap_end) and grows into VirtualAlloc'd segments; its
 * handle is the one the host wrote into the PEB, which Wine's DLLs read
 * directly. A private heap lives in memory of its own, its bookkeeping at
 * its start, and its handle is that address. Every heap is serialized, even
 * under HEAP_NO_SERIALIZE: an uncontended lock costs a few instructions.
 * LocalAlloc and GlobalAlloc are the process heap's, with fixed blocks: a
 * movable block's handle is its address. */
#include "heap.h"

#define INFO(offset) (*(const volatile ULONG64 *)(ULONG_PTR)(offset))

static struct heap *heaps; /* the private ones */
static struct pvx_lock heaps_lock;

static HANDLE process_heap_handle(void) {
  return *(HANDLE *)(peb() + 0x30); /* PEB.ProcessHeap (guest/windows.ts) */
}

static struct heap *process_heap(void) {
  static struct heap heap;
  static struct pvx_lock once;
  static volatile LONG ready;
  if (!ready) {
    pvx_lock(&once);
    if (!ready) {
      ULONG64 start = INFO(PVX_INFO_HEAP_START), end = INFO(PVX_INFO_HEAP_END);
      heap_init(&heap, (void *)start, end - start, 0, 0);
      InterlockedExchange(&ready, 1);
    }
    pvx_unlock(&once);
  }
  return &heap;
}

/* The heap behind `handle`, or NULL with ERROR_INVALID_HANDLE. */
static struct heap *heap_of(HANDLE handle) {
  if (handle == process_heap_handle()) return process_heap();
  pvx_lock(&heaps_lock);
  struct heap *h = heaps;
  while (h && (HANDLE)h != handle) h = h->next;
  pvx_unlock(&heaps_lock);
  if (!h) SetLastError(ERROR_INVALID_HANDLE);
  return h;
}

static void *out_of_memory(const struct heap *h, DWORD flags) {
  if ((flags | h->options) & HEAP_GENERATE_EXCEPTIONS) RaiseException(STATUS_NO_MEMORY, 0, 0, NULL);
  SetLastError(ERROR_NOT_ENOUGH_MEMORY);
  return NULL;
}

EXPORT HANDLE WINAPI GetProcessHeap(void) { return process_heap_handle(); }

EXPORT DWORD WINAPI GetProcessHeaps(DWORD count, PHANDLE out) {
  DWORD n = 0;
  if (count) out[n] = process_heap_handle();
  n++;
  pvx_lock(&heaps_lock);
  for (struct heap *h = heaps; h; h = h->next, n++)
    if (n < count) out[n] = h;
  pvx_unlock(&heaps_lock);
  return n;
}

/* A fixed heap (maximum not 0) is one segment of that size, all of it committed; a growable one starts at `initial`. */
EXPORT HANDLE WINAPI HeapCreate(DWORD options, SIZE_T initial, SIZE_T maximum) {
  SIZE_T head = (sizeof(struct heap) + 15) & ~(SIZE_T)15, want = maximum > initial ? maximum : initial;
  SIZE_T size = (want + head + 0xffff) & ~(SIZE_T)0xffff;
  if (size < want) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return NULL;
  }
  DWORD protect = options & HEAP_CREATE_ENABLE_EXECUTE ? PAGE_EXECUTE_READWRITE : PAGE_READWRITE;
  struct heap *h = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, protect);
  if (!h) return NULL;
  heap_init(h, (char *)h + head, size - head, options & (HEAP_GENERATE_EXCEPTIONS | HEAP_CREATE_ENABLE_EXECUTE),
            maximum ? size : 0);
  pvx_lock(&heaps_lock);
  h->next = heaps;
  heaps = h;
  pvx_unlock(&heaps_lock);
  return h;
}

/* The process heap outlives every call, as on Windows. */
EXPORT BOOL WINAPI HeapDestroy(HANDLE handle) {
  struct heap **link = &heaps;
  pvx_lock(&heaps_lock);
  while (*link && (HANDLE)*link != handle) link = &(*link)->next;
  struct heap *h = *link;
  if (h) *link = h->next;
  pvx_unlock(&heaps_lock);
  if (!h) {
    SetLastError(ERROR_INVALID_HANDLE);
    return FALSE;
  }
  heap_release(h);
  VirtualFree(h, 0, MEM_RELEASE);
  return TRUE;
}

EXPORT LPVOID WINAPI HeapAlloc(HANDLE handle, DWORD flags, SIZE_T bytes) {
  struct heap *h = heap_of(handle);
  if (!h) return NULL;
  void *p = heap_alloc(h, bytes, (flags & HEAP_ZERO_MEMORY) != 0);
  return p ? p : out_of_memory(h, flags);
}

EXPORT BOOL WINAPI HeapFree(HANDLE handle, DWORD flags, LPVOID mem) {
  (void)flags;
  struct heap *h = heap_of(handle);
  if (!h) return FALSE;
  if (!mem || heap_free(h, mem)) return TRUE;
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

EXPORT LPVOID WINAPI HeapReAlloc(HANDLE handle, DWORD flags, LPVOID mem, SIZE_T bytes) {
  struct heap *h = heap_of(handle);
  if (!h || !mem) return NULL;
  BOOL invalid;
  void *p = heap_realloc(h, mem, bytes, (flags & HEAP_ZERO_MEMORY) != 0, (flags & HEAP_REALLOC_IN_PLACE_ONLY) != 0,
                         &invalid);
  if (p) return p;
  if (!invalid) return out_of_memory(h, flags);
  SetLastError(ERROR_INVALID_PARAMETER);
  return NULL;
}

EXPORT SIZE_T WINAPI HeapSize(HANDLE handle, DWORD flags, LPCVOID mem) {
  (void)flags;
  struct heap *h = heap_of(handle);
  SIZE_T size = h ? heap_size(h, mem) : (SIZE_T)-1;
  if (h && size == (SIZE_T)-1) SetLastError(ERROR_INVALID_PARAMETER);
  return size;
}

EXPORT BOOL WINAPI HeapValidate(HANDLE handle, DWORD flags, LPCVOID mem) {
  (void)flags;
  struct heap *h = heap_of(handle);
  return h && heap_validate(h, mem);
}

/* Gives back the growth segments that hold nothing, and answers the largest block it could hand out now. */
EXPORT SIZE_T WINAPI HeapCompact(HANDLE handle, DWORD flags) {
  (void)flags;
  struct heap *h = heap_of(handle);
  if (!h) return 0;
  SIZE_T largest = heap_largest_free(h);
  if (!largest) SetLastError(NO_ERROR);
  return largest;
}

EXPORT BOOL WINAPI HeapLock(HANDLE handle) {
  struct heap *h = heap_of(handle);
  if (h) pvx_lock(&h->lock);
  return h != NULL;
}

EXPORT BOOL WINAPI HeapUnlock(HANDLE handle) {
  struct heap *h = heap_of(handle);
  if (!h) return FALSE;
  if (h->lock.owner != pvx_thread_id()) {
    SetLastError(ERROR_NOT_OWNER);
    return FALSE;
  }
  pvx_unlock(&h->lock);
  return TRUE;
}

EXPORT BOOL WINAPI HeapWalk(HANDLE handle, LPPROCESS_HEAP_ENTRY entry) {
  struct heap *h = heap_of(handle);
  if (!h) return FALSE;
  BOOL invalid = !entry;
  if (entry && heap_walk(h, entry, &invalid)) return TRUE;
  SetLastError(invalid ? ERROR_INVALID_PARAMETER : ERROR_NO_MORE_ITEMS);
  return FALSE;
}

/* The low-fragmentation and terminate-on-corruption switches: this heap has one behaviour. */
EXPORT BOOL WINAPI HeapSetInformation(HANDLE heap, HEAP_INFORMATION_CLASS cls, PVOID info, SIZE_T length) {
  (void)heap, (void)cls, (void)info, (void)length;
  return TRUE;
}

EXPORT PVOID NTAPI RtlAllocateHeap(PVOID heap, ULONG flags, SIZE_T size) { return HeapAlloc(heap, flags, size); }
EXPORT BOOLEAN NTAPI RtlFreeHeap(PVOID heap, ULONG flags, PVOID mem) { return HeapFree(heap, flags, mem) != 0; }
EXPORT PVOID NTAPI RtlReAllocateHeap(PVOID heap, ULONG flags, PVOID mem, SIZE_T size) {
  return HeapReAlloc(heap, flags, mem, size);
}
EXPORT SIZE_T NTAPI RtlSizeHeap(PVOID heap, ULONG flags, const void *mem) { return HeapSize(heap, flags, mem); }
EXPORT BOOLEAN NTAPI RtlValidateHeap(PVOID heap, ULONG flags, const void *mem) {
  return HeapValidate(heap, flags, mem) != 0;
}
EXPORT ULONG NTAPI RtlGetProcessHeaps(ULONG count, PVOID *out) { return GetProcessHeaps(count, out); }

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
