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
  if (!pvx_this_process(process)) return FALSE;
  *code = STILL_ACTIVE;
  return TRUE;
}

/* A VM has no speaker. */
EXPORT BOOL WINAPI Beep(DWORD frequency, DWORD duration) {
  (void)frequency, (void)duration;
  SetLastError(ERROR_NOT_SUPPORTED);
  return FALSE;
}

/* Delay-loaded imports, as the Windows SDK's delayloadhandler.h declares
 * them (mingw's headers lack them). */
typedef struct {
  ULONG ImportDescribedByName;
  union { LPCSTR Name; ULONG Ordinal; } Description;
} DELAYLOAD_PROC_DESCRIPTOR;

typedef struct {
  ULONG Size;
  PCIMAGE_DELAYLOAD_DESCRIPTOR DelayloadDescriptor;
  PIMAGE_THUNK_DATA ThunkAddress;
  LPCSTR TargetDllName;
  DELAYLOAD_PROC_DESCRIPTOR TargetApiDescriptor;
  PVOID TargetModuleBase;
  PVOID Unused;
  ULONG LastError;
} DELAYLOAD_INFO;

typedef PVOID(WINAPI *PDELAYLOAD_FAILURE_DLL_CALLBACK)(ULONG reason, DELAYLOAD_INFO *info);
typedef PVOID(WINAPI *PDELAYLOAD_FAILURE_SYSTEM_ROUTINE)(LPCSTR dll, LPCSTR proc);

/* delayimp.h's notification reasons for a hook. */
#define DELAYLOAD_FAIL_LOAD_LIBRARY 3
#define DELAYLOAD_FAIL_GET_PROC 4

/* Binds one delay-loaded import on its first call: loads the DLL once (the
 * descriptor's module handle slot caches it), finds the function by name or
 * ordinal and writes it into the thunk the caller came through. On a failure
 * the image's own hook answers first, then the system routine, whose answer
 * is what the caller jumps to. */
EXPORT PVOID WINAPI ResolveDelayLoadedAPI(PVOID base, PCIMAGE_DELAYLOAD_DESCRIPTOR d,
                                          PDELAYLOAD_FAILURE_DLL_CALLBACK dll_hook,
                                          PDELAYLOAD_FAILURE_SYSTEM_ROUTINE system_hook, PIMAGE_THUNK_DATA thunk,
                                          ULONG flags) {
  (void)flags;
  char *image = base;
  HMODULE *slot = (HMODULE *)(image + d->ModuleHandleRVA);
  PIMAGE_THUNK_DATA iat = (PIMAGE_THUNK_DATA)(image + d->ImportAddressTableRVA);
  PIMAGE_THUNK_DATA names = (PIMAGE_THUNK_DATA)(image + d->ImportNameTableRVA);
  LPCSTR dll = image + d->DllNameRVA;
  ULONG64 entry = names[thunk - iat].u1.Ordinal;
  BOOL by_name = !IMAGE_SNAP_BY_ORDINAL64(entry);
  LPCSTR proc = by_name ? (LPCSTR)((PIMAGE_IMPORT_BY_NAME)(image + (DWORD)entry))->Name
                        : (LPCSTR)(ULONG_PTR)IMAGE_ORDINAL64(entry);
  HMODULE module = *slot;
  if (!module) {
    module = LoadLibraryA(dll);
    if (module) InterlockedExchangePointer((PVOID *)slot, module);
  }
  FARPROC found = module ? GetProcAddress(module, proc) : NULL;
  if (found) {
    InterlockedExchangePointer((PVOID *)&thunk->u1.Function, (PVOID)found);
    return (PVOID)found;
  }
  DWORD error = GetLastError();
  if (dll_hook) {
    DELAYLOAD_INFO info = {
      .Size = sizeof info,
      .DelayloadDescriptor = d,
      .ThunkAddress = thunk,
      .TargetDllName = dll,
      .TargetApiDescriptor = { .ImportDescribedByName = by_name },
      .TargetModuleBase = module,
      .LastError = error,
    };
    if (by_name) info.TargetApiDescriptor.Description.Name = proc;
    else info.TargetApiDescriptor.Description.Ordinal = (ULONG)(ULONG_PTR)proc;
    PVOID answer = dll_hook(module ? DELAYLOAD_FAIL_GET_PROC : DELAYLOAD_FAIL_LOAD_LIBRARY, &info);
    if (answer) return answer;
  }
  SetLastError(error);
  return system_hook ? system_hook(dll, proc) : NULL;
}

/* kernel32's system routine for a delay load nothing else rescued: it raises
 * the exception MSVC's delay-load helper raises, VcppException(ERROR_SEVERITY_ERROR,
 * ERROR_MOD_NOT_FOUND or ERROR_PROC_NOT_FOUND), so an unhandled one ends the
 * app naming what was missing rather than calling through a null pointer. */
EXPORT PVOID WINAPI DelayLoadFailureHook(LPCSTR dll, LPCSTR proc) {
  ULONG_PTR arguments[2] = { (ULONG_PTR)dll, (ULONG_PTR)proc };
  DWORD missing = GetModuleHandleA(dll) ? ERROR_PROC_NOT_FOUND : ERROR_MOD_NOT_FOUND;
  RaiseException(0xC06D0000 | missing, EXCEPTION_NONCONTINUABLE, 2, arguments);
  return NULL;
}
