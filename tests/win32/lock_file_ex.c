/* LockFileEx and UnlockFileEx: shared locks overlap one another, whoever holds them, and keep every
 * handle from writing (their own too); an exclusive lock overlaps no other lock; the offset comes from
 * the OVERLAPPED; LOCKFILE_FAIL_IMMEDIATELY fails at once, and without it a lock waits for the locks in
 * its way to go; a closed handle's locks go with it. Wine's locks are advisory, so its reads and writes
 * across locks differ (wine_divergences.md). */
#include "common.h"

static const WCHAR *name = L"locked_ex.bin";
static HANDLE waiter_done;

static HANDLE open_shared(void) {
  return CreateFileW(name, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_ALWAYS, 0,
                     NULL);
}

static BOOL lock(HANDLE f, DWORD flags, ULONGLONG offset, DWORD length) {
  OVERLAPPED at = {0};
  at.Offset = (DWORD)offset;
  at.OffsetHigh = (DWORD)(offset >> 32);
  return LockFileEx(f, flags, 0, length, 0, &at);
}

static BOOL unlock(HANDLE f, ULONGLONG offset, DWORD length) {
  OVERLAPPED at = {0};
  at.Offset = (DWORD)offset;
  at.OffsetHigh = (DWORD)(offset >> 32);
  return UnlockFileEx(f, 0, length, 0, &at);
}

#define SHARED_NOW LOCKFILE_FAIL_IMMEDIATELY
#define EXCLUSIVE_NOW (LOCKFILE_FAIL_IMMEDIATELY | LOCKFILE_EXCLUSIVE_LOCK)

static BOOL io(HANDLE f, BOOL write, DWORD offset, DWORD length) {
  char buf[16] = "0123456789abcdef";
  DWORD n;
  SetFilePointer(f, (LONG)offset, NULL, FILE_BEGIN);
  return write ? WriteFile(f, buf, length, &n, NULL) : ReadFile(f, buf, length, &n, NULL);
}

/* Waits, without LOCKFILE_FAIL_IMMEDIATELY, for an exclusive lock of 5..15. */
static DWORD WINAPI waiter(LPVOID param) {
  HANDLE f = (HANDLE)param;
  BOOL ok = lock(f, LOCKFILE_EXCLUSIVE_LOCK, 5, 10);
  SetEvent(waiter_done);
  return ok ? 0 : GetLastError();
}

int main(void) {
  HANDLE a = open_shared(), b = open_shared(), c = open_shared();
  DWORD n;
  WriteFile(a, "0123456789012345678901234567890123456789", 40, &n, NULL);
  waiter_done = CreateEventW(NULL, TRUE, FALSE, NULL);

  result("a locks 0..10 shared", lock(a, SHARED_NOW, 0, 10));
  result("b locks 5..15 shared, across it", lock(b, SHARED_NOW, 5, 10));
  result("b locks 0..10 shared again, the same as a's", lock(b, SHARED_NOW, 0, 10));
  result("b locks 8..12 exclusive", lock(b, EXCLUSIVE_NOW, 8, 4));
  result("a locks 2..4 exclusive, inside its own shared lock", lock(a, EXCLUSIVE_NOW, 2, 2));
  result("a locks 20..30 exclusive", lock(a, EXCLUSIVE_NOW, 20, 10));
  result("b locks 25..26 shared", lock(b, SHARED_NOW, 25, 1));
  result("a locks 25..26 shared, inside its own exclusive lock", lock(a, SHARED_NOW, 25, 1));
  result("a locks 30..32 exclusive, just after", lock(a, EXCLUSIVE_NOW, 30, 2));

  result("a reads 0..4, its shared lock", io(a, FALSE, 0, 4));
  result("b reads 0..4, a's shared lock", io(b, FALSE, 0, 4));
  result("a writes 0..4, its own shared lock", io(a, TRUE, 0, 4));
  result("c writes 12..14, b's shared lock", io(c, TRUE, 12, 2));
  result("a reads 20..24, its exclusive lock", io(a, FALSE, 20, 4));
  result("a writes 20..24, its exclusive lock", io(a, TRUE, 20, 4));
  result("b reads 20..24, a's exclusive lock", io(b, FALSE, 20, 4));
  result("c writes 34..38, unlocked", io(c, TRUE, 34, 4));

  result("a locks 2^32+1..2^32+5 shared, through OffsetHigh", lock(a, SHARED_NOW, (1ull << 32) + 1, 4));
  result("b locks 2^32+3 exclusive", lock(b, EXCLUSIVE_NOW, (1ull << 32) + 3, 1));
  result("a unlocks it", unlock(a, (1ull << 32) + 1, 4));
  result("b locks 2^32+3 exclusive now", lock(b, EXCLUSIVE_NOW, (1ull << 32) + 3, 1));
  OVERLAPPED zero = {0};
  result("LockFileEx with dwReserved 1", LockFileEx(a, EXCLUSIVE_NOW, 1, 1, 0, &zero));
  result("UnlockFileEx with dwReserved 1", UnlockFileEx(a, 1, 1, 0, &zero));

  HANDLE t = CreateThread(NULL, 0, waiter, c, 0, NULL);
  value("c waits to lock 5..15 exclusive", WaitForSingleObject(waiter_done, 100));
  result("a unlocks 0..10", unlock(a, 0, 10));
  result("a unlocks 0..10 again", unlock(a, 0, 10));
  value("  c still waits", WaitForSingleObject(waiter_done, 100));
  result("b unlocks 0..10", unlock(b, 0, 10));
  value("  c still waits for 5..15", WaitForSingleObject(waiter_done, 100));
  result("b unlocks 5..15", unlock(b, 5, 10));
  value("  c has its lock", WaitForSingleObject(waiter_done, INFINITE));
  DWORD code = 99;
  WaitForSingleObject(t, INFINITE);
  GetExitCodeThread(t, &code);
  value("  the waiter's error", code);
  result("b locks 6..7 shared", lock(b, SHARED_NOW, 6, 1));

  result("close a", CloseHandle(a));
  result("b locks 20..30 exclusive, a's lock gone with it", lock(b, EXCLUSIVE_NOW, 20, 10));
  CloseHandle(b);
  CloseHandle(c);
  result("delete the file", DeleteFileW(name));
  return 0;
}
