/* The bundled example: greets, echoes its arguments, exits with their count. */
#include "pvx.h"

static DWORD length(const char *s) {
  DWORD n = 0;
  while (s[n]) n++;
  return n;
}

static void print(const char *s) {
  DWORD written;
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), s, length(s), &written, NULL);
}

int main(int argc, char **argv, char **envp) {
  (void)envp;
  print("Hello from a pvx micro-VM!\n");
  for (int i = 1; i < argc; i++) {
    print("  arg: ");
    print(argv[i]);
    print("\n");
  }
  return argc - 1;
}
