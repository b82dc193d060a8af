/* Threads and the process by handle and by pseudo-handle: GetThreadId and GetProcessId, a thread's
 * priority and the process's priority class read back as set, affinity to the one processor, waits on
 * GetCurrentProcess() and GetCurrentThread() (never signalled while the caller runs), GetExitCodeThread
 * of GetCurrentThread(), and the handles and values each call refuses. Thread ids differ from run to run,
 * so only comparisons of them are printed. */
#include "common.h"

static HANDLE started, finish;

static DWORD WINAPI worker(LPVOID param) {
  (void)param;
  SetEvent(started);
  WaitForSingleObject(finish, INFINITE);
  return 3;
}

static void priority(const char *what, HANDLE thread) { value(what, GetThreadPriority(thread)); }

int main(void) {
  HANDLE me = GetCurrentThread(), process = GetCurrentProcess();
  value("GetThreadId(GetCurrentThread()) is GetCurrentThreadId()", GetThreadId(me) == GetCurrentThreadId());
  value("GetProcessId(GetCurrentProcess()) is GetCurrentProcessId()", GetProcessId(process) == GetCurrentProcessId());
  value("GetProcessIdOfThread(GetCurrentThread()) too", GetProcessIdOfThread(me) == GetCurrentProcessId());
  started = CreateEventW(NULL, FALSE, FALSE, NULL);
  finish = CreateEventW(NULL, TRUE, FALSE, NULL);
  DWORD id = 0;
  HANDLE t = CreateThread(NULL, 0, worker, NULL, 0, &id);
  WaitForSingleObject(started, INFINITE);
  value("GetThreadId of CreateThread's handle is its id", GetThreadId(t) == id);
  value("and not the caller's", GetThreadId(t) != GetCurrentThreadId());
  value("GetProcessIdOfThread of it is this process", GetProcessIdOfThread(t) == GetCurrentProcessId());
  SetLastError(0);
  value("GetThreadId of an event", GetThreadId(started));
  value("  last error", GetLastError());
  SetLastError(0);
  value("GetProcessId of a thread", GetProcessId(t));
  value("  last error", GetLastError());

  priority("the caller's priority", me);
  result("SetThreadPriority(GetCurrentThread(), ABOVE_NORMAL)", SetThreadPriority(me, THREAD_PRIORITY_ABOVE_NORMAL));
  priority("  read back", me);
  result("SetThreadPriority(worker, LOWEST)", SetThreadPriority(t, THREAD_PRIORITY_LOWEST));
  priority("  read back", t);
  priority("  the caller's is still", me);
  result("SetThreadPriority(worker, TIME_CRITICAL)", SetThreadPriority(t, THREAD_PRIORITY_TIME_CRITICAL));
  priority("  read back", t);
  result("SetThreadPriority(worker, IDLE)", SetThreadPriority(t, THREAD_PRIORITY_IDLE));
  priority("  read back", t);
  result("SetThreadPriority(worker, 3)", SetThreadPriority(t, 3));
  result("SetThreadPriority(worker, -7)", SetThreadPriority(t, -7));
  priority("  still", t);
  result("SetThreadPriority(worker, NORMAL)", SetThreadPriority(t, THREAD_PRIORITY_NORMAL));
  priority("  read back", t);
  result("SetThreadPriority of an event", SetThreadPriority(started, THREAD_PRIORITY_NORMAL));
  SetLastError(0);
  value("GetThreadPriority of an event", GetThreadPriority(started));
  value("  last error", GetLastError());
  result("SetThreadPriority(GetCurrentThread(), NORMAL)", SetThreadPriority(me, THREAD_PRIORITY_NORMAL));

  value("GetPriorityClass", GetPriorityClass(process));
  result("SetPriorityClass BELOW_NORMAL", SetPriorityClass(process, BELOW_NORMAL_PRIORITY_CLASS));
  value("  read back", GetPriorityClass(process));
  result("SetPriorityClass HIGH", SetPriorityClass(process, HIGH_PRIORITY_CLASS));
  value("  read back", GetPriorityClass(process));
  result("SetPriorityClass 0x1234", SetPriorityClass(process, 0x1234));
  result("SetPriorityClass of a thread", SetPriorityClass(t, NORMAL_PRIORITY_CLASS));
  result("SetPriorityClass NORMAL", SetPriorityClass(process, NORMAL_PRIORITY_CLASS));

  DWORD_PTR process_mask = 0, system_mask = 0;
  result("GetProcessAffinityMask", GetProcessAffinityMask(process, &process_mask, &system_mask));
  value("  processor 0 is in both", (process_mask & 1) && (system_mask & 1));
  SetLastError(0);
  value("SetThreadAffinityMask(worker, 1) answers a mask with processor 0", SetThreadAffinityMask(t, 1) & 1);
  SetLastError(0);
  value("SetThreadAffinityMask(worker, 0)", SetThreadAffinityMask(t, 0));
  value("  last error", GetLastError());
  SetLastError(0);
  value("SetThreadAffinityMask of an event", SetThreadAffinityMask(started, 1));
  value("  last error", GetLastError());

  value("WaitForSingleObject(GetCurrentThread(), 0)", WaitForSingleObject(me, 0));
  value("WaitForSingleObject(GetCurrentProcess(), 20)", WaitForSingleObject(process, 20));
  HANDLE both[2] = {process, started};
  SetEvent(started);
  value("WaitForMultipleObjects(process, a set event) for any", WaitForMultipleObjects(2, both, FALSE, 0));
  SetEvent(started);
  value("for all", WaitForMultipleObjects(2, both, TRUE, 0));
  value("  the event is still set", WaitForSingleObject(started, 0));
  DWORD code = 0;
  result("GetExitCodeThread(GetCurrentThread())", GetExitCodeThread(me, &code));
  value("  code", code);

  SetEvent(finish);
  WaitForSingleObject(t, INFINITE);
  value("GetThreadId of the ended thread is still its id", GetThreadId(t) == id);
  result("GetExitCodeThread of it", GetExitCodeThread(t, &code));
  value("  code", code);
  CloseHandle(t);
  return 0;
}
