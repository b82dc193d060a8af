/* Code pages: UTF-8 and the single-byte pages of a Western Windows (1252,
 * 437, 850, 28591, 20127). Conversions follow MultiByteToWideChar's contract:
 * -1 lengths include the NUL, a zero-sized output asks for the size, and a
 * short buffer is ERROR_INSUFFICIENT_BUFFER. Unmappable characters become
 * the code page's default character ('?'); pvx does no best-fit mapping. */
#include "codepages.h"

UINT resolve_codepage(UINT cp) {
  switch (cp) {
  case CP_ACP:
  case CP_THREAD_ACP:
  case CP_MACCP:
    return PVX_ACP;
  case CP_OEMCP:
    return PVX_OEMCP;
  default:
    return cp;
  }
}

static const WCHAR *high_half(UINT cp) {
  switch (cp) {
  case 1252:
    return cp1252_high;
  case 437:
    return cp437_high;
  case 850:
    return cp850_high;
  default:
    return NULL;
  }
}

BOOL codepage_known(UINT cp) {
  cp = resolve_codepage(cp);
  return cp == CP_UTF8 || cp == 28591 || cp == 20127 || high_half(cp) != NULL;
}

EXPORT UINT WINAPI GetACP(void) { return PVX_ACP; }
EXPORT UINT WINAPI GetOEMCP(void) { return PVX_OEMCP; }
EXPORT BOOL WINAPI IsValidCodePage(UINT cp) { return cp != CP_ACP && cp != CP_OEMCP && codepage_known(cp); }
/* Every page pvx knows is single-byte or UTF-8: no byte leads a double-byte character. */
EXPORT BOOL WINAPI IsDBCSLeadByte(BYTE b) { (void)b; return FALSE; }
EXPORT BOOL WINAPI IsDBCSLeadByteEx(UINT cp, BYTE b) { (void)cp, (void)b; return FALSE; }

EXPORT BOOL WINAPI GetCPInfo(UINT cp, LPCPINFO info) {
  if (!info || !codepage_known(cp)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return FALSE;
  }
  memset(info, 0, sizeof *info);
  info->MaxCharSize = resolve_codepage(cp) == CP_UTF8 ? 4 : 1;
  info->DefaultChar[0] = '?';
  return TRUE;
}

EXPORT BOOL WINAPI GetCPInfoExW(UINT cp, DWORD flags, LPCPINFOEXW info) {
  (void)flags;
  if (!GetCPInfo(cp, (LPCPINFO)info)) return FALSE;
  cp = resolve_codepage(cp);
  info->UnicodeDefaultChar = '?';
  info->CodePage = cp;
  const char *name = cp == CP_UTF8 ? "65001 (UTF-8)" : cp == 1252 ? "1252  (ANSI - Latin I)"
                   : cp == 437 ? "437   (OEM - United States)" : cp == 850 ? "850   (OEM - Multilingual Latin I)"
                   : cp == 28591 ? "28591 (ISO 8859-1 Latin I)" : "20127 (US-ASCII)";
  int i = 0;
  for (; name[i] && i < MAX_PATH - 1; i++) info->CodePageName[i] = name[i];
  info->CodePageName[i] = 0;
  return TRUE;
}

/* One code point from UTF-8 at s[*i] (n bytes in all); invalid or truncated sequences give U+FFFD and
 * consume what was examined, as Windows' decoder does. *bad is set for MB_ERR_INVALID_CHARS. */
