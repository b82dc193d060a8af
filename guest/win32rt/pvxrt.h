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

/* The TEB fields this runtime reads (guest/teb.ts writes them). */
#define TEB_TLS_SLOTS 0x1480
#define TLS_SLOTS 64

/* pvx's own calls beneath the runtime (abi/calls.ts). */
DWORD WINAPI PvxGetEnvironmentBlock(DWORD size, LPWCH buffer);

static inline void *teb(void) {
  void *t;
  __asm__("movq %%gs:0x30, %0" : "=r"(t));
  return t;
}

/* The loader's table of loaded images, in the order their initializers ran (guest/windows.ts, PEB page). */
struct pvx_module { ULONG64 base; DWORD size, pdata_rva, pdata_size, entry_rva; };
struct pvx_modules { DWORD count, reserved; struct pvx_module m[]; };

static inline const struct pvx_modules *pvx_module_table(void) {
  char *peb = *(char **)((char *)teb() + 0x60);
  return (const struct pvx_modules *)(peb + PVX_PEB_MODULES);
}

/* The loaded image holding `address`, or NULL. */
static inline const struct pvx_module *pvx_module_of(ULONG64 address) {
  const struct pvx_modules *t = pvx_module_table();
  for (DWORD i = 0; i < t->count; i++)
    if (address >= t->m[i].base && address - t->m[i].base < t->m[i].size) return &t->m[i];
  return NULL;
}

void *memset(void *d, int c, SIZE_T n);
void *memcpy(void *d, const void *s, SIZE_T n);
SIZE_T pvx_wcslen(const WCHAR *s);
SIZE_T pvx_strlen(const char *s);

#endif
