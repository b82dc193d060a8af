/* Locks: critical sections (contention, recursion, TryEnter, blocking Enter),
 * the Interlocked functions (return values, wrap-around, contention) and
 * mutexes (initial owner, recursion, ReleaseMutex by a non-owner, abandoned
 * mutexes). Only the main thread prints; it learns what another thread saw
 * from that thread's exit code or from memory it reads after a wait. */
#include "threads.h"

#define THREADS 8
#define ROUNDS 20000

static HANDLE start;

static CRITICAL_SECTION cs;
static LONG cs_counter, cs_overlaps;
/* volatile so the compiler keeps the store of 1 that a second thread inside would see. */
static volatile LONG cs_inside;

static DWORD WINAPI cs_worker(LPVOID param) {
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < ROUNDS; i++) {
    EnterCriticalSection(&cs);
    /* Non-atomic read-modify-writes: only the lock keeps them exact. */
    if (cs_inside) cs_overlaps++;
    cs_inside = 1;
    cs_counter++;
    cs_inside = 0;
    LeaveCriticalSection(&cs);
  }
  return 0;
}

static DWORD WINAPI cs_try(LPVOID param) {
  if (!TryEnterCriticalSection(&cs)) return 0;
  LeaveCriticalSection(&cs);
  return 1;
}

static HANDLE held, release;

static DWORD WINAPI cs_hold(LPVOID param) {
  EnterCriticalSection(&cs);
  SetEvent(held);
  WaitForSingleObject(release, INFINITE);
  LeaveCriticalSection(&cs);
  return 0;
}

static DWORD WINAPI cs_enter(LPVOID param) {
  EnterCriticalSection(&cs);
  LeaveCriticalSection(&cs);
  return 1;
}

static volatile LONG shared;
static unsigned char *seen;

static DWORD WINAPI inc_worker(LPVOID param) {
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < ROUNDS; i++) {
    LONG v = InterlockedIncrement(&shared);
    /* Each return value 1..n must come back to exactly one caller. */
    if (v > 0 && v <= THREADS * ROUNDS) seen[v]++;
  }
  return 0;
}

static DWORD WINAPI mixed_worker(LPVOID param) {
  DWORD k = (DWORD)(uintptr_t)param;
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < ROUNDS; i++) {
    if (k & 1) InterlockedDecrement(&shared);
    else InterlockedExchangeAdd(&shared, 3);
  }
  return 0;
}

static DWORD WINAPI cas_worker(LPVOID param) {
  LONG add = (LONG)(uintptr_t)param + 1;
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < ROUNDS; i++) {
    LONG old;
    do old = shared; while (InterlockedCompareExchange(&shared, old + add, old) != old);
  }
  return 0;
}

static volatile LONG spin;
static LONG spin_counter, spin_overlaps;
static volatile LONG spin_inside;

static DWORD WINAPI spin_worker(LPVOID param) {
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < ROUNDS; i++) {
    /* Yield while spinning: the holder may be waiting for a CPU. */
    while (InterlockedExchange(&spin, 1) != 0) Sleep(0);
    if (spin_inside) spin_overlaps++;
    spin_inside = 1;
    spin_counter++;
    spin_inside = 0;
    InterlockedExchange(&spin, 0);
  }
  return 0;
}

static HANDLE mutex;
#define MUTEX_ROUNDS 1000
static LONG mutex_counter, mutex_overlaps;
static volatile LONG mutex_inside;

static DWORD WINAPI mutex_worker(LPVOID param) {
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < MUTEX_ROUNDS; i++) {
    if (WaitForSingleObject(mutex, INFINITE) != WAIT_OBJECT_0) return 1;
    if (mutex_inside) mutex_overlaps++;
    mutex_inside = 1;
    mutex_counter++;
    mutex_inside = 0;
    if (!ReleaseMutex(mutex)) return 2;
  }
  return 0;
}

/* A semaphore of SEMAPHORE_SLOTS lets that many workers in at once, never more. */
#define SEMAPHORE_SLOTS 2
static HANDLE semaphore;
static volatile LONG semaphore_inside, semaphore_most;

static DWORD WINAPI semaphore_worker(LPVOID param) {
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < 50; i++) {
    if (WaitForSingleObject(semaphore, INFINITE) != WAIT_OBJECT_0) return 1;
    LONG inside = InterlockedIncrement(&semaphore_inside);
    for (LONG most = semaphore_most; inside > most; most = semaphore_most) {
      InterlockedCompareExchange(&semaphore_most, inside, most);
    }
    Sleep(0);
    InterlockedDecrement(&semaphore_inside);
    if (!ReleaseSemaphore(semaphore, 1, NULL)) return 2;
  }
  return 0;
}

/* Ends the thread still owning the mutex whenever the wait succeeds. */
static DWORD WINAPI mutex_wait_0(LPVOID m) {
  return WaitForSingleObject(m, 0);
}

static DWORD WINAPI mutex_release(LPVOID m) {
  return ReleaseMutex(m) ? 0 : GetLastError();
}

