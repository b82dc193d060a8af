/* GetDateFormat and GetTimeFormat: a SYSTEMTIME through a Windows picture
 * ("dddd, MMMM d, yyyy", "h:mm:ss tt"), given or the locale's (locale.c),
 * with its names. Text in single quotes is literal, '' is a quote. */
#include "codepages.h"

struct text {
  LPWSTR out;
  int size, n;
};

static void put(struct text *t, const WCHAR *s, int n) {
  for (int i = 0; i < n; i++, t->n++)
    if (t->size && t->n < t->size) t->out[t->n] = s[i];
}

static void put_number(struct text *t, int value, int digits) {
  WCHAR d[8];
  int n = 0;
  do d[7 - n++] = '0' + value % 10, value /= 10;
  while (value && n < 8);
  while (n < digits) d[7 - n++] = '0';
  put(t, d + 8 - n, n);
}

static void put_locale(struct text *t, LCTYPE type) {
  WCHAR s[80];
  int n = GetLocaleInfoW(LOCALE_USER_DEFAULT, type, s, ARRAYSIZE(s));
  if (n) put(t, s, n - 1);
}

/* Monday = 0, as LOCALE_SDAYNAME1 counts, from the date alone (a SYSTEMTIME's wDayOfWeek is not trusted). */
static int weekday(const SYSTEMTIME *st) {
  static const int offsets[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
  int y = st->wYear - (st->wMonth < 3);
  int sunday_first = (y + y / 4 - y / 100 + y / 400 + offsets[st->wMonth - 1] + st->wDay) % 7;
  return (sunday_first + 6) % 7;
}

static BOOL valid_date(const SYSTEMTIME *st) {
  static const BYTE days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (st->wMonth < 1 || st->wMonth > 12 || st->wDay < 1 || st->wDay > days[st->wMonth - 1] || st->wYear < 1601)
    return FALSE;
  BOOL leap = (st->wYear % 4 == 0 && st->wYear % 100 != 0) || st->wYear % 400 == 0;
  return st->wMonth != 2 || st->wDay < 29 || leap;
}

/* The picture's elements, each a run of one letter; `time` says which letters are fields. */
static void format(struct text *t, const SYSTEMTIME *st, LPCWSTR picture, BOOL time, DWORD flags) {
  BOOL no_minutes = (flags & TIME_NOMINUTESORSECONDS) != 0, no_seconds = no_minutes || (flags & TIME_NOSECONDS);
  int pending = -1; /* where the literal text after the last field began: dropped with a field left out */
  for (LPCWSTR p = picture; *p;) {
    WCHAR c = *p;
    int run = 1;
    while (p[run] == c) run++;
    if (c == '\'') {
      const WCHAR *q = p + 1;
      for (; *q; q++) {
        if (*q != '\'') put(t, q, 1);
        else if (q[1] == '\'') put(t, q++, 1);
        else break;
      }
      p = *q ? q + 1 : q;
      continue;
    }
    BOOL field = time ? c == 'h' || c == 'H' || c == 'm' || c == 's' || c == 't'
                      : c == 'd' || c == 'M' || c == 'y' || c == 'g';
    if (!field) {
      if (pending < 0) pending = t->n;
      put(t, p, run);
      p += run;
      continue;
    }
    BOOL dropped = (c == 'm' && no_minutes) || (c == 's' && no_seconds) || (c == 't' && (flags & TIME_NOTIMEMARKER));
    if (dropped) {
      if (pending >= 0) t->n = pending; /* and the separator before it */
      p += run;
      continue;
    }
    pending = -1;
    int hour12 = st->wHour % 12 ? st->wHour % 12 : 12;
    BOOL h24 = (flags & TIME_FORCE24HOURFORMAT) != 0;
    switch (c) {
    case 'd':
      if (run <= 2) put_number(t, st->wDay, run);
      else put_locale(t, (run == 3 ? LOCALE_SABBREVDAYNAME1 : LOCALE_SDAYNAME1) + weekday(st));
      break;
    case 'M':
      if (run <= 2) put_number(t, st->wMonth, run);
      else put_locale(t, (run == 3 ? LOCALE_SABBREVMONTHNAME1 : LOCALE_SMONTHNAME1) + st->wMonth - 1);
      break;
    case 'y':
      if (run <= 2) put_number(t, st->wYear % 100, 2); /* y as yy, as Wine has it */
      else put_number(t, st->wYear, 4);
      break;
    case 'g': put(t, L"A.D.", 4); break;
    case 'h': put_number(t, h24 ? st->wHour : hour12, run > 2 ? 2 : run); break;
    case 'H': put_number(t, st->wHour, run > 2 ? 2 : run); break;
    case 'm': put_number(t, st->wMinute, run > 2 ? 2 : run); break;
    case 's': put_number(t, st->wSecond, run > 2 ? 2 : run); break;
    case 't': {
      WCHAR marker[8];
      int n = GetLocaleInfoW(LOCALE_USER_DEFAULT, st->wHour < 12 ? LOCALE_S1159 : LOCALE_S2359, marker, 8);
      if (n) put(t, marker, run == 1 ? 1 : n - 1); /* kept in 24-hour form too, unless TIME_NOTIMEMARKER */
      break;
    }
    }
    p += run;
  }
}

/* The Win32 size contract: characters written with the NUL, the size needed when `size` is 0, else 0. */
static int finish(struct text *t) {
  WCHAR nul = 0;
  put(t, &nul, 1);
  if (t->size && t->n > t->size) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return 0;
  }
  return t->n;
}

