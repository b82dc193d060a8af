/* What the compiler may call on its own (struct copies, zeroing), and the
 * string lengths the runtime needs. Not exported: the app's C runtime has its
 * own. rep stosb and movsb are the fast forms on every CPU since Ivy Bridge
 * (ERMSB), and need no SSE, which PVM's ring 0 lacks but ring 3 may use. */
#include "pvxrt.h"

void *memset(void *d, int c, SIZE_T n) {
  void *p = d;
  __asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
  return d;
}

void *memcpy(void *d, const void *s, SIZE_T n) {
  void *p = d;
  __asm__ volatile("rep movsb" : "+D"(p), "+S"(s), "+c"(n) : : "memory");
  return d;
}

void *memmove(void *d, const void *s, SIZE_T n) {
  unsigned char *p = d;
  const unsigned char *q = s;
  if (p < q) return memcpy(d, s, n);
  while (n--) p[n] = q[n];
  return d;
}

SIZE_T pvx_strlen(const char *s) {
  SIZE_T n = 0;
  while (s[n]) n++;
  return n;
}

SIZE_T pvx_wcslen(const WCHAR *s) {
  SIZE_T n = 0;
  while (s[n]) n++;
  return n;
}
