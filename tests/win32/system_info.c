/* What a Windows app learns of the system it runs on: the version (GetVersion, and GetVersionExA/W
 * with the plain and the Ex structure, and a size neither has), the processor features every x86-64
 * CPU has, and GetSystemInfo's page size and allocation granularity. */
#include "common.h"

/* The numeric fields sit at the same offsets in the A and W forms; only the service-pack string differs. */
union version_info {
  OSVERSIONINFOEXW w;
  OSVERSIONINFOEXA a;
};

static void version_ex(const char *what, BOOL wide, DWORD size) {
  union version_info v;
  memset(&v, 0x5a, sizeof v);
  v.w.dwOSVersionInfoSize = size;
  SetLastError(0);
  BOOL ok = wide ? GetVersionExW((LPOSVERSIONINFOW)&v.w) : GetVersionExA((LPOSVERSIONINFOA)&v.a);
  result(what, ok);
  if (!ok) return;
  value("size kept", v.w.dwOSVersionInfoSize == size);
  value("major", v.w.dwMajorVersion);
  value("minor", v.w.dwMinorVersion);
  value("build", v.w.dwBuildNumber);
  value("platform", v.w.dwPlatformId);
  value("service pack string empty", wide ? v.w.szCSDVersion[0] == 0 : v.a.szCSDVersion[0] == 0);
  if (size == (wide ? sizeof v.w : sizeof v.a)) value("product type", wide ? v.w.wProductType : v.a.wProductType);
}

int main(void) {
  DWORD packed = GetVersion();
  value("GetVersion major", packed & 0xff);
  value("GetVersion minor", (packed >> 8) & 0xff);
  value("GetVersion build", packed >> 16);

  version_ex("GetVersionExW, OSVERSIONINFOW", TRUE, sizeof(OSVERSIONINFOW));
  version_ex("GetVersionExW, OSVERSIONINFOEXW", TRUE, sizeof(OSVERSIONINFOEXW));
  version_ex("GetVersionExW, a size neither has", TRUE, sizeof(OSVERSIONINFOW) - 4);
  version_ex("GetVersionExA, OSVERSIONINFOA", FALSE, sizeof(OSVERSIONINFOA));
  version_ex("GetVersionExA, OSVERSIONINFOEXA", FALSE, sizeof(OSVERSIONINFOEXA));
  version_ex("GetVersionExA, a size neither has", FALSE, sizeof(OSVERSIONINFOEXA) + 4);

  value("floating point emulated", IsProcessorFeaturePresent(PF_FLOATING_POINT_EMULATED));
  value("cmpxchg8b", IsProcessorFeaturePresent(PF_COMPARE_EXCHANGE_DOUBLE));
  value("SSE2", IsProcessorFeaturePresent(PF_XMMI64_INSTRUCTIONS_AVAILABLE));
  value("rdtsc", IsProcessorFeaturePresent(PF_RDTSC_INSTRUCTION_AVAILABLE));
  value("cmpxchg16b", IsProcessorFeaturePresent(PF_COMPARE_EXCHANGE128));

  SYSTEM_INFO info;
  GetSystemInfo(&info);
  value("page size", info.dwPageSize);
  value("allocation granularity", info.dwAllocationGranularity);
  value("x64", info.wProcessorArchitecture == PROCESSOR_ARCHITECTURE_AMD64);
  return 0;
}
