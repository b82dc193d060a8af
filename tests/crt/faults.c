/* Hardware faults an app handles itself, built the default way (msvcrt): a
 * vectored handler that commits a reserved page on first touch and retries
 * the instruction; and access violations, divisions by zero and illegal
 * instructions caught by a handler that longjmps out of them. */
#include <setjmp.h>
#include <stdio.h>
#include <windows.h>

static char *lazy;
static SIZE_T lazy_size = 4 * 4096;
static int commits;

static LONG CALLBACK commit_on_touch(EXCEPTION_POINTERS *e) {
  EXCEPTION_RECORD *r = e->ExceptionRecord;
  if (r->ExceptionCode != EXCEPTION_ACCESS_VIOLATION) return EXCEPTION_CONTINUE_SEARCH;
  char *at = (char *)r->ExceptionInformation[1];
  if (at < lazy || at >= lazy + lazy_size) return EXCEPTION_CONTINUE_SEARCH;
  commits++;
  return VirtualAlloc(at, 1, MEM_COMMIT, PAGE_READWRITE) ? EXCEPTION_CONTINUE_EXECUTION : EXCEPTION_CONTINUE_SEARCH;
}

static jmp_buf escape;
static DWORD caught_code;
static ULONG_PTR caught_kind, caught_address;

static LONG CALLBACK jump_out(EXCEPTION_POINTERS *e) {
  caught_code = e->ExceptionRecord->ExceptionCode;
  caught_kind = e->ExceptionRecord->NumberParameters > 0 ? e->ExceptionRecord->ExceptionInformation[0] : 99;
  caught_address = e->ExceptionRecord->NumberParameters > 1 ? e->ExceptionRecord->ExceptionInformation[1] : 99;
  longjmp(escape, 1);
}

static volatile int zero = 0;
static volatile ULONG_PTR wild = 0x10; /* an address the compiler cannot see through */

static void write_null(void) { *(volatile int *)0 = 1; }
static void read_wild(void) { (void)*(volatile int *)wild; }
static void divide(void) { printf("%d\n", 10 / zero); }
static void trap(void) { __builtin_trap(); }

static void attempt(const char *what, void (*fn)(void)) {
  if (setjmp(escape) == 0) {
    fn();
    printf("%s: no fault\n", what);
  } else {
    printf("%s: caught %08lx, parameters %llu %#llx\n", what, caught_code, (unsigned long long)caught_kind,
           (unsigned long long)caught_address);
  }
}

int main(void) {
  lazy = VirtualAlloc(NULL, lazy_size, MEM_RESERVE, PAGE_READWRITE);
  PVOID h = AddVectoredExceptionHandler(1, commit_on_touch);
  for (SIZE_T i = 0; i < lazy_size; i += 1024) lazy[i] = (char)i;
  long sum = 0;
  for (SIZE_T i = 0; i < lazy_size; i += 1024) sum += lazy[i];
  printf("lazy pages: %d commits, sum %ld\n", commits, sum);
  RemoveVectoredExceptionHandler(h);

  AddVectoredExceptionHandler(1, jump_out);
  attempt("write to NULL", write_null);
  attempt("read of 0x10", read_wild);
  attempt("divide by zero", divide);
  attempt("ud2", trap);
  volatile int after = 40;
  printf("still running: %d\n", after + 2);
  return 0;
}
