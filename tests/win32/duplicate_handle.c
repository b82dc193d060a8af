/* DuplicateHandle within the process: a console handle's duplicate writes where it does and outlives
 * it; a file's duplicate shares its position, its locks and its file, which stays open until the last
 * handle closes; an event's, a mutex's, a semaphore's and a thread's duplicates name the same object,
 * which outlives the handle that made it; a thread's GetCurrentThread() duplicates into a real handle,
 * the first thread's too and one whose other handles are all closed, which its exit signals;
 * DUPLICATE_CLOSE_SOURCE closes the source even when the duplicate fails; and the handles it refuses. */
#include "common.h"

static DWORD WINAPI exit_with_7(LPVOID param) {
  (void)param;
  return 7;
}

static HANDLE self(void) { return GetCurrentProcess(); }

static HANDLE duplicate(const char *what, HANDLE source, DWORD options) {
  HANDLE twin = NULL;
  result(what, DuplicateHandle(self(), source, self(), &twin, 0, FALSE, options));
  return twin;
}

static HANDLE closed, ready, go, its_own;

/* Waits until its CreateThread handle is closed, so that the handle it makes is the only one. */
static DWORD WINAPI exit_with_9_through_its_own_handle(LPVOID param) {
  (void)param;
  WaitForSingleObject(closed, INFINITE);
  its_own = duplicate("the thread duplicates its pseudo-handle", GetCurrentThread(), DUPLICATE_SAME_ACCESS);
  SetEvent(ready);
  WaitForSingleObject(go, INFINITE);
  return 9;
}

static LONGLONG position(HANDLE f) {
  LARGE_INTEGER at = {.QuadPart = 0}, now;
  SetFilePointerEx(f, at, &now, FILE_CURRENT);
  return now.QuadPart;
}

