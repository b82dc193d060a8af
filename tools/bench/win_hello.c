/* Bench: the smallest Windows console program, built by mingw against kernel32. */
#include <windows.h>

void mainCRTStartup(void) {
  DWORD n;
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), "hello\n", 6, &n, NULL);
  ExitProcess(0);
}
