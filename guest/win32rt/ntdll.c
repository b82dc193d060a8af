/* The ntdll functions the C runtimes import that need no host: bitmaps,
 * time conversions, and the loader's reference counts (pvx never unloads a
 * module, so every DLL is pinned). */
#include "pvxrt.h"

#define TICKS_PER_SECOND 10000000ull
#define TICKS_1601_TO_1970 116444736000000000ull

EXPORT NTSTATUS NTAPI LdrAddRefDll(ULONG flags, HMODULE module) {
  (void)flags, (void)module;
  return STATUS_SUCCESS;
}

EXPORT NTSTATUS NTAPI NtQuerySystemTime(PLARGE_INTEGER time) {
  FILETIME ft;
  GetSystemTimeAsFileTime(&ft);
  time->LowPart = ft.dwLowDateTime;
  time->HighPart = ft.dwHighDateTime;
  return STATUS_SUCCESS;
}

EXPORT BOOLEAN NTAPI RtlTimeToSecondsSince1970(PLARGE_INTEGER time, PULONG seconds) {
  ULONGLONG t = (ULONGLONG)time->QuadPart;
  if (t < TICKS_1601_TO_1970) return FALSE;
  ULONGLONG s = (t - TICKS_1601_TO_1970) / TICKS_PER_SECOND;
  if (s > 0xffffffffull) return FALSE;
  *seconds = (DWORD)s;
  return TRUE;
}

EXPORT void NTAPI RtlSecondsSince1970ToTime(DWORD seconds, PLARGE_INTEGER time) {
  time->QuadPart = seconds * TICKS_PER_SECOND + TICKS_1601_TO_1970;
}

typedef struct { ULONG SizeOfBitMap; PULONG Buffer; } RTL_BITMAP, *PRTL_BITMAP;

EXPORT void NTAPI RtlInitializeBitMap(PRTL_BITMAP bitmap, PULONG buffer, ULONG bits) {
  bitmap->SizeOfBitMap = bits;
  bitmap->Buffer = buffer;
}

static BOOL bit(const RTL_BITMAP *b, ULONG i) { return (b->Buffer[i / 32] >> (i % 32)) & 1; }

static BOOL all_bits(const RTL_BITMAP *b, ULONG start, ULONG count, BOOL set) {
  if (start >= b->SizeOfBitMap || count > b->SizeOfBitMap - start) return FALSE;
  for (ULONG i = start; i < start + count; i++) if (bit(b, i) != set) return FALSE;
  return TRUE;
}

EXPORT BOOLEAN NTAPI RtlAreBitsSet(PRTL_BITMAP b, ULONG start, ULONG count) { return all_bits(b, start, count, TRUE); }
EXPORT BOOLEAN NTAPI RtlAreBitsClear(PRTL_BITMAP b, ULONG start, ULONG count) { return all_bits(b, start, count, FALSE); }

EXPORT void NTAPI RtlSetBits(PRTL_BITMAP b, ULONG start, ULONG count) {
  for (ULONG i = start; i < start + count && i < b->SizeOfBitMap; i++) b->Buffer[i / 32] |= 1u << (i % 32);
}

EXPORT void NTAPI RtlClearBits(PRTL_BITMAP b, ULONG start, ULONG count) {
  for (ULONG i = start; i < start + count && i < b->SizeOfBitMap; i++) b->Buffer[i / 32] &= ~(1u << (i % 32));
}
