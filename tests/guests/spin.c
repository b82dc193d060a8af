/* Never finishes: only --timeout can stop it. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)argc, (void)argv, (void)envp;
  out("spinning\n");
  for (volatile unsigned long i = 0;; i++) {
  }
}
