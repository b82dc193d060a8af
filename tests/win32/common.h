/* Output helpers for the Win32 test programs. They use only kernel32 calls, so
 * each program builds unchanged with mingw (real Windows/Wine) and as a pvx
 * guest, and prints the same deterministic text on both: no addresses, no times. */
#include <windows.h>

static inline DWORD text_length(const char *s) {
  DWORD n = 0;
  while (s[n]) n++;
  return n;
}

static inline void out(const char *s) {
  DWORD n;
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), s, text_length(s), &n, NULL);
}

static inline void out_i(long long v) {
  char buf[24];
  int i = sizeof buf - 1;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  buf[i] = 0;
  do buf[--i] = (char)('0' + u % 10); while (u /= 10);
  if (v < 0) buf[--i] = '-';
  out(buf + i);
}

/* ASCII view of a wide string (the programs only use ASCII names). */
static inline void out_w(const WCHAR *w) {
  char buf[2];
  buf[1] = 0;
  for (; *w; w++) {
    buf[0] = *w < 128 ? (char)*w : '?';
    out(buf);
  }
}

/* One line: what was tried, whether it succeeded, and the last error if not. */
static inline void result(const char *what, BOOL ok) {
  DWORD err = GetLastError();
  out(what);
  if (ok) {
    out(": ok\n");
  } else {
    out(": error ");
    out_i((long long)err);
    out("\n");
  }
}

static inline HANDLE open_result(const char *what, HANDLE h) {
  result(what, h != INVALID_HANDLE_VALUE);
  return h;
}

static inline void value(const char *what, long long v) {
  out("  ");
  out(what);
  out(" = ");
  out_i(v);
  out("\n");
}
