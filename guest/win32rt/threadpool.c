/* The process's one thread pool: work, timer and wait objects whose
 * callbacks run on pool threads the runtime starts as it needs them, up to
 * MAX_WORKERS; each is a vCPU, so the pool stays small. A timer thread and a
 * wait thread, each started on first use, turn due timers and signalled
 * handles into queued callbacks. Callback environments are accepted and
 * their private pools, cleanup groups and priorities ignored: there is one
 * pool, first in, first out. */
#include "pvxrt.h"

#define MAX_WORKERS 4
#define MAX_WAITS (MAXIMUM_WAIT_OBJECTS - 1) /* one slot is the wait thread's own wake-up event */

enum kind { WORK, TIMER, WAIT, SIMPLE };

struct tp_object {
  enum kind kind;
  PVOID callback, context;
  LONG pending, running; /* callbacks queued but not started, and in progress */
  BOOL queued, closed;
  struct tp_object *next_ready;
  /* A timer: set (until SetThreadpoolTimer(NULL), even once a one-shot has
   * fired, as IsThreadpoolTimerSet reports on Windows), armed while it will
   * fire again, when it is next due (GetTickCount64) and its period. */
  BOOL set, armed;
  ULONG64 due;
  DWORD period;
  /* A wait: its handle, when it times out (or never), and how it ended. */
  HANDLE handle;
  BOOL timeout_infinite;
  TP_WAIT_RESULT result;
  struct tp_object *next_armed;
};

/* What a callback asked to happen once it returns (the *WhenCallbackReturns calls). */
struct instance {
  HANDLE event, semaphore, mutex;
  LONG semaphore_count;
  PCRITICAL_SECTION section;
  HMODULE library;
};

static struct pvx_lock pool_lock;
static struct tp_object *ready_head, *ready_tail, *timers, *waits;
static LONG workers, idle_workers;
static volatile LONG ready_seq, done_seq, timer_seq;
static BOOL timer_thread_started, wait_thread_started;
static HANDLE wait_wakeup;

static DECLSPEC_NORETURN DWORD WINAPI worker(LPVOID unused);

static BOOL start_thread(LPTHREAD_START_ROUTINE fn) {
  HANDLE t = CreateThread(NULL, 0, fn, NULL, 0, NULL);
  if (t) CloseHandle(t);
  return t != NULL;
}

/* A wait for PvxWaitOnAddress until a GetTickCount64 time, or INFINITE. */
static DWORD until(BOOL timed, ULONG64 when, ULONG64 now) {
  if (!timed) return INFINITE;
  return when - now < INFINITE - 1 ? (DWORD)(when - now) : INFINITE - 1;
}

/* With pool_lock held: one more callback of `o` to run. */
static void enqueue(struct tp_object *o) {
  o->pending++;
  if (!o->queued) {
    o->queued = TRUE;
    o->next_ready = NULL;
    if (ready_tail) ready_tail->next_ready = o;
    else ready_head = o;
    ready_tail = o;
  }
  InterlockedIncrement(&ready_seq);
  if (idle_workers) PvxWakeByAddress(&ready_seq);
  else if (workers < MAX_WORKERS && start_thread(worker)) workers++;
}

static void dequeue(struct tp_object *o) {
  struct tp_object **p = &ready_head, *previous = NULL;
  for (; *p && *p != o; previous = *p, p = &(*p)->next_ready) {}
  if (!*p) return;
  *p = o->next_ready;
  if (ready_tail == o) ready_tail = previous;
  o->queued = FALSE;
}

static void free_if_finished(struct tp_object *o) {
  if (o->closed && !o->pending && !o->running && !o->armed) HeapFree(GetProcessHeap(), 0, o);
}

static void run(struct tp_object *o) {
  struct instance i = { 0 };
  PTP_CALLBACK_INSTANCE instance = (PTP_CALLBACK_INSTANCE)&i;
  switch (o->kind) {
  case WORK: ((PTP_WORK_CALLBACK)o->callback)(instance, o->context, (PTP_WORK)o); break;
  case TIMER: ((PTP_TIMER_CALLBACK)o->callback)(instance, o->context, (PTP_TIMER)o); break;
  case WAIT: ((PTP_WAIT_CALLBACK)o->callback)(instance, o->context, (PTP_WAIT)o, o->result); break;
  case SIMPLE: ((PTP_SIMPLE_CALLBACK)o->callback)(instance, o->context); break;
  }
  if (i.section) LeaveCriticalSection(i.section);
  if (i.mutex) ReleaseMutex(i.mutex);
  if (i.semaphore) ReleaseSemaphore(i.semaphore, i.semaphore_count, NULL);
  if (i.event) SetEvent(i.event);
  if (i.library) FreeLibrary(i.library);
}

