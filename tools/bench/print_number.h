/* The bench programs report one number on stdout: nanoseconds measured inside the guest. */
static void print_number(unsigned long long v) {
  char text[24];
  int i = sizeof text - 1;
  DWORD n;
  text[i] = '\n';
  do text[--i] = (char)('0' + v % 10); while (v /= 10);
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), text + i, (DWORD)(sizeof text - i), &n, NULL);
}
