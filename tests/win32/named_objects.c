/* Named events, mutexes and semaphores: a second create of a name opens the object it names, with
 * ERROR_ALREADY_EXISTS and its own arguments ignored; an open by name finds it; events, mutexes and
 * semaphores share one case-sensitive namespace, where Local\ is the bare names' and Global\ is another;
 * a name is free again once its object's last handle is closed; the ANSI and Ex forms; a thread that
 * opens an object by name signals the one its creator waits on; and the names and arguments refused. */
#include "common.h"

static void created(const char *what, HANDLE h) {
  DWORD error = GetLastError();
  out(what);
  if (!h) {
    out(": error ");
    out_i((long long)error);
    out("\n");
  } else if (error) {
    out(": ok, last error ");
    out_i((long long)error);
    out("\n");
  } else {
    out(": ok\n");
  }
}

/* Every create and open, so that a failure's last error is its own. */
static HANDLE event(const char *what, const WCHAR *name, BOOL manual, BOOL initial) {
  SetLastError(5);
  HANDLE h = CreateEventW(NULL, manual, initial, name);
  created(what, h);
  return h;
}

static HANDLE open_event(const char *what, const WCHAR *name) {
  SetLastError(5);
  HANDLE h = OpenEventW(EVENT_ALL_ACCESS, FALSE, name);
  created(what, h);
  return h;
}

static void state(const char *what, HANDLE h) { value(what, WaitForSingleObject(h, 0)); }

static DWORD WINAPI signal_by_name(LPVOID param) {
  (void)param;
  HANDLE h = OpenEventW(EVENT_MODIFY_STATE, FALSE, L"pvx-go");
  if (!h) return 1;
  SetEvent(h);
  CloseHandle(h);
  return 0;
}

