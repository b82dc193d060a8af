/* Files: every CreateFileW disposition, reads, writes, seeking past the end,
 * truncation, sharing, deleting, renaming, and the error codes Windows gives. */
#include "common.h"

int main(void) {
  DWORD n;
  char buf[32];
  LARGE_INTEGER distance, position, size;

  HANDLE a = open_result("CREATE_NEW a.txt", CreateFileW(L"a.txt", GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, NULL));
  result("WriteFile hello", WriteFile(a, "hello", 5, &n, NULL));
  value("written", n);
  distance.QuadPart = 10;
  result("SetFilePointerEx to 10, past the end", SetFilePointerEx(a, distance, &position, FILE_BEGIN));
  value("position", position.QuadPart);
  result("WriteFile X at 10", WriteFile(a, "X", 1, &n, NULL));
  result("GetFileSizeEx", GetFileSizeEx(a, &size));
  value("size", size.QuadPart);
  distance.QuadPart = 0;
  result("SetFilePointerEx to 0", SetFilePointerEx(a, distance, NULL, FILE_BEGIN));
  result("ReadFile", ReadFile(a, buf, sizeof buf, &n, NULL));
  value("read", n);
  value("gap byte is zero", buf[7] == 0 && buf[4] == 'o' && buf[10] == 'X');
  result("ReadFile at end of file", ReadFile(a, buf, sizeof buf, &n, NULL));
  value("read", n);
  distance.QuadPart = -1;
  result("SetFilePointerEx before the start", SetFilePointerEx(a, distance, NULL, FILE_BEGIN));
  distance.QuadPart = -8;
  result("SetFilePointerEx 8 back from the end", SetFilePointerEx(a, distance, &position, FILE_END));
  value("position", position.QuadPart);
  result("SetEndOfFile there", SetEndOfFile(a));
  result("GetFileSizeEx", GetFileSizeEx(a, &size));
  value("size", size.QuadPart);
  result("FlushFileBuffers", FlushFileBuffers(a));

  open_result("CREATE_NEW a.txt again", CreateFileW(L"a.txt", GENERIC_READ, FILE_SHARE_READ, NULL, CREATE_NEW, 0, NULL));
  open_result("OPEN_EXISTING a.txt while opened unshared", CreateFileW(L"a.txt", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL));
  result("DeleteFileW a.txt while opened unshared", DeleteFileW(L"a.txt"));
  result("CloseHandle a.txt", CloseHandle(a));
  result("CloseHandle a.txt twice", CloseHandle(a));
  result("WriteFile after close", WriteFile(a, "x", 1, &n, NULL));
  result("CloseHandle forged", CloseHandle((HANDLE)(uintptr_t)0x1234));

  HANDLE r1 = open_result("OPEN_EXISTING A.TXT read, share read", CreateFileW(L"A.TXT", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL));
  HANDLE r2 = open_result("second reader, share read", CreateFileW(L"a.txt", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL));
  open_result("writer while readers deny writing", CreateFileW(L"a.txt", GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL));
  result("WriteFile on a read-only handle", WriteFile(r1, "x", 1, &n, NULL));
  CloseHandle(r1);
  CloseHandle(r2);

  HANDLE c = open_result("CREATE_ALWAYS a.txt (exists)", CreateFileW(L"a.txt", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL));
  value("last error", GetLastError());
  result("GetFileSizeEx after CREATE_ALWAYS", GetFileSizeEx(c, &size));
  value("size", size.QuadPart);
  result("WriteFile through the handle with its tag bits set", WriteFile((HANDLE)((uintptr_t)c | 3), "t", 1, &n, NULL));
  CloseHandle(c);
  HANDLE o = open_result("OPEN_ALWAYS b.txt (new)", CreateFileW(L"b.txt", GENERIC_WRITE, 0, NULL, OPEN_ALWAYS, 0, NULL));
  value("last error", GetLastError());
  CloseHandle(o);
  o = open_result("OPEN_ALWAYS b.txt (exists)", CreateFileW(L"b.txt", GENERIC_WRITE, 0, NULL, OPEN_ALWAYS, 0, NULL));
  value("last error", GetLastError());
  CloseHandle(o);
  open_result("TRUNCATE_EXISTING missing.txt", CreateFileW(L"missing.txt", GENERIC_WRITE, 0, NULL, TRUNCATE_EXISTING, 0, NULL));
  open_result("OPEN_EXISTING missing.txt", CreateFileW(L"missing.txt", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL));
  open_result("OPEN_EXISTING nodir\\missing.txt", CreateFileW(L"nodir\\missing.txt", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL));
  open_result("OPEN_EXISTING . (a directory, no backup semantics)", CreateFileW(L".", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL));

  result("MoveFileExW a.txt -> b.txt (exists)", MoveFileExW(L"a.txt", L"b.txt", 0));
  result("MoveFileExW a.txt -> b.txt replacing", MoveFileExW(L"a.txt", L"b.txt", MOVEFILE_REPLACE_EXISTING));
  result("DeleteFileW a.txt (moved away)", DeleteFileW(L"a.txt"));
  result("DeleteFileW b.txt", DeleteFileW(L"b.txt"));
  result("DeleteFileW b.txt again", DeleteFileW(L"b.txt"));
  return 0;
}
