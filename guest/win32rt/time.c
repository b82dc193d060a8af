/* Calendar time. A pvx app runs in UTC: its VM has no time zone of its own,
 * so local time is system time, GetTimeZoneInformation reports UTC with no
 * daylight saving, and the conversions are the proleptic Gregorian arithmetic
 * Windows uses for FILETIME (100 ns ticks since 1601-01-01). */
#include "pvxrt.h"

#define TICKS_PER_MS 10000ull
#define TICKS_PER_DAY (86400ull * 1000 * TICKS_PER_MS)
/* FILETIMEs past 30827-12-31, the last SYSTEMTIME, have no calendar form. */
#define MAX_FILETIME 0x7fff35f4f06c7fffull

static BOOL leap(unsigned y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
static const unsigned short month_days[2][12] = {{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31},
                                                 {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}};

EXPORT BOOL WINAPI FileTimeToSystemTime(const FILETIME *ft, LPSYSTEMTIME st) {
  ULONGLONG t = ((ULONGLONG)ft->dwHighDateTime << 32) | ft->dwLowDateTime;
  if (t > MAX_FILETIME) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  ULONGLONG days = t / TICKS_PER_DAY, rest = t % TICKS_PER_DAY;
  st->wDayOfWeek = (WORD)((days + 1) % 7); /* 1601-01-01 was a Monday */
  unsigned year = 1601;
  /* Whole 400-year cycles (146097 days), then years one at a time. */
  year += (unsigned)(days / 146097) * 400;
  days %= 146097;
  while (days >= (leap(year) ? 366u : 365u)) days -= leap(year) ? 366 : 365, year++;
  unsigned month = 0;
  while (days >= month_days[leap(year)][month]) days -= month_days[leap(year)][month++];
  st->wYear = (WORD)year;
  st->wMonth = (WORD)(month + 1);
  st->wDay = (WORD)(days + 1);
  ULONGLONG ms = rest / TICKS_PER_MS;
  st->wHour = (WORD)(ms / 3600000);
  st->wMinute = (WORD)(ms / 60000 % 60);
  st->wSecond = (WORD)(ms / 1000 % 60);
  st->wMilliseconds = (WORD)(ms % 1000);
  return TRUE;
}

EXPORT BOOL WINAPI SystemTimeToFileTime(const SYSTEMTIME *st, LPFILETIME ft) {
  if (st->wYear < 1601 || st->wYear > 30827 || st->wMonth < 1 || st->wMonth > 12 || st->wDay < 1 ||
      st->wDay > month_days[leap(st->wYear)][st->wMonth - 1] || st->wHour > 23 || st->wMinute > 59 ||
      st->wSecond > 59 || st->wMilliseconds > 999) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  ULONGLONG days = 0;
  unsigned y = 1601;
  days += (ULONGLONG)((st->wYear - 1601) / 400) * 146097;
  y += (st->wYear - 1601) / 400 * 400;
  for (; y < st->wYear; y++) days += leap(y) ? 366 : 365;
  for (unsigned m = 0; m + 1 < st->wMonth; m++) days += month_days[leap(st->wYear)][m];
  days += st->wDay - 1;
  ULONGLONG t = days * TICKS_PER_DAY +
                ((ULONGLONG)st->wHour * 3600000 + st->wMinute * 60000 + st->wSecond * 1000 + st->wMilliseconds) *
                    TICKS_PER_MS;
  ft->dwLowDateTime = (DWORD)t;
  ft->dwHighDateTime = (DWORD)(t >> 32);
  return TRUE;
}

EXPORT void WINAPI GetSystemTime(LPSYSTEMTIME st) {
  FILETIME ft;
  GetSystemTimeAsFileTime(&ft);
  FileTimeToSystemTime(&ft, st);
}
EXPORT void WINAPI GetLocalTime(LPSYSTEMTIME st) { GetSystemTime(st); }
EXPORT void WINAPI GetSystemTimePreciseAsFileTime(LPFILETIME ft) { GetSystemTimeAsFileTime(ft); }

EXPORT BOOL WINAPI FileTimeToLocalFileTime(const FILETIME *utc, LPFILETIME local) {
  *local = *utc;
  return TRUE;
}
EXPORT BOOL WINAPI LocalFileTimeToFileTime(const FILETIME *local, LPFILETIME utc) {
  *utc = *local;
  return TRUE;
}

EXPORT BOOL WINAPI SystemTimeToTzSpecificLocalTime(const TIME_ZONE_INFORMATION *tz, const SYSTEMTIME *utc,
                                                   LPSYSTEMTIME local) {
  FILETIME ft;
  if (!SystemTimeToFileTime(utc, &ft)) return FALSE;
  ULONGLONG t = ((ULONGLONG)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
  LONG bias = tz ? tz->Bias : 0; /* minutes to add to local time to get UTC; daylight rules are not applied */
  t -= (LONGLONG)bias * 60 * 1000 * TICKS_PER_MS;
  ft.dwLowDateTime = (DWORD)t, ft.dwHighDateTime = (DWORD)(t >> 32);
  return FileTimeToSystemTime(&ft, local);
}

EXPORT DWORD WINAPI GetTimeZoneInformation(LPTIME_ZONE_INFORMATION tz) {
  memset(tz, 0, sizeof *tz);
  const WCHAR name[] = L"Coordinated Universal Time";
  memcpy(tz->StandardName, name, sizeof name);
  memcpy(tz->DaylightName, name, sizeof name);
  return TIME_ZONE_ID_UNKNOWN;
}

EXPORT LONG WINAPI CompareFileTime(const FILETIME *a, const FILETIME *b) {
  ULONGLONG x = ((ULONGLONG)a->dwHighDateTime << 32) | a->dwLowDateTime;
  ULONGLONG y = ((ULONGLONG)b->dwHighDateTime << 32) | b->dwLowDateTime;
  return x < y ? -1 : x > y;
}
