/* kernel32 that the C runtimes themselves reach for, called directly from a
 * default build: interlocked lists, critical sections made the Ex way,
 * module lookups by address, a thread that frees a library as it exits, and
 * TerminateProcess, which ends the app without atexit handlers or DLL detach. */
#include <stdio.h>
#include <stdlib.h>
#include <windows.h>

struct item {
  SLIST_ENTRY entry; /* first, so an entry is its item */
  int value;
};

static void slists(void) {
  static SLIST_HEADER head;
  static struct item items[3];
  InitializeSListHead(&head);
  printf("empty: depth %u, pop %p, flush %p\n", QueryDepthSList(&head), (void *)InterlockedPopEntrySList(&head),
         (void *)InterlockedFlushSList(&head));
  for (int i = 0; i < 3; i++) {
    items[i].value = 10 * (i + 1);
    PSLIST_ENTRY before = InterlockedPushEntrySList(&head, &items[i].entry);
    printf("push %d: the first before was %d, depth %u\n", items[i].value,
           before ? ((struct item *)before)->value : 0, QueryDepthSList(&head));
  }
  struct item *popped = (struct item *)InterlockedPopEntrySList(&head);
  printf("pop: %d, depth %u\n", popped->value, QueryDepthSList(&head));
  printf("flushed:");
  for (PSLIST_ENTRY e = InterlockedFlushSList(&head); e; e = e->Next) printf(" %d", ((struct item *)e)->value);
  printf(", depth %u\n", QueryDepthSList(&head));
}

static void critical_section(void) {
  CRITICAL_SECTION cs;
  BOOL made = InitializeCriticalSectionEx(&cs, 4000, 0);
  EnterCriticalSection(&cs);
  BOOL again = TryEnterCriticalSection(&cs); /* the owner may enter again */
  LeaveCriticalSection(&cs);
  LeaveCriticalSection(&cs);
  DeleteCriticalSection(&cs);
  printf("InitializeCriticalSectionEx: %d, re-entered: %d\n", made, again);
}

static void modules(void) {
  HMODULE exe = GetModuleHandleW(NULL), found = NULL;
  BOOL ok = GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                               (LPCWSTR)(void *)modules, &found);
  printf("GetModuleHandleExW(from the address of a function here): %d, the exe: %d\n", ok, found == exe);
  ok = GetModuleHandleExA(0, NULL, &found);
  printf("GetModuleHandleExA(NULL): %d, the exe: %d\n", ok, found == exe);
  SetLastError(0);
  ok = GetModuleHandleExW(0, L"not-loaded.dll", &found);
  printf("GetModuleHandleExW(not-loaded.dll): %d, module %p, error %lu\n", ok, (void *)found, GetLastError());
  SetLastError(0);
  ok = GetModuleHandleExW(0, NULL, NULL);
  printf("GetModuleHandleExW without a place for the handle: %d, error %lu\n", ok, GetLastError());
}

static DWORD WINAPI leaves_with_library(LPVOID library) {
  FreeLibraryAndExitThread((HMODULE)library, 42);
}

static void exiting_thread(void) {
  HMODULE k32 = LoadLibraryA("kernel32.dll");
  HANDLE t = CreateThread(NULL, 0, leaves_with_library, k32, 0, NULL);
  WaitForSingleObject(t, INFINITE);
  DWORD code = 0;
  GetExitCodeThread(t, &code);
  CloseHandle(t);
  printf("FreeLibraryAndExitThread: exit code %lu\n", code);
}

static void never(void) { printf("an atexit handler ran\n"); }

int main(void) {
  slists();
  critical_section();
  modules();
  exiting_thread();
  SetLastError(0);
  BOOL other = TerminateProcess((HANDLE)(LONG_PTR)0x1234, 1);
  printf("TerminateProcess(a handle that is no process): %d, error %lu\n", other, GetLastError());
  atexit(never);
  printf("TerminateProcess(this process, 3)\n");
  fflush(stdout);
  TerminateProcess(GetCurrentProcess(), 3);
  printf("still running\n");
  return 0;
}
