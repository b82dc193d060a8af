/* The app's own changes to its environment: set, replaced, emptied and
 * removed variables, the names Windows refuses, the block in its order,
 * %expansion%, the ANSI forms, the C runtime's _putenv, two threads
 * changing it at once, and every variable removed. Only variables it sets
 * itself are printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

static void show(const wchar_t *name) {
  wchar_t buf[64];
  SetLastError(1234);
  DWORD n = GetEnvironmentVariableW(name, buf, 64);
  printf("%ls: %lu", name, n);
  if (n && n < 64) printf(" \"%ls\"", buf);
  printf(", error %lu\n", GetLastError());
}

static void set(const wchar_t *name, const wchar_t *value) {
  SetLastError(1234);
  BOOL ok = SetEnvironmentVariableW(name, value);
  printf("set %ls%s%ls: %d, error %lu\n", name ? name : L"(null)", value ? "=" : " removed", value ? value : L"", ok,
         GetLastError());
}

static int by_name(const void *a, const void *b) { return _wcsicmp(*(wchar_t *const *)a, *(wchar_t *const *)b); }

/* In name order: Windows keeps the block sorted, Wine in the order they were set. */
static void block(void) {
  wchar_t *env = GetEnvironmentStringsW(), *mine[16];
  size_t n = 0;
  for (wchar_t *e = env; *e; e += wcslen(e) + 1)
    if (!_wcsnicmp(e, L"PVX_ENV_", 8) && n < 16) mine[n++] = e;
  qsort(mine, n, sizeof mine[0], by_name);
  printf("block:");
  for (size_t i = 0; i < n; i++) printf(" %ls", mine[i]);
  printf("\n");
  FreeEnvironmentStringsW(env);
}

static void expand(const wchar_t *src, DWORD size) {
  wchar_t out[128];
  DWORD n = ExpandEnvironmentStringsW(src, out, size);
  printf("expand \"%ls\" in %lu: %lu", src, size, n);
  if (n <= size) printf(" \"%ls\"", out);
  printf("\n");
}

static DWORD WINAPI setter(LPVOID which) {
  for (int i = 0; i < 40; i++) {
    wchar_t name[32], value[32];
    swprintf(name, 32, L"PVX_THREAD_%d_%d", (int)(INT_PTR)which, i);
    swprintf(value, 32, L"v%d", i);
    if (!SetEnvironmentVariableW(name, value)) return 1;
  }
  return 0;
}

static void threads(void) {
  HANDLE t[2];
  for (int i = 0; i < 2; i++) t[i] = CreateThread(NULL, 0, setter, (LPVOID)(INT_PTR)i, 0, NULL);
  WaitForMultipleObjects(2, t, TRUE, INFINITE);
  int found = 0;
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < 40; i++) {
      wchar_t name[32], value[32], want[32];
      swprintf(name, 32, L"PVX_THREAD_%d_%d", w, i);
      swprintf(want, 32, L"v%d", i);
      found += GetEnvironmentVariableW(name, value, 32) && !wcscmp(value, want);
    }
  printf("two threads set 80 variables at once: %d found\n", found);
}

static void emptied(void) {
  wchar_t *env = GetEnvironmentStringsW();
  for (wchar_t *e = env; *e; e += wcslen(e) + 1) {
    const wchar_t *eq = wcschr(e + 1, '=');
    size_t n = eq ? (size_t)(eq - e) : wcslen(e);
    wchar_t name[512];
    if (n >= 512) continue;
    memcpy(name, e, n * sizeof(wchar_t));
    name[n] = 0;
    SetEnvironmentVariableW(name, NULL);
  }
  FreeEnvironmentStringsW(env);
  env = GetEnvironmentStringsW();
  printf("every variable removed: the block starts with %d\n", env[0]); /* Wine ends an empty one with one NUL */
  FreeEnvironmentStringsW(env);
  SetEnvironmentVariableW(L"PVX_ENV_AGAIN", L"1");
  block();
}

int main(void) {
  set(L"PVX_ENV_B", L"two");
  show(L"PVX_ENV_B");
  show(L"pvx_env_b");
  set(L"PVX_ENV_A", L"one");
  set(L"pvx_env_c", L"three");
  set(L"PVX_ENV_A", L"uno");
  show(L"PVX_ENV_A");
  wchar_t small[2];
  printf("PVX_ENV_A into 2 characters: %lu\n", GetEnvironmentVariableW(L"PVX_ENV_A", small, 2));
  set(L"PVX_ENV_EMPTY", L"");
  show(L"PVX_ENV_EMPTY");
  set(L"PVX_ENV_GONE", L"soon");
  set(L"PVX_ENV_GONE", NULL);
  show(L"PVX_ENV_GONE");
  set(L"PVX_ENV_NEVER", NULL);
  set(L"", L"x");
  set(L"PVX_ENV=X", L"x");
  set(NULL, L"x");
  block();

  expand(L"%PVX_ENV_A% and %pvx_env_c%, %PVX_ENV_NOPE%, 100%% sure, %PVX_ENV_EMPTY%., %PVX_ENV_A", 128);
  expand(L"%PVX_ENV_A%-%PVX_ENV_B%", 128);
  expand(L"plain", 128);
  expand(L"%PVX_ENV_A%%PVX_ENV_A%", 4);

  printf("SetEnvironmentVariableA: %d\n", SetEnvironmentVariableA("PVX_ENV_ANSI", "narrow"));
  char a[64];
  DWORD n = GetEnvironmentVariableA("pvx_env_ansi", a, sizeof a);
  printf("GetEnvironmentVariableA: %lu \"%s\", wide: ", n, a);
  show(L"PVX_ENV_ANSI");
  n = ExpandEnvironmentStringsA("[%PVX_ENV_ANSI%]", a, sizeof a);
  printf("ExpandEnvironmentStringsA: %lu \"%s\"", n, a);
  printf(", in 3: %lu\n", ExpandEnvironmentStringsA("[%PVX_ENV_ANSI%]", a, 3));

  int put = _putenv("PVX_ENV_PUT=yes");
  printf("_putenv: %d, getenv: %s, ", put, getenv("PVX_ENV_PUT"));
  show(L"PVX_ENV_PUT");
  put = _putenv("PVX_ENV_PUT=");
  printf("_putenv removes: %d, getenv: %s, ", put, getenv("PVX_ENV_PUT") ? "set" : "(null)");
  show(L"PVX_ENV_PUT");
  threads();
  emptied();
  return 0;
}
