/* Calls a shipped DLL by name and by ordinal, and finds functions at run time:
 * by ordinal, and by a name spelled only at run time, which no analysis of the
 * exe's bytes can see (pvx's special calls, tests/windows_test.ts). */
#include "../common.h"

__declspec(dllimport) int add(int a, int b);
__declspec(dllimport) int mul(int a, int b);

typedef int (*binary)(int, int);
typedef DWORD (WINAPI *last_error)(void);
typedef BOOL (WINAPI *frequency)(LARGE_INTEGER *);

/* Backwards in the exe's bytes, forwards only at run time. */
static void reversed(const char *from, char *to, unsigned length) {
  for (unsigned i = 0; i < length; i++) to[i] = from[length - 1 - i];
  to[length] = 0;
}

int main(void) {
  value("add(2, 3) after DllMain ran", add(2, 3));
  value("mul(6, 7) by ordinal", mul(6, 7));
  HMODULE self = GetModuleHandleW(NULL), k32 = GetModuleHandleW(L"KERNEL32.DLL"), adder = LoadLibraryW(L"adder");
  value("GetModuleHandleW(NULL) found the exe", self != NULL);
  value("kernel32 and adder.dll are distinct modules", k32 != NULL && adder != NULL && k32 != adder);
  binary found = (binary)GetProcAddress(adder, "add");
  value("GetProcAddress(adder, add)(20, 22)", found ? found(20, 22) : -1);
  binary byOrdinal = (binary)GetProcAddress(adder, (LPCSTR)5);
  value("GetProcAddress(adder, #5)(3, 4)", byOrdinal ? byOrdinal(3, 4) : -1);
  SetLastError(77);
  last_error get = (last_error)GetProcAddress(k32, "GetLastError");
  value("GetProcAddress(kernel32, GetLastError)()", get ? (long long)get() : -1);
  char name[32];
  reversed("ycneuqerFecnamrofrePyreuQ", name, 25);
  frequency qpf = (frequency)GetProcAddress(k32, name);
  LARGE_INTEGER f = {0};
  value("GetProcAddress(kernel32, a name made at run time) works", qpf && qpf(&f) && f.QuadPart > 0);
  result("GetProcAddress(adder, nope)", GetProcAddress(adder, "nope") != NULL);
  result("LoadLibraryW(absent.dll)", LoadLibraryW(L"absent.dll") != NULL);
  char dll[16];
  WCHAR wide[16];
  reversed("lld.erehwon", dll, 11);
  for (int i = 0; i < 12; i++) wide[i] = (WCHAR)dll[i];
  result("LoadLibraryW(a name made at run time)", LoadLibraryW(wide) != NULL);
  return 0;
}
