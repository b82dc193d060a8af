/* The heap allocator. Every block starts with a 16-byte header; a free block
 * also holds its bin links and ends with its own span, so that freeing the
 * block after it can find its start and merge the two. Free blocks are never
 * neighbours: each free merges with both. Bins hold one span each up to
 * 1 KiB, then a quarter of a power of two each; a bitmap finds the smallest
 * non-empty bin that fits in one scan. Spans are multiples of 16, so data is
 * 16-byte aligned, as on Windows. */
#include "heap.h"

#define IN_USE 1ull
#define PREV_IN_USE 2ull
#define SPAN_FLAGS 15ull
#define HEADER 16
#define MIN_SPAN 48                 /* header, bin links and the trailing span */
#define EXACT_BINS 62               /* spans 48..1024 */
#define TAG (0x7076ull << 48)       /* "pv": in an in-use block's info, above the size asked for */
#define SIZE_MASK ((1ull << 48) - 1)
#define MAX_REQUEST (1ull << 40)
#define GROWTH (1u << 20)           /* a growing heap's new segments, unless one block needs more */

struct heap_block {
  ULONG64 span; /* bytes to the next block's header, with IN_USE and PREV_IN_USE */
  ULONG64 info; /* in use: TAG | the size asked for; free: 0 */
  struct heap_block *next, *prev; /* free: the bin's list */
};

static SIZE_T span_of(const struct heap_block *b) { return b->span & ~SPAN_FLAGS; }
static struct heap_block *at(const void *base, SIZE_T offset) { return (struct heap_block *)((char *)base + offset); }
static struct heap_block *after(const struct heap_block *b) { return at(b, span_of(b)); }
static struct heap_block *first_block(const struct heap_segment *s) { return at(s, sizeof *s); }
static struct heap_block *fence(const struct heap_segment *s) { return at(s, s->size - HEADER); }
static void *data(struct heap_block *b) { return (char *)b + HEADER; }
static struct heap_block *header_of(const void *p) { return (struct heap_block *)((char *)p - HEADER); }

static SIZE_T span_for(SIZE_T size) {
  SIZE_T span = (size + HEADER + 15) & ~(SIZE_T)15;
  return span < MIN_SPAN ? MIN_SPAN : span;
}

static unsigned bin_of(SIZE_T span) {
  if (span <= 1024) return (unsigned)((span - MIN_SPAN) / 16);
  unsigned log = 63 - __builtin_clzll(span);
  unsigned i = EXACT_BINS + (log - 10) * 4 + (unsigned)((span >> (log - 2)) & 3);
  return i < HEAP_BINS ? i : HEAP_BINS - 1;
}

static void bin(struct heap *h, struct heap_block *b) {
  SIZE_T span = span_of(b);
  unsigned i = bin_of(span);
  b->next = h->bins[i];
  b->prev = NULL;
  if (b->next) b->next->prev = b;
  h->bins[i] = b;
  h->nonempty[i / 64] |= 1ull << (i % 64);
  *(ULONG64 *)((char *)b + span - 8) = span;
}

static void unbin(struct heap *h, struct heap_block *b) {
  unsigned i = bin_of(span_of(b));
  if (b->prev) b->prev->next = b->next;
  else h->bins[i] = b->next;
  if (b->next) b->next->prev = b->prev;
  if (!h->bins[i]) h->nonempty[i / 64] &= ~(1ull << (i % 64));
}

/* Files [b, b + span) as free. The block before it is in use: free blocks have merged with it. */
static void make_free(struct heap *h, struct heap_block *b, SIZE_T span) {
  b->span = span | PREV_IN_USE;
  b->info = 0;
  bin(h, b);
  after(b)->span &= ~PREV_IN_USE;
}

static void add_segment(struct heap *h, struct heap_segment *s, SIZE_T size, BOOL owned) {
  s->size = size;
  s->owned = owned;
  s->next = h->segments;
  h->segments = s;
  struct heap_block *end = fence(s), *b = first_block(s);
  end->span = IN_USE;
  end->info = TAG;
  make_free(h, b, (SIZE_T)((char *)end - (char *)b));
}

void heap_init(struct heap *h, void *start, SIZE_T size, DWORD options, SIZE_T maximum) {
  memset(h, 0, sizeof *h);
  h->options = options;
  h->maximum = maximum;
  add_segment(h, start, size, FALSE);
}

