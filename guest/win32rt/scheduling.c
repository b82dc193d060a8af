/* What an app asks of the scheduler: thread priorities, the process's priority
 * class, and processor affinity. The host schedules every vCPU thread alike, so
 * none of it changes how the app runs; each request is still checked as Windows
 * checks it, and a priority or class read back is the one last set. The app
 * sees one processor (GetSystemInfo), so the only affinity is processor 0. */
#include "pvxrt.h"

/* Threads whose priority is not normal, by thread id. Past 64, the longest-kept entry gives way: at most 32
 * threads live at once, so only a thread that has ended can lose its entry. */
#define PRIORITY_ENTRIES 64
static struct { DWORD thread_id; int level; } priorities[PRIORITY_ENTRIES];
static unsigned next_evicted;
static struct pvx_lock priorities_lock;
static DWORD priority_class = NORMAL_PRIORITY_CLASS;

static BOOL valid_level(int level) {
  return (level >= THREAD_PRIORITY_LOWEST && level <= THREAD_PRIORITY_HIGHEST) || level == THREAD_PRIORITY_IDLE ||
         level == THREAD_PRIORITY_TIME_CRITICAL;
}

EXPORT BOOL WINAPI SetThreadPriority(HANDLE thread, int level) {
  DWORD id = GetThreadId(thread);
  if (!id) return FALSE;
  /* Background mode only asks for lower I/O and memory priority, and only of the calling thread. */
  if (level == THREAD_MODE_BACKGROUND_BEGIN || level == THREAD_MODE_BACKGROUND_END) {
    if (thread == PSEUDO_THREAD || id == GetCurrentThreadId()) return TRUE;
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (!valid_level(level)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  pvx_lock(&priorities_lock);
  int found = -1, empty = -1;
  for (int i = 0; i < PRIORITY_ENTRIES; i++) {
    if (priorities[i].thread_id == id) found = i;
    else if (!priorities[i].thread_id && empty < 0) empty = i;
  }
  if (found < 0 && level != THREAD_PRIORITY_NORMAL) {
    found = empty >= 0 ? empty : (int)(next_evicted++ % PRIORITY_ENTRIES);
    priorities[found].thread_id = id;
  }
  if (found >= 0 && level == THREAD_PRIORITY_NORMAL) priorities[found].thread_id = 0;
  else if (found >= 0) priorities[found].level = level;
  pvx_unlock(&priorities_lock);
  return TRUE;
}

EXPORT int WINAPI GetThreadPriority(HANDLE thread) {
  DWORD id = GetThreadId(thread);
  if (!id) return THREAD_PRIORITY_ERROR_RETURN;
  int level = THREAD_PRIORITY_NORMAL;
  pvx_lock(&priorities_lock);
  for (int i = 0; i < PRIORITY_ENTRIES; i++)
    if (priorities[i].thread_id == id) level = priorities[i].level;
  pvx_unlock(&priorities_lock);
  return level;
}

EXPORT DWORD WINAPI GetPriorityClass(HANDLE process) { return pvx_this_process(process) ? priority_class : 0; }

EXPORT BOOL WINAPI SetPriorityClass(HANDLE process, DWORD class) {
  if (!pvx_this_process(process)) return FALSE;
  switch (class) {
  case PROCESS_MODE_BACKGROUND_BEGIN:
  case PROCESS_MODE_BACKGROUND_END:
    return TRUE;
  /* Windows gives a process without the privilege to raise its base priority HIGH for REALTIME. */
  case REALTIME_PRIORITY_CLASS:
    class = HIGH_PRIORITY_CLASS;
    /* fall through */
  case IDLE_PRIORITY_CLASS:
  case BELOW_NORMAL_PRIORITY_CLASS:
  case NORMAL_PRIORITY_CLASS:
  case ABOVE_NORMAL_PRIORITY_CLASS:
  case HIGH_PRIORITY_CLASS:
    priority_class = class;
    return TRUE;
  default:
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
}

#define ONLY_PROCESSOR ((DWORD_PTR)1)

EXPORT DWORD_PTR WINAPI SetThreadAffinityMask(HANDLE thread, DWORD_PTR mask) {
  if (!GetThreadId(thread)) return 0;
  if (mask != ONLY_PROCESSOR) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  return ONLY_PROCESSOR;
}

EXPORT BOOL WINAPI GetProcessAffinityMask(HANDLE process, PDWORD_PTR process_mask, PDWORD_PTR system_mask) {
  if (!pvx_this_process(process)) return FALSE;
  *process_mask = *system_mask = ONLY_PROCESSOR;
  return TRUE;
}

EXPORT BOOL WINAPI SetProcessAffinityMask(HANDLE process, DWORD_PTR mask) {
  if (!pvx_this_process(process)) return FALSE;
  if (mask == ONLY_PROCESSOR) return TRUE;
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}
