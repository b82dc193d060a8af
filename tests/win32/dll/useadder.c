/* Calls a shipped DLL by name and by ordinal. */
#include "../common.h"

__declspec(dllimport) int add(int a, int b);
__declspec(dllimport) int mul(int a, int b);

int main(void) {
  value("add(2, 3) after DllMain ran", add(2, 3));
  value("mul(6, 7) by ordinal", mul(6, 7));
  return 0;
}