static DECLSPEC_NORETURN DWORD WINAPI worker(LPVOID unused) {
  (void)unused;
  pvx_lock(&pool_lock); /* after enqueue, which counted this thread, has let go */
  for (;;) {
    while (!ready_head) {
      LONG seen = ready_seq;
      idle_workers++;
      pvx_unlock(&pool_lock);
      PvxWaitOnAddress(&ready_seq, seen, INFINITE);
      pvx_lock(&pool_lock);
      idle_workers--;
    }
    struct tp_object *o = ready_head;
    if (--o->pending == 0) dequeue(o);
    o->running++;
    pvx_unlock(&pool_lock);
    run(o);
    pvx_lock(&pool_lock);
    o->running--;
    free_if_finished(o);
    InterlockedIncrement(&done_seq);
    PvxWakeByAddress(&done_seq);
  }
}

/* Until `o` has no callback queued or running; with `cancel`, the queued ones never run. */
static void wait_for_callbacks(struct tp_object *o, BOOL cancel) {
  pvx_lock(&pool_lock);
  if (cancel) {
    dequeue(o);
    o->pending = 0;
  }
  while (o->pending || o->running) {
    LONG seen = done_seq;
    pvx_unlock(&pool_lock);
    PvxWaitOnAddress(&done_seq, seen, INFINITE);
    pvx_lock(&pool_lock);
  }
  pvx_unlock(&pool_lock);
}

static void close_object(struct tp_object *o) {
  pvx_lock(&pool_lock);
  o->closed = TRUE;
  free_if_finished(o);
  pvx_unlock(&pool_lock);
}

static struct tp_object *new_object(enum kind kind, PVOID callback, PVOID context) {
  struct tp_object *o = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof *o);
  if (!o) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return NULL;
  }
  o->kind = kind;
  o->callback = callback;
  o->context = context;
  return o;
}

EXPORT PTP_WORK WINAPI CreateThreadpoolWork(PTP_WORK_CALLBACK fn, PVOID context, PTP_CALLBACK_ENVIRON env) {
  (void)env;
  return (PTP_WORK) new_object(WORK, (PVOID)fn, context);
}

EXPORT void WINAPI SubmitThreadpoolWork(PTP_WORK work) {
  pvx_lock(&pool_lock);
  enqueue((struct tp_object *)work);
  pvx_unlock(&pool_lock);
}

EXPORT void WINAPI WaitForThreadpoolWorkCallbacks(PTP_WORK work, BOOL cancel) {
  wait_for_callbacks((struct tp_object *)work, cancel);
}

EXPORT void WINAPI CloseThreadpoolWork(PTP_WORK work) { close_object((struct tp_object *)work); }

/* A one-shot object, closed before it runs, so it frees itself after. */
EXPORT BOOL WINAPI TrySubmitThreadpoolCallback(PTP_SIMPLE_CALLBACK fn, PVOID context, PTP_CALLBACK_ENVIRON env) {
  (void)env;
  struct tp_object *o = new_object(SIMPLE, (PVOID)fn, context);
  if (!o) return FALSE;
  pvx_lock(&pool_lock);
  o->closed = TRUE;
  enqueue(o);
  pvx_unlock(&pool_lock);
  return TRUE;
}

/* Timers. A FILETIME due time is negative for an interval from now, in
 * 100 ns units, or else an absolute UTC time; both become GetTickCount64
 * milliseconds, rounded up so that a timer never fires early. */
static ULONG64 due_tick(const FILETIME *when) {
  LONG64 t = (LONG64)(((ULONG64)when->dwHighDateTime << 32) | when->dwLowDateTime);
  ULONG64 now = GetTickCount64();
  if (t < 0) return now + (ULONG64)(-(t + 1)) / 10000 + 1;
  FILETIME system;
  GetSystemTimeAsFileTime(&system);
  LONG64 from_now = t - (LONG64)(((ULONG64)system.dwHighDateTime << 32) | system.dwLowDateTime);
  return from_now <= 0 ? now : now + ((ULONG64)from_now + 9999) / 10000;
}

