/* The one locale a pvx app runs in: en-US (LCID 0x409), for the user, the
 * system and the thread alike, as a default US Windows installation answers.
 * The invariant locale and the neutral "en" answer the same; any other
 * locale is ERROR_INVALID_PARAMETER, so a runtime falls back to "C". */
#include "codepages.h"

#define EN_US 0x0409

static const WCHAR en_us_name[] = L"en-US";

struct locale_entry { LCTYPE type; const char *value; };

static const struct locale_entry en_us[] = {
  {LOCALE_ILANGUAGE, "0409"}, {LOCALE_SLANGUAGE, "English (United States)"},
  {LOCALE_SENGLANGUAGE, "English"}, {LOCALE_SABBREVLANGNAME, "ENU"}, {LOCALE_SNATIVELANGNAME, "English"},
  {LOCALE_ICOUNTRY, "1"}, {LOCALE_SCOUNTRY, "United States"}, {LOCALE_SENGCOUNTRY, "United States"},
  {LOCALE_SABBREVCTRYNAME, "USA"}, {LOCALE_SNATIVECTRYNAME, "United States"}, {LOCALE_IDEFAULTLANGUAGE, "0409"},
  {LOCALE_IDEFAULTCOUNTRY, "1"}, {LOCALE_IDEFAULTCODEPAGE, "437"}, {LOCALE_IDEFAULTANSICODEPAGE, "1252"},
  {LOCALE_IDEFAULTMACCODEPAGE, "10000"}, {LOCALE_SLIST, ","}, {LOCALE_IMEASURE, "1"}, {LOCALE_SDECIMAL, "."},
  {LOCALE_STHOUSAND, ","}, {LOCALE_SGROUPING, "3;0"}, {LOCALE_IDIGITS, "2"}, {LOCALE_ILZERO, "1"},
  {LOCALE_INEGNUMBER, "1"}, {LOCALE_SNATIVEDIGITS, "0123456789"}, {LOCALE_SCURRENCY, "$"},
  {LOCALE_SINTLSYMBOL, "USD"}, {LOCALE_SMONDECIMALSEP, "."}, {LOCALE_SMONTHOUSANDSEP, ","},
  {LOCALE_SMONGROUPING, "3;0"}, {LOCALE_ICURRDIGITS, "2"}, {LOCALE_IINTLCURRDIGITS, "2"}, {LOCALE_ICURRENCY, "0"},
  {LOCALE_INEGCURR, "0"}, {LOCALE_SDATE, "/"}, {LOCALE_STIME, ":"}, {LOCALE_SSHORTDATE, "M/d/yyyy"},
  {LOCALE_SLONGDATE, "dddd, MMMM d, yyyy"}, {LOCALE_STIMEFORMAT, "h:mm:ss tt"}, {LOCALE_IDATE, "0"},
  {LOCALE_ILDATE, "0"}, {LOCALE_ITIME, "0"}, {LOCALE_ITIMEMARKPOSN, "0"}, {LOCALE_ICENTURY, "1"},
  {LOCALE_ITLZERO, "0"}, {LOCALE_IDAYLZERO, "0"}, {LOCALE_IMONLZERO, "0"}, {LOCALE_S1159, "AM"},
  {LOCALE_S2359, "PM"}, {LOCALE_ICALENDARTYPE, "1"}, {LOCALE_IOPTIONALCALENDAR, "0"},
  {LOCALE_IFIRSTDAYOFWEEK, "6"}, {LOCALE_IFIRSTWEEKOFYEAR, "0"},
  {LOCALE_SDAYNAME1, "Monday"}, {LOCALE_SDAYNAME2, "Tuesday"}, {LOCALE_SDAYNAME3, "Wednesday"},
  {LOCALE_SDAYNAME4, "Thursday"}, {LOCALE_SDAYNAME5, "Friday"}, {LOCALE_SDAYNAME6, "Saturday"},
  {LOCALE_SDAYNAME7, "Sunday"}, {LOCALE_SABBREVDAYNAME1, "Mon"}, {LOCALE_SABBREVDAYNAME2, "Tue"},
  {LOCALE_SABBREVDAYNAME3, "Wed"}, {LOCALE_SABBREVDAYNAME4, "Thu"}, {LOCALE_SABBREVDAYNAME5, "Fri"},
  {LOCALE_SABBREVDAYNAME6, "Sat"}, {LOCALE_SABBREVDAYNAME7, "Sun"}, {LOCALE_SMONTHNAME1, "January"},
  {LOCALE_SMONTHNAME2, "February"}, {LOCALE_SMONTHNAME3, "March"}, {LOCALE_SMONTHNAME4, "April"},
  {LOCALE_SMONTHNAME5, "May"}, {LOCALE_SMONTHNAME6, "June"}, {LOCALE_SMONTHNAME7, "July"},
  {LOCALE_SMONTHNAME8, "August"}, {LOCALE_SMONTHNAME9, "September"}, {LOCALE_SMONTHNAME10, "October"},
  {LOCALE_SMONTHNAME11, "November"}, {LOCALE_SMONTHNAME12, "December"}, {LOCALE_SMONTHNAME13, ""},
  {LOCALE_SABBREVMONTHNAME1, "Jan"}, {LOCALE_SABBREVMONTHNAME2, "Feb"}, {LOCALE_SABBREVMONTHNAME3, "Mar"},
  {LOCALE_SABBREVMONTHNAME4, "Apr"}, {LOCALE_SABBREVMONTHNAME5, "May"}, {LOCALE_SABBREVMONTHNAME6, "Jun"},
  {LOCALE_SABBREVMONTHNAME7, "Jul"}, {LOCALE_SABBREVMONTHNAME8, "Aug"}, {LOCALE_SABBREVMONTHNAME9, "Sep"},
  {LOCALE_SABBREVMONTHNAME10, "Oct"}, {LOCALE_SABBREVMONTHNAME11, "Nov"}, {LOCALE_SABBREVMONTHNAME12, "Dec"},
  {LOCALE_SABBREVMONTHNAME13, ""}, {LOCALE_SPOSITIVESIGN, ""}, {LOCALE_SNEGATIVESIGN, "-"},
  {LOCALE_IPOSSIGNPOSN, "3"}, {LOCALE_INEGSIGNPOSN, "0"}, {LOCALE_IPOSSYMPRECEDES, "1"},
  {LOCALE_IPOSSEPBYSPACE, "0"}, {LOCALE_INEGSYMPRECEDES, "1"}, {LOCALE_INEGSEPBYSPACE, "0"},
  {LOCALE_SISO639LANGNAME, "en"}, {LOCALE_SISO3166CTRYNAME, "US"}, {LOCALE_SISO639LANGNAME2, "eng"},
  {LOCALE_SISO3166CTRYNAME2, "USA"}, {LOCALE_SNAME, "en-US"}, {LOCALE_SPARENT, "en"}, {LOCALE_SSCRIPTS, "Latn;"},
  {LOCALE_SYEARMONTH, "MMMM yyyy"}, {LOCALE_SSHORTTIME, "h:mm tt"}, {LOCALE_SENGCURRNAME, "US Dollar"},
  {LOCALE_SNATIVECURRNAME, "US Dollar"}, {LOCALE_SNAN, "NaN"}, {LOCALE_SPOSINFINITY, "Infinity"},
  {LOCALE_SNEGINFINITY, "-Infinity"}, {LOCALE_SLOCALIZEDDISPLAYNAME, "English (United States)"},
  {LOCALE_SENGLISHDISPLAYNAME, "English (United States)"}, {LOCALE_SNATIVEDISPLAYNAME, "English (United States)"},
  {LOCALE_IDIGITSUBSTITUTION, "1"}, {LOCALE_IPAPERSIZE, "1"}, {LOCALE_INEUTRAL, "0"},
  {LOCALE_SSHORTESTDAYNAME1, "Mo"}, {LOCALE_SSHORTESTDAYNAME2, "Tu"}, {LOCALE_SSHORTESTDAYNAME3, "We"},
  {LOCALE_SSHORTESTDAYNAME4, "Th"}, {LOCALE_SSHORTESTDAYNAME5, "Fr"}, {LOCALE_SSHORTESTDAYNAME6, "Sa"},
  {LOCALE_SSHORTESTDAYNAME7, "Su"}, {LOCALE_SDURATION, "h:mm:ss"}, {LOCALE_SKEYBOARDSTOINSTALL, "0409:00000409"},
};

