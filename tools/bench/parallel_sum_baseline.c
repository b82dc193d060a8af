/* C baseline for parallel_sum.c: the same split with pthread_create/pthread_join, timed with
 * CLOCK_MONOTONIC, after the same warm-up round of threads that do nothing; prints "<nanoseconds> <sum>". */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "now_ns.h"
#include "parallel_sum_work.h"

#define MAX_THREADS 16

static parallel_sum_part parts[MAX_THREADS];

static void *nothing(void *p) {
  return p;
}

static void *worker(void *p) {
  parallel_sum_part *part = p;
  part->sum = parallel_sum_range(part->begin, part->end);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  unsigned n = (unsigned)strtoul(argv[1], NULL, 10);
  unsigned long long total = strtoull(argv[2], NULL, 10);
  if (n < 1 || n > MAX_THREADS) return 2;
  pthread_t threads[MAX_THREADS];
  for (unsigned t = 0; t < n; t++)
    if (pthread_create(&threads[t], NULL, nothing, NULL)) return 3;
  for (unsigned t = 0; t < n; t++) pthread_join(threads[t], NULL);
  unsigned long long t0 = now_ns();
  for (unsigned t = 0; t < n; t++) {
    parallel_sum_split(&parts[t], t, n, total);
    if (pthread_create(&threads[t], NULL, worker, &parts[t])) return 3;
  }
  for (unsigned t = 0; t < n; t++) pthread_join(threads[t], NULL);
  unsigned long long t1 = now_ns(), sum = 0;
  for (unsigned t = 0; t < n; t++) sum += parts[t].sum;
  char text[48];
  int len = parallel_sum_format(text, t1 - t0, sum);
  return write(1, text, (size_t)len) == len ? 0 : 5;
}
