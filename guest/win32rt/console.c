/* The console of a pvx app is a byte stream (the terminal of `pvx run`, or a
 * daemon's log), so its handles behave as pipes: GetConsoleMode fails as it
 * does for a redirected handle, and a runtime writes with WriteFile. The
 * console calls an app makes anyway write and read that stream: wide text
 * as UTF-8, ANSI text as it is. */
#include "codepages.h"

/* What Windows answers a console call on a handle that is not a console. */
static BOOL not_a_console(void) {
  SetLastError(ERROR_INVALID_HANDLE);
  return FALSE;
}

EXPORT BOOL WINAPI GetConsoleMode(HANDLE h, LPDWORD mode) { return (void)h, (void)mode, not_a_console(); }
EXPORT BOOL WINAPI SetConsoleMode(HANDLE h, DWORD mode) { return (void)h, (void)mode, not_a_console(); }

EXPORT BOOL WINAPI WriteConsoleA(HANDLE h, const void *text, DWORD n, LPDWORD written, LPVOID reserved) {
  (void)reserved;
  return WriteFile(h, text, n, written, NULL);
}

EXPORT BOOL WINAPI WriteConsoleW(HANDLE h, const void *text, DWORD n, LPDWORD written, LPVOID reserved) {
  (void)reserved;
  if (!n) {
    if (written) *written = 0;
    return TRUE;
  }
  int bytes = WideCharToMultiByte(CP_UTF8, 0, text, n, NULL, 0, NULL, NULL);
  char *utf8 = HeapAlloc(GetProcessHeap(), 0, bytes);
  if (!utf8) {
    SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return FALSE;
  }
  WideCharToMultiByte(CP_UTF8, 0, text, n, utf8, bytes, NULL, NULL);
  DWORD done;
  BOOL ok = WriteFile(h, utf8, bytes, &done, NULL);
  HeapFree(GetProcessHeap(), 0, utf8);
  if (written) *written = ok ? n : 0; /* characters, as WriteConsoleW counts them */
  return ok;
}

EXPORT BOOL WINAPI ReadConsoleA(HANDLE h, LPVOID buf, DWORD n, LPDWORD read, LPVOID control) {
  (void)control;
  return ReadFile(h, buf, n, read, NULL);
}

/* No console window, so no code page to switch: pvx's console carries bytes as the app writes them. */
EXPORT UINT WINAPI GetConsoleCP(void) { return PVX_OEMCP; }
EXPORT UINT WINAPI GetConsoleOutputCP(void) { return PVX_OEMCP; }
EXPORT BOOL WINAPI SetConsoleCP(UINT cp) { return codepage_known(cp); }
EXPORT BOOL WINAPI SetConsoleOutputCP(UINT cp) { return codepage_known(cp); }

/* Input events (keys, mouse, resizes) come only from a console window, and pvx's console is a byte stream. */
EXPORT BOOL WINAPI GetNumberOfConsoleInputEvents(HANDLE h, LPDWORD events) {
  return (void)h, (void)events, not_a_console();
}
EXPORT BOOL WINAPI ReadConsoleInputA(HANDLE h, PINPUT_RECORD records, DWORD n, LPDWORD read) {
  return (void)h, (void)records, (void)n, (void)read, not_a_console();
}
EXPORT BOOL WINAPI ReadConsoleInputW(HANDLE h, PINPUT_RECORD records, DWORD n, LPDWORD read) {
  return (void)h, (void)records, (void)n, (void)read, not_a_console();
}
EXPORT BOOL WINAPI PeekConsoleInputA(HANDLE h, PINPUT_RECORD records, DWORD n, LPDWORD read) {
  return (void)h, (void)records, (void)n, (void)read, not_a_console();
}
EXPORT BOOL WINAPI PeekConsoleInputW(HANDLE h, PINPUT_RECORD records, DWORD n, LPDWORD read) {
  return (void)h, (void)records, (void)n, (void)read, not_a_console();
}
EXPORT BOOL WINAPI FlushConsoleInputBuffer(HANDLE h) { return (void)h, not_a_console(); }

EXPORT BOOL WINAPI VerifyConsoleIoHandle(HANDLE h) {
  (void)h;
  return FALSE;
}

EXPORT BOOL WINAPI SetStdHandle(DWORD which, HANDLE h) {
  (void)which, (void)h;
  SetLastError(ERROR_NOT_SUPPORTED); /* the host keeps the standard handles, and pvx does not redirect them */
  return FALSE;
}
