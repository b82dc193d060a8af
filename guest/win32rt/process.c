/* The process as a Windows app asks about it: pseudo-handles, version and
 * system information, startup info, the ANSI command line, and the hooks a
 * C runtime installs. A pvx app is alone in its VM, with no debugger, no
 * console window and no other process to signal it. */
#include "codepages.h"

EXPORT HANDLE WINAPI GetCurrentProcess(void) { return PSEUDO_PROCESS; }
EXPORT HANDLE WINAPI GetCurrentThread(void) { return PSEUDO_THREAD; }
EXPORT DWORD WINAPI GetCurrentProcessId(void) { return PROCESS_ID; }

EXPORT DWORD WINAPI GetProcessIdOfThread(HANDLE thread) { return GetThreadId(thread) ? PROCESS_ID : 0; }
EXPORT BOOL WINAPI IsDebuggerPresent(void) { return FALSE; }

/* Without a manifest that names Windows 8.1 or 10, Windows 8.1 and later report Windows 8 (6.2, build
 * 9200) to an app, through GetVersion and GetVersionEx alike. */
#define APP_MAJOR 6
#define APP_MINOR 2
#define APP_BUILD 9200

EXPORT DWORD WINAPI GetVersion(void) { return (APP_BUILD << 16) | (APP_MINOR << 8) | APP_MAJOR; }

/* What GetVersionExA and W share. Both structures begin with the same five DWORDs (size, major,
 * minor, build, platform); the service-pack string after them, and so wProductType's offset, differs.
 * A size that is neither form's fails with ERROR_INSUFFICIENT_BUFFER, as in ReactOS's kernel32. */
static BOOL fill_version(DWORD *info, DWORD plain_size, DWORD ex_size, size_t product_type_at) {
  if (!info || (info[0] != plain_size && info[0] != ex_size)) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return FALSE;
  }
  DWORD size = info[0];
  memset(info, 0, size);
  info[0] = size, info[1] = APP_MAJOR, info[2] = APP_MINOR, info[3] = APP_BUILD, info[4] = VER_PLATFORM_WIN32_NT;
  if (size == ex_size) ((BYTE *)info)[product_type_at] = VER_NT_WORKSTATION;
  return TRUE;
}

EXPORT BOOL WINAPI GetVersionExW(LPOSVERSIONINFOW v) {
  return fill_version((DWORD *)v, sizeof(OSVERSIONINFOW), sizeof(OSVERSIONINFOEXW),
                      __builtin_offsetof(OSVERSIONINFOEXW, wProductType));
}

EXPORT BOOL WINAPI GetVersionExA(LPOSVERSIONINFOA v) {
  return fill_version((DWORD *)v, sizeof(OSVERSIONINFOA), sizeof(OSVERSIONINFOEXA),
                      __builtin_offsetof(OSVERSIONINFOEXA, wProductType));
}

/* The features every x86-64 CPU pvx runs on has, and that pvx's guests may use. */
EXPORT BOOL WINAPI IsProcessorFeaturePresent(DWORD feature) {
  switch (feature) {
  case PF_FLOATING_POINT_EMULATED:
    return FALSE;
  case PF_COMPARE_EXCHANGE_DOUBLE:
  case PF_MMX_INSTRUCTIONS_AVAILABLE:
  case PF_XMMI_INSTRUCTIONS_AVAILABLE:
  case PF_XMMI64_INSTRUCTIONS_AVAILABLE:
  case PF_RDTSC_INSTRUCTION_AVAILABLE:
  case PF_NX_ENABLED:
  case PF_COMPARE_EXCHANGE128:
  case PF_FASTFAIL_AVAILABLE:
    return TRUE;
  default:
    return FALSE;
  }
}

EXPORT void WINAPI GetSystemInfo(LPSYSTEM_INFO info) {
  memset(info, 0, sizeof *info);
  info->wProcessorArchitecture = PROCESSOR_ARCHITECTURE_AMD64;
  info->dwPageSize = 0x1000;
  info->lpMinimumApplicationAddress = (LPVOID)0x10000;
  info->lpMaximumApplicationAddress = (LPVOID)0xffffffff; /* pvx keeps the whole app below 4 GiB */
  info->dwActiveProcessorMask = 1;
  info->dwNumberOfProcessors = 1;
  info->dwProcessorType = PROCESSOR_AMD_X8664;
  info->dwAllocationGranularity = 0x10000;
  info->wProcessorLevel = 6;
}
EXPORT void WINAPI GetNativeSystemInfo(LPSYSTEM_INFO info) { GetSystemInfo(info); }