static DECLSPEC_NORETURN DWORD WINAPI timer_thread(LPVOID unused) {
  (void)unused;
  pvx_lock(&pool_lock);
  for (;;) {
    ULONG64 now = GetTickCount64(), next = 0;
    BOOL any = FALSE;
    for (struct tp_object **p = &timers; *p;) {
      struct tp_object *t = *p;
      if (t->due <= now) {
        enqueue(t);
        if (t->period) t->due = t->due + t->period > now ? t->due + t->period : now + t->period;
        else t->armed = FALSE;
      }
      if (!t->armed) {
        *p = t->next_armed;
        free_if_finished(t);
        continue;
      }
      if (!any || t->due < next) next = t->due;
      any = TRUE;
      p = &t->next_armed;
    }
    LONG seen = timer_seq;
    pvx_unlock(&pool_lock);
    PvxWaitOnAddress(&timer_seq, seen, until(any, next, now));
    pvx_lock(&pool_lock);
  }
}

static void unlink_armed(struct tp_object **list, struct tp_object *o) {
  for (struct tp_object **p = list; *p; p = &(*p)->next_armed)
    if (*p == o) {
      *p = o->next_armed;
      return;
    }
}

EXPORT PTP_TIMER WINAPI CreateThreadpoolTimer(PTP_TIMER_CALLBACK fn, PVOID context, PTP_CALLBACK_ENVIRON env) {
  (void)env;
  return (PTP_TIMER) new_object(TIMER, (PVOID)fn, context);
}

/* A NULL due time disarms the timer; callbacks already queued still run. */
EXPORT void WINAPI SetThreadpoolTimer(PTP_TIMER timer, PFILETIME due, DWORD period, DWORD window) {
  (void)window;
  struct tp_object *t = (struct tp_object *)timer;
  pvx_lock(&pool_lock);
  if (t->armed) unlink_armed(&timers, t);
  t->set = t->armed = due != NULL;
  if (t->armed) {
    t->due = due_tick(due);
    t->period = period;
    t->next_armed = timers;
    timers = t;
    if (!timer_thread_started) {
      timer_thread_started = TRUE;
      start_thread(timer_thread);
    }
    InterlockedIncrement(&timer_seq);
    PvxWakeByAddress(&timer_seq);
  }
  pvx_unlock(&pool_lock);
}

EXPORT BOOL WINAPI IsThreadpoolTimerSet(PTP_TIMER timer) { return ((struct tp_object *)timer)->set; }

EXPORT void WINAPI WaitForThreadpoolTimerCallbacks(PTP_TIMER timer, BOOL cancel) {
  wait_for_callbacks((struct tp_object *)timer, cancel);
}

EXPORT void WINAPI CloseThreadpoolTimer(PTP_TIMER timer) {
  SetThreadpoolTimer(timer, NULL, 0, 0);
  close_object((struct tp_object *)timer);
}

/* Waits: the wait thread blocks on every armed wait's handle at once, with
 * the nearest timeout, and on its own event, which a change to the set
 * signals so it starts over with the new set. */
/* A handle the app closed while a wait was armed on it (which Windows leaves
 * undefined) fails every wait; its wait is dropped, with no callback, rather
 * than have the wait thread spin. */
static void drop_dead_handles(void) {
  pvx_lock(&pool_lock);
  for (struct tp_object **p = &waits; *p;) {
    struct tp_object *w = *p;
    if (WaitForSingleObject(w->handle, 0) == WAIT_FAILED) {
      *p = w->next_armed;
      w->armed = FALSE;
      free_if_finished(w);
    } else p = &w->next_armed;
  }
  pvx_unlock(&pool_lock);
}

