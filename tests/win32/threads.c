/* Threads: parallel work over shared memory, parameters, thread ids, exit
 * codes (returned, ExitThread, STILL_ACTIVE), waiting on exited threads,
 * CREATE_SUSPENDED and ResumeThread, threads starting threads, and threads
 * still blocked when the process exits. Only the main thread prints, and only
 * once the threads it reports on are parked on an event or gone, so the
 * output is the same on any schedule. */
#include "common.h"

#define ITEMS 1000000

struct part {
  const DWORD *data;
  DWORD *tags;
  DWORD lo, hi, tag;
  ULONGLONG sum;
  DWORD id;
};

static DWORD WINAPI sum_part(LPVOID param) {
  struct part *p = param;
  ULONGLONG s = 0;
  for (DWORD i = p->lo; i < p->hi; i++) s += p->data[i];
  p->sum = s;
  for (DWORD i = p->lo; i < p->hi; i++) p->tags[i] = p->tag;
  p->id = GetCurrentThreadId();
  return p->hi - p->lo;
}

/* Splits [0, ITEMS) over `count` threads; the ranges are uneven when count does not divide ITEMS. */
static void sum_with(DWORD count, const DWORD *data, DWORD *tags) {
  struct part parts[8];
  HANDLE threads[8];
  DWORD ids[8];
  out("sum of 0..");
  out_i(ITEMS - 1);
  out(" over ");
  out_i(count);
  out(" threads\n");
  BOOL created = TRUE;
  for (DWORD k = 0; k < count; k++) {
    parts[k].data = data;
    parts[k].tags = tags;
    parts[k].lo = (DWORD)((ULONGLONG)ITEMS * k / count);
    parts[k].hi = (DWORD)((ULONGLONG)ITEMS * (k + 1) / count);
    parts[k].tag = k + 1;
    parts[k].sum = 0;
    parts[k].id = 0;
    threads[k] = CreateThread(NULL, 0, sum_part, &parts[k], 0, &ids[k]);
    created &= threads[k] != NULL;
  }
  result("  CreateThread each", created);
  value("WaitForMultipleObjects all threads", WaitForMultipleObjects(count, threads, TRUE, INFINITE));
  ULONGLONG total = 0, items = 0;
  BOOL ids_match = TRUE, ids_distinct = TRUE, codes_ok = TRUE;
  for (DWORD k = 0; k < count; k++) {
    DWORD code = 0;
    codes_ok &= GetExitCodeThread(threads[k], &code) && code == parts[k].hi - parts[k].lo;
    items += code;
    total += parts[k].sum;
    ids_match &= parts[k].id == ids[k] && ids[k] != 0;
    ids_distinct &= ids[k] != GetCurrentThreadId();
    for (DWORD j = 0; j < k; j++) ids_distinct &= ids[j] != ids[k];
    CloseHandle(threads[k]);
  }
  value("total", (long long)total);
  value("total is n(n-1)/2", total == (ULONGLONG)ITEMS * (ITEMS - 1) / 2);
  value("exit codes are the range lengths and add up to n", codes_ok && items == ITEMS);
  value("GetCurrentThreadId in each thread is the id CreateThread gave", ids_match);
  value("thread ids are distinct from each other and from main's", ids_distinct);
  /* The threads' writes must all be visible to main once the wait returns. */
  BOOL tagged = TRUE;
  for (DWORD k = 0; k < count; k++) {
    for (DWORD i = parts[k].lo; i < parts[k].hi; i++) tagged &= tags[i] == k + 1;
  }
  value("every element carries the tag of the thread whose range it is in", tagged);
}

static HANDLE go;

static DWORD WINAPI returns_42(LPVOID param) {
  WaitForSingleObject(go, INFINITE);
  return 42;
}

static void leave_early(DWORD code) {
  ExitThread(code);
}

static volatile LONG after_exit_thread;

static DWORD WINAPI exits_7(LPVOID param) {
  WaitForSingleObject(go, INFINITE);
  leave_early(7);
  after_exit_thread = 1;
  return 8;
}

/* A thread may legitimately end with the code that also means "still running". */
static DWORD WINAPI returns_still_active(LPVOID param) {
  return STILL_ACTIVE;
}

static DWORD WINAPI returns_param(LPVOID param) {
  return (DWORD)(uintptr_t)param;
}

static volatile LONG resumed_ran;