/* No window, no redirection through STARTUPINFO: what a console app started from a shell sees. */
EXPORT void WINAPI GetStartupInfoW(LPSTARTUPINFOW si) {
  memset(si, 0, sizeof *si);
  si->cb = sizeof *si;
}
EXPORT void WINAPI GetStartupInfoA(LPSTARTUPINFOA si) {
  memset(si, 0, sizeof *si);
  si->cb = sizeof *si;
}

static LPTOP_LEVEL_EXCEPTION_FILTER unhandled_filter;
EXPORT LPTOP_LEVEL_EXCEPTION_FILTER WINAPI SetUnhandledExceptionFilter(LPTOP_LEVEL_EXCEPTION_FILTER filter) {
  return __atomic_exchange_n(&unhandled_filter, filter, __ATOMIC_SEQ_CST);
}

LPTOP_LEVEL_EXCEPTION_FILTER pvx_unhandled_filter(void) { return __atomic_load_n(&unhandled_filter, __ATOMIC_SEQ_CST); }

void pvx_write_stderr(const char *text) {
  DWORD written;
  WriteFile(GetStdHandle(STD_ERROR_HANDLE), text, (DWORD)pvx_strlen(text), &written, NULL);
}

/* Windows mixes a per-process secret in; pvx's guests have no secret from themselves, but a pointer that
 * was never encoded still decodes to garbage, as code that forgets to encode would find on Windows. */
#define POINTER_COOKIE 0x5a17c3e9b24d6f81ull
static ULONG_PTR rotate(ULONG_PTR v, int n) { return (v >> n) | (v << (64 - n)); }
EXPORT PVOID WINAPI EncodePointer(PVOID p) { return (PVOID)rotate((ULONG_PTR)p ^ POINTER_COOKIE, POINTER_COOKIE & 63); }
EXPORT PVOID WINAPI DecodePointer(PVOID p) { return (PVOID)(rotate((ULONG_PTR)p, 64 - (POINTER_COOKIE & 63)) ^ POINTER_COOKIE); }
EXPORT PVOID WINAPI EncodeSystemPointer(PVOID p) { return EncodePointer(p); }
EXPORT PVOID WINAPI DecodeSystemPointer(PVOID p) { return DecodePointer(p); }

static UINT error_mode;
EXPORT UINT WINAPI SetErrorMode(UINT mode) { return __atomic_exchange_n(&error_mode, mode, __ATOMIC_SEQ_CST); }
EXPORT UINT WINAPI GetErrorMode(void) { return error_mode; }

/* Nothing ever sends a pvx app Ctrl-C: its console is a stream, so handlers are accepted and never run. */
EXPORT BOOL WINAPI SetConsoleCtrlHandler(PHANDLER_ROUTINE handler, BOOL add) {
  (void)handler, (void)add;
  return TRUE;
}

/* x86 keeps instruction caches coherent by itself. */
EXPORT BOOL WINAPI FlushInstructionCache(HANDLE process, LPCVOID base, SIZE_T size) {
  (void)process, (void)base, (void)size;
  return TRUE;
}

void WINAPI pvx_exit_process(UINT code); /* the ExitProcess hypercall (tools/win32_runtime.ts) */

/* Windows runs each DLL's DllMain with DLL_PROCESS_DETACH before the process ends, in the reverse of the order
 * they were attached (a C runtime flushes its streams there). A DllMain that calls ExitProcess ends it at once.
 * Other threads are not stopped first, as Windows stops them: pvx has no TerminateThread yet. */
EXPORT void WINAPI ExitProcess(UINT code) {
  static LONG exiting;
  if (!__atomic_exchange_n(&exiting, 1, __ATOMIC_SEQ_CST)) {
    const struct pvx_modules *t = pvx_module_table();
    ULONG64 exe = *(ULONG64 *)(peb() + 0x10);
    for (DWORD i = t->count; i-- > 0;) {
      if (t->m[i].base == exe || !t->m[i].entry_rva) continue;
      ((BOOL(WINAPI *)(HINSTANCE, DWORD, LPVOID))(t->m[i].base + t->m[i].entry_rva))((HINSTANCE)t->m[i].base,
                                                                                    DLL_PROCESS_DETACH, (LPVOID)1);
    }
  }
  pvx_exit_process(code);
  __builtin_unreachable();
}

/* Unlike ExitProcess, no DLL hears of it. Only this process can be named: pvx has no other. */
EXPORT BOOL WINAPI TerminateProcess(HANDLE process, UINT code) {
  if (!pvx_this_process(process)) return FALSE;
  pvx_exit_process(code);
  __builtin_unreachable();
}

