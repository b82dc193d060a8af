/* Non-local exits, built the default way (msvcrt): setjmp/longjmp across
 * frames, which msvcrt's x64 longjmp does by unwinding, and exceptions the
 * app raises itself, taken by a vectored handler that continues or by the
 * unhandled-exception filter. */
#include <setjmp.h>
#include <stdio.h>
#include <windows.h>

static jmp_buf env;
static int depth_reached;

static void dive(int depth) {
  volatile char pad[64];
  pad[0] = (char)depth;
  depth_reached = depth + pad[0] - depth;
  if (depth == 5) longjmp(env, depth * 10);
  if (depth < 100) dive(depth + 1);
}

static LONG CALLBACK skip_over(EXCEPTION_POINTERS *e) {
  if (e->ExceptionRecord->ExceptionCode != 0xE0000001) return EXCEPTION_CONTINUE_SEARCH;
  printf("vectored handler: code %lx, %lu parameter(s), first %llu, continuable %d\n",
         e->ExceptionRecord->ExceptionCode, e->ExceptionRecord->NumberParameters,
         (unsigned long long)e->ExceptionRecord->ExceptionInformation[0],
         !(e->ExceptionRecord->ExceptionFlags & EXCEPTION_NONCONTINUABLE));
  return EXCEPTION_CONTINUE_EXECUTION;
}

static LONG WINAPI last_chance(EXCEPTION_POINTERS *e) {
  printf("unhandled filter: code %lx\n", e->ExceptionRecord->ExceptionCode);
  fflush(stdout);
  return EXCEPTION_EXECUTE_HANDLER;
}

int main(void) {
  volatile int kept = 1;
  int r = setjmp(env);
  if (r == 0) {
    kept = 2;
    dive(0);
    printf("not reached\n");
  }
  printf("longjmp returned %d from depth %d, kept %d\n", r, depth_reached, kept);

  PVOID handler = AddVectoredExceptionHandler(1, skip_over);
  ULONG_PTR info[2] = {1234, 5678};
  RaiseException(0xE0000001, 0, 2, info);
  printf("continued after RaiseException\n");
  printf("removed: %lu\n", RemoveVectoredExceptionHandler(handler));

  SetUnhandledExceptionFilter(last_chance);
  RaiseException(0xE0000002, EXCEPTION_NONCONTINUABLE, 0, NULL);
  printf("not reached either\n");
  return 0;
}
