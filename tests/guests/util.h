/* The test guests share the Win32 programs' output helpers (out, out_i, value, ...). */
#include "../win32/common.h"

static inline int parse_int(const char *s) {
  int sign = 1, v = 0;
  if (*s == '-') sign = -1, s++;
  while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
  return sign * v;
}

/* Says which step failed, with GetLastError(), and gives `status` for main to return. */
static inline int step_failed(const char *what, int status) {
  out(what);
  out(": error ");
  out_i((int)GetLastError());
  out("\n");
  return status;
}

/* Prints "tick i", sleeps `ms`, and checks that the clock moved on by at least that since *last; 0 if it did. */
static inline int tick(int i, int ms, ULONGLONG *last) {
  out("tick ");
  out_i(i);
  out("\n");
  Sleep(ms);
  ULONGLONG now = GetTickCount64();
  if (now < *last + (ULONGLONG)ms) {
    out("clock ran backwards or slept short\n");
    return 1;
  }
  *last = now;
  return 0;
}
