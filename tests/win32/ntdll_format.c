/* ntdll's own _vsnprintf, which Wine's DLLs format their debug messages with:
 * flags, widths and precisions on integers of every length modifier, narrow
 * and wide characters and strings, pointers, and Windows' return contract at
 * and past the end of the buffer. Floating point is left out: pvx's ntdll
 * refuses it (docs/windows.md). */
#include "common.h"
#include <stdarg.h>

typedef int(__cdecl *vsnprintf_fn)(char *, SIZE_T, const char *, va_list);
static vsnprintf_fn ntdll_vsnprintf;

static void show(SIZE_T count, const char *fmt, ...) {
  char buf[128];
  for (int i = 0; i < (int)sizeof buf; i++) buf[i] = '#';
  va_list ap;
  va_start(ap, fmt);
  int r = ntdll_vsnprintf(buf, count, fmt, ap);
  va_end(ap);
  buf[count < sizeof buf - 1 ? count + 1 : sizeof buf - 1] = 0; /* show the byte past the count too */
  out(fmt);
  out(" -> ");
  out_i(r);
  out(" [");
  out(buf);
  out("]\n");
}

int main(void) {
  ntdll_vsnprintf = (vsnprintf_fn)GetProcAddress(GetModuleHandleA("ntdll.dll"), "_vsnprintf");
  result("GetProcAddress(ntdll, _vsnprintf)", ntdll_vsnprintf != NULL);
  if (!ntdll_vsnprintf) return 1;
  show(100, "%d|%5d|%-5d|%05d|%+d|% d|%i", 42, -42, 42, -42, 42, 42, 0);
  show(100, "%x %X %#x %#X %o %#o %u", 0xbeef, 0xbeef, 255, 255, 8, 8, 0xffffffffu);
  show(100, "%I64d %lld %I64u %llx %I64X", -1234567890123ll, 9000000000ll, 18446744073709551615ull, 0x123456789abull,
       0xfedcba9876ull);
  show(100, "%Id %zu %Ix %I32d %ld %lu", (LONG_PTR)-5, (SIZE_T)77, (ULONG_PTR)0x1000, -7, -8l, 4000000000ul);
  show(100, "%hd %hu %hhd %hhu %hx", 70000, 70000, 300, 300, 0x12345);
  show(100, "%.3d|%.0d|%.0x|%8.3d|%-8.3x|%08.3d", 7, 0, 0, 7, 10, 5);
  show(100, "%*d|%-*d|%.*d|%*d", 6, 1, 6, 2, 4, 3, -4, 9);
  show(100, "%s|%.2s|%7s|%-7s|%s", "abc", "abc", "abc", "abc", (char *)NULL);
  show(100, "%S|%ls|%ws|%hs|%5S", L"wide", L"\u00e9t\u00e9", L"w", "narrow", L"ab");
  show(100, "%c%c|%C|%lc|%hc|%3c|%-3c|", 'o', 'k', L'W', L'\u00fc', 'h', 'r', 'l');
  show(100, "%p|%20p", (void *)0x1234, (void *)0xabcdef);
  show(100, "100%% %d%%", 5);
  show(5, "abcd");
  show(4, "abcd");
  show(3, "abcd");
  show(0, "abcd");
  show(6, "%d-%s", 12345, "xyz");
  show(100, "");
  return 0;
}
