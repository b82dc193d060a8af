/* Bench guest for snapshots: writes argv[1] MiB of memory, waits for a line on the console (a
 * template's ready point), writes as many MiB of it again as that line says (the same bytes: what
 * a diff snapshot must store) and prints that number, checks the memory still holds what it wrote, waits
 * for a second line (while the bench measures what it costs the host), and exits 0 if the memory
 * was right. */
#include "pvx.h"
#include "guest_io.h"

int main(int argc, char **argv, char **envp) {
  (void)envp;
  unsigned long bytes = (argc > 1 ? number(argv[1]) : 1) << 20;
  unsigned char *p = VirtualAlloc(NULL, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  if (!p) return 2;
  for (unsigned long i = 0; i < bytes; i += 4096) p[i] = (unsigned char)(i >> 12 | 1);
  char line[16];
  DWORD got;
  ReadFile(GetStdHandle(STD_INPUT_HANDLE), line, sizeof line, &got, NULL);
  line[got < sizeof line ? got : sizeof line - 1] = 0;
  unsigned long again = number(line) << 20;
  for (unsigned long i = 0; i < again && i < bytes; i += 4096) p[i] = (unsigned char)(i >> 12 | 1);
  if (again) print_number(again >> 20);
  int right = 1;
  for (unsigned long i = 0; i < bytes; i += 4096) right &= p[i] == (unsigned char)(i >> 12 | 1);
  ReadFile(GetStdHandle(STD_INPUT_HANDLE), line, sizeof line, &got, NULL);
  return right ? 0 : 3;
}
