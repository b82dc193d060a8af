/* Reads the console once and reports how much arrived. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)argc, (void)argv, (void)envp;
  char buf[64];
  DWORD n = 0;
  if (!ReadFile(GetStdHandle(STD_INPUT_HANDLE), buf, sizeof buf, &n, NULL)) return 1;
  out("read ");
  out_i(n);
  out(" bytes\n");
  return 0;
}
