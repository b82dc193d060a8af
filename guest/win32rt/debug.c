/* Wine's PE DLLs log through ntdll's __wine_dbg_* functions. pvx prints none
 * of their traces: every channel reports itself off, so the callers skip
 * formatting, and a caller that logs anyway is told nothing was written. */
#include "pvxrt.h"

struct __wine_debug_channel;

EXPORT unsigned char __cdecl __wine_dbg_get_channel_flags(struct __wine_debug_channel *channel) {
  (void)channel;
  return 0;
}

EXPORT int __cdecl __wine_dbg_header(int cls, struct __wine_debug_channel *channel, const char *function) {
  (void)cls, (void)channel, (void)function;
  return -1;
}

EXPORT int __cdecl __wine_dbg_output(const char *text) {
  (void)text;
  return 0;
}

EXPORT const char *__cdecl __wine_dbg_strdup(const char *text) {
  return text;
}