/* `st` through `picture`, or through the locale's picture of `locale_type` when there is none. */
static int render(const SYSTEMTIME *st, LPCWSTR picture, LCTYPE locale_type, BOOL time, DWORD flags, LPWSTR out,
                  int size) {
  WCHAR locale_picture[80];
  if (!picture) {
    GetLocaleInfoW(LOCALE_USER_DEFAULT, locale_type, locale_picture, ARRAYSIZE(locale_picture));
    picture = locale_picture;
  }
  struct text t = {out, size, 0};
  format(&t, st, picture, time, flags);
  return finish(&t);
}

static int date_format(DWORD flags, const SYSTEMTIME *date, LPCWSTR picture, LPWSTR out, int size) {
  SYSTEMTIME now;
  if (!date) GetLocalTime(&now), date = &now;
  DWORD kinds = flags & (DATE_SHORTDATE | DATE_LONGDATE | DATE_YEARMONTH);
  if (size < 0 || (size && !out) || !valid_date(date)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  if ((picture && kinds) || (kinds & (kinds - 1)) || (flags & ~(kinds | LOCALE_NOUSEROVERRIDE | LOCALE_USE_CP_ACP))) {
    SetLastError(ERROR_INVALID_FLAGS);
    return 0;
  }
  LCTYPE type = kinds == DATE_LONGDATE ? LOCALE_SLONGDATE : kinds == DATE_YEARMONTH ? LOCALE_SYEARMONTH : LOCALE_SSHORTDATE;
  return render(date, picture, type, FALSE, 0, out, size);
}

static int time_format(DWORD flags, const SYSTEMTIME *time, LPCWSTR picture, LPWSTR out, int size) {
  SYSTEMTIME now;
  if (!time) GetLocalTime(&now), time = &now;
  if (size < 0 || (size && !out) || time->wHour > 23 || time->wMinute > 59 || time->wSecond > 59) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  DWORD known = TIME_NOMINUTESORSECONDS | TIME_NOSECONDS | TIME_NOTIMEMARKER | TIME_FORCE24HOURFORMAT |
                LOCALE_NOUSEROVERRIDE | LOCALE_USE_CP_ACP;
  if ((flags & ~known) || (picture && (flags & LOCALE_NOUSEROVERRIDE))) {
    SetLastError(ERROR_INVALID_FLAGS);
    return 0;
  }
  return render(time, picture, LOCALE_STIMEFORMAT, TRUE, flags, out, size);
}

/* The defaults are valid locales too (locale.c); a NULL name is the user's. */
static BOOL known_locale(LCID lcid) {
  if (IsValidLocale(lcid, LCID_SUPPORTED)) return TRUE;
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

static BOOL known_locale_name(LPCWSTR name) {
  if (!name || IsValidLocaleName(name)) return TRUE;
  SetLastError(ERROR_INVALID_PARAMETER);
  return FALSE;
}

EXPORT int WINAPI GetDateFormatW(LCID lcid, DWORD flags, const SYSTEMTIME *date, LPCWSTR picture, LPWSTR out,
                                 int size) {
  return known_locale(lcid) ? date_format(flags, date, picture, out, size) : 0;
}

EXPORT int WINAPI GetTimeFormatW(LCID lcid, DWORD flags, const SYSTEMTIME *time, LPCWSTR picture, LPWSTR out,
                                 int size) {
  return known_locale(lcid) ? time_format(flags, time, picture, out, size) : 0;
}

EXPORT int WINAPI GetDateFormatEx(LPCWSTR locale, DWORD flags, const SYSTEMTIME *date, LPCWSTR picture, LPWSTR out,
                                  int size, LPCWSTR calendar) {
  (void)calendar;
  return known_locale_name(locale) ? date_format(flags, date, picture, out, size) : 0;
}

EXPORT int WINAPI GetTimeFormatEx(LPCWSTR locale, DWORD flags, const SYSTEMTIME *time, LPCWSTR picture, LPWSTR out,
                                  int size) {
  return known_locale_name(locale) ? time_format(flags, time, picture, out, size) : 0;
}

/* The ANSI forms: the picture widened, the answer narrowed, sizes in bytes. */
typedef int(WINAPI *wide_format)(LCID, DWORD, const SYSTEMTIME *, LPCWSTR, LPWSTR, int);

static int narrow_format(wide_format f, LCID lcid, DWORD flags, const SYSTEMTIME *st, LPCSTR picture, LPSTR out,
                         int size) {
  WCHAR wide_picture[128], wide[256];
  if (picture && !MultiByteToWideChar(CP_ACP, 0, picture, -1, wide_picture, ARRAYSIZE(wide_picture))) return 0;
  if (size < 0 || (size && !out)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  int n = f(lcid, flags, st, picture ? wide_picture : NULL, wide, ARRAYSIZE(wide));
  return n ? WideCharToMultiByte(CP_ACP, 0, wide, n, out, size, NULL, NULL) : 0;
}

EXPORT int WINAPI GetDateFormatA(LCID lcid, DWORD flags, const SYSTEMTIME *date, LPCSTR picture, LPSTR out, int size) {
  return narrow_format(GetDateFormatW, lcid, flags, date, picture, out, size);
}

EXPORT int WINAPI GetTimeFormatA(LCID lcid, DWORD flags, const SYSTEMTIME *time, LPCSTR picture, LPSTR out, int size) {
  return narrow_format(GetTimeFormatW, lcid, flags, time, picture, out, size);
}
