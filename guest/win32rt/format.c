/* ntdll's _vsnprintf, which Wine's DLLs import to format their debug
 * messages. It formats what those need: integers in every width Windows
 * spells (h, l, ll, I, I32, I64, z, j, t), characters and strings, narrow
 * or wide (a wide one converted to the ANSI code page), and pointers. A
 * floating-point conversion, %n or an unknown one makes the call fail with
 * -1, the answer a caller already handles for output that does not fit,
 * rather than print something a real ntdll would not. */
#include "pvxrt.h"
#include <stdarg.h>

struct sink { char *at; SIZE_T room, length; };

static void put(struct sink *s, char c) {
  if (s->length < s->room) s->at[s->length] = c;
  s->length++;
}

static void pad(struct sink *s, char c, int n) {
  while (n-- > 0) put(s, c);
}

struct spec { BOOL left, plus, space, zero, alternate; int width, precision; };

/* A converted field: `prefix` (sign or 0x), then zeros up to the precision,
 * then the digits, padded to the width. */
static void field(struct sink *s, const struct spec *f, const char *prefix, const char *digits, int length,
                  int zeros) {
  int prefix_length = (int)pvx_strlen(prefix), total = prefix_length + zeros + length;
  BOOL zero_pad = f->zero && !f->left; /* even with a precision, unlike C99 */
  if (!f->left && !zero_pad) pad(s, ' ', f->width - total);
  for (const char *p = prefix; *p; p++) put(s, *p);
  if (zero_pad) pad(s, '0', f->width - total);
  pad(s, '0', zeros);
  for (int i = 0; i < length; i++) put(s, digits[i]);
  if (f->left) pad(s, ' ', f->width - total);
}

static void integer(struct sink *s, const struct spec *f, char conversion, ULONG64 value, BOOL negative) {
  char digits[24];
  unsigned base = conversion == 'o' ? 8 : conversion == 'x' || conversion == 'X' || conversion == 'p' ? 16 : 10;
  const char *alphabet = conversion == 'x' ? "0123456789abcdef" : "0123456789ABCDEF";
  int n = 0;
  BOOL zero = value == 0;
  for (; value; value /= base) digits[sizeof digits - 1 - n++] = alphabet[value % base];
  if (zero && f->precision != 0) digits[sizeof digits - 1 - n++] = '0';
  int zeros = f->precision > n ? f->precision - n : 0;
  const char *prefix = negative ? "-" : f->plus && conversion == 'd' ? "+" : f->space && conversion == 'd' ? " " : "";
  if (f->alternate && !zero && (conversion == 'x' || conversion == 'X')) prefix = conversion == 'x' ? "0x" : "0X";
  if (f->alternate && conversion == 'o' && zeros == 0 && !zero) zeros = 1;
  field(s, f, prefix, digits + sizeof digits - n, n, zeros);
}

static void narrow_string(struct sink *s, const struct spec *f, const char *text, int length) {
  field(s, f, "", text, length, 0);
}

static void wide_string(struct sink *s, const struct spec *f, const WCHAR *text, int length) {
  int bytes = 0;
  char converted[2];
  for (int i = 0; i < length; i++) bytes += WideCharToMultiByte(CP_ACP, 0, text + i, 1, converted, 2, NULL, NULL);
  if (!f->left) pad(s, ' ', f->width - bytes);
  for (int i = 0; i < length; i++) {
    int n = WideCharToMultiByte(CP_ACP, 0, text + i, 1, converted, 2, NULL, NULL);
    for (int k = 0; k < n; k++) put(s, converted[k]);
  }
  if (f->left) pad(s, ' ', f->width - bytes);
}

static int limited_length_narrow(const char *t, int precision) {
  int n = 0;
  while ((precision < 0 || n < precision) && t[n]) n++;
  return n;
}

static int limited_length_wide(const WCHAR *t, int precision) {
  int n = 0;
  while ((precision < 0 || n < precision) && t[n]) n++;
  return n;
}

static int number(const char **p) {
  int n = 0;
  while (**p >= '0' && **p <= '9') n = n * 10 + *(*p)++ - '0';
  return n;
}

