/* Dates and times through Windows pictures: the locale's own (short, long,
 * year-month; the time with parts left out) and given ones with every field,
 * quoted text, the size contract and the dates and flags refused. Not here,
 * where Wine departs from what Windows documents: the era (gg), and a day past
 * its month's end (Wine rolls it over, Windows refuses it). */
#include <stdio.h>
#include <windows.h>

static SYSTEMTIME at(WORD y, WORD mo, WORD d, WORD h, WORD mi, WORD s) {
  SYSTEMTIME st = {y, mo, 0, d, h, mi, s, 0}; /* wDayOfWeek 0, which Windows does not read */
  return st;
}

typedef int(WINAPI *format_fn)(LCID, DWORD, const SYSTEMTIME *, LPCWSTR, LPWSTR, int);

static void show(const char *kind, format_fn format, const char *what, DWORD flags, SYSTEMTIME st,
                 const wchar_t *picture) {
  wchar_t out[128];
  SetLastError(0);
  int n = format(LOCALE_USER_DEFAULT, flags, &st, picture, out, 128);
  printf("%s %s: %d", kind, what, n);
  if (n) printf(" \"%ls\"", out);
  printf(", error %lu\n", GetLastError());
}

static void date(const char *what, DWORD flags, SYSTEMTIME st, const wchar_t *picture) {
  show("date", GetDateFormatW, what, flags, st, picture);
}

static void time_(const char *what, DWORD flags, SYSTEMTIME st, const wchar_t *picture) {
  show("time", GetTimeFormatW, what, flags, st, picture);
}

int main(void) {
  SYSTEMTIME late = at(2026, 12, 4, 23, 5, 9), early = at(2001, 2, 3, 4, 5, 6), noon = at(1999, 7, 31, 12, 0, 0);
  date("short", 0, late, NULL);
  date("long", DATE_LONGDATE, late, NULL);
  date("year-month", DATE_YEARMONTH, early, NULL);
  date("long, 2001", DATE_LONGDATE, early, NULL);
  date("every field", 0, early, L"d dd ddd dddd M MM MMM MMMM y yy yyyy");
  date("every field, 1999", 0, noon, L"d dd ddd dddd M MM MMM MMMM y yy yyyy");
  date("quoted", 0, late, L"'Today is' dddd', the 'd'th; it''s' yyyy''");
  date("no closing quote", 0, late, L"d 'MMM");
  date("29 February 2024", DATE_LONGDATE, at(2024, 2, 29, 0, 0, 0), NULL);
  date("month 13", 0, at(2026, 13, 1, 0, 0, 0), NULL);
  date("a picture and a flag", DATE_LONGDATE, late, L"d");
  date("two flags", DATE_LONGDATE | DATE_SHORTDATE, late, NULL);

  time_("default", 0, late, NULL);
  time_("default, early", 0, early, NULL);
  time_("noon", 0, noon, NULL);
  time_("midnight", 0, at(2026, 1, 1, 0, 30, 0), NULL);
  time_("no seconds", TIME_NOSECONDS, late, NULL);
  time_("no minutes or seconds", TIME_NOMINUTESORSECONDS, late, NULL);
  time_("no marker", TIME_NOTIMEMARKER, late, NULL);
  time_("24-hour", TIME_FORCE24HOURFORMAT, late, NULL);
  time_("every field", 0, early, L"h hh H HH m mm s ss t tt");
  time_("quoted", 0, late, L"hh 'o''clock' tt");
  time_("hour 24", 0, at(2026, 1, 1, 24, 0, 0), NULL);

  wchar_t small[4];
  printf("size 0 asks: %d\n", GetDateFormatW(LOCALE_USER_DEFAULT, DATE_LONGDATE, &late, NULL, NULL, 0));
  SetLastError(0);
  int too_small = GetTimeFormatW(LOCALE_USER_DEFAULT, 0, &late, NULL, small, 4);
  printf("too small: %d, error %lu\n", too_small, GetLastError());
  char a[64];
  int n = GetDateFormatA(LOCALE_USER_DEFAULT, 0, &late, "dddd d MMM yy", a, sizeof a);
  printf("GetDateFormatA: %d \"%s\"\n", n, a);
  n = GetTimeFormatA(LOCALE_USER_DEFAULT, TIME_NOSECONDS, &late, NULL, a, sizeof a);
  printf("GetTimeFormatA: %d \"%s\"\n", n, a);
  wchar_t ex[64];
  n = GetDateFormatEx(L"en-US", DATE_SHORTDATE, &early, NULL, ex, 64, NULL);
  printf("GetDateFormatEx: %d \"%ls\"\n", n, ex);
  n = GetTimeFormatEx(NULL, 0, &early, L"HH:mm", ex, 64);
  printf("GetTimeFormatEx: %d \"%ls\"\n", n, ex);
  return 0;
}
