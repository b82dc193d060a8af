/* The test guests share the Win32 programs' output helpers (out, out_i, value, ...). */
#include "../win32/common.h"

static inline int parse_int(const char *s) {
  int sign = 1, v = 0;
  if (*s == '-') sign = -1, s++;
  while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
  return sign * v;
}
