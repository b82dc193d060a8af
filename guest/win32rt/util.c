/* What the compiler may call on its own (struct copies, zeroing), and the
 * string lengths the runtime needs. Not exported: the app's C runtime has its own. */
#include "pvxrt.h"

void *memset(void *d, int c, SIZE_T n) {
  unsigned char *p = d;
  while (n--) *p++ = (unsigned char)c;
  return d;
}

void *memcpy(void *d, const void *s, SIZE_T n) {
  unsigned char *p = d;
  const unsigned char *q = s;
  while (n--) *p++ = *q++;
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