static void release_segment(struct heap *h, struct heap_segment *s) {
  struct heap_segment **link = &h->segments;
  while (*link != s) link = &(*link)->next;
  *link = s->next;
  VirtualFree(s, 0, MEM_RELEASE);
}

void heap_release(struct heap *h) {
  for (struct heap_segment *s = h->segments, *next; s; s = next) {
    next = s->next;
    if (s->owned) VirtualFree(s, 0, MEM_RELEASE);
  }
  h->segments = NULL;
}

/* A free block of at least `span` bytes: the first fit in its own bin, else the head of the next non-empty one. */
static struct heap_block *find(struct heap *h, SIZE_T span) {
  unsigned i = bin_of(span);
  for (struct heap_block *b = h->bins[i]; b; b = b->next)
    if (span_of(b) >= span) return b;
  for (unsigned w = (i + 1) / 64; w < HEAP_BINS / 64; w++) {
    ULONG64 m = h->nonempty[w];
    if (w == (i + 1) / 64) m &= ~0ull << ((i + 1) % 64);
    if (m) return h->bins[w * 64 + __builtin_ctzll(m)];
  }
  return NULL;
}

static BOOL grow(struct heap *h, SIZE_T span) {
  if (h->maximum) return FALSE;
  SIZE_T need = (span + sizeof(struct heap_segment) + HEADER + 0xffff) & ~(SIZE_T)0xffff;
  SIZE_T size = need < GROWTH ? GROWTH : need;
  DWORD protect = h->options & HEAP_CREATE_ENABLE_EXECUTE ? PAGE_EXECUTE_READWRITE : PAGE_READWRITE;
  void *m = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, protect);
  if (!m) return FALSE;
  add_segment(h, m, size, TRUE);
  return TRUE;
}

/* Hands out the front `span` bytes of free block `b`; a remainder big enough to be a block goes back to the bins. */
static void *carve(struct heap *h, struct heap_block *b, SIZE_T span, SIZE_T size) {
  unbin(h, b);
  SIZE_T have = span_of(b);
  if (have - span >= MIN_SPAN) make_free(h, at(b, span), have - span);
  else {
    span = have;
    after(b)->span |= PREV_IN_USE;
  }
  b->span = span | IN_USE | (b->span & PREV_IN_USE);
  b->info = TAG | size;
  return data(b);
}

static void *alloc_locked(struct heap *h, SIZE_T size) {
  if (size >= MAX_REQUEST) return NULL;
  SIZE_T span = span_for(size);
  struct heap_block *b = find(h, span);
  if (!b && grow(h, span)) b = find(h, span);
  return b ? carve(h, b, span, size) : NULL;
}

void *heap_alloc(struct heap *h, SIZE_T size, BOOL zero) {
  pvx_lock(&h->lock);
  void *p = alloc_locked(h, size);
  pvx_unlock(&h->lock);
  if (p && zero) memset(p, 0, size);
  return p;
}

static BOOL inside(const struct heap_segment *s, const void *p) {
  return (const char *)p >= (const char *)first_block(s) && (const char *)p < (const char *)fence(s);
}

/* The in-use block whose data `p` is, and its segment; NULL when this heap never handed out `p` or it was freed. */
static struct heap_block *block_of(struct heap *h, const void *p, struct heap_segment **segment) {
  if (!p || ((ULONG_PTR)p & 15)) return NULL;
  for (struct heap_segment *s = h->segments; s; s = s->next) {
    struct heap_block *b = header_of(p);
    if (!inside(s, b)) continue;
    SIZE_T span = span_of(b), room = (SIZE_T)((char *)fence(s) - (char *)b);
    if (!(b->span & IN_USE) || (b->info & ~SIZE_MASK) != TAG || span < MIN_SPAN || span > room) return NULL;
    if ((b->info & SIZE_MASK) + HEADER > span || !(after(b)->span & PREV_IN_USE)) return NULL;
    *segment = s;
    return b;
  }
  return NULL;
}

