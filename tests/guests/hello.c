/* Echoes argc, argv and the Windows command line; exits with argc. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  out("argc=");
  out_i((long long)argc);
  out("\n");
  for (int i = 0; i < argc; i++) {
    out("argv[");
    out_i((long long)i);
    out("]=");
    out(argv[i]);
    out("\n");
  }
  LPWSTR line = GetCommandLineW();
  char narrow[256];
  int n = 0;
  while (line[n] && n < 255) narrow[n] = (char)line[n], n++;
  narrow[n] = 0;
  out("cmdline=");
  out(narrow);
  out("\n");
  if (PVX_INFO->stack_start >= PVX_INFO->stack_end || PVX_INFO->heap_start >= PVX_INFO->heap_end) return 99;
  return argc;
}
