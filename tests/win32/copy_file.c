/* CopyFile: the data in chunks larger than one read, the source's write
 * time kept, an existing target replaced or refused, and Windows' errors for
 * a missing source or directory, a copy onto the source itself and a source
 * another handle holds without sharing. */
#include "common.h"

static const FILETIME y2020 = {0x69050000u, 0x01d5c036u}; /* 2020-01-01 00:00:00 UTC */

static BOOL same_content(LPCWSTR a, LPCWSTR b) {
  static char x[4096], y[4096];
  HANDLE fa = CreateFileW(a, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
  HANDLE fb = CreateFileW(b, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
  BOOL same = fa != INVALID_HANDLE_VALUE && fb != INVALID_HANDLE_VALUE;
  for (DWORD na = 1, nb; same && na;) {
    same = ReadFile(fa, x, sizeof x, &na, NULL) && ReadFile(fb, y, sizeof y, &nb, NULL) && na == nb;
    for (DWORD i = 0; same && i < na; i++) same = x[i] == y[i];
  }
  CloseHandle(fa);
  CloseHandle(fb);
  return same;
}

static long long size_of(LPCWSTR name) {
  WIN32_FILE_ATTRIBUTE_DATA d;
  if (!GetFileAttributesExW(name, GetFileExInfoStandard, &d)) return -1;
  return ((long long)d.nFileSizeHigh << 32) | d.nFileSizeLow;
}

static ULONGLONG write_time(LPCWSTR name) {
  WIN32_FILE_ATTRIBUTE_DATA d;
  if (!GetFileAttributesExW(name, GetFileExInfoStandard, &d)) return 0;
  return ((ULONGLONG)d.ftLastWriteTime.dwHighDateTime << 32) | d.ftLastWriteTime.dwLowDateTime;
}

int main(void) {
  static char data[150000];
  for (int i = 0; i < (int)sizeof data; i++) data[i] = (char)('a' + i * 7 % 26);
  HANDLE f = CreateFileW(L"source.txt", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
  DWORD n;
  result("write source.txt", WriteFile(f, data, sizeof data, &n, NULL) && n == sizeof data);
  result("SetFileTime source.txt to 2020", SetFileTime(f, NULL, NULL, &y2020));
  CloseHandle(f);

  result("CopyFileW source.txt copy.txt, fail if it exists", CopyFileW(L"source.txt", L"copy.txt", TRUE));
  value("same content", same_content(L"source.txt", L"copy.txt"));
  value("copy's size", size_of(L"copy.txt"));
  value("copy written in 2020, as its source", write_time(L"copy.txt") == write_time(L"source.txt") &&
                                                  write_time(L"source.txt") == (((ULONGLONG)y2020.dwHighDateTime << 32) | y2020.dwLowDateTime));
  result("CopyFileW onto copy.txt again, fail if it exists", CopyFileW(L"source.txt", L"copy.txt", TRUE));

  f = CreateFileW(L"short.txt", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
  WriteFile(f, "short", 5, &n, NULL);
  CloseHandle(f);
  result("CopyFileA short.txt over copy.txt", CopyFileA("short.txt", "copy.txt", FALSE));
  value("copy's size", size_of(L"copy.txt"));
  value("same content", same_content(L"short.txt", L"copy.txt"));

  result("CopyFileW of a missing source", CopyFileW(L"missing.txt", L"other.txt", FALSE));
  result("CopyFileW into a missing directory", CopyFileW(L"source.txt", L"nowhere\\copy.txt", FALSE));
  CreateDirectoryW(L"dir", NULL);
  result("CopyFileW of a directory", CopyFileW(L"dir", L"dir-copy", FALSE));
  result("CopyFileW into a directory's name", CopyFileW(L"source.txt", L"dir", FALSE));
  result("CopyFileW onto the source itself", CopyFileW(L"source.txt", L"source.txt", FALSE));
  value("the source kept its size", size_of(L"source.txt"));
  result("CopyFileW onto the source itself, fail if it exists", CopyFileW(L"source.txt", L"source.txt", TRUE));

  HANDLE held = CreateFileW(L"short.txt", GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
  result("CopyFileW of a source held unshared", CopyFileW(L"short.txt", L"held-copy.txt", FALSE));
  CloseHandle(held);
  held = CreateFileW(L"copy.txt", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
  result("CopyFileW onto a target open for reading", CopyFileW(L"source.txt", L"copy.txt", FALSE));
  CloseHandle(held);
  return 0;
}
