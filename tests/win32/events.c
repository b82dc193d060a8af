/* Events and waits: timeouts, manual- and auto-reset events, how many waiters
 * one SetEvent releases, WaitForMultipleObjects any/all (lowest index wins,
 * a failed wait-all consumes nothing, 64 handles), bad handles, and two
 * producer/consumer hand-offs built on events. Only the main thread prints. */
#include "common.h"

static LONGLONG elapsed_ms(LARGE_INTEGER since) {
  LARGE_INTEGER now, f;
  QueryPerformanceCounter(&now);
  QueryPerformanceFrequency(&f);
  return (now.QuadPart - since.QuadPart) * 1000 / f.QuadPart;
}

/* One slot passed back and forth: "empty" and "full" are auto-reset, so each
 * SetEvent lets exactly one side take exactly one turn. */
#define HANDOFF_ITEMS 1000
static HANDLE slot_empty, slot_full;
static volatile LONG slot;

static DWORD WINAPI handoff_producer(LPVOID param) {
  for (LONG i = 1; i <= HANDOFF_ITEMS; i++) {
    WaitForSingleObject(slot_empty, INFINITE);
    slot = i;
    SetEvent(slot_full);
  }
  return 0;
}

struct handoff_result {
  LONGLONG sum;
  LONG count, in_order;
};

static DWORD WINAPI handoff_consumer(LPVOID param) {
  struct handoff_result *r = param;
  r->in_order = 1;
  for (LONG i = 1; i <= HANDOFF_ITEMS; i++) {
    WaitForSingleObject(slot_full, INFINITE);
    LONG v = slot;
    r->in_order &= v == i;
    r->sum += v;
    r->count++;
    SetEvent(slot_empty);
  }
  return 0;
}

/* A bounded ring shared by two producers and two consumers. The events only
 * say "look again": every side re-checks the count under the lock, and a side
 * that leaves work behind passes the signal on, so no wakeup is lost. */
#define RING 8
#define PER_PRODUCER 1000
#define STOP (-1)
static CRITICAL_SECTION ring_lock;
static LONG ring[RING];
static DWORD ring_head, ring_count;
static HANDLE not_empty, not_full;

static void ring_put(LONG v) {
  for (;;) {
    EnterCriticalSection(&ring_lock);
    if (ring_count < RING) {
      ring[(ring_head + ring_count) % RING] = v;
      ring_count++;
      BOOL room = ring_count < RING;
      LeaveCriticalSection(&ring_lock);
      SetEvent(not_empty);
      if (room) SetEvent(not_full);
      return;
    }
    LeaveCriticalSection(&ring_lock);
    WaitForSingleObject(not_full, INFINITE);
  }
}

static LONG ring_take(void) {
  for (;;) {
    EnterCriticalSection(&ring_lock);
    if (ring_count > 0) {
      LONG v = ring[ring_head];
      ring_head = (ring_head + 1) % RING;
      ring_count--;
      BOOL more = ring_count > 0;
      LeaveCriticalSection(&ring_lock);
      SetEvent(not_full);
      if (more) SetEvent(not_empty);
      return v;
    }
    LeaveCriticalSection(&ring_lock);
    WaitForSingleObject(not_empty, INFINITE);
  }
}

static DWORD WINAPI ring_producer(LPVOID param) {
  LONG base = (LONG)(uintptr_t)param;
  for (LONG i = 1; i <= PER_PRODUCER; i++) ring_put(base + i);
  return 0;
}

struct ring_result {
  LONGLONG sum;
  LONG count;
};

static DWORD WINAPI ring_consumer(LPVOID param) {
  struct ring_result *r = param;
  for (;;) {
    LONG v = ring_take();
    if (v == STOP) return 0;
    r->sum += v;
    r->count++;
  }
}

static HANDLE gate;
static volatile LONG passed;

static DWORD WINAPI pass_gate(LPVOID param) {
  WaitForSingleObject(gate, INFINITE);
  InterlockedIncrement(&passed);
  return 0;
}