/* Within this process only (pvx has no other, so both process handles must name it), for console, file and
 * waitable handles, and the pseudo-handles, which become real handles to the calling thread and to the
 * process; a file's duplicate shares its position and locks, as on Windows. The duplicate keeps the
 * source's access whatever is asked. */
EXPORT BOOL WINAPI DuplicateHandle(HANDLE source_process, HANDLE source, HANDLE target_process, LPHANDLE target,
                                   DWORD access, BOOL inherit, DWORD options) {
  (void)access, (void)inherit;
  BOOL from_here = pvx_this_process(source_process);
  if (!from_here || !pvx_this_process(target_process)) {
    /* Windows closes the source whatever becomes of the duplicate. */
    if (from_here && (options & DUPLICATE_CLOSE_SOURCE)) CloseHandle(source);
    SetLastError(ERROR_INVALID_HANDLE);
    return FALSE;
  }
  if (source != PSEUDO_PROCESS && source != PSEUDO_THREAD) return PvxDuplicateHandle(source, target, options);
  /* Closing a pseudo-handle does nothing, so DUPLICATE_CLOSE_SOURCE has nothing to close. */
  HANDLE real = source == PSEUDO_THREAD ? PvxOpenCurrentThread() : PvxOpenCurrentProcess();
  if (real && target) *target = real;
  else if (real) CloseHandle(real);
  return real != NULL;
}

/* This process is the only one there is to open. */
EXPORT HANDLE WINAPI OpenProcess(DWORD access, BOOL inherit, DWORD id) {
  (void)access, (void)inherit;
  if (id == PROCESS_ID) return PvxOpenCurrentProcess();
  SetLastError(ERROR_INVALID_PARAMETER);
  return NULL;
}

EXPORT DWORD WINAPI GetTickCount(void) { return (DWORD)GetTickCount64(); }

static char *ansi_command_line;
/* The wide command line in the ANSI code page, converted once and kept for the process's life. */
EXPORT LPSTR WINAPI GetCommandLineA(void) {
  char *line = __atomic_load_n(&ansi_command_line, __ATOMIC_ACQUIRE);
  if (line) return line;
  LPCWSTR wide = GetCommandLineW();
  int size = WideCharToMultiByte(CP_ACP, 0, wide, -1, NULL, 0, NULL, NULL);
  line = HeapAlloc(GetProcessHeap(), 0, size);
  if (!line) return (LPSTR) "";
  WideCharToMultiByte(CP_ACP, 0, wide, -1, line, size, NULL, NULL);
  char *expected = NULL;
  if (!__atomic_compare_exchange_n(&ansi_command_line, &expected, line, FALSE, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    HeapFree(GetProcessHeap(), 0, line);
    return expected;
  }
  return line;
}

/* A pvx instance is one app in its own VM: there is no second process to
 * start. CreateProcess fails as Windows' unsupported requests do, so a
 * runtime's system() or _spawn() reports the failure to the app rather than
 * the app being stopped. CreatePipe fails the same way for now: a pipe
 * between the app's own threads needs a host pipe object pvx lacks. */
static BOOL alone_in_the_vm(void) {
  SetLastError(ERROR_NOT_SUPPORTED);
  return FALSE;
}

EXPORT BOOL WINAPI CreateProcessW(LPCWSTR app, LPWSTR command, LPSECURITY_ATTRIBUTES process_sa,
                                  LPSECURITY_ATTRIBUTES thread_sa, BOOL inherit, DWORD flags, LPVOID environment,
                                  LPCWSTR directory, LPSTARTUPINFOW startup, LPPROCESS_INFORMATION info) {
  (void)app, (void)command, (void)process_sa, (void)thread_sa, (void)inherit, (void)flags, (void)environment;
  (void)directory, (void)startup, (void)info;
  return alone_in_the_vm();
}

EXPORT BOOL WINAPI CreateProcessA(LPCSTR app, LPSTR command, LPSECURITY_ATTRIBUTES process_sa,
                                  LPSECURITY_ATTRIBUTES thread_sa, BOOL inherit, DWORD flags, LPVOID environment,
                                  LPCSTR directory, LPSTARTUPINFOA startup, LPPROCESS_INFORMATION info) {
  (void)app, (void)command, (void)process_sa, (void)thread_sa, (void)inherit, (void)flags, (void)environment;
  (void)directory, (void)startup, (void)info;
  return alone_in_the_vm();
}

EXPORT BOOL WINAPI CreatePipe(PHANDLE read, PHANDLE write, LPSECURITY_ATTRIBUTES sa, DWORD size) {
  (void)read, (void)write, (void)sa, (void)size;
  return alone_in_the_vm();
}
