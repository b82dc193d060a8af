/* SuspendThread, ResumeThread and TerminateThread: a suspended thread runs no further, even once the
 * object it waited for is signalled, until its count is back at 0; the counts nest; a thread created
 * suspended and one that suspended itself; a terminated thread ends wherever it is (blocked, spinning,
 * suspended, never started), with its exit code, and the mutex it held is abandoned; a thread may end
 * itself so; and the handles each call refuses. Nothing waits on time alone: each check is an object's
 * state or a wait that must time out. */
#include "common.h"

static HANDLE go, done, never, lock, suspended_self;
static volatile LONG spins;

static DWORD WINAPI wait_then_signal(LPVOID param) {
  (void)param;
  WaitForSingleObject(go, INFINITE);
  SetEvent(done);
  return 5;
}

static DWORD WINAPI hold_lock_forever(LPVOID param) {
  (void)param;
  WaitForSingleObject(lock, INFINITE);
  SetEvent(done);
  WaitForSingleObject(never, INFINITE);
  return 6;
}

static DWORD WINAPI spin(LPVOID param) {
  (void)param;
  for (;;) InterlockedIncrement(&spins);
  return 7;
}

static DWORD WINAPI suspend_self(LPVOID param) {
  (void)param;
  SetEvent(suspended_self);
  SuspendThread(GetCurrentThread());
  SetEvent(done);
  return 8;
}

static DWORD WINAPI terminate_self(LPVOID param) {
  (void)param;
  TerminateThread(GetCurrentThread(), 44);
  return 9;
}

static void exit_code(const char *what, HANDLE t) {
  DWORD code = 0;
  value(what, WaitForSingleObject(t, INFINITE));
  GetExitCodeThread(t, &code);
  value("  exit code", code);
}

static void count(const char *what, DWORD n) {
  DWORD error = GetLastError();
  out(what);
  out(": ");
  if (n == (DWORD)-1) {
    out("error ");
    out_i((long long)error);
  } else {
    out_i((long long)n);
  }
  out("\n");
}

int main(void) {
  go = CreateEventW(NULL, FALSE, FALSE, NULL);
  done = CreateEventW(NULL, FALSE, FALSE, NULL);
  never = CreateEventW(NULL, TRUE, FALSE, NULL);
  suspended_self = CreateEventW(NULL, FALSE, FALSE, NULL);
  lock = CreateMutexW(NULL, FALSE, NULL);

  HANDLE a = CreateThread(NULL, 0, wait_then_signal, NULL, 0, NULL);
  count("SuspendThread of a waiting thread", SuspendThread(a));
  count("again", SuspendThread(a));
  SetEvent(go);
  value("its wait is over, and it does not run", WaitForSingleObject(done, 200));
  count("ResumeThread", ResumeThread(a));
  value("  still suspended once", WaitForSingleObject(done, 100));
  count("ResumeThread", ResumeThread(a));
  value("  it runs", WaitForSingleObject(done, INFINITE));
  exit_code("it ends", a);
  count("ResumeThread of an ended thread", ResumeThread(a));
  count("SuspendThread of an ended thread", SuspendThread(a));
  SetLastError(0);
  result("TerminateThread of an ended thread", TerminateThread(a, 1));
  CloseHandle(a);

  HANDLE b = CreateThread(NULL, 0, wait_then_signal, NULL, CREATE_SUSPENDED, NULL);
  SetEvent(go);
  value("a thread created suspended does not run", WaitForSingleObject(done, 100));
  count("SuspendThread of it", SuspendThread(b));
  count("ResumeThread", ResumeThread(b));
  count("ResumeThread", ResumeThread(b));
  value("  it runs", WaitForSingleObject(done, INFINITE));
  exit_code("it ends", b);
  CloseHandle(b);

  HANDLE c = CreateThread(NULL, 0, suspend_self, NULL, 0, NULL);
  WaitForSingleObject(suspended_self, INFINITE);
  DWORD previous;
  while ((previous = ResumeThread(c)) == 0) Sleep(1); /* until its own SuspendThread has counted */
  count("ResumeThread of a thread that suspended itself", previous);
  value("  it runs", WaitForSingleObject(done, INFINITE));
  exit_code("it ends", c);
  CloseHandle(c);

  HANDLE d = CreateThread(NULL, 0, hold_lock_forever, NULL, 0, NULL);
  WaitForSingleObject(done, INFINITE);
  result("TerminateThread of a thread blocked holding a mutex", TerminateThread(d, 42));
  exit_code("it ends", d);
  value("the mutex is abandoned", WaitForSingleObject(lock, INFINITE));
  ReleaseMutex(lock);
  CloseHandle(d);

  HANDLE e = CreateThread(NULL, 0, spin, NULL, 0, NULL);
  while (spins < 1000) Sleep(1);
  result("TerminateThread of a spinning thread", TerminateThread(e, 43));
  exit_code("it ends", e);
  LONG after = spins;
  value("  and spins no more", WaitForSingleObject(never, 50) == WAIT_TIMEOUT && spins == after);
  CloseHandle(e);

  HANDLE f = CreateThread(NULL, 0, wait_then_signal, NULL, 0, NULL);
  count("SuspendThread", SuspendThread(f));
  result("TerminateThread of a suspended thread", TerminateThread(f, 45));
  exit_code("it ends", f);
  CloseHandle(f);

  HANDLE g = CreateThread(NULL, 0, wait_then_signal, NULL, CREATE_SUSPENDED, NULL);
  result("TerminateThread of a thread never started", TerminateThread(g, 46));
  exit_code("it ends", g);
  CloseHandle(g);

  HANDLE h = CreateThread(NULL, 0, terminate_self, NULL, 0, NULL);
  exit_code("a thread that terminated itself", h);
  CloseHandle(h);

  SetLastError(0);
  count("SuspendThread of an event", SuspendThread(go));
  SetLastError(0);
  count("ResumeThread of an event", ResumeThread(go));
  SetLastError(0);
  result("TerminateThread of an event", TerminateThread(go, 1));

  HANDLE z = CreateThread(NULL, 0, wait_then_signal, NULL, CREATE_SUSPENDED, NULL);
  DWORD n = 0;
  for (int i = 0; i < 200 && n != (DWORD)-1; i++) n = SuspendThread(z);
  count("SuspendThread past the most a thread may have", n);
  TerminateThread(z, 0);
  WaitForSingleObject(z, INFINITE);
  out("done\n");
  return 0;
}
