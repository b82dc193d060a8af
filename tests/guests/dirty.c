/*
 * Commits argv[1] MiB (default 64) and writes every page of it, prints "committed", then writes argv[2] MiB a second
 * (default 0) of it, a page at a time round and round, printing "tick N" each second, until it is stopped: a guest
 * whose memory a migration must chase at a known rate.
 */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  ULONGLONG bytes = (ULONGLONG)(argc > 1 ? parse_int(argv[1]) : 64) << 20;
  ULONGLONG perSecond = (ULONGLONG)(argc > 2 ? parse_int(argv[2]) : 0) << 20;
  unsigned char *p = VirtualAlloc(NULL, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  if (!p) return step_failed("VirtualAlloc", 1);
  /* Every page its own: the same bytes in two pages would be one chunk, and cost a migration nothing. */
  for (ULONGLONG i = 0; i < bytes; i += 4096) *(ULONGLONG *)(p + i) = i + 1;
  out("committed\n");
  ULONGLONG start = GetTickCount64(), written = 0, at = 0;
  for (int ticks = 0;;) {
    Sleep(10);
    ULONGLONG elapsed = GetTickCount64() - start;
    for (; written < perSecond * elapsed / 1000; written += 4096, at = (at + 4096) % bytes) ((ULONGLONG *)(p + at))[1]++;
    if (elapsed >= (ULONGLONG)(ticks + 1) * 1000) {
      out("tick ");
      out_i(ticks++);
      out("\n");
    }
  }
}
