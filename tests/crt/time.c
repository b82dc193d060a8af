/* Calendar time through msvcrt, built the default way: gmtime, localtime
 * (a pvx app runs in UTC, as Wine does here with TZ=UTC), strftime, mktime,
 * and the SYSTEMTIME/FILETIME conversions beneath them. */
#include <stdio.h>
#include <time.h>
#include <windows.h>

int main(void) {
  time_t t = 1700000000;
  char buf[128];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %A %B day %j", gmtime(&t));
  printf("gmtime: %s\n", buf);
  strftime(buf, sizeof buf, "%c", localtime(&t));
  printf("localtime: %s\n", buf);
  struct tm leap_noon = {.tm_year = 124, .tm_mon = 1, .tm_mday = 29, .tm_hour = 12};
  printf("mktime 2024-02-29 12:00: %lld\n", (long long)mktime(&leap_noon));
  SYSTEMTIME st = {2000, 2, 0, 29, 23, 59, 58, 999}, back;
  FILETIME ft;
  BOOL there = SystemTimeToFileTime(&st, &ft), again = FileTimeToSystemTime(&ft, &back);
  printf("2000-02-29 23:59:58.999: %d %d -> %08lx%08lx -> %u-%02u-%02u (day of week %u) %02u:%02u:%02u.%03u\n", there,
         again, ft.dwHighDateTime, ft.dwLowDateTime, back.wYear, back.wMonth, back.wDay, back.wDayOfWeek, back.wHour,
         back.wMinute, back.wSecond, back.wMilliseconds);
  printf("now is after 2023: %d\n", time(NULL) > t);
  return 0;
}