static unsigned decode_utf8(const unsigned char *s, int n, int *i, BOOL *bad) {
  unsigned c = s[(*i)++];
  if (c < 0x80) return c;
  int more = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
  if (more < 0 || c > 0xf4) {
    *bad = TRUE;
    return 0xfffd;
  }
  unsigned cp = c & (0x3f >> more);
  unsigned min = more == 1 ? 0x80 : more == 2 ? 0x800 : 0x10000;
  for (int k = 0; k < more; k++) {
    if (*i >= n || (s[*i] & 0xc0) != 0x80) {
      *bad = TRUE;
      return 0xfffd;
    }
    cp = (cp << 6) | (s[(*i)++] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) {
    *bad = TRUE;
    return 0xfffd;
  }
  return cp;
}

EXPORT int WINAPI MultiByteToWideChar(UINT cp, DWORD flags, LPCCH src, int srclen, LPWSTR dst, int dstlen) {
  if (!src || srclen == 0 || dstlen < 0 || (dstlen && !dst) || (dst && (const void *)dst == (const void *)src)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  cp = resolve_codepage(cp);
  if (!codepage_known(cp)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  if (srclen < 0) srclen = (int)pvx_strlen(src) + 1;
  const unsigned char *s = (const unsigned char *)src;
  const WCHAR *high = high_half(cp);
  int out = 0;
  BOOL bad = FALSE;
  for (int i = 0; i < srclen;) {
    unsigned c;
    if (cp == CP_UTF8) {
      c = decode_utf8(s, srclen, &i, &bad);
    } else {
      unsigned b = s[i++];
      c = b < 0x80 || cp == 28591 ? b : high ? high[b - 0x80] : 0xfffd;
    }
    int units = c >= 0x10000 ? 2 : 1;
    if (dstlen) {
      if (out + units > dstlen) {
        SetLastError(ERROR_INSUFFICIENT_BUFFER);
        return 0;
      }
      if (units == 2) {
        dst[out] = 0xd800 | ((c - 0x10000) >> 10);
        dst[out + 1] = 0xdc00 | ((c - 0x10000) & 0x3ff);
      } else {
        dst[out] = c;
      }
    }
    out += units;
  }
  if (bad && (flags & MB_ERR_INVALID_CHARS)) {
    SetLastError(ERROR_NO_UNICODE_TRANSLATION);
    return 0;
  }
  return out;
}

/* The byte a single-byte page gives for `c`, or -1 when it has none. */
static int encode_single(UINT cp, unsigned c) {
  if (c < 0x80) return c;
  if (cp == 28591) return c < 0x100 ? (int)c : -1;
  const WCHAR *high = high_half(cp);
  if (!high) return -1;
  for (int b = 0; b < 128; b++) if (high[b] == c) return b + 0x80;
  return -1;
}

EXPORT int WINAPI WideCharToMultiByte(UINT cp, DWORD flags, LPCWCH src, int srclen, LPSTR dst, int dstlen,
                                      LPCCH defchar, LPBOOL used_default) {
  (void)flags;
  if (!src || srclen == 0 || dstlen < 0 || (dstlen && !dst) || (dst && (const void *)dst == (const void *)src)) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  cp = resolve_codepage(cp);
  if (!codepage_known(cp) || (cp == CP_UTF8 && (defchar || used_default))) {
    SetLastError(ERROR_INVALID_PARAMETER);
    return 0;
  }
  if (srclen < 0) srclen = (int)pvx_wcslen(src) + 1;
  char fallback = defchar ? *defchar : '?';
  BOOL defaulted = FALSE;
  int out = 0;
  for (int i = 0; i < srclen; i++) {
    unsigned c = src[i];
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < srclen && src[i + 1] >= 0xdc00 && src[i + 1] < 0xe000) {
      c = 0x10000 + ((c - 0xd800) << 10) + (src[++i] - 0xdc00);
    } else if (c >= 0xd800 && c < 0xe000) {
      c = cp == CP_UTF8 ? 0xfffd : 0x110000; /* a lone surrogate */
    }
    unsigned char bytes[4];
    int n;
    if (cp == CP_UTF8) {
      if (c < 0x80) bytes[0] = c, n = 1;
      else if (c < 0x800) bytes[0] = 0xc0 | (c >> 6), bytes[1] = 0x80 | (c & 0x3f), n = 2;
      else if (c < 0x10000)
        bytes[0] = 0xe0 | (c >> 12), bytes[1] = 0x80 | ((c >> 6) & 0x3f), bytes[2] = 0x80 | (c & 0x3f), n = 3;
      else
        bytes[0] = 0xf0 | (c >> 18), bytes[1] = 0x80 | ((c >> 12) & 0x3f), bytes[2] = 0x80 | ((c >> 6) & 0x3f),
        bytes[3] = 0x80 | (c & 0x3f), n = 4;
    } else {
      int b = c < 0x110000 ? encode_single(cp, c) : -1;
      if (b < 0) b = (unsigned char)fallback, defaulted = TRUE;
      bytes[0] = b, n = 1;
    }
    if (dstlen) {
      if (out + n > dstlen) {
        SetLastError(ERROR_INSUFFICIENT_BUFFER);
        return 0;
      }
      for (int k = 0; k < n; k++) dst[out + k] = bytes[k];
    }
    out += n;
  }
  if (used_default) *used_default = defaulted;
  return out;
}
