/* A real handle to the process, from DuplicateHandle of GetCurrentProcess() or from OpenProcess of its
 * own id: it names the process as the pseudo-handle does (its id, its exit code, its priority class),
 * a wait on it times out while the process runs, it duplicates and closes like any handle, and it can
 * end the process. OpenProcess of any other id is refused. */
#include "common.h"

int main(void) {
  HANDLE self = GetCurrentProcess(), p = NULL, q = NULL, r = NULL;
  result("DuplicateHandle(GetCurrentProcess())", DuplicateHandle(self, self, self, &p, 0, FALSE, DUPLICATE_SAME_ACCESS));
  value("  a real handle", p != NULL && p != self);
  value("GetProcessId of it is GetCurrentProcessId()", GetProcessId(p) == GetCurrentProcessId());
  DWORD code = 0;
  result("GetExitCodeProcess of it", GetExitCodeProcess(p, &code));
  value("  code", code);
  value("WaitForSingleObject of it, 20 ms", WaitForSingleObject(p, 20));
  result("SetPriorityClass through it", SetPriorityClass(p, BELOW_NORMAL_PRIORITY_CLASS));
  value("  GetPriorityClass of the pseudo-handle", GetPriorityClass(self));
  SetPriorityClass(self, NORMAL_PRIORITY_CLASS);
  DWORD_PTR mine = 0, system = 0;
  result("GetProcessAffinityMask of it", GetProcessAffinityMask(p, &mine, &system));
  result("DuplicateHandle of it", DuplicateHandle(self, p, self, &q, 0, FALSE, DUPLICATE_SAME_ACCESS));
  value("  GetProcessId of the duplicate", GetProcessId(q) == GetCurrentProcessId());
  HANDLE event = CreateEventW(NULL, FALSE, FALSE, NULL);
  result("DuplicateHandle of an event from it as the source process", DuplicateHandle(p, event, self, &r, 0, FALSE, 0));
  value("  the duplicate is a new handle", r != NULL && r != event);
  CloseHandle(r), CloseHandle(event);
  result("close the first", CloseHandle(p));
  SetLastError(0);
  value("GetProcessId of the closed handle", GetProcessId(p));
  value("  last error", GetLastError());
  value("GetProcessId of the duplicate still", GetProcessId(q) == GetCurrentProcessId());

  HANDLE o = OpenProcess(PROCESS_QUERY_INFORMATION | SYNCHRONIZE, FALSE, GetCurrentProcessId());
  result("OpenProcess of its own id", o != NULL);
  value("  GetProcessId of it", GetProcessId(o) == GetCurrentProcessId());
  SetLastError(0);
  result("OpenProcess of id 0", OpenProcess(PROCESS_QUERY_INFORMATION, FALSE, 0) != NULL);
  SetLastError(0);
  result("OpenProcess of id 0x7ffffff0", OpenProcess(PROCESS_QUERY_INFORMATION, FALSE, 0x7ffffff0) != NULL);
  CloseHandle(o);
  out("ending through the duplicate with 23\n");
  TerminateProcess(q, 23);
  out("not reached\n");
  return 1;
}
