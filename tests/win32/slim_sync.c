/* Vista's slim synchronisation: SRW locks (exclusive and shared, the Try
 * forms against a holder on another thread), condition variables on an SRW
 * lock and on a critical section (a bounded queue between producers and
 * consumers, timeouts in both lock modes), one-time initialisation raced by
 * several threads and retried after a failing callback, and the Ex forms of
 * events and semaphores. Only the main thread prints. */
#include "threads.h"

#define THREADS 4
#define ROUNDS 400
#define ITEMS 300
#define QUEUE 8

static HANDLE start;

static SRWLOCK srw = SRWLOCK_INIT;
static LONG srw_counter, srw_overlaps;
static volatile LONG srw_inside;

static DWORD WINAPI exclusive_worker(LPVOID param) {
  (void)param;
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < ROUNDS; i++) {
    AcquireSRWLockExclusive(&srw);
    if (srw_inside) srw_overlaps++;
    srw_inside = 1;
    srw_counter++;
    if (i % 50 == 0) Sleep(0); /* hand the vCPU over while holding it, so others really wait */
    srw_inside = 0;
    ReleaseSRWLockExclusive(&srw);
  }
  return 0;
}

/* Readers and writers mixed: a writer never overlaps anyone, readers only each other. */
static volatile LONG readers, writers, mixed;

static DWORD WINAPI mixed_worker(LPVOID param) {
  (void)param;
  WaitForSingleObject(start, INFINITE);
  for (int i = 0; i < ROUNDS; i++) {
    if (i % 4 == 0) {
      AcquireSRWLockExclusive(&srw);
      if (InterlockedIncrement(&writers) != 1 || readers) InterlockedIncrement(&mixed);
      srw_counter++;
      InterlockedDecrement(&writers);
      ReleaseSRWLockExclusive(&srw);
    } else {
      AcquireSRWLockShared(&srw);
      InterlockedIncrement(&readers);
      if (writers) InterlockedIncrement(&mixed);
      if (i % 25 == 1) Sleep(0);
      InterlockedDecrement(&readers);
      ReleaseSRWLockShared(&srw);
    }
  }
  return 0;
}

static DWORD WINAPI try_shared(LPVOID param) {
  (void)param;
  if (!TryAcquireSRWLockShared(&srw)) return 0;
  ReleaseSRWLockShared(&srw);
  return 1;
}

static DWORD WINAPI try_exclusive(LPVOID param) {
  (void)param;
  if (!TryAcquireSRWLockExclusive(&srw)) return 0;
  ReleaseSRWLockExclusive(&srw);
  return 1;
}

/* A bounded queue: producers wait while it is full, consumers while it is empty. */
static CONDITION_VARIABLE not_full = CONDITION_VARIABLE_INIT, not_empty = CONDITION_VARIABLE_INIT;
static CRITICAL_SECTION cs;
static LONG queue[QUEUE], head, count, produced_sum, consumed_sum, consumed_items;
static BOOL use_cs;

static void lock(void) {
  if (use_cs) EnterCriticalSection(&cs);
  else AcquireSRWLockExclusive(&srw);
}

static void unlock(void) {
  if (use_cs) LeaveCriticalSection(&cs);
  else ReleaseSRWLockExclusive(&srw);
}

static void sleep_on(PCONDITION_VARIABLE cv) {
  if (use_cs) SleepConditionVariableCS(cv, &cs, INFINITE);
  else SleepConditionVariableSRW(cv, &srw, INFINITE, 0);
}

static DWORD WINAPI producer(LPVOID param) {
  LONG base = (LONG)(uintptr_t)param;
  WaitForSingleObject(start, INFINITE);
  for (LONG i = 1; i <= ITEMS; i++) {
    lock();
    while (count == QUEUE) sleep_on(&not_full);
    queue[(head + count++) % QUEUE] = base + i;
    produced_sum += base + i;
    unlock();
    WakeConditionVariable(&not_empty);
  }
  return 0;
}

