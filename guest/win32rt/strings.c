/* Character types, case mapping and comparison for the one locale pvx has,
 * en-US. Comparisons are a simplified Windows sort: letters compare without
 * case first, then lower case before upper; pvx has no diacritic or
 * punctuation weights, so "co-op" and "coop" differ as their code points do. */
#include "codepages.h"
#include "unicode.h"

WORD char_ctype1(WCHAR c) {
  unsigned lo = 0, hi = ctype_run_count;
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    if (c < ctype_runs[mid].first) hi = mid;
    else if (c > ctype_runs[mid].last) lo = mid + 1;
    else return ctype_runs[mid].ctype1;
  }
  return 0;
}

static WCHAR mapped(const struct case_pair *pairs, unsigned count, WCHAR c) {
  unsigned lo = 0, hi = count;
  while (lo < hi) {
    unsigned mid = (lo + hi) / 2;
    if (c < pairs[mid].from) hi = mid;
    else if (c > pairs[mid].from) lo = mid + 1;
    else return pairs[mid].to;
  }
  return c;
}

WCHAR char_upper(WCHAR c) { return c < 0x80 ? (c >= 'a' && c <= 'z' ? c - 32 : c) : mapped(to_upper, to_upper_count, c); }
WCHAR char_lower(WCHAR c) { return c < 0x80 ? (c >= 'A' && c <= 'Z' ? c + 32 : c) : mapped(to_lower, to_lower_count, c); }

static WORD ctype2(WORD t1, WCHAR c) {
  if (t1 & C1_DIGIT) return C2_EUROPENUMBER;
  if (t1 & C1_SPACE) return c == '\n' || c == '\r' ? C2_BLOCKSEPARATOR : C2_WHITESPACE;
  if (t1 & C1_ALPHA) return C2_LEFTTORIGHT;
  if (c == '+' || c == '-') return C2_EUROPESEPARATOR;
  if (t1 & C1_DEFINED) return C2_OTHERNEUTRAL;
  return C2_NOTAPPLICABLE;
}

static WORD ctype3(WORD t1, WCHAR c) {
  WORD t = 0;
  if (t1 & C1_ALPHA) t |= C3_ALPHA;
  if ((t1 & C1_PUNCT) && !(c < 0x80 && c != '$' && c != '+' && c != '<' && c != '=' && c != '>' && c != '^' &&
                           c != '`' && c != '|' && c != '~'))
    t |= C3_SYMBOL;
  if (c >= 0xff00 && c <= 0xffef) t |= C3_FULLWIDTH;
  return t;
}

