/* Breaks the ABI itself: a frame the host cannot write a result to. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)argv, (void)envp;
  out("about to break the ABI\n");
  uint64_t where = argc > 1 ? 0xfffff000u : 0x8;
  pvx_hypercall(3 /* WriteFile */, (uint64_t *)(uintptr_t)where);
  out("the host let a bad frame through\n");
  return 0;
}
