/* Exits with the code given as its first argument, through ExitProcess or main's return. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  int code = argc > 1 ? parse_int(argv[1]) : 0;
  if (argc > 2) ExitProcess((UINT)code);
  return code;
}
