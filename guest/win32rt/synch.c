/* Vista's slim synchronisation: SRW locks, condition variables and one-time
 * initialisation. Each is one pointer-sized word in the app's memory, as on
 * Windows, so it needs no handle and no constructor: the uncontended path is
 * one atomic instruction, and only a thread that must wait leaves the guest,
 * in PvxWaitOnAddress on the word's low 32 bits. */
#include "pvxrt.h"

/* An SRW lock's low word: bit 0 a writer holds it, bit 1 someone waits, and
 * the rest counts readers. The high word stays 0, so SRWLOCK_INIT is free. */
#define SRW_WRITER 1
#define SRW_WAITERS 2
#define SRW_READER 4

static volatile LONG *word(PVOID *p) { return (volatile LONG *)p; }

/* Marks the lock waited on and sleeps until its word changes from `seen`;
 * whoever changes it next sees the mark and wakes every waiter. */
static void srw_wait(volatile LONG *w, LONG seen) {
  if (!(seen & SRW_WAITERS)) {
    if (InterlockedCompareExchange(w, seen | SRW_WAITERS, seen) != seen) return;
    seen |= SRW_WAITERS;
  }
  PvxWaitOnAddress(w, seen, INFINITE);
}

static BOOL srw_try_exclusive(volatile LONG *w, LONG *seen) {
  LONG s = *seen = *w;
  return (s & ~SRW_WAITERS) == 0 && InterlockedCompareExchange(w, s | SRW_WRITER, s) == s;
}

static BOOL srw_try_shared(volatile LONG *w, LONG *seen) {
  LONG s = *seen = *w;
  return !(s & SRW_WRITER) && InterlockedCompareExchange(w, s + SRW_READER, s) == s;
}

EXPORT void WINAPI InitializeSRWLock(PSRWLOCK lock) { lock->Ptr = NULL; }

EXPORT void WINAPI AcquireSRWLockExclusive(PSRWLOCK lock) {
  volatile LONG *w = word(&lock->Ptr);
  LONG seen;
  while (!srw_try_exclusive(w, &seen))
    if (seen & ~SRW_WAITERS) srw_wait(w, seen);
}

EXPORT void WINAPI AcquireSRWLockShared(PSRWLOCK lock) {
  volatile LONG *w = word(&lock->Ptr);
  LONG seen;
  while (!srw_try_shared(w, &seen))
    if (seen & SRW_WRITER) srw_wait(w, seen);
}

/* A try fails only when the lock is held the other way, not when another
 * thread merely raced it for the word. */
EXPORT BOOLEAN WINAPI TryAcquireSRWLockExclusive(PSRWLOCK lock) {
  volatile LONG *w = word(&lock->Ptr);
  LONG seen;
  while (!srw_try_exclusive(w, &seen))
    if (seen & ~SRW_WAITERS) return FALSE;
  return TRUE;
}

EXPORT BOOLEAN WINAPI TryAcquireSRWLockShared(PSRWLOCK lock) {
  volatile LONG *w = word(&lock->Ptr);
  LONG seen;
  while (!srw_try_shared(w, &seen))
    if (seen & SRW_WRITER) return FALSE;
  return TRUE;
}

EXPORT void WINAPI ReleaseSRWLockExclusive(PSRWLOCK lock) {
  volatile LONG *w = word(&lock->Ptr);
  if (InterlockedExchange(w, 0) & SRW_WAITERS) PvxWakeByAddress(w);
}

EXPORT void WINAPI ReleaseSRWLockShared(PSRWLOCK lock) {
  volatile LONG *w = word(&lock->Ptr);
  for (;;) {
    LONG s = *w, next = s - SRW_READER;
    if ((next & ~SRW_WAITERS) == 0) next = 0; /* the last reader out wakes the waiters */
    if (InterlockedCompareExchange(w, next, s) != s) continue;
    if ((s & SRW_WAITERS) && next == 0) PvxWakeByAddress(w);
    return;
  }
}

/* A condition variable: the low word counts wakes, the high word the threads
 * asleep on it, so a wake with no sleeper costs no exit. A sleeper counts
 * itself before it reads the wake count, and a waker bumps the wake count
 * before it reads the sleepers, both with locked instructions: either the
 * waker sees the sleeper, or the sleeper sees the new count and does not
 * sleep. Wake and WakeAll both wake every sleeper; Windows allows the
 * spurious wakes, and every caller loops on its predicate. */
struct condition { volatile LONG wakes, sleepers; };

EXPORT void WINAPI InitializeConditionVariable(PCONDITION_VARIABLE cv) { cv->Ptr = NULL; }

static BOOL condition_sleep(PCONDITION_VARIABLE cv, DWORD milliseconds, void (*unlock)(void *), void (*relock)(void *),
                            void *lock) {
  struct condition *c = (struct condition *)&cv->Ptr;
  InterlockedIncrement(&c->sleepers);
  LONG wakes = InterlockedCompareExchange(&c->wakes, 0, 0);
  unlock(lock);
  BOOL woken = PvxWaitOnAddress(&c->wakes, wakes, milliseconds);
  DWORD error = GetLastError();
  InterlockedDecrement(&c->sleepers);
  relock(lock);
  SetLastError(error); /* ERROR_TIMEOUT, and not whatever relocking left */
  return woken;
}