static DWORD WINAPI consumer(LPVOID param) {
  (void)param;
  WaitForSingleObject(start, INFINITE);
  for (;;) {
    lock();
    while (count == 0 && consumed_items < 2 * ITEMS) sleep_on(&not_empty);
    if (consumed_items == 2 * ITEMS) {
      unlock();
      WakeAllConditionVariable(&not_empty); /* the other consumer is done too */
      return 0;
    }
    consumed_sum += queue[head];
    head = (head + 1) % QUEUE;
    count--;
    consumed_items++;
    unlock();
    WakeConditionVariable(&not_full);
  }
}

static void producers_and_consumers(const char *what, BOOL on_cs) {
  HANDLE t[4];
  use_cs = on_cs;
  head = count = produced_sum = consumed_sum = consumed_items = 0;
  ResetEvent(start);
  t[0] = CreateThread(NULL, 0, producer, (LPVOID)(uintptr_t)0, 0, NULL);
  t[1] = CreateThread(NULL, 0, producer, (LPVOID)(uintptr_t)100000, 0, NULL);
  t[2] = CreateThread(NULL, 0, consumer, NULL, 0, NULL);
  t[3] = CreateThread(NULL, 0, consumer, NULL, 0, NULL);
  SetEvent(start);
  result(what, WaitForMultipleObjects(4, t, TRUE, INFINITE) == WAIT_OBJECT_0);
  for (int k = 0; k < 4; k++) CloseHandle(t[k]);
  value("items consumed", consumed_items);
  value("sums agree", produced_sum == consumed_sum);
}

static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
static LONG once_runs, once_fail;
static LPVOID once_seen[THREADS];
static LONG once_slot;

static BOOL CALLBACK init_once(PINIT_ONCE o, PVOID parameter, PVOID *context) {
  (void)o;
  InterlockedIncrement(&once_runs);
  Sleep(5); /* long enough that the other threads arrive while it runs */
  if (once_fail) {
    SetLastError(ERROR_INVALID_DATA);
    return FALSE;
  }
  *context = parameter;
  return TRUE;
}

static DWORD WINAPI once_worker(LPVOID param) {
  (void)param;
  LPVOID context = NULL;
  WaitForSingleObject(start, INFINITE);
  BOOL ok = InitOnceExecuteOnce(&once, init_once, (PVOID)(uintptr_t)0x1230, &context);
  once_seen[InterlockedIncrement(&once_slot) - 1] = context;
  return ok;
}