static DWORD WINAPI set_flag(LPVOID param) {
  resumed_ran = 1;
  return 5;
}

/* Runs on a thread of its own, so thread creation from a non-main thread is covered. */
static DWORD WINAPI start_child(LPVOID param) {
  HANDLE child = CreateThread(NULL, 0, returns_param, (LPVOID)(uintptr_t)1000, 0, NULL);
  if (child == NULL) return 1;
  if (WaitForSingleObject(child, INFINITE) != WAIT_OBJECT_0) return 2;
  DWORD code = 0;
  GetExitCodeThread(child, &code);
  CloseHandle(child);
  return code + 1;
}

/* Each frame keeps its buffer live across the call, so the recursion really uses the stack. */
static DWORD deep(DWORD depth) {
  volatile char pad[200];
  pad[0] = (char)depth;
  pad[199] = (char)(depth >> 8);
  if (depth == 0) return 0;
  DWORD below = deep(depth - 1);
  return below + (pad[0] == (char)depth && pad[199] == (char)(depth >> 8));
}

static DWORD WINAPI use_stack(LPVOID param) {
  return deep((DWORD)(uintptr_t)param);
}

static HANDLE done;

static DWORD WINAPI signal_done(LPVOID param) {
  WaitForSingleObject(go, INFINITE);
  SetEvent(done);
  return 0;
}

static HANDLE never;

static DWORD WINAPI block_forever(LPVOID param) {
  WaitForSingleObject(never, INFINITE);
  return 0;
}

static volatile LONG spin_stop, spins;

/* Computes without a call, so nothing but a kick takes its vCPU out of the guest. */
static DWORD WINAPI spin(LPVOID param) {
  (void)param;
  while (!spin_stop) spins++;
  return 0;
}

