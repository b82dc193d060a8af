/* Process: command line, environment, clocks, sleeping, last error. */
#include "common.h"

int main(void) {
  LPWSTR line = GetCommandLineW();
  value("command line is not empty", line != NULL && line[0] != 0);
  WCHAR buf[64];
  DWORD n = GetEnvironmentVariableW(L"PVX_TEST_VAR", buf, 64);
  result("GetEnvironmentVariableW PVX_TEST_VAR", n != 0);
  out("  value = ");
  out_w(n ? buf : L"");
  out("\n");
  value("lower-case name finds it too", GetEnvironmentVariableW(L"pvx_test_var", buf, 64) == n);
  value("too small a buffer asks for length + 1", GetEnvironmentVariableW(L"PVX_TEST_VAR", buf, 2) == n + 1);
  result("GetEnvironmentVariableW PVX_MISSING", GetEnvironmentVariableW(L"PVX_MISSING", buf, 64) != 0);

  FILETIME ft;
  GetSystemTimeAsFileTime(&ft);
  ULONGLONG t = ((ULONGLONG)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
  value("system time is after 2024", t > 133485408000000000ull);
  LARGE_INTEGER f, c0, c1;
  result("QueryPerformanceFrequency", QueryPerformanceFrequency(&f));
  value("frequency is positive", f.QuadPart > 0);
  QueryPerformanceCounter(&c0);
  ULONGLONG tick0 = GetTickCount64();
  Sleep(50);
  ULONGLONG tick1 = GetTickCount64();
  QueryPerformanceCounter(&c1);
  /* GetTickCount64 ticks coarsely (15.6 ms on Windows), so only the fine counter can time the sleep. */
  value("GetTickCount64 did not go backwards", tick1 >= tick0);
  value("Sleep(50) lasted at least 40 ms by QueryPerformanceCounter", (c1.QuadPart - c0.QuadPart) * 1000 / f.QuadPart >= 40);
  Sleep(0);
  SetLastError(1234);
  value("SetLastError then GetLastError", GetLastError());
  return 0;
}