static void condition_wake(PCONDITION_VARIABLE cv) {
  struct condition *c = (struct condition *)&cv->Ptr;
  InterlockedIncrement(&c->wakes);
  if (c->sleepers) PvxWakeByAddress(&c->wakes);
}

EXPORT void WINAPI WakeConditionVariable(PCONDITION_VARIABLE cv) { condition_wake(cv); }
EXPORT void WINAPI WakeAllConditionVariable(PCONDITION_VARIABLE cv) { condition_wake(cv); }

static void leave_cs(void *l) { LeaveCriticalSection(l); }
static void enter_cs(void *l) { EnterCriticalSection(l); }
static void release_exclusive(void *l) { ReleaseSRWLockExclusive(l); }
static void acquire_exclusive(void *l) { AcquireSRWLockExclusive(l); }
static void release_shared(void *l) { ReleaseSRWLockShared(l); }
static void acquire_shared(void *l) { AcquireSRWLockShared(l); }

EXPORT BOOL WINAPI SleepConditionVariableCS(PCONDITION_VARIABLE cv, PCRITICAL_SECTION cs, DWORD milliseconds) {
  return condition_sleep(cv, milliseconds, leave_cs, enter_cs, cs);
}

EXPORT BOOL WINAPI SleepConditionVariableSRW(PCONDITION_VARIABLE cv, PSRWLOCK lock, DWORD milliseconds, ULONG flags) {
  if (flags & ~CONDITION_VARIABLE_LOCKMODE_SHARED) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (flags & CONDITION_VARIABLE_LOCKMODE_SHARED)
    return condition_sleep(cv, milliseconds, release_shared, acquire_shared, lock);
  return condition_sleep(cv, milliseconds, release_exclusive, acquire_exclusive, lock);
}

/* One-time initialisation: the word is 0 before, 1 while one thread runs the
 * callback, and the callback's context with bit 1 set after, as on Windows,
 * which keeps INIT_ONCE_CTX_RESERVED_BITS (2) of the context for itself. */
#define ONCE_RUNNING 1
#define ONCE_DONE 2

EXPORT void WINAPI InitOnceInitialize(PINIT_ONCE once) { once->Ptr = NULL; }

EXPORT BOOL WINAPI InitOnceExecuteOnce(PINIT_ONCE once, PINIT_ONCE_FN fn, PVOID parameter, LPVOID *context) {
  volatile LONG *w = word(&once->Ptr);
  for (;;) {
    ULONG_PTR state = (ULONG_PTR)once->Ptr;
    if (state & ONCE_DONE) {
      if (context) *context = (LPVOID)(state & ~(ULONG_PTR)3);
      return TRUE;
    }
    if (state == 0 && InterlockedCompareExchangePointer(&once->Ptr, (PVOID)ONCE_RUNNING, NULL) == NULL) {
      PVOID result = NULL;
      BOOL ok = fn(once, parameter, &result);
      InterlockedExchangePointer(&once->Ptr, ok ? (PVOID)(((ULONG_PTR)result & ~(ULONG_PTR)3) | ONCE_DONE) : NULL);
      PvxWakeByAddress(w);
      if (ok && context) *context = (LPVOID)((ULONG_PTR)result & ~(ULONG_PTR)3);
      return ok;
    }
    if (state == ONCE_RUNNING) PvxWaitOnAddress(w, ONCE_RUNNING, INFINITE);
  }
}

/* The Ex forms take their booleans as flags and an access mask that a one-app
 * VM, with no other process to share the object, has no use for. */
EXPORT HANDLE WINAPI CreateEventExW(LPSECURITY_ATTRIBUTES sa, LPCWSTR name, DWORD flags, DWORD access) {
  (void)access;
  return CreateEventW(sa, (flags & CREATE_EVENT_MANUAL_RESET) != 0, (flags & CREATE_EVENT_INITIAL_SET) != 0, name);
}

EXPORT HANDLE WINAPI CreateMutexExW(LPSECURITY_ATTRIBUTES sa, LPCWSTR name, DWORD flags, DWORD access) {
  (void)access;
  return CreateMutexW(sa, (flags & CREATE_MUTEX_INITIAL_OWNER) != 0, name);
}

EXPORT HANDLE WINAPI CreateSemaphoreExW(LPSECURITY_ATTRIBUTES sa, LONG initial, LONG maximum, LPCWSTR name, DWORD flags,
                                        DWORD access) {
  (void)access;
  if (flags) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return NULL;
  }
  return CreateSemaphoreW(sa, initial, maximum, name);
}

/* GetSystemInfo reports one processor, whichever vCPU a thread runs on. */
EXPORT DWORD WINAPI GetCurrentProcessorNumber(void) { return 0; }
