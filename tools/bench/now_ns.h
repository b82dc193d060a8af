/* The C baselines' clock: CLOCK_MONOTONIC in nanoseconds. */
#include <time.h>

static inline unsigned long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}