int main(void) {
  LARGE_INTEGER t0;
  HANDLE e = CreateEventW(NULL, TRUE, FALSE, NULL);
  result("CreateEventW manual-reset, unsignalled", e != NULL);
  value("WaitForSingleObject timeout 0", WaitForSingleObject(e, 0));
  QueryPerformanceCounter(&t0);
  value("WaitForSingleObject timeout 50", WaitForSingleObject(e, 50));
  value("waited at least 40 ms by QueryPerformanceCounter", elapsed_ms(t0) >= 40);
  result("SetEvent", SetEvent(e));
  value("WaitForSingleObject INFINITE", WaitForSingleObject(e, INFINITE));
  value("again, timeout 0 (manual-reset stays signalled)", WaitForSingleObject(e, 0));
  value("again", WaitForSingleObject(e, 0));
  result("SetEvent while signalled", SetEvent(e));
  result("ResetEvent", ResetEvent(e));
  value("WaitForSingleObject timeout 0", WaitForSingleObject(e, 0));
  result("ResetEvent while unsignalled", ResetEvent(e));
  CloseHandle(e);

  e = CreateEventW(NULL, TRUE, TRUE, NULL);
  result("CreateEventW manual-reset, signalled", e != NULL);
  value("WaitForSingleObject timeout 0", WaitForSingleObject(e, 0));
  CloseHandle(e);

  HANDLE a = CreateEventW(NULL, FALSE, TRUE, NULL);
  result("CreateEventW auto-reset, signalled", a != NULL);
  value("WaitForSingleObject timeout 0", WaitForSingleObject(a, 0));
  value("again (the first wait consumed it)", WaitForSingleObject(a, 0));
  SetEvent(a);
  SetEvent(a);
  value("after SetEvent twice, wait", WaitForSingleObject(a, 0));
  value("again (signals do not count up)", WaitForSingleObject(a, 0));
  SetEvent(a);
  result("ResetEvent on a signalled auto-reset event", ResetEvent(a));
  value("WaitForSingleObject timeout 0", WaitForSingleObject(a, 0));
  CloseHandle(a);

  /* Whether the waiters are already blocked when SetEvent comes or only get
   * there later, an auto-reset event lets exactly one of them through. */
  gate = CreateEventW(NULL, FALSE, FALSE, NULL);
  HANDLE w[3];
  w[0] = CreateThread(NULL, 0, pass_gate, NULL, 0, NULL);
  w[1] = CreateThread(NULL, 0, pass_gate, NULL, 0, NULL);
  Sleep(20);
  result("SetEvent auto-reset with two waiters", SetEvent(gate));
  DWORD first = WaitForMultipleObjects(2, w, FALSE, INFINITE);
  value("one waiter got through", first <= WAIT_OBJECT_0 + 1);
  value("passed", passed);
  value("the other is still blocked, timeout 50", WaitForSingleObject(w[1 - (first - WAIT_OBJECT_0)], 50));
  value("passed", passed);
  SetEvent(gate);
  value("after a second SetEvent, wait for both", WaitForMultipleObjects(2, w, TRUE, INFINITE));
  value("passed", passed);
  value("the event was consumed again", WaitForSingleObject(gate, 0));
  CloseHandle(w[0]);
  CloseHandle(w[1]);
  CloseHandle(gate);

  gate = CreateEventW(NULL, TRUE, FALSE, NULL);
  passed = 0;
  for (int i = 0; i < 3; i++) w[i] = CreateThread(NULL, 0, pass_gate, NULL, 0, NULL);
  Sleep(20);
  result("SetEvent manual-reset with three waiters", SetEvent(gate));
  value("wait for all three", WaitForMultipleObjects(3, w, TRUE, INFINITE));
  value("passed", passed);
  value("the event is still signalled", WaitForSingleObject(gate, 0));
  for (int i = 0; i < 3; i++) CloseHandle(w[i]);
  CloseHandle(gate);

  HANDLE m[3];
  for (int i = 0; i < 3; i++) m[i] = CreateEventW(NULL, TRUE, FALSE, NULL);
  value("wait-any, none signalled, timeout 0", WaitForMultipleObjects(3, m, FALSE, 0));
  QueryPerformanceCounter(&t0);
  value("wait-any, none signalled, timeout 50", WaitForMultipleObjects(3, m, FALSE, 50));
  value("waited at least 40 ms by QueryPerformanceCounter", elapsed_ms(t0) >= 40);
  SetEvent(m[2]);
  value("wait-any, #2 signalled", WaitForMultipleObjects(3, m, FALSE, 0));
  SetEvent(m[1]);
  value("wait-any, #1 and #2 signalled (lowest index wins)", WaitForMultipleObjects(3, m, FALSE, INFINITE));
  value("wait-all, #0 unsignalled, timeout 0", WaitForMultipleObjects(3, m, TRUE, 0));
  value("wait-all, #0 unsignalled, timeout 20", WaitForMultipleObjects(3, m, TRUE, 20));
  SetEvent(m[0]);
  value("wait-all, all signalled", WaitForMultipleObjects(3, m, TRUE, 0));
  for (int i = 0; i < 3; i++) CloseHandle(m[i]);

  /* Auto-reset events show which objects a wait consumed. */
  for (int i = 0; i < 3; i++) m[i] = CreateEventW(NULL, FALSE, FALSE, NULL);
  SetEvent(m[1]);
  SetEvent(m[2]);
  value("auto-reset wait-any, #1 and #2 signalled", WaitForMultipleObjects(3, m, FALSE, 0));
  value("again (#1 consumed, #2 left)", WaitForMultipleObjects(3, m, FALSE, 0));
  value("again (both consumed)", WaitForMultipleObjects(3, m, FALSE, 0));
  SetEvent(m[0]);
  SetEvent(m[1]);
  value("auto-reset wait-all, #2 unsignalled, timeout 0", WaitForMultipleObjects(3, m, TRUE, 0));
  value("wait-all, #2 unsignalled, timeout 20", WaitForMultipleObjects(3, m, TRUE, 20));
  value("#0 not consumed by the failed wait-all", WaitForSingleObject(m[0], 0));
  value("#1 not consumed by the failed wait-all", WaitForSingleObject(m[1], 0));
  SetEvent(m[0]);
  SetEvent(m[1]);
  SetEvent(m[2]);
  value("auto-reset wait-all, all signalled", WaitForMultipleObjects(3, m, TRUE, 0));
  value("wait-any after (wait-all consumed all three)", WaitForMultipleObjects(3, m, FALSE, 0));

  HANDLE many[65];
  for (int i = 0; i < 65; i++) many[i] = CreateEventW(NULL, TRUE, FALSE, NULL);
  SetEvent(many[63]);
  value("wait-any of 64, only #63 signalled", WaitForMultipleObjects(64, many, FALSE, 0));
  value("wait-all of 64, only #63 signalled", WaitForMultipleObjects(64, many, TRUE, 0));
  for (int i = 0; i < 65; i++) SetEvent(many[i]);
  value("wait-all of 64, all signalled", WaitForMultipleObjects(64, many, TRUE, 0));
  value("wait-any of 65", WaitForMultipleObjects(65, many, FALSE, 0));
  value("last error", GetLastError());
  for (int i = 0; i < 65; i++) CloseHandle(many[i]);

  result("CloseHandle event", CloseHandle(m[2]));
  value("WaitForSingleObject on the closed handle", WaitForSingleObject(m[2], 0));
  value("last error", GetLastError());
  value("wait-any with a closed handle among open ones", WaitForMultipleObjects(3, m, FALSE, 0));
  value("last error", GetLastError());
  result("SetEvent on the closed handle", SetEvent(m[2]));
  result("ResetEvent on the closed handle", ResetEvent(m[2]));
  result("CloseHandle it again", CloseHandle(m[2]));
  value("WaitForSingleObject on NULL", WaitForSingleObject(NULL, 0));
  value("last error", GetLastError());
  CloseHandle(m[0]);
  CloseHandle(m[1]);

  slot_empty = CreateEventW(NULL, FALSE, TRUE, NULL);
  slot_full = CreateEventW(NULL, FALSE, FALSE, NULL);
  struct handoff_result hr = { 0, 0, 0 };
  HANDLE pc[2];
  pc[0] = CreateThread(NULL, 0, handoff_producer, NULL, 0, NULL);
  pc[1] = CreateThread(NULL, 0, handoff_consumer, &hr, 0, NULL);
  out("one-slot hand-off of 1..1000 between two threads\n");
  value("wait for both", WaitForMultipleObjects(2, pc, TRUE, INFINITE));
  value("items", hr.count);
  value("sum", hr.sum);
  value("arrived in order", hr.in_order);
  CloseHandle(pc[0]);
  CloseHandle(pc[1]);
  CloseHandle(slot_empty);
  CloseHandle(slot_full);

  InitializeCriticalSection(&ring_lock);
  not_empty = CreateEventW(NULL, FALSE, FALSE, NULL);
  not_full = CreateEventW(NULL, FALSE, FALSE, NULL);
  struct ring_result rr[2] = { { 0, 0 }, { 0, 0 } };
  HANDLE producers[2], consumers[2];
  producers[0] = CreateThread(NULL, 0, ring_producer, (LPVOID)(uintptr_t)0, 0, NULL);
  producers[1] = CreateThread(NULL, 0, ring_producer, (LPVOID)(uintptr_t)1000000, 0, NULL);
  consumers[0] = CreateThread(NULL, 0, ring_consumer, &rr[0], 0, NULL);
  consumers[1] = CreateThread(NULL, 0, ring_consumer, &rr[1], 0, NULL);
  out("8-slot ring, two producers of 1000 items each, two consumers\n");
  value("wait for the producers", WaitForMultipleObjects(2, producers, TRUE, INFINITE));
  ring_put(STOP);
  ring_put(STOP);
  value("wait for the consumers", WaitForMultipleObjects(2, consumers, TRUE, INFINITE));
  value("items", rr[0].count + rr[1].count);
  value("sum", rr[0].sum + rr[1].sum);
  value("sum is 2 * (1000 * 1001 / 2) + 1000 * 1000000", rr[0].sum + rr[1].sum == 2 * 500500 + 1000000000LL);
  value("ring left empty", ring_count);
  for (int i = 0; i < 2; i++) {
    CloseHandle(producers[i]);
    CloseHandle(consumers[i]);
  }
  CloseHandle(not_empty);
  CloseHandle(not_full);
  DeleteCriticalSection(&ring_lock);

  Sleep(0);
  out("Sleep(0) returned\n");
  return 0;
}
