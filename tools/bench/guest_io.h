/* What every bench guest does at its edges: read a decimal argument, and report one number on
 * stdout (nanoseconds measured inside the guest). Inline, so a guest may use either alone. */
static inline unsigned long number(const char *s) {
  unsigned long n = 0;
  while (*s >= '0' && *s <= '9') n = n * 10 + (unsigned long)(*s++ - '0');
  return n;
}

static inline void print_number(unsigned long long v) {
  char text[24];
  int i = sizeof text - 1;
  DWORD n;
  text[i] = '\n';
  do text[--i] = (char)('0' + v % 10); while (v /= 10);
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), text + i, (DWORD)(sizeof text - i), &n, NULL);
}
