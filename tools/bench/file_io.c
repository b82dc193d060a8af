/* Bench guest: file throughput and open/close cost through the Win32 ABI.
 *   file_io write|read <chunk bytes> <total MiB>   prints nanoseconds for the loop
 *   file_io openclose <count>                      prints nanoseconds for count CreateFileW+CloseHandle
 * Timed inside the guest so boot and teardown do not count. */
#include "pvx.h"
#include "guest_io.h"

static char buffer[1 << 20];

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  LARGE_INTEGER f, t0, t1;
  QueryPerformanceFrequency(&f);
  DWORD n;
  if (argv[1][0] == 'o') {
    unsigned long count = number(argv[2]);
    CloseHandle(CreateFileW(L"bench.dat", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL));
    QueryPerformanceCounter(&t0);
    for (unsigned long i = 0; i < count; i++) {
      CloseHandle(CreateFileW(L"bench.dat", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL));
    }
    QueryPerformanceCounter(&t1);
  } else {
    if (argc < 4) return 2;
    DWORD chunk = (DWORD)number(argv[2]);
    unsigned long long total = (unsigned long long)number(argv[3]) << 20;
    int reading = argv[1][0] == 'r';
    HANDLE h = CreateFileW(L"bench.dat", GENERIC_READ | GENERIC_WRITE, 0, NULL, reading ? OPEN_EXISTING : CREATE_ALWAYS, 0, NULL);
    if (h == INVALID_HANDLE_VALUE) return 3;
    for (DWORD i = 0; i < chunk; i++) buffer[i] = (char)i;
    QueryPerformanceCounter(&t0);
    for (unsigned long long done = 0; done < total; done += chunk) {
      BOOL ok = reading ? ReadFile(h, buffer, chunk, &n, NULL) : WriteFile(h, buffer, chunk, &n, NULL);
      if (!ok || n != chunk) return 4;
    }
    QueryPerformanceCounter(&t1);
    CloseHandle(h);
  }
  print_number((unsigned long long)((t1.QuadPart - t0.QuadPart) * (1000000000.0 / (double)f.QuadPart)));
  return 0;
}
