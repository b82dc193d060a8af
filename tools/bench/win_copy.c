/* Bench: copies src.dat to dst.dat in 1 MiB chunks; prints the copy's nanoseconds (QueryPerformanceCounter). */
#include <windows.h>
#include "guest_io.h"

static char buffer[1 << 20];

void mainCRTStartup(void) {
  LARGE_INTEGER f, t0, t1;
  DWORD got, put;
  QueryPerformanceFrequency(&f);
  HANDLE src = CreateFileW(L"src.dat", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
  HANDLE dst = CreateFileW(L"dst.dat", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
  if (src == INVALID_HANDLE_VALUE || dst == INVALID_HANDLE_VALUE) ExitProcess(3);
  QueryPerformanceCounter(&t0);
  while (ReadFile(src, buffer, sizeof buffer, &got, NULL) && got) {
    if (!WriteFile(dst, buffer, got, &put, NULL) || put != got) ExitProcess(4);
  }
  QueryPerformanceCounter(&t1);
  CloseHandle(src);
  CloseHandle(dst);
  print_number((unsigned long long)((t1.QuadPart - t0.QuadPart) * (1000000000.0 / (double)f.QuadPart)));
  ExitProcess(0);
}
