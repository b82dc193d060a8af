#ifndef UNICODE_H
#define UNICODE_H
#include "pvxrt.h"

struct ctype_run { WCHAR first, last; WORD ctype1; };
struct case_pair { WCHAR from, to; };
extern const struct ctype_run ctype_runs[];
extern const unsigned ctype_run_count;
extern const struct case_pair to_upper[], to_lower[];
extern const unsigned to_upper_count, to_lower_count;

WORD char_ctype1(WCHAR c);
WCHAR char_upper(WCHAR c);
WCHAR char_lower(WCHAR c);
#endif
