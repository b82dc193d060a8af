/*
 * Runs into an instance's partitions and says where it stopped:
 *   handles      opens new files, keeping each open, until CreateFileW fails
 *   disk N       writes N KiB to one file, 4 KiB at a time, until WriteFile fails
 */
#include "util.h"

static void failed(const char *what, long long done) {
  out(what);
  out(" stopped after ");
  out_i(done);
  out(": error ");
  out_i((long long)GetLastError());
  out("\n");
}

int main(int argc, char **argv, char **envp) {
  (void)envp;
  if (argc > 1 && argv[1][0] == 'h') {
    WCHAR name[] = L"f0000.txt";
    for (int i = 0; i < 10000; i++) {
      for (int d = 4, v = i; d >= 1; d--, v /= 10) name[d] = (WCHAR)(L'0' + v % 10);
      HANDLE h = CreateFileW(name, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
      if (h == INVALID_HANDLE_VALUE) {
        failed("opening", i);
        return 1;
      }
    }
    out("opened 10000\n");
    return 0;
  }
  int kib = argc > 2 ? parse_int(argv[2]) : 0;
  HANDLE h = CreateFileW(L"fill.bin", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
  if (h == INVALID_HANDLE_VALUE) {
    failed("creating", 0);
    return 2;
  }
  static char chunk[4096];
  for (int done = 0; done < kib; done += 4) {
    DWORD wrote = 0;
    if (!WriteFile(h, chunk, sizeof chunk, &wrote, NULL)) {
      failed("writing", done);
      return 1;
    }
  }
  out("wrote ");
  out_i(kib);
  out(" KiB\n");
  return 0;
}
