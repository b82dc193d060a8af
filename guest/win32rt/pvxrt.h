/* pvx's Win32 userland: the kernel32 and ntdll functions that need no host.
 * Built as one DLL (pvxrt.dll) that the loader binds in place of kernel32
 * and ntdll; what needs the host it imports from kernel32, which the loader
 * binds to hypercall thunks (guest/windows.ts). */
#ifndef PVXRT_H
#define PVXRT_H

/* Our definitions are the DLL's exports, not imports of the real kernel32. */
#define WINBASEAPI
#define NTSYSAPI
#define _KERNEL32_
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <winternl.h>

#define EXPORT __declspec(dllexport)
#define STATUS_SUCCESS ((NTSTATUS)0)

/* The TEB fields this runtime reads (guest/teb.ts writes them). */
#define TEB_TLS_SLOTS 0x1480
#define TLS_SLOTS 64
#define TEB_IN_FAULT 0x1900

/* pvx's own calls beneath the runtime (abi/calls.ts). */
DWORD WINAPI PvxGetEnvironmentBlock(DWORD size, LPWCH buffer);
BOOL WINAPI PvxWaitOnAddress(volatile LONG *address, LONG compare, DWORD milliseconds);
VOID WINAPI PvxWakeByAddress(volatile LONG *address);
BOOL WINAPI PvxSetFileTime(HANDLE h, ULONGLONG access, ULONGLONG write);
BOOL WINAPI PvxDuplicateHandle(HANDLE source, LPHANDLE target, DWORD options);
HANDLE WINAPI PvxOpenCurrentThread(void);
BOOL WINAPI PvxLockFileEx(HANDLE file, DWORD flags, ULONGLONG offset, ULONGLONG length);
HANDLE WINAPI PvxOpenCurrentProcess(void);

/* GetCurrentProcess() and GetCurrentThread(), and the process's id (abi/win32.ts PROCESS_ID). */
#define PSEUDO_PROCESS ((HANDLE)(LONG_PTR)-1)
#define PSEUDO_THREAD ((HANDLE)(LONG_PTR)-2)
#define PROCESS_ID 4

/* GetCurrentProcess() or a real handle to the process; else FALSE, with ERROR_INVALID_HANDLE (GetProcessId's). */
static inline BOOL pvx_this_process(HANDLE process) { return process == PSEUDO_PROCESS || GetProcessId(process) != 0; }

static inline void *teb(void) {
  void *t;
  __asm__("movq %%gs:0x30, %0" : "=r"(t));
  return t;
}

/* The process's PEB, at TEB+0x60 (guest/windows.ts writes both). */
static inline char *peb(void) { return *(char **)((char *)teb() + 0x60); }

/* Set while the host has handed this thread a fault (guest/exception_frame.ts). */
static inline volatile DWORD *pvx_in_fault(void) { return (volatile DWORD *)((char *)teb() + TEB_IN_FAULT); }

/* The loader's table of loaded images, in the order their initializers ran (guest/windows.ts, PEB page). */
struct pvx_module { ULONG64 base; DWORD size, pdata_rva, pdata_size, entry_rva; };
struct pvx_modules { DWORD count, reserved; struct pvx_module m[]; };

static inline const struct pvx_modules *pvx_module_table(void) {
  return (const struct pvx_modules *)(peb() + PVX_PEB_MODULES);
}

/* The loaded image holding `address`, or NULL. */
static inline const struct pvx_module *pvx_module_of(ULONG64 address) {
  const struct pvx_modules *t = pvx_module_table();
  for (DWORD i = 0; i < t->count; i++)
    if (address >= t->m[i].base && address - t->m[i].base < t->m[i].size) return &t->m[i];
  return NULL;
}

/* A lock the runtime's own state takes, recursive for the thread that holds
 * it. A waiter spins briefly, since holders never wait, then yields its vCPU. */
struct pvx_lock { volatile LONG owner; LONG depth; };

static inline LONG pvx_thread_id(void) {
  LONG id;
  __asm__ volatile("movl %%gs:0x48, %0" : "=r"(id)); /* ClientId.UniqueThread, never 0 (guest/teb.ts) */
  return id;
}

static inline void pvx_lock(struct pvx_lock *l) {
  LONG me = pvx_thread_id();
  if (l->owner == me) {
    l->depth++;
    return;
  }
  for (unsigned spins = 0; InterlockedCompareExchange(&l->owner, me, 0) != 0; spins++)
    if (spins < 100) YieldProcessor();
    else Sleep(0);
  l->depth = 1;
}

static inline void pvx_unlock(struct pvx_lock *l) {
  if (--l->depth == 0) InterlockedExchange(&l->owner, 0);
}

/* memory.c's IsBad*Ptr probes, in this order in .text; a fault in either resumes at pvx_probe_failed (seh.c). */
BOOL pvx_probe_read(ULONG_PTR address);
BOOL pvx_probe_write(ULONG_PTR address);
BOOL pvx_probe_failed(void);

void *memset(void *d, int c, SIZE_T n);
void *memcpy(void *d, const void *s, SIZE_T n);
SIZE_T pvx_wcslen(const WCHAR *s);
SIZE_T pvx_strlen(const char *s);

#endif
