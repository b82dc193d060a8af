/*
 * A thread suspended across a snapshot: the main thread suspends a worker,
 * then signals the event the worker waits for, so only its suspension keeps
 * it from printing; then it waits for a line on the console, where a test
 * snapshots it. Once the line comes, the worker must still be suspended until
 * the main thread resumes it.
 */
#include "util.h"

static HANDLE go;

static DWORD WINAPI worker(LPVOID arg) {
  (void)arg;
  if (WaitForSingleObject(go, INFINITE) != WAIT_OBJECT_0) return 1;
  out("worker ran\n");
  return 7;
}

int main(void) {
  go = CreateEventW(NULL, FALSE, FALSE, NULL);
  HANDLE t = CreateThread(NULL, 0, worker, NULL, 0, NULL);
  if (!t || SuspendThread(t) != 0) return 2;
  SetEvent(go);
  out("suspended\n");
  char line[64];
  DWORD got = 0;
  if (!ReadFile(GetStdHandle(STD_INPUT_HANDLE), line, sizeof line, &got, NULL)) return 3;
  out("read a line\n");
  if (WaitForSingleObject(t, 200) != WAIT_TIMEOUT) return 4;
  out("the worker is still suspended\n");
  out("ResumeThread: ");
  out_i((int)ResumeThread(t));
  out("\n");
  DWORD code = 0;
  if (WaitForSingleObject(t, INFINITE) != WAIT_OBJECT_0 || !GetExitCodeThread(t, &code)) return 5;
  out("worker exited ");
  out_i((int)code);
  out("\n");
  return 0;
}
