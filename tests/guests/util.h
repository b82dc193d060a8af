/* Small helpers shared by the test guests (the guests have no libc). */
#include "pvx.h"

static inline DWORD str_len(const char *s) {
  DWORD n = 0;
  while (s[n]) n++;
  return n;
}

static inline void put(const char *s) {
  DWORD written;
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), s, str_len(s), &written, NULL);
}

static inline void put_u(unsigned long v) {
  char buf[24];
  int i = sizeof buf - 1;
  buf[i] = 0;
  do buf[--i] = (char)('0' + v % 10); while (v /= 10);
  put(buf + i);
}

static inline int parse_int(const char *s) {
  int sign = 1, v = 0;
  if (*s == '-') sign = -1, s++;
  while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
  return sign * v;
}
