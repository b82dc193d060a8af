/* Bench: the Windows hello that first reads a line of its console, the ready point of a template of it. */
#include <windows.h>

void mainCRTStartup(void) {
  char line[16];
  DWORD n;
  ReadFile(GetStdHandle(STD_INPUT_HANDLE), line, sizeof line, &n, NULL);
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), "hello\n", 6, &n, NULL);
  ExitProcess(0);
}