/* The length modifier's width in bytes, or 0 for an int. */
static int length_modifier(const char **p, BOOL *wide, BOOL *narrow) {
  int size = 0;
  for (;;) {
    const char *q = *p;
    if (q[0] == 'I' && q[1] == '6' && q[2] == '4') size = 8, *p += 3;
    else if (q[0] == 'I' && q[1] == '3' && q[2] == '2') size = 4, *p += 3;
    else if (q[0] == 'I' || q[0] == 'z' || q[0] == 'j' || q[0] == 't') size = 8, *p += 1;
    else if (q[0] == 'l' && q[1] == 'l') size = 8, *p += 2;
    else if (q[0] == 'l') size = size ? size : 4, *wide = TRUE, *p += 1;
    else if (q[0] == 'h') size = 2, *narrow = TRUE, *p += 1; /* hh too: ntdll knows no char-sized integer */
    else if (q[0] == 'w') *wide = TRUE, *p += 1;
    else if (q[0] == 'F' || q[0] == 'N' || q[0] == 'L') *p += 1;
    else return size;
  }
}

static BOOL format(struct sink *s, const char *p, va_list ap) {
  while (*p) {
    if (*p != '%') {
      put(s, *p++);
      continue;
    }
    p++;
    struct spec f = { .precision = -1 };
    for (;; p++) {
      if (*p == '-') f.left = TRUE;
      else if (*p == '+') f.plus = TRUE;
      else if (*p == ' ') f.space = TRUE;
      else if (*p == '0') f.zero = TRUE;
      else if (*p == '#') f.alternate = TRUE;
      else break;
    }
    if (*p == '*') {
      f.width = va_arg(ap, int);
      if (f.width < 0) f.left = TRUE, f.width = -f.width;
      p++;
    } else f.width = number(&p);
    if (*p == '.') {
      p++;
      if (*p == '*') {
        f.precision = va_arg(ap, int);
        p++;
      } else f.precision = number(&p);
    }
    BOOL wide = FALSE, narrow = FALSE;
    int size = length_modifier(&p, &wide, &narrow);
    char conversion = *p++;
    switch (conversion) {
    case '%': put(s, '%'); break;
    case 'd':
    case 'i': {
      LONG64 v = size == 8 ? va_arg(ap, LONG64) : va_arg(ap, int);
      if (size == 2) v = (short)v;
      integer(s, &f, 'd', v < 0 ? 0ull - (ULONG64)v : (ULONG64)v, v < 0);
      break;
    }
    case 'u':
    case 'o':
    case 'x':
    case 'X': {
      ULONG64 v = size == 8 ? va_arg(ap, ULONG64) : va_arg(ap, unsigned);
      if (size == 2) v = (unsigned short)v;
      integer(s, &f, conversion, v, FALSE);
      break;
    }
    case 'p': {
      struct spec pointer = f;
      pointer.precision = 16;
      pointer.zero = FALSE;
      integer(s, &pointer, 'p', (ULONG64)va_arg(ap, void *), FALSE);
      break;
    }
    case 'c':
    case 'C': {
      int c = va_arg(ap, int);
      if (wide || (conversion == 'C' && !narrow)) {
        WCHAR w = (WCHAR)c;
        wide_string(s, &f, &w, 1);
      } else {
        char n = (char)c;
        narrow_string(s, &f, &n, 1);
      }
      break;
    }
    case 's':
    case 'S': {
      const void *text = va_arg(ap, const void *);
      if (!text) narrow_string(s, &f, "(null)", limited_length_narrow("(null)", f.precision));
      else if (wide || (conversion == 'S' && !narrow))
        wide_string(s, &f, text, limited_length_wide(text, f.precision));
      else narrow_string(s, &f, text, limited_length_narrow(text, f.precision));
      break;
    }
    default: return FALSE; /* floating point, %n, or not a conversion */
    }
  }
  return TRUE;
}

/* Windows' contract: the length when it fits with room for the NUL, the
 * count itself (unterminated) when it fits exactly, -1 when it does not. */
EXPORT int __cdecl _vsnprintf(char *buffer, SIZE_T count, const char *fmt, va_list ap) {
  struct sink s = { buffer, count, 0 };
  if (!fmt || (!buffer && count)) return -1;
  if (!format(&s, fmt, ap)) {
    if (count) buffer[s.length < count ? s.length : count - 1] = 0;
    return -1;
  }
  if (s.length < count) buffer[s.length] = 0;
  return s.length <= count ? (int)s.length : -1;
}
