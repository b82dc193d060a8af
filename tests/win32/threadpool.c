/* The process thread pool: work submitted many times runs that many times;
 * one-shot, periodic and absolute timers fire and stop when disarmed; waits
 * fire once per arming, on the signal or on their timeout; the
 * *WhenCallbackReturns calls act after the callback; closing an object with
 * callbacks queued still runs them. Only the main thread prints, and never
 * a time. */
#include "common.h"

static LONG runs;
static PVOID seen_context, seen_object;

static void CALLBACK count_work(PTP_CALLBACK_INSTANCE i, PVOID context, PTP_WORK work) {
  (void)i;
  seen_context = context;
  seen_object = work;
  InterlockedIncrement(&runs);
}

static HANDLE fired;
static LONG timer_runs;
static TP_WAIT_RESULT wait_result;

static void CALLBACK timer_fires(PTP_CALLBACK_INSTANCE i, PVOID context, PTP_TIMER timer) {
  (void)i;
  seen_context = context;
  seen_object = timer;
  if (InterlockedIncrement(&timer_runs) == 3 || context != (PVOID)3) SetEvent(fired);
}

static void CALLBACK wait_fires(PTP_CALLBACK_INSTANCE i, PVOID context, PTP_WAIT wait, TP_WAIT_RESULT result) {
  (void)i;
  seen_context = context;
  seen_object = wait;
  wait_result = result;
  InterlockedIncrement(&runs);
  SetEvent(fired);
}

static HANDLE semaphore;
static CRITICAL_SECTION section;

static void CALLBACK finishers(PTP_CALLBACK_INSTANCE i, PVOID context, PTP_WORK work) {
  (void)context;
  (void)work;
  EnterCriticalSection(&section);
  LeaveCriticalSectionWhenCallbackReturns(i, &section);
  ReleaseSemaphoreWhenCallbackReturns(i, semaphore, 2);
  FreeLibraryWhenCallbackReturns(i, LoadLibraryA("kernel32.dll")); /* its own reference, so kernel32 stays */
  SetEventWhenCallbackReturns(i, fired);
}

static void CALLBACK simple(PTP_CALLBACK_INSTANCE i, PVOID context) {
  (void)i;
  seen_context = context;
  SetEvent(fired);
}

static DWORD WINAPI try_section(LPVOID unused) {
  (void)unused;
  if (!TryEnterCriticalSection(&section)) return 0;
  LeaveCriticalSection(&section);
  return 1;
}

static FILETIME relative_ms(LONG64 ms) {
  ULARGE_INTEGER u;
  u.QuadPart = (ULONG64)(-ms * 10000);
  FILETIME f = { u.LowPart, u.HighPart };
  return f;
}

