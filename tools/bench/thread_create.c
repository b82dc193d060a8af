/* Bench guest: the cost of a thread's whole life.
 *   thread_create <count>
 * count times: CreateThread of a thread that returns at once, WaitForSingleObject on it, CloseHandle;
 * prints the nanoseconds for all of them, timed inside the guest. */
#include "pvx.h"
#include "guest_io.h"

static DWORD WINAPI nothing(LPVOID p) {
  (void)p;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  unsigned long count = number(argv[1]);
  LARGE_INTEGER f, t0, t1;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&t0);
  for (unsigned long i = 0; i < count; i++) {
    HANDLE h = CreateThread(NULL, 0, nothing, NULL, 0, NULL);
    if (!h) return 3;
    if (WaitForSingleObject(h, INFINITE) != WAIT_OBJECT_0) return 4;
    CloseHandle(h);
  }
  QueryPerformanceCounter(&t1);
  print_number((unsigned long long)((t1.QuadPart - t0.QuadPart) * (1000000000.0 / (double)f.QuadPart)));
  return 0;
}
