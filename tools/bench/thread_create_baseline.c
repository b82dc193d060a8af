/* C baseline for thread_create.c: count times pthread_create of a thread that returns at once, then
 * pthread_join; prints the nanoseconds for all of them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "now_ns.h"

static void *nothing(void *p) {
  return p;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  unsigned long count = strtoul(argv[1], NULL, 10);
  unsigned long long t0 = now_ns();
  for (unsigned long i = 0; i < count; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, nothing, NULL)) return 3;
    pthread_join(t, NULL);
  }
  printf("%llu\n", now_ns() - t0);
  return 0;
}
