/* What a handle tells of its file: GetFileInformationByHandle (attributes,
 * size, links, an index shared by every handle to one file), GetFileTime,
 * and ntdll's NtQueryInformationFile classes that C runtimes ask for, with
 * their errors; and the free space of the drive. No time, index or size of
 * the disk is printed, only how they relate. */
#include "common.h"
#include <winternl.h>

typedef NTSTATUS(NTAPI *query_fn)(HANDLE, PIO_STATUS_BLOCK, PVOID, ULONG, FILE_INFORMATION_CLASS);

static ULONGLONG ft(FILETIME t) { return ((ULONGLONG)t.dwHighDateTime << 32) | t.dwLowDateTime; }

static void status(const char *what, NTSTATUS s) {
  out("  ");
  out(what);
  out(" = 0x");
  char hex[9];
  for (int i = 0; i < 8; i++) hex[i] = "0123456789ABCDEF"[((ULONG)s >> (28 - 4 * i)) & 15];
  hex[8] = 0;
  out(hex);
  out("\n");
}

int main(void) {
  query_fn query = (query_fn)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtQueryInformationFile");
  result("GetProcAddress(ntdll, NtQueryInformationFile)", query != NULL);
  if (!query) return 1;
  HANDLE f = CreateFileW(L"info.txt", GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                         CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
  open_result("CreateFileW info.txt", f);
  static char data[5000];
  for (int i = 0; i < (int)sizeof data; i++) data[i] = (char)('a' + i % 26);
  DWORD n;
  WriteFile(f, data, sizeof data, &n, NULL);
  FlushFileBuffers(f);

  BY_HANDLE_FILE_INFORMATION info, again, other;
  result("GetFileInformationByHandle", GetFileInformationByHandle(f, &info));
  value("attributes", info.dwFileAttributes);
  value("size", ((long long)info.nFileSizeHigh << 32) | info.nFileSizeLow);
  value("links", info.nNumberOfLinks);
  FILETIME now;
  GetSystemTimeAsFileTime(&now);
  ULONGLONG day = 864000000000ull, written = ft(info.ftLastWriteTime);
  value("written within a day of now", written + day > ft(now) && written < ft(now) + day);
  HANDLE f2 = CreateFileW(L"info.txt", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0, NULL);
  GetFileInformationByHandle(f2, &again);
  value("a second handle: same index and volume", again.nFileIndexHigh == info.nFileIndexHigh &&
                                                      again.nFileIndexLow == info.nFileIndexLow &&
                                                      again.dwVolumeSerialNumber == info.dwVolumeSerialNumber);
  HANDLE g = CreateFileW(L"other.txt", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
  GetFileInformationByHandle(g, &other);
  value("another file: another index", other.nFileIndexHigh != info.nFileIndexHigh ||
                                           other.nFileIndexLow != info.nFileIndexLow);
  value("another file: same volume", other.dwVolumeSerialNumber == info.dwVolumeSerialNumber);
  CloseHandle(g);
  CloseHandle(f2);

  FILETIME created, accessed, wrote;
  result("GetFileTime", GetFileTime(f, &created, &accessed, &wrote));
  value("its write time is GetFileInformationByHandle's", ft(wrote) == written);
  WIN32_FILE_ATTRIBUTE_DATA by_name;
  GetFileAttributesExW(L"info.txt", GetFileExInfoStandard, &by_name);
  value("and GetFileAttributesExW's", ft(by_name.ftLastWriteTime) == written);
  result("GetFileTime, every pointer NULL", GetFileTime(f, NULL, NULL, NULL));

  FILETIME y2020 = { 0x69050000u, 0x01d5c036u }; /* 2020-01-01 00:00 UTC */
  FILETIME y2021 = { 0x0c358000u, 0x01d6dfd1u }; /* 2021-01-01 00:00 UTC */
  result("SetFileTime, the write time to 2020", SetFileTime(f, NULL, NULL, &y2020));
  GetFileTime(f, NULL, &accessed, &wrote);
  value("GetFileTime reads it back", ft(wrote) == ft(y2020));
  result("SetFileTime, the access time to 2021", SetFileTime(f, NULL, &y2021, NULL));
  GetFileTime(f, NULL, &accessed, &wrote);
  value("both read back", ft(accessed) == ft(y2021) && ft(wrote) == ft(y2020));
  result("SetFileTime, every pointer NULL", SetFileTime(f, NULL, NULL, NULL));
  GetFileTime(f, NULL, NULL, &wrote);
  value("the write time is unchanged", ft(wrote) == ft(y2020));
  GetFileAttributesExW(L"info.txt", GetFileExInfoStandard, &by_name);
  value("GetFileAttributesExW sees 2020", ft(by_name.ftLastWriteTime) == ft(y2020));
  HANDLE reader = CreateFileW(L"info.txt", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING, 0,
                              NULL);
  result("SetFileTime through a read-only handle", SetFileTime(reader, NULL, NULL, &y2021));
  CloseHandle(reader);
  GetFileTime(f, NULL, NULL, &wrote); /* Wine let the read-only handle change it: compare with what is there */
  written = ft(wrote);

  HANDLE dir = CreateFileW(L".", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                           FILE_FLAG_BACKUP_SEMANTICS, NULL);
  open_result("CreateFileW . (a directory)", dir);
  BY_HANDLE_FILE_INFORMATION dir_info;
  result("GetFileInformationByHandle on it", GetFileInformationByHandle(dir, &dir_info));
  value("a directory", (dir_info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0);

  IO_STATUS_BLOCK io;
  FILE_STANDARD_INFORMATION standard;
  status("NtQueryInformationFile standard", query(f, &io, &standard, sizeof standard, FileStandardInformation));
  value("io.Information", (long long)io.Information);
  value("EndOfFile", standard.EndOfFile.QuadPart);
  value("AllocationSize covers it", standard.AllocationSize.QuadPart >= standard.EndOfFile.QuadPart);
  value("NumberOfLinks", standard.NumberOfLinks);
  value("Directory", standard.Directory);
  status("standard, of the directory", query(dir, &io, &standard, sizeof standard, FileStandardInformation));
  value("Directory", standard.Directory);
  FILE_BASIC_INFORMATION basic;
  status("NtQueryInformationFile basic", query(f, &io, &basic, sizeof basic, FileBasicInformation));
  value("io.Information", (long long)io.Information);
  value("FileAttributes", basic.FileAttributes);
  value("LastWriteTime is GetFileTime's", (ULONGLONG)basic.LastWriteTime.QuadPart == written);
  SetFilePointer(f, 1234, NULL, FILE_BEGIN);
  FILE_POSITION_INFORMATION position;
  status("NtQueryInformationFile position", query(f, &io, &position, sizeof position, FilePositionInformation));
  value("CurrentByteOffset", position.CurrentByteOffset.QuadPart);
  status("standard, 4 bytes of room", query(f, &io, &standard, 4, FileStandardInformation));
  status("an unknown class", query(f, &io, &standard, sizeof standard, (FILE_INFORMATION_CLASS)0x7f));
  CloseHandle(dir);
  CloseHandle(f);

  ULARGE_INTEGER available, total, free;
  result("GetDiskFreeSpaceExW(NULL)", GetDiskFreeSpaceExW(NULL, &available, &total, &free));
  value("available <= free <= total", available.QuadPart <= free.QuadPart && free.QuadPart <= total.QuadPart);
  value("total > 0", total.QuadPart > 0);
  result("GetDiskFreeSpaceExW(C:\\), only the total", GetDiskFreeSpaceExW(L"C:\\", NULL, &total, NULL));
  result("GetDiskFreeSpaceExA(C:\\)", GetDiskFreeSpaceExA("C:\\", &available, NULL, NULL));
  result("GetDiskFreeSpaceExW, a directory that is not there",
         GetDiskFreeSpaceExW(L"C:\\no such dir\\", &available, &total, &free));
  result("GetDiskFreeSpaceExW, inside a directory that is not there",
         GetDiskFreeSpaceExW(L"C:\\no such dir\\deeper\\", &available, NULL, NULL));
  result("GetDiskFreeSpaceExW, a file", GetDiskFreeSpaceExW(L"info.txt", &available, NULL, NULL));
  DWORD spc = 0, bps = 0, free_clusters = 0, clusters = 0;
  result("GetDiskFreeSpaceW(C:\\)", GetDiskFreeSpaceW(L"C:\\", &spc, &bps, &free_clusters, &clusters));
  value("bytes per sector", bps);
  value("free clusters <= clusters", free_clusters <= clusters);
  result("GetDiskFreeSpaceA(NULL)", GetDiskFreeSpaceA(NULL, &spc, &bps, &free_clusters, &clusters));

  result("GetFileInformationByHandle, a closed handle", GetFileInformationByHandle(f, &info));
  result("GetFileTime, a closed handle", GetFileTime(f, &created, NULL, NULL));
  return 0;
}
