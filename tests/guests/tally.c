/*
 * Counts to N into C:\tally.txt, one line a tick, through one handle it keeps
 * open the whole time, printing and sleeping between lines; then waits for a
 * line on the console, and prints what the file holds, read back through the
 * same handle from its start. A migration in the middle must move the file,
 * the handle and its position, and the clock, without the app seeing it.
 */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  int n = argc > 1 ? parse_int(argv[1]) : 20;
  int ms = argc > 2 ? parse_int(argv[2]) : 200;
  HANDLE file = CreateFileW(L"C:\\tally.txt", GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
                            FILE_ATTRIBUTE_NORMAL, NULL);
  if (file == INVALID_HANDLE_VALUE) return step_failed("create C:\\tally.txt", 1);
  ULONGLONG last = GetTickCount64();
  for (int i = 0; i < n; i++) {
    char line[32];
    int len = 0;
    const char *word = "line ";
    while (word[len]) line[len] = word[len], len++;
    char digits[12];
    int d = 0;
    int v = i;
    do digits[d++] = (char)('0' + v % 10), v /= 10; while (v);
    while (d) line[len++] = digits[--d];
    line[len++] = '\n';
    DWORD wrote = 0;
    if (!WriteFile(file, line, (DWORD)len, &wrote, NULL) || wrote != (DWORD)len) return step_failed("write", 2);
    if (tick(i, ms, &last)) return 3;
  }
  char input[64];
  DWORD got = 0;
  if (!ReadFile(GetStdHandle(STD_INPUT_HANDLE), input, sizeof input, &got, NULL)) return step_failed("read stdin", 4);
  LARGE_INTEGER start;
  start.QuadPart = 0;
  if (!SetFilePointerEx(file, start, NULL, FILE_BEGIN)) return step_failed("seek", 5);
  char text[4096];
  DWORD have = 0;
  if (!ReadFile(file, text, sizeof text - 1, &have, NULL)) return step_failed("read back", 6);
  text[have] = 0;
  out("the file holds:\n");
  out(text);
  return 0;
}