static BOOL known_lcid(LCID lcid) {
  LANGID lang = LANGIDFROMLCID(lcid);
  return lcid == LOCALE_USER_DEFAULT || lcid == LOCALE_SYSTEM_DEFAULT || lcid == LOCALE_INVARIANT ||
         lcid == LOCALE_NEUTRAL || lcid == LOCALE_CUSTOM_DEFAULT || lang == EN_US || lang == LANG_ENGLISH;
}

static BOOL same_name(LPCWSTR a, const char *b) {
  for (; *a && *b; a++, b++) {
    WCHAR x = *a >= 'A' && *a <= 'Z' ? *a + 32 : *a;
    char y = *b >= 'A' && *b <= 'Z' ? *b + 32 : *b;
    if (x != y && !((x == '_' && y == '-') || (x == '-' && y == '_'))) return FALSE;
  }
  return *a == 0 && *b == 0;
}

static BOOL known_name(LPCWSTR name) {
  return !name || !*name || same_name(name, "en-US") || same_name(name, "en") ||
         same_name(name, "!x-sys-default-locale");
}

static const char *lookup(LCTYPE type) {
  type &= ~(LOCALE_NOUSEROVERRIDE | LOCALE_USE_CP_ACP | LOCALE_RETURN_NUMBER | LOCALE_RETURN_GENITIVE_NAMES);
  if (type == LOCALE_SGROUPING || type == LOCALE_SMONGROUPING) return "3;0";
  for (unsigned i = 0; i < sizeof en_us / sizeof en_us[0]; i++) if (en_us[i].type == type) return en_us[i].value;
  return NULL;
}

