/* DuplicateHandle within the process: a console handle's duplicate writes where it does and outlives
 * it; a file's duplicate shares its position, its locks and its file, which stays open until the last
 * handle closes; DUPLICATE_CLOSE_SOURCE closes the source even when the duplicate fails; and the
 * handles it refuses. */
#include "common.h"

static HANDLE self(void) { return GetCurrentProcess(); }

static HANDLE duplicate(const char *what, HANDLE source, DWORD options) {
  HANDLE twin = NULL;
  result(what, DuplicateHandle(self(), source, self(), &twin, 0, FALSE, options));
  return twin;
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
