#ifndef CODEPAGES_H
#define CODEPAGES_H
#include "pvxrt.h"

/* The ANSI and OEM code pages of a US-English Windows. */
#define PVX_ACP 1252
#define PVX_OEMCP 437

extern const WCHAR cp1252_high[128], cp437_high[128], cp850_high[128];

/* CP_ACP, CP_OEMCP and the like as the code page they stand for. */
UINT resolve_codepage(UINT cp);
BOOL codepage_known(UINT cp);
#endif
