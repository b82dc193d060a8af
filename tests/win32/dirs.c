/* Directories: create, nest, list with wildcards, attributes, current
 * directory, and the errors for non-empty, missing and wrong-kind paths. */
#include "common.h"

static void touch(const WCHAR *name, const char *text) {
  HANDLE h = CreateFileW(name, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
  DWORD n;
  WriteFile(h, text, text_length(text), &n, NULL);
  CloseHandle(h);
}

static void list(const char *what, const WCHAR *pattern) {
  WIN32_FIND_DATAW d;
  HANDLE f = FindFirstFileW(pattern, &d);
  result(what, f != INVALID_HANDLE_VALUE);
  if (f == INVALID_HANDLE_VALUE) return;
  do {
    out("  ");
    out_w(d.cFileName);
    out((d.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) ? " <dir>" : " ");
    if (!(d.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) out_i(d.nFileSizeLow);
    out("\n");
  } while (FindNextFileW(f, &d));
  value("end of listing error", GetLastError());
  result("FindClose", FindClose(f));
}

int main(void) {
  WCHAR cwd[MAX_PATH];
  result("CreateDirectoryW work", CreateDirectoryW(L"work", NULL));
  result("CreateDirectoryW work again", CreateDirectoryW(L"work", NULL));
  result("CreateDirectoryW missing\\sub", CreateDirectoryW(L"missing\\sub", NULL));
  result("SetCurrentDirectoryW work", SetCurrentDirectoryW(L"work"));
  DWORD len = GetCurrentDirectoryW(MAX_PATH, cwd);
  value("current directory ends in \\work", len > 5 && cwd[len - 5] == '\\' && cwd[len - 1] == 'k');
  value("GetCurrentDirectoryW with a 1-char buffer asks for length + 1", GetCurrentDirectoryW(1, cwd) == len + 1);
  result("CreateDirectoryW Sub", CreateDirectoryW(L"Sub", NULL));
  touch(L"b.txt", "bb");
  touch(L"a.txt", "a");
  touch(L"Sub\\c.log", "ccc");
  touch(L"noext", "1234");
  list("FindFirstFileW *", L"*");
  list("FindFirstFileW *.txt", L"*.txt");
  list("FindFirstFileW SUB\\*", L"SUB\\*");
  list("FindFirstFileW ?.TXT", L"?.TXT");
  list("FindFirstFileW *.none", L"*.none");
  list("FindFirstFileW nodir\\*", L"nodir\\*");
  value("GetFileAttributesW Sub is a directory", (GetFileAttributesW(L"Sub") & FILE_ATTRIBUTE_DIRECTORY) != 0);
  value("GetFileAttributesW a.txt is not", (GetFileAttributesW(L"a.txt") & FILE_ATTRIBUTE_DIRECTORY) == 0);
  result("GetFileAttributesW missing", GetFileAttributesW(L"missing") != INVALID_FILE_ATTRIBUTES);
  result("RemoveDirectoryW Sub (not empty)", RemoveDirectoryW(L"Sub"));
  result("RemoveDirectoryW a.txt (a file)", RemoveDirectoryW(L"a.txt"));
  result("DeleteFileW Sub (a directory)", DeleteFileW(L"Sub"));
  result("DeleteFileW Sub\\c.log", DeleteFileW(L"Sub\\c.log"));
  result("MoveFileExW Sub -> Renamed", MoveFileExW(L"Sub", L"Renamed", 0));
  result("RemoveDirectoryW Renamed", RemoveDirectoryW(L"Renamed"));
  result("SetCurrentDirectoryW ..", SetCurrentDirectoryW(L".."));
  result("SetCurrentDirectoryW missing", SetCurrentDirectoryW(L"missing"));
  result("SetCurrentDirectoryW work\\a.txt (a file)", SetCurrentDirectoryW(L"work\\a.txt"));
  result("RemoveDirectoryW work (not empty)", RemoveDirectoryW(L"work"));
  return 0;
}