int main(void) {
  start = CreateEventW(NULL, TRUE, FALSE, NULL);

  result("exclusive SRW workers", run_workers(start, exclusive_worker, THREADS));
  value("counter", srw_counter);
  value("overlaps", srw_overlaps);

  srw_counter = 0;
  result("shared and exclusive SRW workers", run_workers(start, mixed_worker, THREADS));
  value("writer increments", srw_counter);
  value("writer overlapped someone", mixed);

  AcquireSRWLockShared(&srw);
  value("held shared: another thread's TryAcquireSRWLockShared", run_one(try_shared, NULL));
  value("held shared: another thread's TryAcquireSRWLockExclusive", run_one(try_exclusive, NULL));
  ReleaseSRWLockShared(&srw);
  AcquireSRWLockExclusive(&srw);
  value("held exclusive: another thread's TryAcquireSRWLockShared", run_one(try_shared, NULL));
  value("held exclusive: another thread's TryAcquireSRWLockExclusive", run_one(try_exclusive, NULL));
  ReleaseSRWLockExclusive(&srw);
  value("free: another thread's TryAcquireSRWLockExclusive", run_one(try_exclusive, NULL));
  SRWLOCK fresh;
  InitializeSRWLock(&fresh);
  value("InitializeSRWLock, then TryAcquireSRWLockExclusive", TryAcquireSRWLockExclusive(&fresh));
  value("and again, held", TryAcquireSRWLockExclusive(&fresh));
  ReleaseSRWLockExclusive(&fresh);

  InitializeCriticalSection(&cs);
  producers_and_consumers("producers and consumers on an SRW lock", FALSE);
  producers_and_consumers("producers and consumers on a critical section", TRUE);

  CONDITION_VARIABLE lonely;
  InitializeConditionVariable(&lonely);
  WakeConditionVariable(&lonely); /* no sleeper: nothing to wake, and nothing is remembered */
  AcquireSRWLockExclusive(&srw);
  result("SleepConditionVariableSRW, nobody wakes it, 20 ms", SleepConditionVariableSRW(&lonely, &srw, 20, 0));
  value("still held exclusive: another thread's TryAcquireSRWLockShared", run_one(try_shared, NULL));
  ReleaseSRWLockExclusive(&srw);
  AcquireSRWLockShared(&srw);
  result("SleepConditionVariableSRW shared, 20 ms",
         SleepConditionVariableSRW(&lonely, &srw, 20, CONDITION_VARIABLE_LOCKMODE_SHARED));
  value("still held shared: another thread's TryAcquireSRWLockShared", run_one(try_shared, NULL));
  ReleaseSRWLockShared(&srw);
  EnterCriticalSection(&cs);
  result("SleepConditionVariableCS, nobody wakes it, 0 ms", SleepConditionVariableCS(&lonely, &cs, 0));
  LeaveCriticalSection(&cs);
  DeleteCriticalSection(&cs);

  once_fail = 1;
  LPVOID context = (LPVOID)1;
  result("InitOnceExecuteOnce, the callback fails", InitOnceExecuteOnce(&once, init_once, NULL, &context));
  value("context left alone", context == (LPVOID)1);
  once_fail = 0;
  once_runs = 0;
  result("InitOnceExecuteOnce raced by 4 threads", run_workers(start, once_worker, THREADS));
  value("callback runs", once_runs);
  int same = 1;
  for (int k = 0; k < THREADS; k++) same &= once_seen[k] == (LPVOID)(uintptr_t)0x1230;
  value("every thread got the context", same);
  result("InitOnceExecuteOnce after", InitOnceExecuteOnce(&once, init_once, NULL, &context));
  value("context", (long long)(uintptr_t)context);
  value("callback runs", once_runs);
  InitOnceInitialize(&once);
  result("InitOnceInitialize, then InitOnceExecuteOnce", InitOnceExecuteOnce(&once, init_once, (PVOID)8, &context));
  value("context", (long long)(uintptr_t)context);
  value("callback runs", once_runs);

  HANDLE e = CreateEventExW(NULL, NULL, CREATE_EVENT_MANUAL_RESET | CREATE_EVENT_INITIAL_SET, EVENT_ALL_ACCESS);
  result("CreateEventExW manual, set", e != NULL);
  value("wait 1", WaitForSingleObject(e, 0));
  value("wait 2", WaitForSingleObject(e, 0));
  CloseHandle(e);
  e = CreateEventExW(NULL, NULL, 0, EVENT_ALL_ACCESS);
  result("CreateEventExW auto, unset", e != NULL);
  value("wait", WaitForSingleObject(e, 0));
  SetEvent(e);
  value("wait after SetEvent", WaitForSingleObject(e, 0));
  value("and again", WaitForSingleObject(e, 0));
  CloseHandle(e);
  HANDLE s = CreateSemaphoreExW(NULL, 1, 2, NULL, 0, SEMAPHORE_ALL_ACCESS);
  result("CreateSemaphoreExW 1 of 2", s != NULL);
  value("wait 1", WaitForSingleObject(s, 0));
  value("wait 2", WaitForSingleObject(s, 0));
  result("ReleaseSemaphore 3", ReleaseSemaphore(s, 3, NULL));
  CloseHandle(s);

  SYSTEM_INFO si;
  GetSystemInfo(&si);
  value("GetCurrentProcessorNumber below the processor count", GetCurrentProcessorNumber() < si.dwNumberOfProcessors);
  CloseHandle(start);
  return 0;
}
