/* Echoes argc, argv and the Windows command line; exits with argc. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  put("argc=");
  put_u((unsigned long)argc);
  put("\n");
  for (int i = 0; i < argc; i++) {
    put("argv[");
    put_u((unsigned long)i);
    put("]=");
    put(argv[i]);
    put("\n");
  }
  LPWSTR line = GetCommandLineW();
  char narrow[256];
  int n = 0;
  while (line[n] && n < 255) narrow[n] = (char)line[n], n++;
  narrow[n] = 0;
  put("cmdline=");
  put(narrow);
  put("\n");
  if (PVX_INFO->stack_start >= PVX_INFO->stack_end || PVX_INFO->heap_start >= PVX_INFO->heap_end) return 99;
  return argc;
}
