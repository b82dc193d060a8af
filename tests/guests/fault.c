/* Commits the fault named by its first argument. */
#include "util.h"

static volatile int zero;

__attribute__((noinline)) int divide(int a, int b) { return a / b; }

int main(int argc, char **argv, char **envp) {
  (void)envp;
  const char *what = argc > 1 ? argv[1] : "";
  if (what[0] == 'n') *(volatile int *)0 = 1;                       /* null: write to NULL */
  if (what[0] == 'd') return divide(1, zero);                        /* divide by zero */
  if (what[0] == 't') *(volatile unsigned char *)(void *)divide = 0; /* write to text */
  if (what[0] == 'x') {                                              /* execute data */
    static unsigned char ret = 0xc3;
    ((void (*)(void))(void *)&ret)();
  }
  if (what[0] == 's') {                                              /* stack overflow into the guard page */
    volatile char big[4096];
    big[0] = 1;
    return main(argc, argv, envp) + big[0];
  }
  if (what[0] == 'u') __asm__ volatile("ud2");
  if (what[0] == 'k') return *(volatile int *)0x10000;                /* the kernel's GDT */
  if (what[0] == 'p') return *(volatile int *)0x100000;               /* the kernel's page tables */
  if (what[0] == 'r' || what[0] == 'f') { /* read-only, freed: a page that was in use, after VirtualProtect / VirtualFree */
    volatile int *page = VirtualAlloc(NULL, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    for (int i = 0; i < 100; i++) page[i] = i;
    DWORD old;
    if (what[0] == 'r') VirtualProtect((LPVOID)page, 4096, PAGE_READONLY, &old);
    else VirtualFree((LPVOID)page, 0, MEM_RELEASE);
    page[1] = page[0];
  }
  out("no fault requested\n");
  return 0;
}
