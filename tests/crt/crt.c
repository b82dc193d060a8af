/* The C runtime a console tool leans on, built the default way (msvcrt):
 * formatting and parsing, sorting, strings, math, the heap, the environment,
 * text-mode files with CRLF, low-level I/O, directory listings and atexit. */
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int by_value(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static void goodbye(void) { printf("atexit: goodbye\n"); }

int main(int argc, char **argv, char **envp) {
  atexit(goodbye);
  printf("[%5d] [%-5d] [%05d] [%x] [%X] [%o] [%+d] [%lld] [%llu]\n", 42, 42, 42, 255, 255, 8, 7, -1234567890123LL,
         18446744073709551615ULL);
  printf("[%8.3f] [%-8.2e] [%g] [%g] [%G] [%.0f] [%a]\n", 3.14159, 12345.678, 0.0001, 1e20, 1e-10, 2.5, 1.0);
  printf("[%s] [%10s] [%-10s] [%.3s] [%c] [%%] [%p]\n", "str", "right", "left", "truncate", 'x', (void *)0x1234);
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%d-%s", 99, "bottles");
  printf("snprintf: %d \"%s\"\n", n, buf);

  int a, b;
  char word[16];
  double d;
  int got = sscanf("12 34 word 2.5e3", "%d %d %15s %lf", &a, &b, word, &d);
  printf("sscanf: %d -> %d %d %s %.1f\n", got, a, b, word, d);
  char *end;
  double parsed = strtod("  -1.5e-3xyz", &end);
  printf("strtod: %.6f rest \"%s\"\n", parsed, end);
  printf("strtol: %ld %ld %lu\n", strtol("0x1F", NULL, 16), strtol("-077", NULL, 8), strtoul("4294967295", NULL, 10));
  printf("atoi: %d atof: %.2f\n", atoi("  123abc"), atof("6.02e23") / 1e23);

  int values[] = {5, -3, 9, 0, 42, -17, 8, 8, 1};
  int count = sizeof values / sizeof values[0];
  qsort(values, count, sizeof values[0], by_value);
  printf("qsort:");
  for (int i = 0; i < count; i++) printf(" %d", values[i]);
  int key = 42;
  int *found = bsearch(&key, values, count, sizeof values[0], by_value);
  printf("; bsearch 42 at %d\n", found ? (int)(found - values) : -1);

  printf("math: %.6f %.6f %.6f %.6f %.6f %.1f %.1f\n", sqrt(2.0), sin(1.0), exp(1.0), log(10.0), pow(2.0, 0.5),
         floor(-2.5), ceil(-2.5));
  printf("math: %.6f %.6f %d %.3f\n", atan2(1.0, -1.0), fmod(10.0, 3.0), abs(-5), fabs(-2.25));

  char s[32];
  strcpy(s, "Hello");
  strcat(s, ", CRT");
  printf("string: %s len %u cmp %d %d chr %s str %s\n", s, (unsigned)strlen(s), strcmp("a", "b") < 0,
         strncmp("abcd", "abcf", 3), strchr(s, 'C'), strstr(s, "ll"));
  printf("toupper: %c%c tolower: %c\n", 'a' - 32, 'z' - 32, 'Q' + 32);

  char *heap = malloc(1000);
  memset(heap, 'z', 999);
  heap[999] = 0;
  heap = realloc(heap, 5000);
  printf("heap: %u z's\n", (unsigned)strspn(heap, "z"));
  free(heap);
  int *zeros = calloc(100, sizeof *zeros);
  int sum = 0;
  for (int i = 0; i < 100; i++) sum += zeros[i];
  printf("calloc: sum %d\n", sum);
  free(zeros);

  printf("argc %d:", argc);
  for (int i = 0; i < argc; i++) printf(" [%s]", i == 0 ? "exe" : argv[i]);
  printf("\n");
  int seen = 0;
  for (char **e = envp; *e; e++) if (strncmp(*e, "PVX_TEST_VAR=", 13) == 0) seen = 1;
  const char *var = getenv("PVX_TEST_VAR");
  printf("env: getenv %s, in envp %d, missing %s\n", var ? var : "(null)", seen, getenv("NO_SUCH_VAR") ? "set" : "unset");

  FILE *f = fopen("text.txt", "w");
  fprintf(f, "line one\nline two\n");
  fclose(f);
  f = fopen("text.txt", "rb");
  char raw[64];
  size_t bytes = fread(raw, 1, sizeof raw, f);
  fclose(f);
  printf("text mode wrote %u bytes, CRLF %d\n", (unsigned)bytes, memcmp(raw, "line one\r\nline two\r\n", 20) == 0);
  f = fopen("text.txt", "r");
  char line[32];
  fgets(line, sizeof line, f);
  printf("fgets: \"%.*s\" newline %d\n", (int)strcspn(line, "\n"), line, line[strlen(line) - 1] == '\n');
  fseek(f, 0, SEEK_END);
  printf("ftell at end: %ld\n", ftell(f));
  fseek(f, -5, SEEK_END);
  printf("fread after fseek: \"%.*s\"\n", (int)fread(line, 1, 3, f), line);
  fclose(f);

  int fd = _open("low.bin", _O_CREAT | _O_WRONLY | _O_BINARY | _O_TRUNC, _S_IREAD | _S_IWRITE);
  printf("_write: %d\n", _write(fd, "0123456789", 10));
  _close(fd);
  fd = _open("low.bin", _O_RDONLY | _O_BINARY);
  char low[8] = {0};
  _lseek(fd, 3, SEEK_SET);
  printf("_read: %d \"%.4s\"\n", _read(fd, low, 4), low);
  _close(fd);
  struct _stat st;
  int stat_result = _stat("low.bin", &st);
  printf("_stat: %d size %ld\n", stat_result, stat_result ? -1L : (long)st.st_size);

  struct _finddata_t fdata;
  intptr_t h = _findfirst("tex?.*", &fdata);
  printf("_findfirst tex?.*: %s %s size %ld\n", h == -1 ? "none" : "found", h == -1 ? "" : fdata.name, h == -1 ? 0L : (long)fdata.size);
  if (h != -1) _findclose(h);
  errno = 0;
  FILE *none = fopen("does-not-exist.txt", "r");
  printf("fopen missing: %s errno ENOENT %d\n", none ? "opened" : "NULL", errno == ENOENT);
  printf("remove: %d %d\n", remove("text.txt"), remove("low.bin"));
  fprintf(stderr, "to stderr\n");
  return 3;
}
