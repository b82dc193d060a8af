/* A DLL an app ships beside itself: exports by name and by ordinal, and a
 * DllMain that must run before the app's entry point. */
#include <windows.h>

static int attached;

__declspec(dllexport) int add(int a, int b) { return a + b + attached - 1; }
__declspec(dllexport) int mul(int a, int b) { return a * b; }

BOOL WINAPI DllMain(HANDLE instance, DWORD reason, LPVOID reserved) {
  (void)instance, (void)reserved;
  if (reason == 1 /* DLL_PROCESS_ATTACH */) attached = 1;
  return TRUE;
}