/* Frees `b`, merged with its free neighbours. A segment made for one big block goes back to the system with it. */
static void release(struct heap *h, struct heap_block *b, struct heap_segment *s) {
  SIZE_T span = span_of(b);
  b->info = 0; /* a stale header inside a merged free block must not pass for a live one */
  if (!(b->span & PREV_IN_USE)) {
    SIZE_T before = *((ULONG64 *)b - 1);
    b = (struct heap_block *)((char *)b - before);
    unbin(h, b);
    span += before;
  }
  struct heap_block *next = at(b, span);
  if (!(next->span & IN_USE)) {
    unbin(h, next);
    span += span_of(next);
  }
  if (s->owned && s->size > GROWTH && b == first_block(s) && at(b, span) == fence(s)) release_segment(h, s);
  else make_free(h, b, span);
}

BOOL heap_free(struct heap *h, void *p) {
  struct heap_segment *s;
  pvx_lock(&h->lock);
  struct heap_block *b = block_of(h, p, &s);
  if (b) release(h, b, s);
  pvx_unlock(&h->lock);
  return b != NULL;
}

/* Makes in-use `b` span `span` bytes without moving it, taking from or giving to the free block after it. */
static BOOL resize_in_place(struct heap *h, struct heap_block *b, SIZE_T span) {
  SIZE_T have = span_of(b);
  struct heap_block *next = after(b);
  if (span > have) {
    if ((next->span & IN_USE) || have + span_of(next) < span) return FALSE;
    unbin(h, next);
    have += span_of(next);
  }
  ULONG64 prev = b->span & PREV_IN_USE;
  SIZE_T rest = have - span;
  if (rest >= MIN_SPAN) {
    b->span = span | IN_USE | prev;
    struct heap_block *following = at(b, have);
    if (!(following->span & IN_USE)) {
      unbin(h, following);
      rest += span_of(following);
    }
    make_free(h, at(b, span), rest);
  } else {
    b->span = have | IN_USE | prev;
    at(b, have)->span |= PREV_IN_USE;
  }
  return TRUE;
}

void *heap_realloc(struct heap *h, void *p, SIZE_T size, BOOL zero, BOOL in_place_only, BOOL *invalid) {
  struct heap_segment *s;
  void *q = NULL;
  pvx_lock(&h->lock);
  struct heap_block *b = block_of(h, p, &s);
  *invalid = !b;
  if (b && size < MAX_REQUEST) {
    SIZE_T old = b->info & SIZE_MASK;
    if (resize_in_place(h, b, span_for(size))) {
      b->info = TAG | size;
      q = p;
    } else if (!in_place_only && (q = alloc_locked(h, size))) {
      memcpy(q, p, old < size ? old : size);
      release(h, b, s);
    }
    if (q && zero && size > old) memset((char *)q + old, 0, size - old);
  }
  pvx_unlock(&h->lock);
  return q;
}

SIZE_T heap_size(struct heap *h, const void *p) {
  struct heap_segment *s;
  pvx_lock(&h->lock);
  struct heap_block *b = block_of(h, p, &s);
  SIZE_T size = b ? b->info & SIZE_MASK : (SIZE_T)-1;
  pvx_unlock(&h->lock);
  return size;
}

/* Whether the blocks of `s` tile it exactly, with sound headers; counts its free blocks. */
static BOOL segment_sound(const struct heap_segment *s, SIZE_T *free_blocks) {
  struct heap_block *b = first_block(s), *end = fence(s);
  BOOL prev_in_use = TRUE;
  while (b != end) {
    SIZE_T span = span_of(b);
    if (span < MIN_SPAN || span > (SIZE_T)((char *)end - (char *)b) || (b->span & SPAN_FLAGS & ~(IN_USE | PREV_IN_USE)))
      return FALSE;
    if (!(b->span & PREV_IN_USE) != !prev_in_use) return FALSE;
    if (b->span & IN_USE) {
      if ((b->info & ~SIZE_MASK) != TAG || (b->info & SIZE_MASK) + HEADER > span) return FALSE;
    } else {
      if (!prev_in_use || *(ULONG64 *)((char *)b + span - 8) != span) return FALSE;
      ++*free_blocks;
    }
    prev_in_use = (b->span & IN_USE) != 0;
    b = after(b);
  }
  return end->span == (IN_USE | (prev_in_use ? PREV_IN_USE : 0)) && end->info == TAG;
}

static BOOL in_heap(const struct heap *h, const void *p) {
  for (const struct heap_segment *s = h->segments; s; s = s->next)
    if (inside(s, p)) return TRUE;
  return FALSE;
}

