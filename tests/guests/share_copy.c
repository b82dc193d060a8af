/* Copies C:\in\msg.txt to C:\out\copy.txt and prints what it copied: it sees
 * those host directories only when they are shared with it, and the exit
 * status says which step failed otherwise. */
#include "util.h"

int main(int argc, char **argv, char **envp) {
  (void)argc, (void)argv, (void)envp;
  HANDLE in = CreateFileW(L"C:\\in\\msg.txt", GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
  if (in == INVALID_HANDLE_VALUE) return step_failed("open C:\\in\\msg.txt", 1);
  char text[256];
  DWORD got = 0;
  if (!ReadFile(in, text, sizeof text - 1, &got, NULL)) return step_failed("read", 2);
  CloseHandle(in);
  text[got] = 0;
  HANDLE copy = CreateFileW(L"C:\\out\\copy.txt", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
  if (copy == INVALID_HANDLE_VALUE) return step_failed("create C:\\out\\copy.txt", 3);
  DWORD wrote = 0;
  if (!WriteFile(copy, text, got, &wrote, NULL) || wrote != got) return step_failed("write", 4);
  CloseHandle(copy);
  out("copied ");
  out(text);
  out("\n");
  return 0;
}
