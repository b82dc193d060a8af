/* FormatMessage: system messages for the error codes pvx's calls return, in
 * Windows' English wording, and message strings with %1..%99 inserts (each a
 * string, or formatted by its !printf-type! for d, u, x, X, s and S). */
#include "codepages.h"

static const struct { DWORD code; const char *text; } system_messages[] = {
  {ERROR_SUCCESS, "The operation completed successfully."},
  {ERROR_INVALID_FUNCTION, "Incorrect function."},
  {ERROR_FILE_NOT_FOUND, "The system cannot find the file specified."},
  {ERROR_PATH_NOT_FOUND, "The system cannot find the path specified."},
  {ERROR_TOO_MANY_OPEN_FILES, "The system cannot open the file."},
  {ERROR_ACCESS_DENIED, "Access is denied."},
  {ERROR_INVALID_HANDLE, "The handle is invalid."},
  {ERROR_NOT_ENOUGH_MEMORY, "Not enough memory resources are available to process this command."},
  {ERROR_INVALID_DRIVE, "The system cannot find the drive specified."},
  {ERROR_CURRENT_DIRECTORY, "The directory cannot be removed."},
  {ERROR_NOT_SAME_DEVICE, "The system cannot move the file to a different disk drive."},
  {ERROR_NO_MORE_FILES, "There are no more files."},
  {ERROR_WRITE_PROTECT, "The media is write protected."},
  {ERROR_BAD_LENGTH, "The program issued a command but the command length is incorrect."},
  {ERROR_SHARING_VIOLATION, "The process cannot access the file because it is being used by another process."},
  {ERROR_HANDLE_EOF, "Reached the end of the file."},
  {ERROR_NOT_SUPPORTED, "The request is not supported."},
  {ERROR_FILE_EXISTS, "The file exists."},
  {ERROR_INVALID_PARAMETER, "The parameter is incorrect."},
  {ERROR_BROKEN_PIPE, "The pipe has been ended."},
  {ERROR_DISK_FULL, "There is not enough space on the disk."},
  {ERROR_CALL_NOT_IMPLEMENTED, "This function is not supported on this system."},
  {ERROR_INSUFFICIENT_BUFFER, "The data area passed to a system call is too small."},
  {ERROR_INVALID_NAME, "The filename, directory name, or volume label syntax is incorrect."},
  {ERROR_MOD_NOT_FOUND, "The specified module could not be found."},
  {ERROR_PROC_NOT_FOUND, "The specified procedure could not be found."},
  {ERROR_NEGATIVE_SEEK, "An attempt was made to move the file pointer before the beginning of the file."},
  {ERROR_DIR_NOT_EMPTY, "The directory is not empty."},
  {ERROR_BUSY, "The requested resource is in use."},
  {ERROR_ALREADY_EXISTS, "Cannot create a file when that file already exists."},
  {ERROR_ENVVAR_NOT_FOUND, "The system could not find the environment option that was entered."},
  {ERROR_FILENAME_EXCED_RANGE, "The filename or extension is too long."},
  {ERROR_DIRECTORY, "The directory name is invalid."},
  {ERROR_NOT_OWNER, "Attempt to release mutex not owned by caller."},
  {ERROR_TOO_MANY_POSTS, "Too many posts were made to a semaphore."},
  {ERROR_INVALID_ADDRESS, "Attempt to access invalid address."},
  {ERROR_NO_UNICODE_TRANSLATION, "No mapping for the Unicode character exists in the target multi-byte code page."},
  {ERROR_NOACCESS, "Invalid access to memory location."},
  {ERROR_TIMEOUT, "This operation returned because the timeout period expired."},
};

/* Output under construction: grows on the process heap. */
struct out { WCHAR *text; DWORD len, cap; };

static BOOL put(struct out *o, WCHAR c) {
  if (o->len + 1 >= o->cap) {
    DWORD cap = o->cap ? o->cap * 2 : 256;
    WCHAR *t = o->text ? HeapReAlloc(GetProcessHeap(), 0, o->text, cap * sizeof(WCHAR))
                       : HeapAlloc(GetProcessHeap(), 0, cap * sizeof(WCHAR));
    if (!t) return FALSE;
    o->text = t, o->cap = cap;
  }
  o->text[o->len++] = c;
  o->text[o->len] = 0;
  return TRUE;
}

