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

EXPORT DECLSPEC_NORETURN void WINAPI FreeLibraryAndExitThread(HMODULE module, DWORD code) {
  FreeLibrary(module);
  ExitThread(code);
}

/* Pinning and reference counts change nothing (see above); FROM_ADDRESS finds the image holding the address. */
EXPORT BOOL WINAPI GetModuleHandleExW(DWORD flags, LPCWSTR name, HMODULE *module) {
  if (!module) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (flags & GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS) {
    const struct pvx_module *m = pvx_module_of((ULONG64)name);
    *module = m ? (HMODULE)m->base : NULL;
    if (!m) SetLastError(ERROR_MOD_NOT_FOUND);
  } else {
    *module = GetModuleHandleW(name);
  }
  return *module != NULL;
}

EXPORT BOOL WINAPI GetModuleHandleExA(DWORD flags, LPCSTR name, HMODULE *module) {
  if (!name || (flags & GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS)) return GetModuleHandleExW(flags, (LPCWSTR)name, module);
  WCHAR wide[MAX_PATH];
  if (!MultiByteToWideChar(CP_ACP, 0, name, -1, wide, MAX_PATH)) {
    if (module) *module = NULL;
    return FALSE;
  }
  return GetModuleHandleExW(flags, wide, module);
}

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
