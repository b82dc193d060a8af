/* Thread helpers for the Win32 test programs that race threads against each other. */
#include "common.h"

#define MAX_WORKERS 16

/* Starts `count` threads of `fn`, each given its index (0..count-1) as its parameter, and releases
 * them together through the manual-reset event `start` they wait on, so they really contend; then
 * waits for all of them. FALSE if one could not start or the wait failed. */
static inline BOOL run_workers(HANDLE start, LPTHREAD_START_ROUTINE fn, DWORD count) {
  HANDLE t[MAX_WORKERS];
  BOOL ok = count <= MAX_WORKERS;
  if (!ok) count = MAX_WORKERS;
  ResetEvent(start);
  for (DWORD k = 0; k < count; k++) {
    t[k] = CreateThread(NULL, 0, fn, (LPVOID)(uintptr_t)k, 0, NULL);
    ok &= t[k] != NULL;
  }
  SetEvent(start);
  ok &= WaitForMultipleObjects(count, t, TRUE, INFINITE) == WAIT_OBJECT_0;
  for (DWORD k = 0; k < count; k++) CloseHandle(t[k]);
  return ok;
}

/* Runs `fn(param)` on a thread of its own to the end: its exit code, or 0xDEAD if it could not start. */
static inline DWORD run_one(LPTHREAD_START_ROUTINE fn, LPVOID param) {
  DWORD code = 0xDEAD;
  HANDLE t = CreateThread(NULL, 0, fn, param, 0, NULL);
  if (t == NULL) return code;
  WaitForSingleObject(t, INFINITE);
  GetExitCodeThread(t, &code);
  CloseHandle(t);
  return code;
}
