/* C baseline for file_io.c: the same loops with POSIX open/read/write/close. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "now_ns.h"

static char buffer[1 << 20];

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  unsigned long long t0, t1;
  if (argv[1][0] == 'o') {
    unsigned long count = strtoul(argv[2], NULL, 10);
    close(open("bench.dat", O_WRONLY | O_CREAT | O_TRUNC, 0644));
    t0 = now_ns();
    for (unsigned long i = 0; i < count; i++) close(open("bench.dat", O_RDONLY));
    t1 = now_ns();
  } else {
    if (argc < 4) return 2;
    size_t chunk = strtoul(argv[2], NULL, 10);
    unsigned long long total = strtoull(argv[3], NULL, 10) << 20;
    int reading = argv[1][0] == 'r';
    int fd = open("bench.dat", reading ? O_RDONLY : O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 3;
    memset(buffer, 1, chunk);
    t0 = now_ns();
    for (unsigned long long done = 0; done < total; done += chunk) {
      if ((size_t)(reading ? read(fd, buffer, chunk) : write(fd, buffer, chunk)) != chunk) return 4;
    }
    t1 = now_ns();
    close(fd);
  }
  printf("%llu\n", t1 - t0);
  return 0;
}