int main(void) {
  fired = CreateEventW(NULL, FALSE, FALSE, NULL);
  PTP_WORK work = CreateThreadpoolWork(count_work, (PVOID)7, NULL);
  result("CreateThreadpoolWork", work != NULL);
  for (int k = 0; k < 20; k++) SubmitThreadpoolWork(work);
  WaitForThreadpoolWorkCallbacks(work, FALSE);
  value("runs after 20 submissions and a wait", runs);
  value("the callback got its context and its work", seen_context == (PVOID)7 && seen_object == work);
  runs = 0;
  SubmitThreadpoolWork(work);
  SubmitThreadpoolWork(work);
  CloseThreadpoolWork(work); /* the queued callbacks still run */
  for (int k = 0; k < 500 && runs < 2; k++) Sleep(10);
  value("runs of two submitted before CloseThreadpoolWork", runs);

  PTP_TIMER timer = CreateThreadpoolTimer(timer_fires, (PVOID)1, NULL);
  result("CreateThreadpoolTimer", timer != NULL);
  value("IsThreadpoolTimerSet before", IsThreadpoolTimerSet(timer));
  FILETIME due = relative_ms(20);
  SetThreadpoolTimer(timer, &due, 0, 0);
  value("one-shot in 20 ms fired", WaitForSingleObject(fired, 10000));
  WaitForThreadpoolTimerCallbacks(timer, FALSE);
  value("its callback got its context and its timer", seen_context == (PVOID)1 && seen_object == timer);
  value("one-shot runs", timer_runs);
  value("IsThreadpoolTimerSet after it fired", IsThreadpoolTimerSet(timer));
  CloseThreadpoolTimer(timer);

  timer_runs = 0;
  timer = CreateThreadpoolTimer(timer_fires, (PVOID)3, NULL);
  due = relative_ms(5);
  SetThreadpoolTimer(timer, &due, 10, 0);
  value("periodic every 10 ms reached 3 runs", WaitForSingleObject(fired, 10000));
  value("IsThreadpoolTimerSet while periodic", IsThreadpoolTimerSet(timer));
  SetThreadpoolTimer(timer, NULL, 0, 0);
  WaitForThreadpoolTimerCallbacks(timer, TRUE);
  LONG stopped_at = timer_runs;
  Sleep(60);
  value("no run after it was disarmed", timer_runs == stopped_at);
  value("IsThreadpoolTimerSet after SetThreadpoolTimer(NULL)", IsThreadpoolTimerSet(timer));
  due = relative_ms(10000);
  SetThreadpoolTimer(timer, &due, 0, 0);
  WaitForThreadpoolTimerCallbacks(timer, TRUE); /* nothing queued yet: it returns at once */
  value("armed 10 s ahead, still set after a cancelling wait", IsThreadpoolTimerSet(timer));
  CloseThreadpoolTimer(timer);

  timer_runs = 0;
  timer = CreateThreadpoolTimer(timer_fires, (PVOID)4, NULL);
  GetSystemTimeAsFileTime(&due);
  ULARGE_INTEGER at = { { due.dwLowDateTime, due.dwHighDateTime } };
  at.QuadPart += 20 * 10000;
  due.dwLowDateTime = at.LowPart;
  due.dwHighDateTime = at.HighPart;
  SetThreadpoolTimer(timer, &due, 0, 0);
  value("absolute, 20 ms from now, fired", WaitForSingleObject(fired, 10000));
  WaitForThreadpoolTimerCallbacks(timer, FALSE);
  CloseThreadpoolTimer(timer);

  runs = 0;
  HANDLE signal = CreateEventW(NULL, FALSE, FALSE, NULL);
  PTP_WAIT wait = CreateThreadpoolWait(wait_fires, (PVOID)5, NULL);
  result("CreateThreadpoolWait", wait != NULL);
  SetThreadpoolWait(wait, signal, NULL);
  SetEvent(signal);
  value("signalled: fired", WaitForSingleObject(fired, 10000));
  WaitForThreadpoolWaitCallbacks(wait, FALSE);
  value("with WAIT_OBJECT_0", wait_result);
  value("its callback got its context and its wait", seen_context == (PVOID)5 && seen_object == wait);
  SetEvent(signal); /* not armed again: no second callback */
  Sleep(50);
  value("runs after a second signal, not re-armed", runs);
  value("and the signal is still there", WaitForSingleObject(signal, 0));
  due = relative_ms(20);
  SetThreadpoolWait(wait, signal, &due);
  value("never signalled, 20 ms timeout: fired", WaitForSingleObject(fired, 10000));
  WaitForThreadpoolWaitCallbacks(wait, FALSE);
  value("with WAIT_TIMEOUT", wait_result);
  SetThreadpoolWait(wait, signal, NULL);
  SetThreadpoolWait(wait, NULL, NULL); /* disarmed before any signal */
  SetEvent(signal);
  Sleep(50);
  value("runs after disarming, then a signal", runs);
  CloseThreadpoolWait(wait);
  CloseHandle(signal);

  semaphore = CreateSemaphoreW(NULL, 0, 5, NULL);
  InitializeCriticalSection(&section);
  work = CreateThreadpoolWork(finishers, NULL, NULL);
  SubmitThreadpoolWork(work);
  value("SetEventWhenCallbackReturns", WaitForSingleObject(fired, 10000));
  WaitForThreadpoolWorkCallbacks(work, FALSE);
  LONG previous = -1;
  ReleaseSemaphore(semaphore, 1, &previous);
  value("ReleaseSemaphoreWhenCallbackReturns released", previous);
  HANDLE t = CreateThread(NULL, 0, try_section, NULL, 0, NULL);
  DWORD code = 0;
  WaitForSingleObject(t, INFINITE);
  GetExitCodeThread(t, &code);
  CloseHandle(t);
  value("LeaveCriticalSectionWhenCallbackReturns: another thread enters", code);
  CloseThreadpoolWork(work);
  DeleteCriticalSection(&section);
  CloseHandle(semaphore);

  result("TrySubmitThreadpoolCallback", TrySubmitThreadpoolCallback(simple, (PVOID)9, NULL));
  value("it ran", WaitForSingleObject(fired, 10000));
  value("with its context", seen_context == (PVOID)9);
  CloseHandle(fired);
  return 0;
}