static BOOL put_ascii(struct out *o, const char *s) {
  for (; *s; s++) if (!put(o, (unsigned char)*s)) return FALSE;
  return TRUE;
}

static BOOL put_number(struct out *o, ULONG_PTR v, int base, BOOL upper, BOOL is_signed) {
  char digits[24];
  int n = 0;
  BOOL negative = is_signed && (LONG_PTR)v < 0;
  if (negative) v = -(LONG_PTR)v;
  do digits[n++] = (upper ? "0123456789ABCDEF" : "0123456789abcdef")[v % base]; while (v /= base);
  if (negative && !put(o, '-')) return FALSE;
  while (n) if (!put(o, digits[--n])) return FALSE;
  return TRUE;
}

/* Formats `src` (wide, or ANSI when !wide_src) with inserts from `args` (an array or a va_list). */
static BOOL format(struct out *o, const void *src, BOOL wide_src, DWORD flags, va_list *va, const DWORD_PTR *array,
                   BOOL wide_args) {
  BOOL ignore = (flags & FORMAT_MESSAGE_IGNORE_INSERTS) != 0;
  DWORD width = flags & FORMAT_MESSAGE_MAX_WIDTH_MASK;
  for (DWORD i = 0;; i++) {
    WCHAR c = wide_src ? ((const WCHAR *)src)[i] : (unsigned char)((const char *)src)[i];
    if (!c) return TRUE;
    if (c == '\r' && width == FORMAT_MESSAGE_MAX_WIDTH_MASK) continue;
    if (c != '%' || ignore) {
      if (c == '\n' && width == FORMAT_MESSAGE_MAX_WIDTH_MASK) c = ' ';
      if (!put(o, c)) return FALSE;
      continue;
    }
    WCHAR n = wide_src ? ((const WCHAR *)src)[++i] : (unsigned char)((const char *)src)[++i];
    if (n == 0) return TRUE;
    if (n < '1' || n > '9') {
      /* %0 ends the message, %n is a line break, %% %. %! and the like are the character itself. */
      if (n == '0') return TRUE;
      if (!put(o, n == 'n' ? '\r' : n == 't' ? '\t' : n) || (n == 'n' && !put(o, '\n'))) return FALSE;
      continue;
    }
    unsigned index = n - '0';
    WCHAR d = wide_src ? ((const WCHAR *)src)[i + 1] : (unsigned char)((const char *)src)[i + 1];
    if (d >= '0' && d <= '9') index = index * 10 + (d - '0'), i++;
    char type = 's';
    WCHAR bang = wide_src ? ((const WCHAR *)src)[i + 1] : (unsigned char)((const char *)src)[i + 1];
    if (bang == '!') {
      /* !printf-spec!: the conversion is its last letter; flags and widths are not honoured. */
      DWORD j = i + 2;
      for (;; j++) {
        WCHAR t = wide_src ? ((const WCHAR *)src)[j] : (unsigned char)((const char *)src)[j];
        if (!t) return TRUE;
        if (t == '!') break;
        if ((t >= 'a' && t <= 'z') || (t >= 'A' && t <= 'Z')) type = (char)t;
      }
      i = j;
    }
    if (!va && !array) {
      SetLastError(ERROR_INVALID_PARAMETER);
      return FALSE;
    }
    ULONG_PTR arg;
    if (array) {
      arg = array[index - 1];
    } else {
      /* A va_list is read in order: inserts must come 1, 2, 3... as in every common use. */
      arg = va_arg(*va, ULONG_PTR);
    }
    BOOL ok;
    switch (type) {
    case 'd':
    case 'i':
      ok = put_number(o, (ULONG_PTR)(LONG_PTR)(int)arg, 10, FALSE, TRUE);
      break;
    case 'u':
      ok = put_number(o, (unsigned)arg, 10, FALSE, FALSE);
      break;
    case 'x':
    case 'X':
      ok = put_number(o, (unsigned)arg, 16, type == 'X', FALSE);
      break;
    case 'S':
      wide_args = !wide_args;
      /* fall through */
    default:
      ok = TRUE;
      if (!arg) ok = put_ascii(o, "(null)");
      else if (wide_args)
        for (const WCHAR *p = (const WCHAR *)arg; ok && *p; p++) ok = put(o, *p);
      else
        for (const char *p = (const char *)arg; ok && *p; p++) {
          WCHAR w;
          ok = MultiByteToWideChar(CP_ACP, 0, p, 1, &w, 1) && put(o, w);
        }
      if (type == 'S') wide_args = !wide_args;
    }
    if (!ok) return FALSE;
  }
}

