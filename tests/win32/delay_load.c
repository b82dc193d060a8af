/* Delay-loaded imports bound by ResolveDelayLoadedAPI, from a descriptor laid
 * out as a linker would: the first call loads the DLL into the descriptor's
 * handle slot and writes the function into its thunk; a function the DLL
 * lacks and a DLL that is nowhere go to the image's hook, then to the system
 * routine, whose answers the caller gets. */
#include "common.h"

typedef struct {
  ULONG ImportDescribedByName;
  union { LPCSTR Name; ULONG Ordinal; } Description;
} DELAYLOAD_PROC_DESCRIPTOR;

typedef struct {
  ULONG Size;
  PCIMAGE_DELAYLOAD_DESCRIPTOR DelayloadDescriptor;
  PIMAGE_THUNK_DATA ThunkAddress;
  LPCSTR TargetDllName;
  DELAYLOAD_PROC_DESCRIPTOR TargetApiDescriptor;
  PVOID TargetModuleBase;
  PVOID Unused;
  ULONG LastError;
} DELAYLOAD_INFO;

typedef PVOID(WINAPI *dll_hook_fn)(ULONG, DELAYLOAD_INFO *);
typedef PVOID(WINAPI *system_hook_fn)(LPCSTR, LPCSTR);
typedef PVOID(WINAPI *resolve_fn)(PVOID, PCIMAGE_DELAYLOAD_DESCRIPTOR, dll_hook_fn, system_hook_fn, PIMAGE_THUNK_DATA,
                                  ULONG);

struct by_name { WORD hint; char name[32]; };

static const char kernel32[] = "kernel32.dll", nowhere[] = "nowhere_delayed.dll";
static const struct by_name tick = { 0, "GetTickCount" }, pid = { 0, "GetCurrentProcessId" },
                            absent = { 0, "NoSuchFunctionAnywhere" };
static HMODULE kernel32_slot, nowhere_slot;
static IMAGE_THUNK_DATA kernel32_iat[4], kernel32_names[4], nowhere_iat[2], nowhere_names[2];

static DWORD rva(const void *p) { return (DWORD)((const char *)p - (const char *)GetModuleHandleA(NULL)); }

static IMAGE_DELAYLOAD_DESCRIPTOR descriptor(const char *dll, HMODULE *slot, PIMAGE_THUNK_DATA iat,
                                             PIMAGE_THUNK_DATA names) {
  IMAGE_DELAYLOAD_DESCRIPTOR d = { 0 };
  d.Attributes.AllAttributes = 1; /* RVA-based, the only kind x64 has */
  d.DllNameRVA = rva(dll);
  d.ModuleHandleRVA = rva(slot);
  d.ImportAddressTableRVA = rva(iat);
  d.ImportNameTableRVA = rva(names);
  return d;
}

static DWORD WINAPI replacement(void) { return 4242; }

static int dll_hook_calls, system_hook_calls;
static char hook_saw[96];

static void remember(const char *dll, const char *proc) {
  int n = 0;
  for (const char *p = dll; *p && n < 40; p++) hook_saw[n++] = *p;
  hook_saw[n++] = '!';
  for (const char *p = proc; *p && n < 90; p++) hook_saw[n++] = *p;
  hook_saw[n] = 0;
}

static PVOID WINAPI dll_hook(ULONG reason, DELAYLOAD_INFO *info) {
  (void)reason;
  dll_hook_calls++;
  /* Wine fills Description.Name with the name's RVA, not its address, so only the kind is shown. */
  remember(info->TargetDllName, info->TargetApiDescriptor.ImportDescribedByName ? "(by name)" : "(by ordinal)");
  return info->TargetApiDescriptor.ImportDescribedByName ? (PVOID)replacement : NULL;
}

static PVOID WINAPI system_hook(LPCSTR dll, LPCSTR proc) {
  system_hook_calls++;
  remember(dll, proc);
  return (PVOID)replacement;
}

int main(void) {
  resolve_fn resolve = (resolve_fn)GetProcAddress(GetModuleHandleA("kernel32.dll"), "ResolveDelayLoadedAPI");
  result("GetProcAddress(kernel32, ResolveDelayLoadedAPI)", resolve != NULL);
  if (!resolve) return 1;
  kernel32_names[0].u1.AddressOfData = rva(&tick);
  kernel32_names[1].u1.AddressOfData = rva(&pid);
  kernel32_names[2].u1.AddressOfData = rva(&absent);
  nowhere_names[0].u1.AddressOfData = rva(&tick);
  IMAGE_DELAYLOAD_DESCRIPTOR k = descriptor(kernel32, &kernel32_slot, kernel32_iat, kernel32_names);
  IMAGE_DELAYLOAD_DESCRIPTOR n = descriptor(nowhere, &nowhere_slot, nowhere_iat, nowhere_names);

  PVOID got = resolve(GetModuleHandleA(NULL), &k, dll_hook, system_hook, &kernel32_iat[1], 0);
  value("GetCurrentProcessId bound to kernel32's", got == (PVOID)GetProcAddress(GetModuleHandleA(kernel32), "GetCurrentProcessId"));
  value("and written into its thunk", kernel32_iat[1].u1.Function == (ULONGLONG)got);
  value("the other thunks left alone", kernel32_iat[0].u1.Function == 0 && kernel32_iat[2].u1.Function == 0);
  value("the handle slot holds kernel32", kernel32_slot == GetModuleHandleA(kernel32));
  value("calling it", ((DWORD(WINAPI *)(void))got)() == GetCurrentProcessId());
  got = resolve(GetModuleHandleA(NULL), &k, NULL, system_hook, &kernel32_iat[0], 0);
  value("GetTickCount bound, no hook needed", got == (PVOID)GetProcAddress(GetModuleHandleA(kernel32), "GetTickCount"));
  value("hooks called", dll_hook_calls + system_hook_calls);

  got = resolve(GetModuleHandleA(NULL), &k, dll_hook, system_hook, &kernel32_iat[2], 0);
  value("a function kernel32 lacks: the DLL hook's answer", got == (PVOID)replacement);
  value("DLL hook calls", dll_hook_calls);
  value("system hook calls", system_hook_calls);
  out("  it saw ");
  out(hook_saw);
  out("\n");

  got = resolve(GetModuleHandleA(NULL), &k, NULL, system_hook, &kernel32_iat[2], 0);
  value("no DLL hook: the system hook's answer", got == (PVOID)replacement);
  value("system hook calls", system_hook_calls);
  out("  it saw ");
  out(hook_saw);
  out("\n");

  got = resolve(GetModuleHandleA(NULL), &n, NULL, system_hook, &nowhere_iat[0], 0);
  value("a DLL that is nowhere: the system hook's answer", got == (PVOID)replacement);
  value("system hook calls", system_hook_calls);
  value("its handle slot still empty", nowhere_slot == NULL);
  out("  it saw ");
  out(hook_saw);
  out("\n");
  value("calling the answer", ((DWORD(WINAPI *)(void))got)());
  return 0;
}