static DWORD WINAPI mutex_hold_then_return(LPVOID m) {
  DWORD r = WaitForSingleObject(m, INFINITE);
  SetEvent(held);
  WaitForSingleObject(release, INFINITE);
  return r;
}

static DWORD WINAPI mutex_hold_then_exit_thread(LPVOID m) {
  WaitForSingleObject(m, INFINITE);
  ExitThread(3);
}

int main(void) {
  start = CreateEventW(NULL, TRUE, FALSE, NULL);
  held = CreateEventW(NULL, FALSE, FALSE, NULL);
  release = CreateEventW(NULL, TRUE, FALSE, NULL);

  InitializeCriticalSection(&cs);
  out("critical section, 8 threads x 20000 increments\n");
  value("all threads ran and were waited for", run_workers(start, cs_worker, THREADS));
  value("counter", cs_counter);
  value("two threads inside at once", cs_overlaps);

  EnterCriticalSection(&cs);
  EnterCriticalSection(&cs);
  value("entered twice; TryEnter from the owner", TryEnterCriticalSection(&cs));
  LeaveCriticalSection(&cs);
  value("TryEnter from another thread while held twice", run_one(cs_try, NULL));
  LeaveCriticalSection(&cs);
  value("TryEnter from another thread while held once", run_one(cs_try, NULL));
  LeaveCriticalSection(&cs);
  value("TryEnter from another thread after the last Leave", run_one(cs_try, NULL));
  value("TryEnter from main when free", TryEnterCriticalSection(&cs));
  LeaveCriticalSection(&cs);

  HANDLE holder = CreateThread(NULL, 0, cs_hold, NULL, 0, NULL);
  WaitForSingleObject(held, INFINITE);
  value("TryEnter from main while another thread holds it", TryEnterCriticalSection(&cs));
  HANDLE enterer = CreateThread(NULL, 0, cs_enter, NULL, 0, NULL);
  value("a third thread's Enter blocks, wait timeout 50", WaitForSingleObject(enterer, 50));
  SetEvent(release);
  value("after the holder leaves, wait for the holder", WaitForSingleObject(holder, INFINITE));
  value("and for the blocked thread", WaitForSingleObject(enterer, INFINITE));
  DWORD code = 0;
  GetExitCodeThread(enterer, &code);
  value("it entered", code);
  CloseHandle(holder);
  CloseHandle(enterer);
  ResetEvent(release);
  DeleteCriticalSection(&cs);

  volatile LONG x = 5;
  value("InterlockedIncrement 5", InterlockedIncrement(&x));
  value("InterlockedDecrement 6", InterlockedDecrement(&x));
  value("InterlockedExchange 5 with 100 returns the old value", InterlockedExchange(&x, 100));
  value("  now", x);
  value("InterlockedExchangeAdd 100 + 23 returns the old value", InterlockedExchangeAdd(&x, 23));
  value("  now", x);
  value("InterlockedExchangeAdd 123 - 200", InterlockedExchangeAdd(&x, -200));
  value("  now", x);
  value("InterlockedCompareExchange -77 to 1 if -77", InterlockedCompareExchange(&x, 1, -77));
  value("  now", x);
  value("InterlockedCompareExchange 1 to 2 if 99", InterlockedCompareExchange(&x, 2, 99));
  value("  now", x);
  x = 0x7fffffff;
  value("InterlockedIncrement 0x7fffffff wraps", InterlockedIncrement(&x));
  value("InterlockedDecrement wraps back", InterlockedDecrement(&x));
  x = 0;
  value("InterlockedDecrement 0", InterlockedDecrement(&x));

  seen = VirtualAlloc(NULL, THREADS * ROUNDS + 1, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  out("InterlockedIncrement, 8 threads x 20000\n");
  shared = 0;
  value("all threads ran and were waited for", run_workers(start, inc_worker, THREADS));
  value("value", shared);
  LONG once = 0;
  for (DWORD v = 1; v <= THREADS * ROUNDS; v++) once += seen[v] == 1;
  value("return values seen exactly once", once);
  VirtualFree(seen, 0, MEM_RELEASE);

  out("InterlockedDecrement x 4 threads, InterlockedExchangeAdd +3 x 4 threads, 20000 each\n");
  shared = 0;
  value("all threads ran and were waited for", run_workers(start, mixed_worker, THREADS));
  value("value", shared);

  out("InterlockedCompareExchange loops adding 1..8, 8 threads x 20000\n");
  shared = 0;
  value("all threads ran and were waited for", run_workers(start, cas_worker, THREADS));
  value("value", shared);

  out("InterlockedExchange spin lock, 8 threads x 20000\n");
  value("all threads ran and were waited for", run_workers(start, spin_worker, THREADS));
  value("counter", spin_counter);
  value("two threads inside at once", spin_overlaps);

  HANDLE m = CreateMutexW(NULL, TRUE, NULL);
  result("CreateMutexW initially owned", m != NULL);
  value("another thread waits, timeout 0", run_one(mutex_wait_0, m));
  value("another thread's ReleaseMutex fails with", run_one(mutex_release, m));
  value("the owner waits again (recursion), timeout 0", WaitForSingleObject(m, 0));
  result("ReleaseMutex", ReleaseMutex(m));
  value("another thread waits while still owned once, timeout 0", run_one(mutex_wait_0, m));
  result("ReleaseMutex", ReleaseMutex(m));
  result("ReleaseMutex once more than acquired", ReleaseMutex(m));
  value("another thread waits, timeout 0, and ends owning it", run_one(mutex_wait_0, m));
  value("main waits on the abandoned mutex", WaitForSingleObject(m, 0));
  result("ReleaseMutex (main owns it now)", ReleaseMutex(m));
  value("main waits again", WaitForSingleObject(m, 0));
  result("ReleaseMutex", ReleaseMutex(m));

  HANDLE t = CreateThread(NULL, 0, mutex_hold_then_return, m, 0, NULL);
  WaitForSingleObject(held, INFINITE);
  value("main waits while a thread owns it, timeout 0", WaitForSingleObject(m, 0));
  SetEvent(release);
  value("main waits while that thread ends owning it", WaitForSingleObject(m, INFINITE));
  WaitForSingleObject(t, INFINITE);
  GetExitCodeThread(t, &code);
  value("the thread's own wait", code);
  CloseHandle(t);
  ResetEvent(release);
  result("ReleaseMutex", ReleaseMutex(m));

  HANDLE pair[2], unsignalled = CreateEventW(NULL, TRUE, FALSE, NULL);
  pair[0] = unsignalled;
  pair[1] = m;
  t = CreateThread(NULL, 0, mutex_hold_then_exit_thread, m, 0, NULL);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
  value("wait-any on [unsignalled event, mutex abandoned by ExitThread]", WaitForMultipleObjects(2, pair, FALSE, INFINITE));
  result("ReleaseMutex", ReleaseMutex(m));
  value("wait-any again, no longer abandoned", WaitForMultipleObjects(2, pair, FALSE, 0));
  result("ReleaseMutex", ReleaseMutex(m));
  CloseHandle(unsignalled);
  /* The abandoned mutex goes first: a wait-all that sees one reports WAIT_ABANDONED_0 + 0 on Windows and Wine alike. */
  run_one(mutex_wait_0, m);
  pair[0] = m;
  pair[1] = CreateEventW(NULL, TRUE, TRUE, NULL);
  value("wait-all on [abandoned mutex, signalled event]", WaitForMultipleObjects(2, pair, TRUE, INFINITE));
  result("ReleaseMutex", ReleaseMutex(m));
  CloseHandle(pair[1]);

  result("ReleaseMutex on an event", ReleaseMutex(start));
  result("SetEvent on a mutex", SetEvent(m));
  result("CloseHandle mutex", CloseHandle(m));
  result("ReleaseMutex on the closed handle", ReleaseMutex(m));

  mutex = CreateMutexW(NULL, FALSE, NULL);
  result("CreateMutexW not owned", mutex != NULL);
  value("wait, timeout 0", WaitForSingleObject(mutex, 0));
  result("ReleaseMutex", ReleaseMutex(mutex));
  out("mutex, 4 threads x 1000 increments\n");
  value("all threads ran and were waited for", run_workers(start, mutex_worker, 4));
  value("counter", mutex_counter);
  value("two threads inside at once", mutex_overlaps);
  CloseHandle(mutex);

  semaphore = CreateSemaphoreW(NULL, 2, 3, NULL);
  result("CreateSemaphoreW 2 of at most 3", semaphore != NULL);
  value("wait, timeout 0", WaitForSingleObject(semaphore, 0));
  value("wait, timeout 0", WaitForSingleObject(semaphore, 0));
  value("wait on the empty semaphore, timeout 0", WaitForSingleObject(semaphore, 0));
  LONG previous = -1;
  result("ReleaseSemaphore 3", ReleaseSemaphore(semaphore, 3, &previous));
  value("previous count", previous);
  result("ReleaseSemaphore 1 past the maximum", ReleaseSemaphore(semaphore, 1, &previous));
  result("ReleaseSemaphore 0", ReleaseSemaphore(semaphore, 0, NULL));
  result("ReleaseSemaphore on an event", ReleaseSemaphore(start, 1, NULL));
  result("CreateSemaphoreW with the count above the maximum", CreateSemaphoreW(NULL, 4, 3, NULL) != NULL);
  result("CreateSemaphoreW with maximum 0", CreateSemaphoreW(NULL, 0, 0, NULL) != NULL);
  CloseHandle(semaphore);
  semaphore = CreateSemaphoreW(NULL, SEMAPHORE_SLOTS, SEMAPHORE_SLOTS, NULL);
  out("semaphore of 2, 4 threads x 50 entries\n");
  value("all threads ran and were waited for", run_workers(start, semaphore_worker, 4));
  value("more than two threads inside at once", semaphore_most > SEMAPHORE_SLOTS);
  CloseHandle(semaphore);
  return 0;
}