/* Whether every bin lists exactly the free blocks of its spans, each once. */
static BOOL bins_sound(const struct heap *h, SIZE_T free_blocks) {
  SIZE_T listed = 0;
  for (unsigned i = 0; i < HEAP_BINS; i++) {
    if (!h->bins[i] != !(h->nonempty[i / 64] & (1ull << (i % 64)))) return FALSE;
    const struct heap_block *prev = NULL;
    for (const struct heap_block *b = h->bins[i]; b; prev = b, b = b->next) {
      if (!in_heap(h, b) || ((ULONG_PTR)b & 15) || b->prev != prev || (b->span & IN_USE)) return FALSE;
      if (bin_of(span_of(b)) != i || ++listed > free_blocks) return FALSE;
    }
  }
  return listed == free_blocks;
}

BOOL heap_validate(struct heap *h, const void *p) {
  struct heap_segment *s;
  BOOL sound = TRUE;
  SIZE_T free_blocks = 0;
  pvx_lock(&h->lock);
  if (p) sound = block_of(h, p, &s) != NULL;
  else {
    for (s = h->segments; s && sound; s = s->next) sound = segment_sound(s, &free_blocks);
    sound = sound && bins_sound(h, free_blocks);
  }
  pvx_unlock(&h->lock);
  return sound;
}

SIZE_T heap_largest_free(struct heap *h) {
  SIZE_T largest = 0;
  pvx_lock(&h->lock);
  for (struct heap_segment *s = h->segments, *next; s; s = next) {
    next = s->next;
    struct heap_block *b = first_block(s);
    if (s->owned && !(b->span & IN_USE) && after(b) == fence(s)) {
      unbin(h, b);
      release_segment(h, s);
    }
  }
  for (int i = HEAP_BINS - 1; i >= 0 && !largest; i--)
    for (struct heap_block *b = h->bins[i]; b; b = b->next)
      if (span_of(b) - HEADER > largest) largest = span_of(b) - HEADER;
  pvx_unlock(&h->lock);
  return largest;
}

static void region_entry(PROCESS_HEAP_ENTRY *e, struct heap_segment *s, BYTE index) {
  e->lpData = s;
  e->cbData = (DWORD)s->size;
  e->cbOverhead = 0;
  e->iRegionIndex = index;
  e->wFlags = PROCESS_HEAP_REGION;
  e->Region.dwCommittedSize = (DWORD)s->size;
  e->Region.dwUnCommittedSize = 0;
  e->Region.lpFirstBlock = data(first_block(s));
  e->Region.lpLastBlock = fence(s);
}

static void block_entry(PROCESS_HEAP_ENTRY *e, struct heap_block *b) {
  SIZE_T span = span_of(b);
  BOOL busy = (b->span & IN_USE) != 0;
  e->lpData = data(b);
  e->cbData = (DWORD)(busy ? b->info & SIZE_MASK : span - HEADER);
  e->cbOverhead = (BYTE)(span - e->cbData);
  e->wFlags = busy ? PROCESS_HEAP_ENTRY_BUSY : 0;
  memset(&e->Block, 0, sizeof e->Block);
}

static BOOL walk_locked(struct heap *h, PROCESS_HEAP_ENTRY *e, BOOL *invalid) {
  struct heap_segment *s = h->segments;
  if (!e->lpData) {
    if (s) region_entry(e, s, 0);
    return s != NULL;
  }
  BYTE index = 0;
  for (; s && index != e->iRegionIndex; s = s->next) index++;
  struct heap_block *b = header_of(e->lpData);
  if (!s || (e->wFlags & PROCESS_HEAP_REGION ? e->lpData != s : !inside(s, b))) {
    *invalid = TRUE;
    return FALSE;
  }
  b = e->wFlags & PROCESS_HEAP_REGION ? first_block(s) : after(b);
  if (b != fence(s)) block_entry(e, b);
  else if (s->next) region_entry(e, s->next, index + 1);
  else return FALSE;
  return TRUE;
}

BOOL heap_walk(struct heap *h, PROCESS_HEAP_ENTRY *e, BOOL *invalid) {
  *invalid = FALSE;
  pvx_lock(&h->lock);
  BOOL more = walk_locked(h, e, invalid);
  pvx_unlock(&h->lock);
  return more;
}