int main(void) {
  HANDLE a = event("create pvx-event", L"pvx-event", TRUE, FALSE);
  HANDLE b = event("create pvx-event again, set", L"pvx-event", FALSE, TRUE);
  value("a second handle", b != a && b != NULL);
  state("its state, the first create's", a);
  result("set through the second", SetEvent(b));
  state("the first sees it", a);
  HANDLE c = open_event("open pvx-event", L"pvx-event");
  result("reset through the open", ResetEvent(c));
  state("the first sees that", a);

  SetLastError(5);
  created("a mutex named pvx-event", CreateMutexW(NULL, FALSE, L"pvx-event"));
  SetLastError(5);
  created("a semaphore named pvx-event", CreateSemaphoreW(NULL, 0, 1, L"pvx-event"));
  SetLastError(5);
  created("open pvx-event as a mutex", OpenMutexW(SYNCHRONIZE, FALSE, L"pvx-event"));
  SetLastError(5);
  created("open pvx-event as a semaphore", OpenSemaphoreW(SYNCHRONIZE, FALSE, L"pvx-event"));
  open_event("open PVX-EVENT", L"PVX-EVENT");
  open_event("open no-such-event", L"no-such-event");
  open_event("open NULL", NULL);
  HANDLE local = open_event("open Local\\pvx-event", L"Local\\pvx-event");
  open_event("open Global\\pvx-event", L"Global\\pvx-event");
  HANDLE global = event("create Global\\pvx-global", L"Global\\pvx-global", FALSE, FALSE);
  open_event("open pvx-global", L"pvx-global");
  HANDLE global2 = open_event("open Global\\pvx-global", L"Global\\pvx-global");
  event("create a\\b", L"a\\b", FALSE, FALSE);
  open_event("open a\\b", L"a\\b");

  result("close the first", CloseHandle(a));
  HANDLE d = open_event("open pvx-event, one handle closed", L"pvx-event");
  result("close the rest", CloseHandle(b) && CloseHandle(c) && CloseHandle(local) && CloseHandle(d));
  open_event("open pvx-event, every handle closed", L"pvx-event");
  SetLastError(5);
  HANDLE m = CreateMutexW(NULL, TRUE, L"pvx-event");
  created("a mutex named pvx-event now", m);
  result("close it", CloseHandle(m));
  CloseHandle(global), CloseHandle(global2);

  SetLastError(5);
  HANDLE m1 = CreateMutexW(NULL, TRUE, L"pvx-mutex");
  created("create pvx-mutex, owned", m1);
  SetLastError(5);
  HANDLE m2 = CreateMutexW(NULL, TRUE, L"pvx-mutex");
  created("create pvx-mutex again, owned", m2);
  result("release once", ReleaseMutex(m2));
  result("release twice", ReleaseMutex(m1));
  SetLastError(5);
  HANDLE m3 = OpenMutexW(MUTEX_ALL_ACCESS, FALSE, L"pvx-mutex");
  created("open pvx-mutex", m3);
  value("wait for it", WaitForSingleObject(m3, 0));
  result("release through the first", ReleaseMutex(m1));
  CloseHandle(m1), CloseHandle(m2), CloseHandle(m3);

  SetLastError(5);
  HANDLE s1 = CreateSemaphoreW(NULL, 1, 2, L"pvx-semaphore");
  created("create pvx-semaphore 1 of 2", s1);
  SetLastError(5);
  created("create pvx-semaphore 3 of 2", CreateSemaphoreW(NULL, 3, 2, L"pvx-semaphore"));
  SetLastError(5);
  HANDLE s2 = CreateSemaphoreW(NULL, 0, 5, L"pvx-semaphore");
  created("create pvx-semaphore 0 of 5", s2);
  LONG previous = -1;
  result("release 1 through it", ReleaseSemaphore(s2, 1, &previous));
  value("previous count", previous);
  result("release 1 more", ReleaseSemaphore(s2, 1, NULL));
  SetLastError(5);
  HANDLE s3 = OpenSemaphoreW(SYNCHRONIZE | SEMAPHORE_MODIFY_STATE, FALSE, L"pvx-semaphore");
  created("open pvx-semaphore", s3);
  value("take one", WaitForSingleObject(s3, 0));
  CloseHandle(s1), CloseHandle(s2), CloseHandle(s3);

  SetLastError(5);
  HANDLE ansi = CreateEventA(NULL, FALSE, TRUE, "pvx-ansi");
  created("CreateEventA pvx-ansi, set", ansi);
  HANDLE wide = open_event("open pvx-ansi", L"pvx-ansi");
  state("its state", wide);
  SetLastError(5);
  created("OpenEventA pvx-ansi", OpenEventA(EVENT_ALL_ACCESS, FALSE, "pvx-ansi"));
  SetLastError(5);
  created("CreateMutexA pvx-ansi-mutex", CreateMutexA(NULL, FALSE, "pvx-ansi-mutex"));
  SetLastError(5);
  created("OpenMutexA pvx-ansi-mutex", OpenMutexA(SYNCHRONIZE, FALSE, "pvx-ansi-mutex"));
  SetLastError(5);
  created("CreateSemaphoreA pvx-ansi-semaphore", CreateSemaphoreA(NULL, 0, 1, "pvx-ansi-semaphore"));
  SetLastError(5);
  created("OpenSemaphoreA pvx-ansi-semaphore", OpenSemaphoreA(SYNCHRONIZE, FALSE, "pvx-ansi-semaphore"));
  SetLastError(5);
  created("CreateMutexExW pvx-ansi-mutex", CreateMutexExW(NULL, L"pvx-ansi-mutex", 0, MUTEX_ALL_ACCESS));
  SetLastError(5);
  created("CreateEventExW pvx-ansi", CreateEventExW(NULL, L"pvx-ansi", 0, EVENT_ALL_ACCESS));

  event("create an unnamed event", NULL, FALSE, FALSE);
  event("create an event named \"\"", L"", FALSE, FALSE);
  event("create another named \"\"", L"", FALSE, FALSE);
  open_event("open \"\"", L"");
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
  SetLastError(5);
  created("create with security attributes", CreateEventW(&sa, FALSE, FALSE, L"pvx-inherited"));

  HANDLE go = event("create pvx-go", L"pvx-go", TRUE, FALSE);
  HANDLE t = CreateThread(NULL, 0, signal_by_name, NULL, 0, NULL);
  value("wait for the thread to set pvx-go", WaitForSingleObject(go, INFINITE));
  WaitForSingleObject(t, INFINITE);
  DWORD code = 99;
  GetExitCodeThread(t, &code);
  value("the thread's exit code", code);
  return 0;
}
