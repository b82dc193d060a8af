/* Thread behaviour that is pvx's own (how an instance stops, what it reports),
 * chosen by argv[1]. The Win32 semantics themselves are in tests/win32. */
#include "util.h"

static HANDLE never;

static DWORD WINAPI exit_process(LPVOID code) {
  Sleep(20);
  ExitProcess((UINT)(uintptr_t)code);
}

static DWORD WINAPI null_write(LPVOID unused) {
  (void)unused;
  *(volatile int *)0 = 1;
  return 0;
}

static volatile int bottomless = 1;
static DWORD WINAPI recurse(LPVOID depth) {
  volatile char frame[1024];
  frame[0] = (char)(uintptr_t)depth;
  return bottomless ? recurse((LPVOID)((uintptr_t)depth + 1)) + frame[0] : 0;
}

/* Threads that have reached spin() or block(): "spinning" is printed only once all have. */
static volatile LONG running;

static __attribute__((noreturn)) DWORD WINAPI spin(LPVOID unused) {
  (void)unused;
  InterlockedIncrement(&running);
  for (volatile unsigned long i = 0;; i++) {
  }
}

static volatile LONG waiter_started;
static DWORD WINAPI wait_closed(LPVOID event) {
  waiter_started = 1;
  DWORD r = WaitForSingleObject((HANDLE)event, INFINITE);
  return r == WAIT_FAILED && GetLastError() == ERROR_INVALID_HANDLE ? 1 : 0;
}

static DWORD WINAPI block(LPVOID unused) {
  (void)unused;
  InterlockedIncrement(&running);
  WaitForSingleObject(never, INFINITE);
  return 0;
}

static DWORD WINAPI late_return(LPVOID code) {
  Sleep(50);
  return (DWORD)(uintptr_t)code;
}

static volatile LONG *page;
static volatile LONG writer_started;
static __attribute__((noreturn)) DWORD WINAPI write_forever(LPVOID unused) {
  (void)unused;
  for (LONG i = 0;; i++) {
    *page = i;
    writer_started = 1;
  }
}

static DWORD WINAPI set_mxcsr(LPVOID value) {
  unsigned v = (unsigned)(uintptr_t)value;
  __asm__ volatile("ldmxcsr %0" : : "m"(v));
  return 0;
}

static DWORD WINAPI get_mxcsr(LPVOID unused) {
  (void)unused;
  unsigned v;
  __asm__ volatile("stmxcsr %0" : "=m"(v));
  return v;
}

static CRITICAL_SECTION lock;
static volatile LONG shared_count;
static DWORD WINAPI work(LPVOID seed) {
  unsigned long x = (unsigned long)(uintptr_t)seed;
  for (int i = 0; i < 2000; i++) {
    for (int j = 0; j < 1000; j++) x = x * 6364136223846793005ul + 1442695040888963407ul;
    EnterCriticalSection(&lock);
    shared_count++;
    LeaveCriticalSection(&lock);
  }
  return (DWORD)(x >> 40) | 1;
}