EXPORT BOOL WINAPI GetStringTypeW(DWORD type, LPCWSTR src, int count, LPWORD out) {
  if (!src || !out || (type != CT_CTYPE1 && type != CT_CTYPE2 && type != CT_CTYPE3)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (count < 0) count = (int)pvx_wcslen(src) + 1;
  for (int i = 0; i < count; i++) {
    WORD t1 = char_ctype1(src[i]);
    out[i] = type == CT_CTYPE1 ? t1 : type == CT_CTYPE2 ? ctype2(t1, src[i]) : ctype3(t1, src[i]);
  }
  return TRUE;
}

EXPORT BOOL WINAPI GetStringTypeExW(LCID lcid, DWORD type, LPCWSTR src, int count, LPWORD out) {
  (void)lcid;
  return GetStringTypeW(type, src, count, out);
}

/* The ANSI forms convert byte by byte: every code page pvx has is single-byte or UTF-8, and a UTF-8 byte
 * outside ASCII alone is no character. */
EXPORT BOOL WINAPI GetStringTypeExA(LCID lcid, DWORD type, LPCSTR src, int count, LPWORD out) {
  (void)lcid;
  if (!src || !out) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  if (count < 0) count = (int)pvx_strlen(src) + 1;
  for (int i = 0; i < count; i++) {
    WCHAR w = 0;
    if (!MultiByteToWideChar(CP_ACP, 0, src + i, 1, &w, 1)) w = 0xfffd;
    if (!GetStringTypeW(type, &w, 1, out + i)) return FALSE;
  }
  return TRUE;
}

EXPORT BOOL WINAPI GetStringTypeA(LCID lcid, DWORD type, LPCSTR src, int count, LPWORD out) {
  return GetStringTypeExA(lcid, type, src, count, out);
}

/* Primary weight: the character without case. */
static WCHAR primary(WCHAR c) { return char_upper(c); }

static int compare(DWORD flags, LPCWSTR a, int na, LPCWSTR b, int nb) {
  if (na < 0) na = (int)pvx_wcslen(a);
  if (nb < 0) nb = (int)pvx_wcslen(b);
  BOOL ignore_case = (flags & (NORM_IGNORECASE | LINGUISTIC_IGNORECASE)) != 0;
  int n = na < nb ? na : nb;
  for (int i = 0; i < n; i++) {
    WCHAR pa = primary(a[i]), pb = primary(b[i]);
    if (pa != pb) return pa < pb ? CSTR_LESS_THAN : CSTR_GREATER_THAN;
  }
  if (na != nb) return na < nb ? CSTR_LESS_THAN : CSTR_GREATER_THAN;
  if (!ignore_case) {
    for (int i = 0; i < n; i++) {
      if (a[i] == b[i]) continue;
      BOOL la = char_upper(a[i]) != a[i], lb = char_upper(b[i]) != b[i];
      if (la != lb) return la ? CSTR_LESS_THAN : CSTR_GREATER_THAN; /* lower case sorts first */
      return a[i] < b[i] ? CSTR_LESS_THAN : CSTR_GREATER_THAN;
    }
  }
  return CSTR_EQUAL;
}

EXPORT int WINAPI CompareStringEx(LPCWSTR locale, DWORD flags, LPCWCH a, int na, LPCWCH b, int nb,
                                  LPNLSVERSIONINFO version, LPVOID reserved, LPARAM param) {
  (void)locale, (void)version, (void)reserved, (void)param;
  if (!a || !b) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  return compare(flags, a, na, b, nb);
}

EXPORT int WINAPI CompareStringW(LCID lcid, DWORD flags, PCNZWCH a, int na, PCNZWCH b, int nb) {
  (void)lcid;
  return CompareStringEx(NULL, flags, a, na, b, nb, NULL, NULL, 0);
}

EXPORT int WINAPI CompareStringOrdinal(LPCWCH a, int na, LPCWCH b, int nb, BOOL ignore_case) {
  if (!a || !b) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  if (na < 0) na = (int)pvx_wcslen(a);
  if (nb < 0) nb = (int)pvx_wcslen(b);
  int n = na < nb ? na : nb;
  for (int i = 0; i < n; i++) {
    WCHAR ca = ignore_case ? char_upper(a[i]) : a[i], cb = ignore_case ? char_upper(b[i]) : b[i];
    if (ca != cb) return ca < cb ? CSTR_LESS_THAN : CSTR_GREATER_THAN;
  }
  return na == nb ? CSTR_EQUAL : na < nb ? CSTR_LESS_THAN : CSTR_GREATER_THAN;
}

/* A wide copy of an ANSI argument, on the process heap; *n becomes its length (without a NUL). */
static LPWSTR widen(LPCSTR s, int *n) {
  int len = *n < 0 ? (int)pvx_strlen(s) : *n;
  LPWSTR w = HeapAlloc(GetProcessHeap(), 0, (len + 1) * sizeof(WCHAR));
  if (!w) return NULL;
  *n = len ? MultiByteToWideChar(CP_ACP, 0, s, len, w, len) : 0;
  w[*n] = 0;
  return w;
}

EXPORT int WINAPI CompareStringA(LCID lcid, DWORD flags, PCNZCH a, int na, PCNZCH b, int nb) {
  (void)lcid;
  if (!a || !b) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  LPWSTR wa = widen(a, &na), wb = widen(b, &nb);
  int r = wa && wb ? compare(flags, wa, na, wb, nb) : 0;
  HeapFree(GetProcessHeap(), 0, wa);
  HeapFree(GetProcessHeap(), 0, wb);
  return r;
}

EXPORT int WINAPI lstrcmpW(LPCWSTR a, LPCWSTR b) { return CompareStringW(LOCALE_USER_DEFAULT, 0, a, -1, b, -1) - 2; }
EXPORT int WINAPI lstrcmpiW(LPCWSTR a, LPCWSTR b) {
  return CompareStringW(LOCALE_USER_DEFAULT, NORM_IGNORECASE, a, -1, b, -1) - 2;
}
EXPORT int WINAPI lstrcmpA(LPCSTR a, LPCSTR b) { return CompareStringA(LOCALE_USER_DEFAULT, 0, a, -1, b, -1) - 2; }
EXPORT int WINAPI lstrcmpiA(LPCSTR a, LPCSTR b) {
  return CompareStringA(LOCALE_USER_DEFAULT, NORM_IGNORECASE, a, -1, b, -1) - 2;
}
EXPORT int WINAPI lstrlenW(LPCWSTR s) { return s ? (int)pvx_wcslen(s) : 0; }
EXPORT int WINAPI lstrlenA(LPCSTR s) { return s ? (int)pvx_strlen(s) : 0; }

/* A sort key CompareString agrees with: the primary weights as big-endian words, then a case byte each. */
static int sort_key(LPCWSTR src, int n, BYTE *out, int size) {
  int need = 2 * n + 1 + n + 1;
  if (!size) return need;
  if (size < need) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return 0;
  }
  int at = 0;
  for (int i = 0; i < n; i++) out[at++] = primary(src[i]) >> 8, out[at++] = primary(src[i]) & 0xff;
  out[at++] = 1;
  for (int i = 0; i < n; i++) out[at++] = char_upper(src[i]) == src[i] && char_lower(src[i]) != src[i] ? 2 : 1;
  out[at++] = 0;
  return need;
}