int main(void) {
  DWORD *data = VirtualAlloc(NULL, 2 * ITEMS * sizeof(DWORD), MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  result("VirtualAlloc the array", data != NULL);
  DWORD *tags = data + ITEMS;
  for (DWORD i = 0; i < ITEMS; i++) data[i] = i;
  sum_with(4, data, tags);
  sum_with(8, data, tags);
  sum_with(3, data, tags);
  VirtualFree(data, 0, MEM_RELEASE);

  DWORD code;
  go = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE t[2];
  t[0] = CreateThread(NULL, 0, returns_42, NULL, 0, NULL);
  result("CreateThread returning 42", t[0] != NULL);
  t[1] = CreateThread(NULL, 0, exits_7, NULL, 0, NULL);
  result("CreateThread calling ExitThread(7)", t[1] != NULL);
  code = 0;
  result("GetExitCodeThread while blocked", GetExitCodeThread(t[0], &code));
  value("exit code (STILL_ACTIVE)", code);
  code = 0;
  result("GetExitCodeThread of the other while blocked", GetExitCodeThread(t[1], &code));
  value("exit code (STILL_ACTIVE)", code);
  value("WaitForSingleObject on a blocked thread, timeout 0", WaitForSingleObject(t[0], 0));
  value("WaitForMultipleObjects any of two blocked threads, timeout 10", WaitForMultipleObjects(2, t, FALSE, 10));
  result("SetEvent go", SetEvent(go));
  value("WaitForMultipleObjects all", WaitForMultipleObjects(2, t, TRUE, INFINITE));
  result("GetExitCodeThread after return", GetExitCodeThread(t[0], &code));
  value("exit code", code);
  result("GetExitCodeThread after ExitThread", GetExitCodeThread(t[1], &code));
  value("exit code", code);
  value("code after ExitThread did not run", after_exit_thread);
  value("WaitForSingleObject on an exited thread, timeout 0", WaitForSingleObject(t[0], 0));
  value("again", WaitForSingleObject(t[0], 0));
  value("again, INFINITE", WaitForSingleObject(t[0], INFINITE));
  value("WaitForMultipleObjects any of two exited threads", WaitForMultipleObjects(2, t, FALSE, 0));
  CloseHandle(t[0]);
  CloseHandle(t[1]);

  HANDLE h = CreateThread(NULL, 0, returns_still_active, NULL, 0, NULL);
  value("WaitForSingleObject on a thread returning STILL_ACTIVE", WaitForSingleObject(h, INFINITE));
  result("GetExitCodeThread", GetExitCodeThread(h, &code));
  value("exit code", code);
  CloseHandle(h);

  h = CreateThread(NULL, 0, returns_param, (LPVOID)(uintptr_t)0xC0FFEEu, 0, NULL);
  WaitForSingleObject(h, INFINITE);
  GetExitCodeThread(h, &code);
  value("the parameter arrives and comes back as the exit code", code == 0xC0FFEEu);
  CloseHandle(h);
  h = CreateThread(NULL, 0, returns_param, (LPVOID)(uintptr_t)0xFFFFFFFFu, 0, NULL);
  WaitForSingleObject(h, INFINITE);
  GetExitCodeThread(h, &code);
  value("exit code 0xFFFFFFFF", code);
  CloseHandle(h);

  DWORD id = 0;
  h = CreateThread(NULL, 0, set_flag, NULL, CREATE_SUSPENDED, &id);
  result("CreateThread CREATE_SUSPENDED", h != NULL);
  value("thread id given", id != 0);
  Sleep(50);
  value("flag after Sleep(50)", resumed_ran);
  GetExitCodeThread(h, &code);
  value("exit code (STILL_ACTIVE)", code);
  value("WaitForSingleObject on the suspended thread, timeout 20", WaitForSingleObject(h, 20));
  value("ResumeThread (previous suspend count)", ResumeThread(h));
  value("WaitForSingleObject INFINITE", WaitForSingleObject(h, INFINITE));
  value("flag", resumed_ran);
  GetExitCodeThread(h, &code);
  value("exit code", code);
  CloseHandle(h);

  result("ResetEvent go", ResetEvent(go));
  h = CreateThread(NULL, 0, returns_42, NULL, 0, NULL);
  value("ResumeThread on a running thread", ResumeThread(h));
  value("ResumeThread on it again", ResumeThread(h));
  SetEvent(go);
  WaitForSingleObject(h, INFINITE);
  GetExitCodeThread(h, &code);
  value("it still ran to its end, exit code", code);
  CloseHandle(h);

  h = CreateThread(NULL, 0, start_child, NULL, 0, NULL);
  WaitForSingleObject(h, INFINITE);
  GetExitCodeThread(h, &code);
  value("a thread started by a thread, exit code + 1", code);
  CloseHandle(h);

  h = CreateThread(NULL, 0, use_stack, (LPVOID)(uintptr_t)1000, 0, NULL);
  WaitForSingleObject(h, INFINITE);
  GetExitCodeThread(h, &code);
  value("frames of 200+ bytes intact on a thread's default stack", code);
  CloseHandle(h);

  /* A thread handle is only a reference: closing it leaves the thread running. */
  ResetEvent(go);
  done = CreateEventW(NULL, FALSE, FALSE, NULL);
  h = CreateThread(NULL, 0, signal_done, NULL, 0, NULL);
  result("CloseHandle on a running thread", CloseHandle(h));
  SetEvent(go);
  value("the thread still runs and signals, wait", WaitForSingleObject(done, INFINITE));

  code = 1;
  result("GetExitCodeThread on a closed handle", GetExitCodeThread(h, &code));
  value("WaitForSingleObject on a closed thread handle", WaitForSingleObject(h, 0));
  value("last error", GetLastError());
  value("ResumeThread on a closed handle", ResumeThread(h));
  value("last error", GetLastError());
  /* An event is a handle of the wrong type for thread calls. */
  value("ResumeThread on an event", ResumeThread(done));
  value("last error", GetLastError());
  result("GetExitCodeThread on an event", GetExitCodeThread(done, &code));
  CloseHandle(done);
  CloseHandle(go);

  /* FlushProcessWriteBuffers waits for every other thread to leave the guest once, a spinning one too. */
  HANDLE spinner = CreateThread(NULL, 0, spin, NULL, 0, NULL);
  while (!spins) Sleep(0);
  for (int i = 0; i < 20; i++) FlushProcessWriteBuffers();
  result("FlushProcessWriteBuffers 20 times beside a spinning thread", TRUE);
  spin_stop = 1;
  value("the spinner, stopped, ends", WaitForSingleObject(spinner, INFINITE));
  CloseHandle(spinner);

  /* Returning from main ends the process even with threads still waiting. */
  never = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE parked[2];
  parked[0] = CreateThread(NULL, 0, block_forever, NULL, 0, NULL);
  parked[1] = CreateThread(NULL, 0, block_forever, NULL, CREATE_SUSPENDED, NULL);
  result("two threads left blocked and suspended at exit", parked[0] != NULL && parked[1] != NULL);
  return 0;
}