int main(void) {
  DWORD n;
  HANDLE std_out = GetStdHandle(STD_OUTPUT_HANDLE);
  HANDLE console = duplicate("duplicate stdout", std_out, DUPLICATE_SAME_ACCESS);
  value("a new handle", console != std_out && console != NULL);
  result("write through the duplicate", WriteFile(console, "  (through the duplicate)\n", 26, &n, NULL));
  result("close the duplicate", CloseHandle(console));
  result("stdout still writes", WriteFile(std_out, "  (through stdout)\n", 19, &n, NULL));

  HANDLE f = CreateFileW(L"shared.txt", GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
  result("write 10 bytes", WriteFile(f, "0123456789", 10, &n, NULL));
  HANDLE g = duplicate("duplicate the file", f, DUPLICATE_SAME_ACCESS);
  value("the duplicate's position", position(g));
  LARGE_INTEGER to = {.QuadPart = 2};
  result("move the duplicate's pointer to 2", SetFilePointerEx(g, to, NULL, FILE_BEGIN));
  value("the source's position", position(f));
  char buf[8] = {0};
  result("read 3 through the source", ReadFile(f, buf, 3, &n, NULL));
  out("  read: ");
  out(buf);
  out("\n");
  value("the duplicate's position", position(g));
  result("the file opens no third time (share mode 0)",
         CreateFileW(L"shared.txt", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL) !=
             INVALID_HANDLE_VALUE);
  result("lock 0..4 through the source", LockFile(f, 0, 0, 4, 0));
  result("unlock it through the duplicate", UnlockFile(g, 0, 0, 4, 0));
  result("close the source", CloseHandle(f));
  result("write through the duplicate", WriteFile(g, "xy", 2, &n, NULL));
  result("close the duplicate", CloseHandle(g));
  result("the file opens again", (f = CreateFileW(L"shared.txt", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL)) !=
                                     INVALID_HANDLE_VALUE);
  char all[16] = {0};
  ReadFile(f, all, sizeof all - 1, &n, NULL);
  out("  content: ");
  out(all);
  out("\n");

  g = duplicate("duplicate, closing the source", f, DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE);
  result("close the duplicate", CloseHandle(g));

  HANDLE event = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE event_twin = duplicate("duplicate an event", event, DUPLICATE_SAME_ACCESS);
  result("set it through the duplicate", SetEvent(event_twin));
  value("wait through the source", WaitForSingleObject(event, 0));
  result("close the source", CloseHandle(event));
  result("reset it through the duplicate", ResetEvent(event_twin));
  value("wait through the duplicate", WaitForSingleObject(event_twin, 0));
  result("close the duplicate", CloseHandle(event_twin));
  result("close it again", CloseHandle(event_twin));

  HANDLE mutex = CreateMutexW(NULL, TRUE, NULL);
  HANDLE mutex_twin = duplicate("duplicate an owned mutex", mutex, DUPLICATE_SAME_ACCESS);
  result("release it through the duplicate", ReleaseMutex(mutex_twin));
  result("release it again through the source", ReleaseMutex(mutex));
  CloseHandle(mutex);
  CloseHandle(mutex_twin);

  HANDLE semaphore = CreateSemaphoreW(NULL, 0, 2, NULL);
  HANDLE semaphore_twin = duplicate("duplicate a semaphore", semaphore, DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE);
  LONG previous = -1;
  result("release 2 through the duplicate", ReleaseSemaphore(semaphore_twin, 2, &previous));
  value("its count before", previous);
  value("wait through the duplicate", WaitForSingleObject(semaphore_twin, 0));
  CloseHandle(semaphore_twin);

  HANDLE thread = CreateThread(NULL, 0, exit_with_7, NULL, 0, NULL);
  HANDLE thread_twin = duplicate("duplicate a thread", thread, DUPLICATE_SAME_ACCESS);
  result("close the thread's first handle", CloseHandle(thread));
  value("wait for it through the duplicate", WaitForSingleObject(thread_twin, INFINITE));
  DWORD code = 0;
  result("its exit code through the duplicate", GetExitCodeThread(thread_twin, &code));
  value("exit code", code);
  CloseHandle(thread_twin);

  HANDLE main_thread = duplicate("duplicate the first thread's pseudo-handle", GetCurrentThread(),
                                 DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE);
  value("a real handle", main_thread != NULL && main_thread != GetCurrentThread());
  result("its exit code", GetExitCodeThread(main_thread, &code));
  value("exit code (STILL_ACTIVE)", code);
  value("wait for it (WAIT_TIMEOUT)", WaitForSingleObject(main_thread, 0));
  result("close it", CloseHandle(main_thread));

  closed = CreateEventW(NULL, TRUE, FALSE, NULL);
  ready = CreateEventW(NULL, TRUE, FALSE, NULL);
  go = CreateEventW(NULL, TRUE, FALSE, NULL);
  result("close a new thread's only handle", CloseHandle(CreateThread(NULL, 0, exit_with_9_through_its_own_handle,
                                                                      NULL, 0, NULL)));
  SetEvent(closed);
  WaitForSingleObject(ready, INFINITE);
  result("its own handle's exit code", GetExitCodeThread(its_own, &code));
  value("exit code (STILL_ACTIVE)", code);
  SetEvent(go);
  value("wait for it through its own handle", WaitForSingleObject(its_own, INFINITE));
  result("its exit code through it", GetExitCodeThread(its_own, &code));
  value("exit code", code);
  CloseHandle(its_own);

  f = CreateFileW(L"shared.txt", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
  HANDLE none = NULL;
  result("duplicate into another process", DuplicateHandle(self(), f, (HANDLE)(ULONG_PTR)0x1230, &none, 0, FALSE,
                                                           DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE));
  result("that closed the source anyway", CloseHandle(f));
  duplicate("duplicate a handle that is not open", (HANDLE)(ULONG_PTR)0x1234, DUPLICATE_SAME_ACCESS);
  HANDLE find;
  WIN32_FIND_DATAW data;
  find = FindFirstFileW(L"*.txt", &data);
  duplicate("duplicate a find handle", find, DUPLICATE_SAME_ACCESS);
  FindClose(find);
  return 0;
}