EXPORT int WINAPI LCMapStringEx(LPCWSTR locale, DWORD flags, LPCWSTR src, int n, LPWSTR dst, int size,
                                LPNLSVERSIONINFO version, LPVOID reserved, LPARAM param) {
  (void)locale, (void)version, (void)reserved, (void)param;
  if (!src || size < 0 || (size && !dst) || n == 0) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  if (n < 0) n = (int)pvx_wcslen(src) + 1;
  if (flags & LCMAP_SORTKEY) return sort_key(src, n, (BYTE *)dst, size);
  if ((flags & LCMAP_UPPERCASE) && (flags & LCMAP_LOWERCASE)) {
    SetLastError(ERROR_INVALID_FLAGS);
    return 0;
  }
  if (!size) return n;
  if (size < n) {
    SetLastError(ERROR_INSUFFICIENT_BUFFER);
    return 0;
  }
  for (int i = 0; i < n; i++) {
    WCHAR c = src[i];
    if (flags & LCMAP_UPPERCASE) c = char_upper(c);
    else if (flags & LCMAP_LOWERCASE) c = char_lower(c);
    if (flags & LCMAP_BYTEREV) c = (WCHAR)((c << 8) | (c >> 8));
    dst[i] = c;
  }
  return n;
}

EXPORT int WINAPI LCMapStringW(LCID lcid, DWORD flags, LPCWSTR src, int n, LPWSTR dst, int size) {
  (void)lcid;
  return LCMapStringEx(NULL, flags, src, n, dst, size, NULL, NULL, 0);
}

EXPORT int WINAPI LCMapStringA(LCID lcid, DWORD flags, LPCSTR src, int n, LPSTR dst, int size) {
  if (!src || n == 0 || size < 0) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  BOOL with_nul = n < 0;
  int wn = n;
  LPWSTR w = widen(src, &wn);
  if (!w) return 0;
  if (with_nul) wn++;
  int r = 0;
  if (flags & LCMAP_SORTKEY) {
    r = LCMapStringW(lcid, flags, w, wn, (LPWSTR)dst, size);
  } else {
    LPWSTR mappedw = HeapAlloc(GetProcessHeap(), 0, wn * sizeof(WCHAR));
    if (mappedw && LCMapStringW(lcid, flags, w, wn, mappedw, wn))
      r = WideCharToMultiByte(CP_ACP, 0, mappedw, wn, dst, size, NULL, NULL);
    HeapFree(GetProcessHeap(), 0, mappedw);
  }
  HeapFree(GetProcessHeap(), 0, w);
  return r;
}
