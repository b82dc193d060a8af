/* Hardware faults an app handles itself, built the default way (msvcrt): a
 * vectored handler that commits a reserved page on first touch and retries
 * the instruction; and access violations, divisions by zero and illegal
 * instructions caught by a handler that longjmps out of them; and the
 * IsBad*Ptr probes, which fault inside the runtime, before any handler of
 * the app's is installed (on Windows a vectored handler would see them). */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
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

static void probes(void) {
  char *page = VirtualAlloc(NULL, 2 * 4096, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE), *end = page + 4096;
  DWORD old;
  VirtualProtect(end, 4096, PAGE_NOACCESS, &old);
  memcpy(end - 4, "abc", 4);
  printf("IsBadReadPtr: a page %d, one byte past it %d, NULL %d, NULL for 0 bytes %d\n", IsBadReadPtr(page, 4096),
         IsBadReadPtr(page, 4097), IsBadReadPtr(NULL, 1), IsBadReadPtr(NULL, 0));
  BOOL ends = IsBadStringPtrA(end - 4, 100);
  memset(end - 10, 'x', 10);
  printf("IsBadStringPtrA: ends in the page %d, runs past it %d, stops at max %d\n", ends,
         IsBadStringPtrA(end - 10, 11), IsBadStringPtrA(end - 10, 10));
  printf("IsBadWritePtr: read-write %d, no access %d\n", IsBadWritePtr(page, 4096), IsBadWritePtr(end, 1));
  VirtualProtect(page, 4096, PAGE_READONLY, &old);
  printf("read-only: IsBadWritePtr %d, IsBadReadPtr %d, the bytes kept %d\n", IsBadWritePtr(page + 100, 1),
         IsBadReadPtr(page + 100, 1), end[-1] == 'x' && page[0] == 0);
  printf("IsBadCodePtr: code %d\n", IsBadCodePtr((FARPROC)probes));
  VirtualFree(page, 0, MEM_RELEASE);
  printf("released: IsBadReadPtr %d\n", IsBadReadPtr(page, 1));
}

int main(void) {
  probes();
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