static DECLSPEC_NORETURN DWORD WINAPI wait_thread(LPVOID unused) {
  (void)unused;
  for (;;) {
    HANDLE handles[MAXIMUM_WAIT_OBJECTS] = { wait_wakeup };
    struct tp_object *owners[MAXIMUM_WAIT_OBJECTS] = { NULL };
    DWORD count = 1;
    ULONG64 now = GetTickCount64(), next = 0;
    BOOL timed = FALSE;
    pvx_lock(&pool_lock);
    for (struct tp_object **p = &waits; *p;) {
      struct tp_object *w = *p;
      if (!w->timeout_infinite && w->due <= now) {
        *p = w->next_armed;
        w->armed = FALSE;
        w->result = WAIT_TIMEOUT;
        enqueue(w);
        continue;
      }
      if (count <= MAX_WAITS) {
        handles[count] = w->handle;
        owners[count++] = w;
      }
      if (!w->timeout_infinite && (!timed || w->due < next)) next = w->due, timed = TRUE;
      p = &w->next_armed;
    }
    pvx_unlock(&pool_lock);
    DWORD r = WaitForMultipleObjects(count, handles, FALSE, until(timed, next, now));
    if (r == WAIT_FAILED) {
      drop_dead_handles();
      continue;
    }
    if (r >= WAIT_ABANDONED_0 && r < WAIT_ABANDONED_0 + count) r -= WAIT_ABANDONED_0 - WAIT_OBJECT_0;
    if (r <= WAIT_OBJECT_0 || r >= WAIT_OBJECT_0 + count) continue; /* the set changed, or a timeout came due */
    pvx_lock(&pool_lock);
    struct tp_object *w = owners[r - WAIT_OBJECT_0];
    for (struct tp_object *a = waits; a; a = a->next_armed)
      if (a == w && a->handle == handles[r - WAIT_OBJECT_0]) {
        unlink_armed(&waits, w);
        w->armed = FALSE;
        w->result = WAIT_OBJECT_0;
        enqueue(w);
        break;
      }
    pvx_unlock(&pool_lock);
  }
}

EXPORT PTP_WAIT WINAPI CreateThreadpoolWait(PTP_WAIT_CALLBACK fn, PVOID context, PTP_CALLBACK_ENVIRON env) {
  (void)env;
  return (PTP_WAIT) new_object(WAIT, (PVOID)fn, context);
}

/* A NULL handle stops the wait; a NULL timeout waits forever. One wait thread
 * waits on at most MAX_WAITS handles at a time; a wait beyond them waits its
 * turn. */
EXPORT void WINAPI SetThreadpoolWait(PTP_WAIT wait, HANDLE handle, PFILETIME timeout) {
  struct tp_object *w = (struct tp_object *)wait;
  pvx_lock(&pool_lock);
  if (!wait_wakeup) wait_wakeup = CreateEventW(NULL, FALSE, FALSE, NULL);
  if (w->armed) unlink_armed(&waits, w);
  w->armed = handle != NULL;
  if (w->armed) {
    w->handle = handle;
    w->timeout_infinite = timeout == NULL;
    if (timeout) w->due = due_tick(timeout);
    w->next_armed = waits;
    waits = w;
    if (!wait_thread_started) {
      wait_thread_started = TRUE;
      start_thread(wait_thread);
    }
  }
  pvx_unlock(&pool_lock);
  SetEvent(wait_wakeup);
}

EXPORT void WINAPI WaitForThreadpoolWaitCallbacks(PTP_WAIT wait, BOOL cancel) {
  wait_for_callbacks((struct tp_object *)wait, cancel);
}

EXPORT void WINAPI CloseThreadpoolWait(PTP_WAIT wait) {
  SetThreadpoolWait(wait, NULL, NULL);
  close_object((struct tp_object *)wait);
}

EXPORT void WINAPI SetEventWhenCallbackReturns(PTP_CALLBACK_INSTANCE i, HANDLE event) {
  ((struct instance *)i)->event = event;
}

EXPORT void WINAPI ReleaseSemaphoreWhenCallbackReturns(PTP_CALLBACK_INSTANCE i, HANDLE semaphore, DWORD count) {
  ((struct instance *)i)->semaphore = semaphore;
  ((struct instance *)i)->semaphore_count = (LONG)count;
}

EXPORT void WINAPI ReleaseMutexWhenCallbackReturns(PTP_CALLBACK_INSTANCE i, HANDLE mutex) {
  ((struct instance *)i)->mutex = mutex;
}

EXPORT void WINAPI LeaveCriticalSectionWhenCallbackReturns(PTP_CALLBACK_INSTANCE i, PCRITICAL_SECTION section) {
  ((struct instance *)i)->section = section;
}

EXPORT void WINAPI FreeLibraryWhenCallbackReturns(PTP_CALLBACK_INSTANCE i, HMODULE library) {
  ((struct instance *)i)->library = library;
}

/* Whether the pool has a thread to spare for the others while this callback runs long. */
EXPORT BOOL WINAPI CallbackMayRunLong(PTP_CALLBACK_INSTANCE i) {
  (void)i;
  pvx_lock(&pool_lock);
  BOOL spare = idle_workers > 0 || workers < MAX_WORKERS;
  pvx_unlock(&pool_lock);
  return spare;
}
