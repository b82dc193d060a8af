/* The program every user tries first, built the default way (msvcrt). */
#include <stdio.h>

int main(int argc, char **argv) {
  printf("hello, %s! %d argument(s), pi is %.3f\n", "world", argc - 1, 3.14159265);
  for (int i = 1; i < argc; i++) printf("argv[%d] = \"%s\"\n", i, argv[i]);
  return 7;
}
