/* The few lines of C runtime a -nostdlib mingw build needs, so the test
 * programs' `int main(void)` runs on Windows and Wine as it does under pvx. */
#include <windows.h>

int main(void);

/* gcc calls __main (constructors) from main on Windows targets. */
void __main(void) {}

void *memset(void *d, int c, size_t n) {
  unsigned char *p = d;
  while (n--) *p++ = (unsigned char)c;
  return d;
}

void *memcpy(void *d, const void *s, size_t n) {
  unsigned char *dp = d;
  const unsigned char *sp = s;
  while (n--) *dp++ = *sp++;
  return d;
}

void mainCRTStartup(void) {
  ExitProcess((UINT)main());
}
