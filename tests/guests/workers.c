/*
 * A multi-threaded guest for snapshots: N workers, each blocked on its own
 * event until the main thread hands it a step, report their steps in turn,
 * with a mutex held and a heap block and a file of their own; between rounds
 * the main thread sleeps. Then it waits for a line on the console, so a test
 * can act while it runs, opens the mutex again by its name, and it ends once
 * every worker has. It builds as a pvx
 * guest and, with -DWINDOWS_EXE, as a Windows exe.
 */
#include "util.h"

#define WORKERS 3

static HANDLE go[WORKERS], done[WORKERS], lock;
static volatile LONG quit;
/* Only the host stores here (a WriteFile count each round): a diff snapshot must carry this page,
 * though KVM's dirty log, which sees guest stores only, never has it. */
static DWORD host_written[1024] __attribute__((aligned(4096)));

static DWORD WINAPI worker(LPVOID arg) {
  int id = (int)(uintptr_t)arg;
  int *steps = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof *steps);
  for (;;) {
    if (WaitForSingleObject(go[id], INFINITE) != WAIT_OBJECT_0) return 10;
    if (quit) break;
    if (WaitForSingleObject(lock, INFINITE) != WAIT_OBJECT_0) return 11;
    out("worker ");
    out_i(id);
    out(" step ");
    out_i(++*steps);
    out("\n");
    ReleaseMutex(lock);
    SetEvent(done[id]);
  }
  return (DWORD)(100 + *steps);
}

static int run(int rounds, int ms) {
  lock = CreateMutexW(NULL, FALSE, L"workers-lock");
  HANDLE threads[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    go[i] = CreateEventW(NULL, FALSE, FALSE, NULL);
    done[i] = CreateEventW(NULL, FALSE, FALSE, NULL);
    threads[i] = CreateThread(NULL, 0, worker, (LPVOID)(uintptr_t)i, 0, NULL);
    if (!threads[i]) return 2;
  }
  for (int r = 0; r < rounds; r++) {
    WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), "round ", 6, &host_written[r % 1024], NULL);
    out_i(r);
    out("\n");
    for (int i = 0; i < WORKERS; i++) {
      SetEvent(go[i]);
      if (WaitForSingleObject(done[i], INFINITE) != WAIT_OBJECT_0) return 3;
    }
    Sleep(ms);
  }
  char line[64];
  DWORD got = 0;
  if (!ReadFile(GetStdHandle(STD_INPUT_HANDLE), line, sizeof line, &got, NULL)) return 4;
  out("read ");
  out_i(got);
  out(" bytes\n");
  /* Read after a restore in the snapshot tests: the name must have come through with its mutex. */
  HANDLE named = OpenMutexW(SYNCHRONIZE, FALSE, L"workers-lock");
  if (!named || WaitForSingleObject(named, 0) != WAIT_OBJECT_0 || !ReleaseMutex(lock) || !CloseHandle(named)) return 6;
  quit = 1;
  for (int i = 0; i < WORKERS; i++) {
    SetEvent(go[i]);
    DWORD code = 0;
    if (WaitForSingleObject(threads[i], INFINITE) != WAIT_OBJECT_0 || !GetExitCodeThread(threads[i], &code)) return 5;
    out("worker ");
    out_i(i);
    out(" exited ");
    out_i((int)code);
    out("\n");
  }
  out("done\n");
  return 0;
}

#ifdef WINDOWS_EXE
/* Built with mingw as a Windows exe (tests/win32/mingw_start.c calls main with no arguments). */
int main(void) {
  return run(5, 300);
}
#else
int main(int argc, char **argv, char **envp) {
  (void)envp;
  return run(argc > 1 ? parse_int(argv[1]) : 5, argc > 2 ? parse_int(argv[2]) : 100);
}
#endif
