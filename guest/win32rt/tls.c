/* Thread-local storage as Windows lays it out: a 64-bit allocation bitmap in
 * the PEB (TlsBitmapBits), each thread's values in its TEB's TlsSlots. Only
 * the 64 inline slots exist; TlsAlloc fails once they are taken, as Windows'
 * would if it had no expansion slots. Fiber-local storage is the same, since
 * a pvx thread never runs fibers. */
#include "pvxrt.h"

#define PEB_TLS_BITMAP_BITS 0x80

static volatile LONG64 *tls_bitmap(void) {
  return (volatile LONG64 *)(peb() + PEB_TLS_BITMAP_BITS);
}

static void **slots_of(char *t) {
  return (void **)(t + TEB_TLS_SLOTS);
}

EXPORT DWORD WINAPI TlsAlloc(void) {
  volatile LONG64 *bits = tls_bitmap();
  for (;;) {
    LONG64 old = *bits;
    if (old == -1) {
      SetLastError(ERROR_NO_MORE_ITEMS);
      return TLS_OUT_OF_INDEXES;
    }
    DWORD index = __builtin_ctzll(~old);
    if (__sync_bool_compare_and_swap(bits, old, old | (1LL << index))) {
      slots_of(teb())[index] = NULL;
      return index;
    }
  }
}

/* Every thread's value goes back to NULL, so a later TlsAlloc of the index starts clean. */
EXPORT BOOL WINAPI TlsFree(DWORD index) {
  volatile LONG64 *bits = tls_bitmap();
  if (index >= TLS_SLOTS || !(*bits & (1LL << index))) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  for (int cpu = 0; cpu < PVX_MAX_VCPUS; cpu++) slots_of((char *)PVX_TEB_BASE + cpu * PVX_TEB_SIZE)[index] = NULL;
  __sync_fetch_and_and(bits, ~(1LL << index));
  return TRUE;
}

EXPORT LPVOID WINAPI TlsGetValue(DWORD index) {
  if (index >= TLS_SLOTS) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return NULL;
  }
  /* Windows clears the last error on success, so a caller can tell a stored NULL from a failure; only a
   * NULL is ever checked, and the last error is the host's, so only a NULL pays for the hypercall. */
  void *value = slots_of(teb())[index];
  if (!value) SetLastError(ERROR_SUCCESS);
  return value;
}

EXPORT BOOL WINAPI TlsSetValue(DWORD index, LPVOID value) {
  if (index >= TLS_SLOTS) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  slots_of(teb())[index] = value;
  return TRUE;
}

EXPORT DWORD WINAPI FlsAlloc(PFLS_CALLBACK_FUNCTION callback) {
  (void)callback; /* a thread's FLS callbacks would run at its exit; pvx threads exit through ExitThread, which skips them */
  return TlsAlloc();
}
EXPORT BOOL WINAPI FlsFree(DWORD index) { return TlsFree(index); }
EXPORT PVOID WINAPI FlsGetValue(DWORD index) { return TlsGetValue(index); }
EXPORT BOOL WINAPI FlsSetValue(DWORD index, PVOID value) { return TlsSetValue(index, value); }
