/* What a thread reads of itself without an exit: its last error and its id,
 * both kept in its TEB (LastErrorValue at 0x68, ClientId.UniqueThread at
 * 0x48: guest/teb.ts), where the host keeps them too. */
#include "pvxrt.h"

EXPORT DWORD WINAPI GetLastError(void) {
  DWORD e;
  __asm__ volatile("movl %%gs:0x68, %0" : "=r"(e));
  return e;
}

EXPORT void WINAPI SetLastError(DWORD e) { __asm__ volatile("movl %0, %%gs:0x68" : : "r"(e) : "memory"); }

EXPORT DWORD WINAPI GetCurrentThreadId(void) { return (DWORD)pvx_thread_id(); }