/* The message text and whether it is wide, or NULL with the last error set. */
static const void *message_source(DWORD flags, LPCVOID source, DWORD id, BOOL wide, BOOL *wide_src) {
  *wide_src = wide;
  if (flags & FORMAT_MESSAGE_FROM_STRING) return source;
  if (flags & FORMAT_MESSAGE_FROM_SYSTEM) {
    for (unsigned i = 0; i < sizeof system_messages / sizeof system_messages[0]; i++) {
      if (system_messages[i].code == id) {
        *wide_src = FALSE;
        return system_messages[i].text;
      }
    }
  }
  /* FORMAT_MESSAGE_FROM_HMODULE would read a message table resource; pvx loads none. */
  SetLastError(ERROR_MR_MID_NOT_FOUND);
  return NULL;
}

static DWORD format_message(DWORD flags, LPCVOID source, DWORD id, LPVOID buffer, DWORD size, va_list *va, BOOL wide) {
  BOOL wide_src;
  const void *src = message_source(flags, source, id, wide, &wide_src);
  if (!src) return 0;
  struct out o = {0};
  const DWORD_PTR *array = flags & FORMAT_MESSAGE_ARGUMENT_ARRAY ? (const DWORD_PTR *)va : NULL;
  BOOL ok = format(&o, src, wide_src, flags, array ? NULL : va, array, wide) && put(&o, 0);
  if (!ok) {
    HeapFree(GetProcessHeap(), 0, o.text);
    if (GetLastError() == ERROR_SUCCESS) SetLastError(ERROR_NOT_ENOUGH_MEMORY);
    return 0;
  }
  o.len--; /* the NUL put() added as a character */
  /* System messages end with a line break, as Windows' message tables do. */
  if ((flags & FORMAT_MESSAGE_FROM_SYSTEM) && !(flags & FORMAT_MESSAGE_FROM_STRING) &&
      (flags & FORMAT_MESSAGE_MAX_WIDTH_MASK) != FORMAT_MESSAGE_MAX_WIDTH_MASK)
    ok = put(&o, '\r') && put(&o, '\n');
  DWORD result = 0;
  if (ok && wide) {
    if (flags & FORMAT_MESSAGE_ALLOCATE_BUFFER) {
      *(LPWSTR *)buffer = LocalAlloc(LMEM_FIXED, (o.len + 1) * sizeof(WCHAR));
      if (*(LPWSTR *)buffer) memcpy(*(LPWSTR *)buffer, o.text, (o.len + 1) * sizeof(WCHAR)), result = o.len;
    } else if (o.len < size) {
      memcpy(buffer, o.text, (o.len + 1) * sizeof(WCHAR));
      result = o.len;
    } else {
      SetLastError(ERROR_INSUFFICIENT_BUFFER);
    }
  } else if (ok) {
    int bytes = WideCharToMultiByte(CP_ACP, 0, o.text, o.len + 1, NULL, 0, NULL, NULL);
    if (flags & FORMAT_MESSAGE_ALLOCATE_BUFFER) {
      *(LPSTR *)buffer = LocalAlloc(LMEM_FIXED, bytes);
      if (*(LPSTR *)buffer) WideCharToMultiByte(CP_ACP, 0, o.text, o.len + 1, *(LPSTR *)buffer, bytes, NULL, NULL), result = bytes - 1;
    } else if ((DWORD)bytes <= size) {
      WideCharToMultiByte(CP_ACP, 0, o.text, o.len + 1, buffer, size, NULL, NULL);
      result = bytes - 1;
    } else {
      SetLastError(ERROR_INSUFFICIENT_BUFFER);
    }
  }
  HeapFree(GetProcessHeap(), 0, o.text);
  return result;
}

EXPORT DWORD WINAPI FormatMessageW(DWORD flags, LPCVOID source, DWORD id, DWORD lang, LPWSTR buffer, DWORD size,
                                   va_list *args) {
  (void)lang;
  return format_message(flags, source, id, buffer, size, args, TRUE);
}

EXPORT DWORD WINAPI FormatMessageA(DWORD flags, LPCVOID source, DWORD id, DWORD lang, LPSTR buffer, DWORD size,
                                   va_list *args) {
  (void)lang;
  return format_message(flags, source, id, buffer, size, args, FALSE);
}
