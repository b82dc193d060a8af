/*
 * Counts to N, sleeping between lines and checking that its clock never runs
 * backwards, then waits for a line on the console: until it gets one it
 * cannot end, so a test can act on it while it runs.
 */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  int n = argc > 1 ? parse_int(argv[1]) : 20;
  int ms = argc > 2 ? parse_int(argv[2]) : 200;
  ULONGLONG last = GetTickCount64();
  for (int i = 0; i < n; i++) {
    if (tick(i, ms, &last)) return 2;
  }
  PvxReady(); /* a template made with --ready call is snapshotted here; elsewhere this does nothing */
  char line[64];
  DWORD got = 0;
  if (!ReadFile(GetStdHandle(STD_INPUT_HANDLE), line, sizeof line, &got, NULL)) return 3;
  out("read ");
  out_i(got);
  out(" bytes\ndone\n");
  return 0;
}
