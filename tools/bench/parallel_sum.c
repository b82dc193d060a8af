/* Bench guest: CPU-bound work split over threads.
 *   parallel_sum <threads> <iterations>
 * Starts <threads> threads with CreateThread, each summing its slice of parallel_sum_range(0, iterations),
 * waits for all, and prints "<nanoseconds> <sum>": the parallel section timed inside the guest with
 * QueryPerformanceCounter, and the total (the same for any thread count), so the work is observable.
 * The threads' vCPUs are started once before the clock starts (a vCPU's first thread waits for a host
 * thread to start, tens of ms, which thread_create.c's line counts), so the time is the work's. */
#include "pvx.h"
#include "parallel_sum_work.h"
#include "guest_io.h"

#define MAX_THREADS 16

static parallel_sum_part parts[MAX_THREADS];

static DWORD WINAPI nothing(LPVOID p) {
  (void)p;
  return 0;
}

static DWORD WINAPI worker(LPVOID p) {
  parallel_sum_part *part = p;
  part->sum = parallel_sum_range(part->begin, part->end);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  unsigned n = (unsigned)number(argv[1]);
  unsigned long long total = number(argv[2]);
  if (n < 1 || n > MAX_THREADS) return 2;
  LARGE_INTEGER f, t0, t1;
  QueryPerformanceFrequency(&f);
  HANDLE threads[MAX_THREADS];
  for (unsigned t = 0; t < n; t++)
    if (!(threads[t] = CreateThread(NULL, 0, nothing, NULL, 0, NULL))) return 3;
  if (WaitForMultipleObjects(n, threads, TRUE, INFINITE) != WAIT_OBJECT_0) return 4;
  for (unsigned t = 0; t < n; t++) CloseHandle(threads[t]);
  QueryPerformanceCounter(&t0);
  for (unsigned t = 0; t < n; t++) {
    parallel_sum_split(&parts[t], t, n, total);
    threads[t] = CreateThread(NULL, 0, worker, &parts[t], 0, NULL);
    if (!threads[t]) return 3;
  }
  if (WaitForMultipleObjects(n, threads, TRUE, INFINITE) != WAIT_OBJECT_0) return 4;
  QueryPerformanceCounter(&t1);
  unsigned long long sum = 0;
  for (unsigned t = 0; t < n; t++) {
    CloseHandle(threads[t]);
    sum += parts[t].sum;
  }
  char text[48];
  DWORD written;
  int len = parallel_sum_format(
      text, (unsigned long long)((t1.QuadPart - t0.QuadPart) * (1000000000.0 / (double)f.QuadPart)), sum);
  WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), text, (DWORD)len, &written, NULL);
  return 0;
}
