/* Bench: C-runtime-heavy work in a default mingw build (msvcrt): formatting
 * and parsing numbers, sorting, and heap churn. Prints the work's nanoseconds
 * (QueryPerformanceCounter), so start-up is not part of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

static int by_value(const void *a, const void *b) {
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return (x > y) - (x < y);
}

int main(void) {
  LARGE_INTEGER f, t0, t1;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&t0);
  char line[128];
  unsigned long long check = 0;
  for (int i = 0; i < 200000; i++) {
    int n = snprintf(line, sizeof line, "%d %08x %.3f %s", i, i * 2654435761u, i / 7.0, "item");
    check += n + strtoul(line, NULL, 10) + (unsigned long long)atof(line + 18);
  }
  enum { N = 1 << 19 };
  unsigned *values = malloc(N * sizeof *values);
  for (unsigned i = 0, x = 1; i < N; i++) values[i] = x = x * 1103515245u + 12345u;
  qsort(values, N, sizeof *values, by_value);
  check += values[N / 2];
  free(values);
  void *blocks[256] = {0};
  for (int i = 0; i < 400000; i++) {
    unsigned k = ((unsigned)i * 7919u) & 255;
    free(blocks[k]);
    blocks[k] = malloc(16 + (i % 1000));
    memset(blocks[k], i, 16);
  }
  for (int k = 0; k < 256; k++) free(blocks[k]);
  QueryPerformanceCounter(&t1);
  if (check == 42) puts("unlikely");
  printf("%llu\n", (unsigned long long)((t1.QuadPart - t0.QuadPart) * (1000000000.0 / (double)f.QuadPart)));
  return 0;
}
