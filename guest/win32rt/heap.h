/* The runtime's heaps, kept entirely in guest memory: a heap is a list of
 * segments, each a run of blocks that tile it exactly, and free blocks sit
 * in size bins. The allocator (heap.c) knows nothing of Win32 handles,
 * flags or errors; heap_api.c puts kernel32's and ntdll's faces on it. */
#ifndef PVX_HEAP_H
#define PVX_HEAP_H
#include "pvxrt.h"

#define HEAP_BINS 128

struct heap_segment {
  struct heap_segment *next;
  SIZE_T size;         /* bytes, this header and the end fence included */
  BOOL owned;          /* VirtualAlloc'd by the heap, so released with it */
  DWORD reserved;
  ULONG64 pad;
};

struct heap {
  ULONG64 magic;
  DWORD options;       /* HeapCreate's, HEAP_GENERATE_EXCEPTIONS and HEAP_CREATE_ENABLE_EXECUTE of them */
  DWORD reserved;
  SIZE_T maximum;      /* 0: grows by new segments; else its one segment's size */
  struct pvx_lock lock;
  struct heap_segment *segments;
  struct heap *next;   /* the process's heaps (heap_api.c) */
  ULONG64 nonempty[HEAP_BINS / 64];
  struct heap_block *bins[HEAP_BINS];
};

/* Makes `h` a heap over [start, start + size), which it does not own. */
void heap_init(struct heap *h, void *start, SIZE_T size, DWORD options, SIZE_T maximum);
/* Releases every segment the heap owns. */
void heap_release(struct heap *h);

/* All of these take the heap's lock; NULL or FALSE when the heap is full or the block is not one of its own. */
void *heap_alloc(struct heap *h, SIZE_T size, BOOL zero);
BOOL heap_free(struct heap *h, void *p);
void *heap_realloc(struct heap *h, void *p, SIZE_T size, BOOL zero, BOOL in_place_only, BOOL *invalid);
SIZE_T heap_size(struct heap *h, const void *p); /* (SIZE_T)-1 for a block not its own */
BOOL heap_validate(struct heap *h, const void *p); /* p NULL: the whole heap */
SIZE_T heap_largest_free(struct heap *h);
/* One step of a HeapWalk: FALSE at the end, or with *invalid set when `entry` is not one of this heap's. */
BOOL heap_walk(struct heap *h, PROCESS_HEAP_ENTRY *entry, BOOL *invalid);

#endif
