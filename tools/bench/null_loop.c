/* Bench guest: argv[1] null hypercalls, then exit. */
#include "pvx.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  long n = 0;
  for (const char *s = argc > 1 ? argv[1] : "0"; *s; s++) n = n * 10 + (*s - '0');
  while (n--) PvxNull();
  return 0;
}
