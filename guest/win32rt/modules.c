/* Modules beyond what the host's table answers: every DLL of a pvx app is
 * loaded at boot and never unloaded, so loading one again finds it and
 * freeing one keeps it. LoadLibraryEx's flags change nothing for DLLs that
 * are already there. */
#include "pvxrt.h"

EXPORT HMODULE WINAPI LoadLibraryExW(LPCWSTR name, HANDLE file, DWORD flags) {
  (void)flags;
  if (file) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return NULL;
  }
  return LoadLibraryW(name);
}

EXPORT BOOL WINAPI FreeLibrary(HMODULE module) { return module != NULL; }

EXPORT BOOL WINAPI DisableThreadLibraryCalls(HMODULE module) { return module != NULL; }

/* A breakpoint is an exception like any other: a handler may take it, else the app ends with its code. */
EXPORT void WINAPI DebugBreak(void) { RaiseException(EXCEPTION_BREAKPOINT, 0, 0, NULL); }

/* The process itself is the only one: it is running while it asks. */
EXPORT BOOL WINAPI GetExitCodeProcess(HANDLE process, LPDWORD code) {
  if (process != GetCurrentProcess()) {
    SetLastError(ERROR_INVALID_HANDLE);
    return FALSE;
  }
  *code = STILL_ACTIVE;
  return TRUE;
}

/* A VM has no speaker. */
EXPORT BOOL WINAPI Beep(DWORD frequency, DWORD duration) {
  (void)frequency, (void)duration;
  SetLastError(ERROR_NOT_SUPPORTED);
  return FALSE;
}