static int answer(LCTYPE type, LPWSTR out, int size) {
  const char *value = lookup(type);
  if (!value) {
    SetLastError(ERROR_INVALID_FLAGS);
    return 0;
  }
  if (type & LOCALE_RETURN_NUMBER) {
    if (value[0] < '0' || value[0] > '9') {
      SetLastError(ERROR_INVALID_FLAGS);
      return 0;
    }
    int base = (type & ~LOCALE_RETURN_NUMBER & 0xffff) == LOCALE_ILANGUAGE ||
               (type & ~LOCALE_RETURN_NUMBER & 0xffff) == LOCALE_IDEFAULTLANGUAGE ? 16 : 10;
    DWORD n = 0;
    for (const char *p = value; *p; p++) n = n * base + (*p <= '9' ? *p - '0' : (*p | 32) - 'a' + 10);
    if (!size) return sizeof(DWORD) / sizeof(WCHAR);
    if (size < (int)(sizeof(DWORD) / sizeof(WCHAR))) {
      SetLastError(ERROR_INSUFFICIENT_BUFFER);
      return 0;
    }
    memcpy(out, &n, sizeof n);
    return sizeof(DWORD) / sizeof(WCHAR);
  }
  int len = (int)pvx_strlen(value) + 1;
  if (!size) return len;
  if (size < len) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return 0;
  }
  for (int i = 0; i < len; i++) out[i] = (unsigned char)value[i];
  return len;
}

EXPORT int WINAPI GetLocaleInfoW(LCID lcid, LCTYPE type, LPWSTR out, int size) {
  if (size < 0 || (size && !out) || !known_lcid(lcid)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  return answer(type, out, size);
}

EXPORT int WINAPI GetLocaleInfoEx(LPCWSTR name, LCTYPE type, LPWSTR out, int size) {
  if (size < 0 || (size && !out) || !known_name(name)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  return answer(type, out, size);
}

EXPORT int WINAPI GetLocaleInfoA(LCID lcid, LCTYPE type, LPSTR out, int size) {
  WCHAR wide[128];
  int n = GetLocaleInfoW(lcid, type, wide, sizeof wide / sizeof wide[0]);
  if (!n) return 0;
  if (type & LOCALE_RETURN_NUMBER) {
    if (size && size < (int)sizeof(DWORD)) {
      SetLastError(ERROR_INSUFFICIENT_BUFFER);
      return 0;
    }
    if (size) memcpy(out, wide, sizeof(DWORD));
    return sizeof(DWORD);
  }
  return WideCharToMultiByte(CP_ACP, 0, wide, n, out, size, NULL, NULL);
}

EXPORT LCID WINAPI GetUserDefaultLCID(void) { return EN_US; }
EXPORT LCID WINAPI GetSystemDefaultLCID(void) { return EN_US; }
EXPORT LCID WINAPI GetThreadLocale(void) { return EN_US; }
EXPORT BOOL WINAPI SetThreadLocale(LCID lcid) { return LANGIDFROMLCID(lcid) == EN_US; }
EXPORT LANGID WINAPI GetUserDefaultLangID(void) { return EN_US; }
EXPORT LANGID WINAPI GetSystemDefaultLangID(void) { return EN_US; }
EXPORT LANGID WINAPI GetUserDefaultUILanguage(void) { return EN_US; }
EXPORT LANGID WINAPI GetSystemDefaultUILanguage(void) { return EN_US; }
EXPORT BOOL WINAPI IsValidLocale(LCID lcid, DWORD flags) { (void)flags; return known_lcid(lcid); }
EXPORT BOOL WINAPI IsValidLocaleName(LPCWSTR name) { return name && known_name(name); }

static int copy_name(LPWSTR out, int size) {
  int len = sizeof en_us_name / sizeof en_us_name[0];
  if (!size) return len;
  if (size < len) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return 0;
  }
  memcpy(out, en_us_name, sizeof en_us_name);
  return len;
}

EXPORT int WINAPI GetUserDefaultLocaleName(LPWSTR out, int size) { return copy_name(out, size); }
EXPORT int WINAPI GetSystemDefaultLocaleName(LPWSTR out, int size) { return copy_name(out, size); }

EXPORT LCID WINAPI LocaleNameToLCID(LPCWSTR name, DWORD flags) {
  (void)flags;
  if (!known_name(name)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  return name && same_name(name, "en") ? LANG_ENGLISH : EN_US;
}

EXPORT int WINAPI LCIDToLocaleName(LCID lcid, LPWSTR out, int size, DWORD flags) {
  (void)flags;
  if (!known_lcid(lcid)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  return copy_name(out, size);
}

EXPORT BOOL WINAPI EnumSystemLocalesEx(LOCALE_ENUMPROCEX proc, DWORD flags, LPARAM param, LPVOID reserved) {
  (void)flags, (void)reserved;
  proc((LPWSTR)en_us_name, LOCALE_WINDOWS, param);
  return TRUE;
}
