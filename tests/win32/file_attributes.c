/* SetFileAttributes and what the attributes do: a read-only file cannot be
 * written, truncated or deleted but can be renamed, read and copied; hidden
 * and system files need those attributes asked for to be replaced; a new
 * file is archived, and a file with no attribute left is NORMAL. */
#include "common.h"

static void attributes(const char *what, LPCWSTR name) { value(what, (long long)GetFileAttributesW(name)); }

/* Whether CreateFileW opened it; a handle it opened is closed at once. */
static BOOL opens(LPCWSTR name, DWORD access, DWORD disposition, DWORD attributes) {
  HANDLE f = CreateFileW(name, access, FILE_SHARE_READ, NULL, disposition, attributes, NULL);
  if (f == INVALID_HANDLE_VALUE) return FALSE;
  CloseHandle(f);
  return TRUE;
}

static void make(LPCWSTR name, DWORD attributes) {
  HANDLE f = CreateFileW(name, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, attributes, NULL);
  DWORD n;
  WriteFile(f, "data", 4, &n, NULL);
  CloseHandle(f);
}

int main(void) {
  make(L"a.txt", 0);
  attributes("a new file", L"a.txt");
  result("SetFileAttributesW a.txt READONLY", SetFileAttributesW(L"a.txt", FILE_ATTRIBUTE_READONLY));
  attributes("a.txt", L"a.txt");
  result("open it for writing", opens(L"a.txt", GENERIC_WRITE, OPEN_EXISTING, 0));
  result("truncate it", opens(L"a.txt", GENERIC_WRITE, TRUNCATE_EXISTING, 0));
  result("CREATE_ALWAYS over it", opens(L"a.txt", GENERIC_WRITE, CREATE_ALWAYS, FILE_ATTRIBUTE_READONLY));
  result("open it for reading", opens(L"a.txt", GENERIC_READ, OPEN_EXISTING, 0));
  result("DeleteFileW it", DeleteFileW(L"a.txt"));
  result("MoveFileW it to b.txt", MoveFileW(L"a.txt", L"b.txt"));
  attributes("b.txt", L"b.txt");
  result("CopyFileW b.txt c.txt", CopyFileW(L"b.txt", L"c.txt", FALSE));
  attributes("the copy", L"c.txt");
  make(L"d.txt", 0);
  result("CopyFileW d.txt over the read-only c.txt", CopyFileW(L"d.txt", L"c.txt", FALSE));
  result("MoveFileExW d.txt over it", MoveFileExW(L"d.txt", L"c.txt", MOVEFILE_REPLACE_EXISTING));

  result("SetFileAttributesW b.txt HIDDEN | SYSTEM", SetFileAttributesW(L"b.txt", FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM));
  attributes("b.txt", L"b.txt");
  result("CREATE_ALWAYS over it, not asking for them", opens(L"b.txt", GENERIC_WRITE, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL));
  result("CREATE_ALWAYS over it, asking for them",
         opens(L"b.txt", GENERIC_WRITE, CREATE_ALWAYS, FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM));
  attributes("b.txt, replaced", L"b.txt");
  result("SetFileAttributesW b.txt NORMAL", SetFileAttributesW(L"b.txt", FILE_ATTRIBUTE_NORMAL));
  attributes("b.txt", L"b.txt");
  result("SetFileAttributesW b.txt ARCHIVE", SetFileAttributesW(L"b.txt", FILE_ATTRIBUTE_ARCHIVE));
  attributes("b.txt", L"b.txt");

  HANDLE f = CreateFileW(L"e.txt", GENERIC_WRITE, 0, NULL, CREATE_NEW, FILE_ATTRIBUTE_READONLY, NULL);
  DWORD n;
  result("a file made read-only is written through the handle that made it", WriteFile(f, "ro", 2, &n, NULL));
  CloseHandle(f);
  attributes("e.txt", L"e.txt");
  WIN32_FIND_DATAW found;
  HANDLE find = FindFirstFileW(L"e.txt", &found);
  value("FindFirstFileW sees", (long long)found.dwFileAttributes);
  FindClose(find);
  BY_HANDLE_FILE_INFORMATION info;
  f = CreateFileW(L"e.txt", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
  GetFileInformationByHandle(f, &info);
  value("GetFileInformationByHandle sees", (long long)info.dwFileAttributes);
  CloseHandle(f);

  result("SetFileAttributesA of a missing file", SetFileAttributesA("missing.txt", FILE_ATTRIBUTE_HIDDEN));
  result("SetFileAttributesW in a missing directory", SetFileAttributesW(L"nowhere\\x.txt", FILE_ATTRIBUTE_HIDDEN));

  /* What is left read-only goes, so the directory can be compared. */
  SetFileAttributesW(L"c.txt", FILE_ATTRIBUTE_NORMAL);
  SetFileAttributesW(L"e.txt", FILE_ATTRIBUTE_NORMAL);
  result("DeleteFileW c.txt, no longer read-only", DeleteFileW(L"c.txt"));
  return 0;
}
