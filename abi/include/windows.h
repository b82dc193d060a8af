/* Lets Win32 sources keep `#include <windows.h>` when built as pvx guests (gcc -I abi/include). */
#include "../pvx.h"
