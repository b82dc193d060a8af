/* pvx only (never run under Wine: it would reach the host): every way out of
 * the virtual drive must fail, with the error a Windows user would expect, or,
 * as ".." at the root does on Windows, stay inside it. */
#include "common.h"

static void try_open(const char *what, const WCHAR *path) {
  HANDLE h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
  result(what, h != INVALID_HANDLE_VALUE);
  if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
}

int main(void) {
  try_open("..\\..\\etc\\passwd", L"..\\..\\etc\\passwd");
  try_open("C:\\..\\etc\\passwd", L"C:\\..\\etc\\passwd");
  try_open("/etc/passwd (stays inside the drive)", L"/etc/passwd");
  try_open("\\\\?\\C:\\x", L"\\\\?\\C:\\x");
  try_open("\\\\.\\PhysicalDrive0", L"\\\\.\\PhysicalDrive0");
  try_open("\\\\server\\share\\x", L"\\\\server\\share\\x");
  try_open("D:\\x", L"D:\\x");
  try_open("NUL", L"NUL");
  try_open("con.txt", L"con.txt");
  try_open("a\\com1\\b", L"a\\com1\\b");
  try_open("a<b", L"a<b");
  result("CreateDirectoryW ..\\escape", CreateDirectoryW(L"..\\escape", NULL));
  result("DeleteFileW ..\\..\\etc\\hostname", DeleteFileW(L"..\\..\\etc\\hostname"));
  result("SetCurrentDirectoryW ..\\..", SetCurrentDirectoryW(L"..\\.."));
  return 0;
}