static HANDLE start(LPTHREAD_START_ROUTINE fn, uintptr_t param) {
  HANDLE h = CreateThread(NULL, 0, fn, (LPVOID)param, 0, NULL);
  if (!h) {
    out("CreateThread failed\n");
    ExitProcess(99);
  }
  return h;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  never = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (mode[0] == 'e') { /* exit: ExitProcess on a second thread ends a main thread blocked for ever */
    start(exit_process, 7);
    WaitForSingleObject(never, INFINITE);
    return 1;
  }
  if (mode[0] == 'f') { /* fault: a NULL write on a second thread */
    start(null_write, 0);
    WaitForSingleObject(never, INFINITE);
    return 1;
  }
  if (mode[0] == 'o') { /* overflow: a thread's stack ends in a guard page */
    start(recurse, 0);
    WaitForSingleObject(never, INFINITE);
    return 1;
  }
  if (mode[0] == 's') { /* spin: some threads spin, the rest block; only --timeout ends it */
    for (int i = 0; i < 4; i++) start(spin, 0);
    for (int i = 0; i < 2; i++) start(block, 0);
    while (running < 6) {
    }
    out("spinning\n");
    /* The printer blocks rather than spins: a stop that lands as the write returns finds it still in out(). */
    block(0);
  }
  if (mode[0] == 'c') { /* close: closing a handle wakes the thread waiting on it with an error */
    HANDLE event = CreateEventW(NULL, FALSE, FALSE, NULL);
    HANDLE t = start(wait_closed, (uintptr_t)event);
    while (!waiter_started) Sleep(1);
    Sleep(100); /* long enough, even emulated, for the waiter to be blocked in its wait */
    value("CloseHandle(event)", CloseHandle(event));
    value("wait for the waiter", WaitForSingleObject(t, INFINITE)); /* however slow the machine */
    DWORD code = 0;
    GetExitCodeThread(t, &code);
    value("waiter saw WAIT_FAILED, ERROR_INVALID_HANDLE", code);
    return 0;
  }
  if (mode[0] == 'l') { /* limit: 31 threads besides main can live at once; slots are reused after exit */
    HANDLE hs[40];
    int made = 0;
    for (int i = 0; i < 40; i++) {
      hs[made] = CreateThread(NULL, 64 * 1024, block, NULL, 0, NULL);
      if (!hs[made]) {
        value("CreateThread failed at", i);
        value("  with error", GetLastError());
        break;
      }
      made++;
    }
    value("threads alive at once", made);
    SetEvent(never);
    for (int i = 0; i < made; i++) WaitForSingleObject(hs[i], INFINITE), CloseHandle(hs[i]);
    int again = 0;
    for (int i = 0; i < 100; i++) {
      HANDLE h = CreateThread(NULL, 0, late_return, (LPVOID)0, 0, NULL);
      if (h && WaitForSingleObject(h, INFINITE) == WAIT_OBJECT_0) again++;
      CloseHandle(h);
    }
    value("threads created one after another", again);
    return 0;
  }
  if (mode[0] == 'x') { /* exit-thread: the process ends with its last thread, and that thread's code */
    start(late_return, 5);
    ExitThread(0);
  }
  if (mode[0] == 'p') { /* protect: a page made read-only on one thread stops another thread's writes to it */
    page = VirtualAlloc(NULL, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    start(write_forever, 0);
    while (!writer_started) Sleep(1);
    DWORD old;
    VirtualProtect((LPVOID)page, 4096, PAGE_READONLY, &old);
    WaitForSingleObject(never, INFINITE);
    return 1;
  }
  if (mode[0] == 'm') { /* mxcsr: a thread starts with the default SSE state, whatever ran on its vCPU before */
    HANDLE t = start(set_mxcsr, 0x7f80); /* round toward zero */
    WaitForSingleObject(t, INFINITE);
    Sleep(50); /* its vCPU slot is free again, so the next thread gets the same vCPU */
    t = start(get_mxcsr, 0);
    WaitForSingleObject(t, INFINITE);
    DWORD v = 0;
    GetExitCodeThread(t, &v);
    value("MXCSR of the next thread", v);
    return 0;
  }
  if (mode[0] == 'w') { /* work: CPU-bound threads and a shared critical section, for --cpus */
    InitializeCriticalSection(&lock);
    HANDLE hs[4];
    for (int i = 0; i < 4; i++) hs[i] = start(work, (uintptr_t)i + 1);
    value("wait all", WaitForMultipleObjects(4, hs, TRUE, INFINITE));
    DWORD codes = 0;
    for (int i = 0; i < 4; i++) {
      DWORD c = 0;
      GetExitCodeThread(hs[i], &c);
      codes += c != 0 && c != STILL_ACTIVE;
    }
    value("threads with their result", codes);
    value("count", shared_count);
    return 0;
  }
  out("unknown mode\n");
  return 2;
}
