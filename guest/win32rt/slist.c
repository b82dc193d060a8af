/* Interlocked singly-linked lists (SLIST_HEADER), lock-free as on Windows:
 * the x64 header is one 16-byte word, swapped whole with cmpxchg16b, holding
 * the depth (16 bits) and a sequence (48 bits) that every change bumps, so a
 * pop that raced a pop and a push cannot take a stale next pointer; and the
 * first entry (16-byte aligned, so its low 4 bits are free). Also the one
 * critical-section initializer the guest routines lack. */
#include "pvxrt.h"

struct header { ULONG64 counts, first; };

static BOOL swap(volatile struct header *h, struct header *seen, struct header next) {
  BOOL done;
  __asm__ volatile("lock cmpxchg16b %1"
                   : "=@ccz"(done), "+m"(*h), "+a"(seen->counts), "+d"(seen->first)
                   : "b"(next.counts), "c"(next.first)
                   : "memory");
  return done;
}

static struct header load(volatile struct header *h) {
  struct header seen = {0, 0};
  /* A compare-exchange that fails reads the whole word at once; one that succeeds changed nothing. */
  swap(h, &seen, seen);
  return seen;
}

#define DEPTH(c) ((c) & 0xffff)
#define SEQUENCE_STEP 0x10000ull
#define FIRST(h) ((PSLIST_ENTRY)((h).first & ~15ull))

EXPORT void WINAPI InitializeSListHead(PSLIST_HEADER head) { memset(head, 0, sizeof *head); }

EXPORT USHORT WINAPI QueryDepthSList(PSLIST_HEADER head) { return (USHORT)DEPTH(load((void *)head).counts); }

EXPORT PSLIST_ENTRY WINAPI InterlockedPushEntrySList(PSLIST_HEADER head, PSLIST_ENTRY entry) {
  volatile struct header *h = (void *)head;
  struct header seen = load(h);
  for (;;) {
    entry->Next = FIRST(seen);
    struct header next = {DEPTH(seen.counts + 1) | ((seen.counts + SEQUENCE_STEP) & ~0xffffull), (ULONG64)entry};
    if (swap(h, &seen, next)) return FIRST(seen);
  }
}

EXPORT PSLIST_ENTRY WINAPI InterlockedPopEntrySList(PSLIST_HEADER head) {
  volatile struct header *h = (void *)head;
  struct header seen = load(h);
  for (;;) {
    PSLIST_ENTRY first = FIRST(seen);
    if (!first) return NULL;
    struct header next = {DEPTH(seen.counts - 1) | ((seen.counts + SEQUENCE_STEP) & ~0xffffull),
                          (ULONG64)first->Next};
    if (swap(h, &seen, next)) return first;
  }
}

EXPORT PSLIST_ENTRY WINAPI InterlockedFlushSList(PSLIST_HEADER head) {
  volatile struct header *h = (void *)head;
  struct header seen = load(h);
  for (;;) {
    if (!FIRST(seen)) return NULL;
    struct header next = {(seen.counts + SEQUENCE_STEP) & ~0xffffull, 0};
    if (swap(h, &seen, next)) return FIRST(seen);
  }
}

EXPORT BOOL WINAPI InitializeCriticalSectionEx(LPCRITICAL_SECTION cs, DWORD spin, DWORD flags) {
  (void)flags; /* debug info and dynamic spin: nothing a pvx app can observe */
  return InitializeCriticalSectionAndSpinCount(cs, spin);
}
