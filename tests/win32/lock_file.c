/* LockFile and UnlockFile: byte ranges one handle holds against every other
 * handle's reads and writes (Windows locks are mandatory), the conflicts and
 * unlocks Windows refuses, and locks let go when their handle closes. */
#include "common.h"

static BOOL read_at(HANDLE f, DWORD at, DWORD n) {
  char buf[16];
  DWORD got;
  LARGE_INTEGER to = {.QuadPart = at};
  SetFilePointerEx(f, to, NULL, FILE_BEGIN);
  return ReadFile(f, buf, n, &got, NULL);
}

static BOOL write_at(HANDLE f, DWORD at, DWORD n) {
  DWORD put;
  LARGE_INTEGER to = {.QuadPart = at};
  SetFilePointerEx(f, to, NULL, FILE_BEGIN);
  return WriteFile(f, "0123456789abcdef", n, &put, NULL);
}

int main(void) {
  DWORD share = FILE_SHARE_READ | FILE_SHARE_WRITE;
  HANDLE a = CreateFileW(L"locked.txt", GENERIC_READ | GENERIC_WRITE, share, NULL, CREATE_ALWAYS, 0, NULL);
  HANDLE b = CreateFileW(L"locked.txt", GENERIC_READ | GENERIC_WRITE, share, NULL, OPEN_EXISTING, 0, NULL);
  result("write 100 bytes", write_at(a, 0, 10) && write_at(a, 10, 16) && write_at(a, 26, 16) && write_at(a, 42, 16) &&
                             write_at(a, 58, 16) && write_at(a, 74, 16) && write_at(a, 90, 10));

  result("LockFile 10..20 through a", LockFile(a, 10, 0, 10, 0));
  result("a reads 12..16, its own lock", read_at(a, 12, 4));
  result("a writes 12..16", write_at(a, 12, 4));
  result("b reads 12..16", read_at(b, 12, 4));
  result("b writes 18..22, across the lock's end", write_at(b, 18, 4));
  result("b reads 0..10, before the lock", read_at(b, 0, 10));
  result("b writes 20..30, just after it", write_at(b, 20, 10));
  result("LockFile 15..25 through b, overlapping", LockFile(b, 15, 0, 10, 0));
  result("LockFile 15..25 through a, its own overlap", LockFile(a, 15, 0, 10, 0));
  result("LockFile 20..30 through b, adjacent", LockFile(b, 20, 0, 10, 0));
  result("a writes 22..24, b's lock", write_at(a, 22, 2));
  result("LockFile past the end, 1000..2000 through a", LockFile(a, 1000, 0, 1000, 0));
  result("LockFile at 4 GiB through b", LockFile(b, 0, 1, 16, 0));
  result("LockFile of 0 bytes at 12 through b", LockFile(b, 12, 0, 0, 0));
  result("LockFile of 0 bytes at 12 through b again", LockFile(b, 12, 0, 0, 0));
  result("LockFile of 0 bytes at 50 through a", LockFile(a, 50, 0, 0, 0));
  result("LockFile 40..60 through b, over a's empty lock", LockFile(b, 40, 0, 20, 0));

  result("UnlockFile 10..15 through a, part of a lock", UnlockFile(a, 10, 0, 5, 0));
  result("UnlockFile 10..20 through b, a's lock", UnlockFile(b, 10, 0, 10, 0));
  result("UnlockFile 10..20 through a", UnlockFile(a, 10, 0, 10, 0));
  result("UnlockFile 10..20 through a again", UnlockFile(a, 10, 0, 10, 0));
  result("b writes 12..16 once unlocked", write_at(b, 12, 4));
  result("LockFile 10..20 through b", LockFile(b, 10, 0, 10, 0));

  HANDLE c = CreateFileW(L"locked.txt", GENERIC_READ, share, NULL, OPEN_EXISTING, 0, NULL);
  result("a third handle reads 25..27, b's lock", read_at(c, 25, 2));
  CloseHandle(b);
  result("once b is closed, it reads 25..27", read_at(c, 25, 2));
  result("and a writes 12..16", write_at(a, 12, 4));
  result("UnlockFile of a's empty lock at 50", UnlockFile(a, 50, 0, 0, 0));
  result("LockFile 0..100 through c, a read-only handle", LockFile(c, 0, 0, 100, 0));
  result("LockFile 0..100 through a, while c holds it", LockFile(a, 0, 0, 100, 0));
  result("LockFile of the last byte there is", LockFile(a, 0xffffffffu, 0xffffffffu, 1, 0));
  result("LockFile past the last byte", LockFile(a, 0xffffffffu, 0xffffffffu, 2, 0));
  CloseHandle(c);
  CloseHandle(a);

  result("LockFile of a closed handle", LockFile(a, 0, 0, 1, 0));
  result("LockFile of the console", LockFile(GetStdHandle(STD_OUTPUT_HANDLE), 0, 0, 1, 0));
  /* What Wine let through the locks differs; the file does not outlive the program. */
  result("DeleteFileW locked.txt", DeleteFileW(L"locked.txt"));
  return 0;
}
