/* Commits argv[1] MiB and writes every page of it: how a test sees the guest RAM its instance was given. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  SIZE_T bytes = (SIZE_T)(argc > 1 ? parse_int(argv[1]) : 1) << 20;
  unsigned char *p = VirtualAlloc(NULL, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  if (!p) {
    out("refused: error ");
    out_i((int)GetLastError());
    out("\n");
    return 1;
  }
  for (SIZE_T i = 0; i < bytes; i += 4096) p[i] = 1;
  out("committed\n");
  return 0;
}
