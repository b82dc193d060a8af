/* Hands the host pointers it must refuse; each refusal must come back as ERROR_NOACCESS. */
#include "util.h"

static int check(const char *what, BOOL ok) {
  DWORD err = GetLastError();
  out(what);
  if (!ok && err == ERROR_NOACCESS) {
    out(": refused\n");
    return 0;
  }
  out(": NOT refused\n");
  return 1;
}

int main(int argc, char **argv, char **envp) {
  (void)argc, (void)argv, (void)envp;
  HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE);
  DWORD written;
  int failures = 0;
  failures += check("outside RAM", WriteFile(out, (LPCVOID)0x7f0000000000ull, 16, &written, NULL));
  failures += check("NULL buffer", WriteFile(out, (LPCVOID)0, 16, &written, NULL));
  failures += check("past the end of RAM", WriteFile(out, (LPCVOID)(uintptr_t)(PVX_INFO->memory_size - 8), 16, &written, NULL));
  failures += check("wrapping length", WriteFile(out, "x", 0xffffffffu, &written, NULL));
  failures += check("written into text", WriteFile(out, "x", 1, (LPDWORD)(void *)main, NULL));
  failures += check("into the guard page", WriteFile(out, (LPCVOID)(uintptr_t)(PVX_INFO->stack_start - 16), 16, &written, NULL));
  /* A valid call still works afterwards. */
  BOOL ok = WriteFile(out, "still alive\n", 12, &written, NULL);
  return failures * 10 + (ok && written == 12 ? 0 : 1);
}
