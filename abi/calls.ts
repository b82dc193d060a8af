// The hypercall ABI: every call a guest can make, in one table. The C header
// (abi/pvx.h), the dispatcher's argument checks and the kernel32 thunks all
// derive from it, so a call is declared exactly once.
//
// Mechanism: the guest fills a frame of 64-bit slots { ret, arg0, arg1, ... }
// and stores the frame's guest-physical address to doorbell slot `nr`
// (abi/doorbell.ts). The host checks every pointer and length against the
// app's own page tables, runs the handler and stores the result in `ret`.
// Only the calls named in the bundle manifest are callable.

export const ABI_VERSION = 1;

/** How the host treats one argument slot. */
export type Param =
  /** A 32-bit integer (upper half of the slot ignored). */
  | { name: string; c: string; kind: "u32" }
  /** A full 64-bit value, guest addresses the host never dereferences included. */
  | { name: string; c: string; kind: "u64" }
  | { name: string; c: string; kind: "handle" }
  /** A buffer the host reads; `len` names another parameter and counts `unit`-byte elements. */
  | { name: string; c: string; kind: "in"; len: string; unit: 1 | 8 }
  /** A buffer the host writes; `len` counts `unit`-byte elements. */
  | { name: string; c: string; kind: "out"; len: string; unit: 1 | 2 }
  /** A DWORD the host writes; NULL allowed when `optional`. */
  | { name: string; c: string; kind: "outU32"; optional: boolean }
  /** A fixed-size structure the host only reads (a LONG a thread waits on). */
  | { name: string; c: string; kind: "inStruct"; size: number }
  /** A fixed-size structure the host writes (LARGE_INTEGER, FILETIME, WIN32_FIND_DATAW). */
  | { name: string; c: string; kind: "outStruct"; size: number; optional: boolean }
  /** A NUL-terminated UTF-16 string the host reads (at most 32767 characters). */
  | { name: string; c: string; kind: "wstr"; optional: boolean }
  /** GetProcAddress's name: an ordinal below 0x10000, else a NUL-terminated 8-bit string. */
  | { name: string; c: string; kind: "nameOrOrdinal" }
  /** Must be NULL: features pvx does not offer (overlapped I/O). */
  | { name: string; c: string; kind: "null" };

export interface CallDef {
  readonly nr: number;
  readonly name: string;
  /** C return type; "VOID" calls still get a frame slot. */
  readonly ret: string;
  /** The value `ret` holds when the host refuses the arguments (FALSE, 0, INVALID_HANDLE_VALUE). */
  readonly failure: bigint;
  readonly params: readonly Param[];
  readonly noreturn?: boolean;
  /** Other calls a guest that uses this one makes without naming them (a thread's return runs ExitThread). */
  readonly implies?: readonly string[];
  /** pvx-specific calls are not part of kernel32 and start with `Pvx`. */
  readonly doc: string;
}

const FALSE = 0n;
/** sizeof(MEMORY_BASIC_INFORMATION) on x64. */
export const MEMORY_BASIC_INFORMATION_SIZE = 48;
const INVALID_HANDLE = 0xffffffffffffffffn;

const h = (name: string): Param => ({ name, c: "HANDLE", kind: "handle" });
const u32 = (name: string, c = "DWORD"): Param => ({ name, c, kind: "u32" });
const u64 = (name: string, c: string): Param => ({ name, c, kind: "u64" });
const wstr = (name: string, optional = false): Param => ({ name, c: "LPCWSTR", kind: "wstr", optional });
const outStruct = (name: string, c: string, size: number, optional = false): Param => ({
  name,
  c,
  kind: "outStruct",
  size,
  optional,
});
/** A named object's Open call. pvx checks no access rights: the app is the only process that could be refused. */
const openByName = <N extends string>(nr: number, name: N, kind: string): CallDef & { name: N } => ({
  nr,
  name,
  ret: "HANDLE",
  failure: 0n,
  params: [u32("dwDesiredAccess"), u32("bInheritHandle", "BOOL"), wstr("lpName", true)],
  doc: `A new handle to the ${kind} of that name (ERROR_FILE_NOT_FOUND when none has it).`,
});
const overlapped: Param = { name: "lpOverlapped", c: "LPOVERLAPPED", kind: "null" };
const securityAttributes = u64("lpSecurityAttributes", "LPSECURITY_ATTRIBUTES");
const lockRange = [
  h("hFile"),
  u32("dwFileOffsetLow"),
  u32("dwFileOffsetHigh"),
  u32("nNumberOfBytesToLockLow"),
  u32("nNumberOfBytesToLockHigh"),
];

/** sizeof(WIN32_FIND_DATAW) on x64 Windows. */
export const FIND_DATA_SIZE = 592;
/** sizeof(BY_HANDLE_FILE_INFORMATION) on x64 Windows. */
export const BY_HANDLE_INFO_SIZE = 52;

export const calls = [
  {
    nr: 0,
    name: "PvxNull",
    ret: "DWORD",
    failure: 0n,
    params: [],
    doc: "Does nothing; measures a hypercall round trip.",
  },
  {
    nr: 1,
    name: "ExitProcess",
    ret: "VOID",
    failure: 0n,
    noreturn: true,
    params: [u32("uExitCode", "UINT")],
    doc: "Ends the instance; the host exits with uExitCode.",
  },
  {
    nr: 2,
    name: "GetStdHandle",
    ret: "HANDLE",
    failure: INVALID_HANDLE,
    params: [u32("nStdHandle")],
    doc: "STD_INPUT/OUTPUT/ERROR_HANDLE to the console handle.",
  },
  {
    nr: 3,
    name: "WriteFile",
    ret: "BOOL",
    failure: FALSE,
    params: [
      h("hFile"),
      { name: "lpBuffer", c: "LPCVOID", kind: "in", len: "nNumberOfBytesToWrite", unit: 1 },
      u32("nNumberOfBytesToWrite"),
      { name: "lpNumberOfBytesWritten", c: "LPDWORD", kind: "outU32", optional: true },
      overlapped,
    ],
    doc: "Writes to a console or file handle at its file pointer.",
  },
  {
    nr: 4,
    name: "GetCommandLineW",
    ret: "LPWSTR",
    failure: 0n,
    params: [],
    doc: "The command line, as Windows quotes it.",
  },
  { nr: 5, name: "GetLastError", ret: "DWORD", failure: 0n, params: [], doc: "The calling thread's last error." },
  {
    nr: 6,
    name: "SetLastError",
    ret: "VOID",
    failure: 0n,
    params: [u32("dwErrCode")],
    doc: "Sets the calling thread's last error.",
  },
  {
    nr: 7,
    name: "ReadFile",
    ret: "BOOL",
    failure: FALSE,
    params: [
      h("hFile"),
      { name: "lpBuffer", c: "LPVOID", kind: "out", len: "nNumberOfBytesToRead", unit: 1 },
      u32("nNumberOfBytesToRead"),
      { name: "lpNumberOfBytesRead", c: "LPDWORD", kind: "outU32", optional: true },
      overlapped,
    ],
    doc: "Reads from a console or file handle at its file pointer; 0 bytes at end of file.",
  },
  {
    nr: 8,
    name: "CreateFileW",
    ret: "HANDLE",
    failure: INVALID_HANDLE,
    params: [
      wstr("lpFileName"),
      u32("dwDesiredAccess"),
      u32("dwShareMode"),
      securityAttributes,
      u32("dwCreationDisposition"),
      u32("dwFlagsAndAttributes"),
      h("hTemplateFile"),
    ],
    doc: "Opens or creates a file in the instance's virtual drive.",
  },
  { nr: 9, name: "CloseHandle", ret: "BOOL", failure: FALSE, params: [h("hObject")], doc: "Closes any handle." },
  {
    nr: 10,
    name: "SetFilePointerEx",
    ret: "BOOL",
    failure: FALSE,
    params: [
      h("hFile"),
      u64("liDistanceToMove", "LARGE_INTEGER"),
      outStruct("lpNewFilePointer", "PLARGE_INTEGER", 8, true),
      u32("dwMoveMethod"),
    ],
    doc: "Moves the file pointer (FILE_BEGIN, FILE_CURRENT, FILE_END); past the end is allowed.",
  },
  {
    nr: 11,
    name: "GetFileSizeEx",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hFile"), outStruct("lpFileSize", "PLARGE_INTEGER", 8)],
    doc: "The file's size in bytes.",
  },
  {
    nr: 12,
    name: "FlushFileBuffers",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hFile")],
    doc: "Writes the file through to storage.",
  },
  {
    nr: 13,
    name: "SetEndOfFile",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hFile")],
    doc: "Truncates or extends the file to its file pointer.",
  },
  { nr: 14, name: "DeleteFileW", ret: "BOOL", failure: FALSE, params: [wstr("lpFileName")], doc: "Deletes a file." },
  {
    nr: 15,
    name: "MoveFileExW",
    ret: "BOOL",
    failure: FALSE,
    params: [wstr("lpExistingFileName"), wstr("lpNewFileName", true), u32("dwFlags")],
    doc: "Renames a file or directory; MOVEFILE_REPLACE_EXISTING replaces a file.",
  },
  {
    nr: 16,
    name: "CreateDirectoryW",
    ret: "BOOL",
    failure: FALSE,
    params: [wstr("lpPathName"), securityAttributes],
    doc: "Creates a directory.",
  },
  {
    nr: 17,
    name: "RemoveDirectoryW",
    ret: "BOOL",
    failure: FALSE,
    params: [wstr("lpPathName")],
    doc: "Removes an empty directory.",
  },
  {
    nr: 18,
    name: "GetFileAttributesW",
    ret: "DWORD",
    failure: 0xffffffffn,
    params: [wstr("lpFileName")],
    doc: "FILE_ATTRIBUTE_* of a file or directory, INVALID_FILE_ATTRIBUTES if missing.",
  },
  {
    nr: 19,
    name: "FindFirstFileW",
    ret: "HANDLE",
    failure: INVALID_HANDLE,
    params: [wstr("lpFileName"), outStruct("lpFindFileData", "LPWIN32_FIND_DATAW", FIND_DATA_SIZE)],
    doc: "Starts listing the names matching a wildcard pattern.",
  },
  {
    nr: 20,
    name: "FindNextFileW",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hFindFile"), outStruct("lpFindFileData", "LPWIN32_FIND_DATAW", FIND_DATA_SIZE)],
    doc: "The next match; FALSE with ERROR_NO_MORE_FILES at the end.",
  },
  { nr: 21, name: "FindClose", ret: "BOOL", failure: FALSE, params: [h("hFindFile")], doc: "Ends a listing." },
  {
    nr: 22,
    name: "GetCurrentDirectoryW",
    ret: "DWORD",
    failure: 0n,
    params: [u32("nBufferLength"), { name: "lpBuffer", c: "LPWSTR", kind: "out", len: "nBufferLength", unit: 2 }],
    doc: "Copies the current directory; returns its length, or the size needed including the NUL.",
  },
  {
    nr: 23,
    name: "SetCurrentDirectoryW",
    ret: "BOOL",
    failure: FALSE,
    params: [wstr("lpPathName")],
    doc: "Changes the current directory.",
  },
  {
    nr: 24,
    name: "GetEnvironmentVariableW",
    ret: "DWORD",
    failure: 0n,
    params: [wstr("lpName"), { name: "lpBuffer", c: "LPWSTR", kind: "out", len: "nSize", unit: 2 }, u32("nSize")],
    doc: "Copies a variable's value; returns its length, or the size needed including the NUL.",
  },
  {
    nr: 25,
    name: "GetSystemTimeAsFileTime",
    ret: "VOID",
    failure: 0n,
    params: [outStruct("lpSystemTimeAsFileTime", "LPFILETIME", 8)],
    doc: "UTC now, in 100 ns units since 1601.",
  },
  {
    nr: 26,
    name: "QueryPerformanceCounter",
    ret: "BOOL",
    failure: FALSE,
    params: [outStruct("lpPerformanceCount", "LARGE_INTEGER *", 8)],
    doc: "A monotonic counter.",
  },
  {
    nr: 27,
    name: "QueryPerformanceFrequency",
    ret: "BOOL",
    failure: FALSE,
    params: [outStruct("lpFrequency", "LARGE_INTEGER *", 8)],
    doc: "The counter's ticks per second.",
  },
  {
    nr: 28,
    name: "GetTickCount64",
    ret: "ULONGLONG",
    failure: 0n,
    params: [],
    doc: "Milliseconds since the instance started.",
  },
  {
    nr: 29,
    name: "Sleep",
    ret: "VOID",
    failure: 0n,
    params: [u32("dwMilliseconds")],
    doc: "Blocks the calling thread; Sleep(0) yields.",
  },
  {
    nr: 30,
    name: "VirtualAlloc",
    ret: "LPVOID",
    failure: 0n,
    params: [u64("lpAddress", "LPVOID"), u64("dwSize", "SIZE_T"), u32("flAllocationType"), u32("flProtect")],
    doc: "Reserves and/or commits pages (MEM_RESERVE, MEM_COMMIT).",
  },
  {
    nr: 31,
    name: "VirtualFree",
    ret: "BOOL",
    failure: FALSE,
    params: [u64("lpAddress", "LPVOID"), u64("dwSize", "SIZE_T"), u32("dwFreeType")],
    doc: "Decommits or releases pages.",
  },
  {
    nr: 32,
    name: "VirtualProtect",
    ret: "BOOL",
    failure: FALSE,
    params: [
      u64("lpAddress", "LPVOID"),
      u64("dwSize", "SIZE_T"),
      u32("flNewProtect"),
      { name: "lpflOldProtect", c: "PDWORD", kind: "outU32", optional: false },
    ],
    doc: "Changes the protection of committed pages.",
  },
  { nr: 33, name: "GetProcessHeap", ret: "HANDLE", failure: 0n, params: [], doc: "The process heap." },
  {
    nr: 34,
    name: "HeapAlloc",
    ret: "LPVOID",
    failure: 0n,
    params: [h("hHeap"), u32("dwFlags"), u64("dwBytes", "SIZE_T")],
    doc: "Allocates from the process heap.",
  },
  {
    nr: 35,
    name: "HeapFree",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hHeap"), u32("dwFlags"), u64("lpMem", "LPVOID")],
    doc: "Frees a heap block.",
  },
  {
    nr: 36,
    name: "HeapReAlloc",
    ret: "LPVOID",
    failure: 0n,
    params: [h("hHeap"), u32("dwFlags"), u64("lpMem", "LPVOID"), u64("dwBytes", "SIZE_T")],
    doc: "Resizes a heap block, moving it unless HEAP_REALLOC_IN_PLACE_ONLY.",
  },
  {
    nr: 37,
    name: "HeapSize",
    ret: "SIZE_T",
    failure: 0xffffffffffffffffn,
    params: [h("hHeap"), u32("dwFlags"), u64("lpMem", "LPCVOID")],
    doc: "The size of a heap block.",
  },
  {
    nr: 38,
    name: "GetModuleHandleW",
    ret: "HMODULE",
    failure: 0n,
    params: [wstr("lpModuleName", true)],
    doc: "A loaded module by name (kernel32.dll, a DLL the app ships); NULL for the exe itself.",
  },
  {
    nr: 39,
    name: "LoadLibraryW",
    ret: "HMODULE",
    failure: 0n,
    params: [wstr("lpLibFileName")],
    doc: "A module the app loaded at start; pvx loads no code after boot.",
  },
  {
    nr: 40,
    name: "GetProcAddress",
    ret: "FARPROC",
    failure: 0n,
    params: [u64("hModule", "HMODULE"), { name: "lpProcName", c: "LPCSTR", kind: "nameOrOrdinal" }],
    doc: "An export of a loaded module, or a kernel32 function the bundle's manifest allows.",
  },
  {
    nr: 41,
    name: "CreateThread",
    ret: "HANDLE",
    failure: 0n,
    implies: ["ExitThread"],
    params: [
      securityAttributes,
      u64("dwStackSize", "SIZE_T"),
      u64("lpStartAddress", "LPTHREAD_START_ROUTINE"),
      u64("lpParameter", "LPVOID"),
      u32("dwCreationFlags"),
      { name: "lpThreadId", c: "LPDWORD", kind: "outU32", optional: true },
    ],
    doc: "Starts a thread on a vCPU of its own (CREATE_SUSPENDED holds it until ResumeThread).",
  },
  {
    nr: 42,
    name: "ExitThread",
    ret: "VOID",
    failure: 0n,
    noreturn: true,
    params: [u32("dwExitCode")],
    doc: "Ends the calling thread; the process ends with its last thread.",
  },
  {
    nr: 43,
    name: "GetExitCodeThread",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hThread"), { name: "lpExitCode", c: "LPDWORD", kind: "outU32", optional: false }],
    doc: "A thread's exit code, STILL_ACTIVE while it runs (GetCurrentThread() always is).",
  },
  {
    nr: 44,
    name: "ResumeThread",
    ret: "DWORD",
    failure: 0xffffffffn,
    params: [h("hThread")],
    doc: "Lowers a thread's suspend count and returns the previous one; at 0 the thread runs again.",
  },
  {
    nr: 45,
    name: "GetCurrentThreadId",
    ret: "DWORD",
    failure: 0n,
    params: [],
    doc: "The calling thread's id.",
  },
  {
    nr: 46,
    name: "WaitForSingleObject",
    ret: "DWORD",
    failure: 0xffffffffn,
    params: [h("hHandle"), u32("dwMilliseconds")],
    doc: "Waits for a thread, event or mutex, or the timeout (INFINITE never times out).",
  },
  {
    nr: 47,
    name: "WaitForMultipleObjects",
    ret: "DWORD",
    failure: 0xffffffffn,
    params: [
      u32("nCount"),
      { name: "lpHandles", c: "const HANDLE *", kind: "in", len: "nCount", unit: 8 },
      u32("bWaitAll", "BOOL"),
      u32("dwMilliseconds"),
    ],
    doc: "Waits for any (or all) of up to 64 objects.",
  },
  {
    nr: 48,
    name: "CreateEventW",
    ret: "HANDLE",
    failure: 0n,
    params: [
      securityAttributes,
      u32("bManualReset", "BOOL"),
      u32("bInitialState", "BOOL"),
      wstr("lpName", true),
    ],
    doc: "A manual- or auto-reset event; a name already taken opens its event (ERROR_ALREADY_EXISTS).",
  },
  { nr: 49, name: "SetEvent", ret: "BOOL", failure: FALSE, params: [h("hEvent")], doc: "Signals an event." },
  { nr: 50, name: "ResetEvent", ret: "BOOL", failure: FALSE, params: [h("hEvent")], doc: "Unsignals an event." },
  {
    nr: 51,
    name: "CreateMutexW",
    ret: "HANDLE",
    failure: 0n,
    params: [
      securityAttributes,
      u32("bInitialOwner", "BOOL"),
      wstr("lpName", true),
    ],
    doc: "A mutex, owned by the caller when bInitialOwner; a name already taken opens its mutex, owned or not.",
  },
  {
    nr: 52,
    name: "ReleaseMutex",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hMutex")],
    doc: "Releases one level of ownership of a mutex the caller owns.",
  },
  {
    nr: 53,
    name: "PvxWaitOnAddress",
    ret: "BOOL",
    failure: FALSE,
    params: [
      { name: "Address", c: "volatile LONG *", kind: "inStruct", size: 4 },
      u32("CompareValue", "LONG"),
      u32("dwMilliseconds"),
    ],
    doc: "Blocks while *Address == CompareValue, until PvxWakeByAddress or the timeout (FALSE, ERROR_TIMEOUT).",
  },
  {
    nr: 54,
    name: "PvxWakeByAddress",
    ret: "VOID",
    failure: 0n,
    params: [{ name: "Address", c: "volatile LONG *", kind: "inStruct", size: 4 }],
    doc: "Wakes the threads blocked in PvxWaitOnAddress on Address.",
  },
  {
    nr: 55,
    name: "PvxReady",
    ret: "VOID",
    failure: 0n,
    params: [],
    doc: "The app is ready for work: `pvx template create --ready call` snapshots it here; otherwise it does nothing.",
  },
  {
    nr: 56,
    name: "VirtualQuery",
    ret: "SIZE_T",
    failure: 0n,
    params: [
      u64("lpAddress", "LPCVOID"),
      outStruct("lpBuffer", "PMEMORY_BASIC_INFORMATION", MEMORY_BASIC_INFORMATION_SIZE),
      u64("dwLength", "SIZE_T"),
    ],
    doc: "Describes the pages from lpAddress that share one state and protection; the bytes written.",
  },
  {
    nr: 57,
    name: "GetFileType",
    ret: "DWORD",
    failure: 0n,
    params: [h("hFile")],
    doc: "FILE_TYPE_DISK for a file; FILE_TYPE_PIPE for the console, a byte stream in pvx.",
  },
  {
    nr: 58,
    name: "PvxGetEnvironmentBlock",
    ret: "DWORD",
    failure: 0n,
    params: [u32("nSize"), { name: "lpBuffer", c: "LPWCH", kind: "out", len: "nSize", unit: 2 }],
    doc: "The environment as Windows lays out its block (NAME=value strings, then an empty one), sorted by name; " +
      "its length in characters, copied only when nSize holds it all.",
  },
  {
    nr: 59,
    name: "CreateSemaphoreW",
    ret: "HANDLE",
    failure: 0n,
    params: [
      securityAttributes,
      u32("lInitialCount", "LONG"),
      u32("lMaximumCount", "LONG"),
      wstr("lpName", true),
    ],
    doc:
      "A semaphore, 0 <= lInitialCount <= lMaximumCount and 0 < lMaximumCount (else ERROR_INVALID_PARAMETER); a name already taken opens its semaphore.",
  },
  {
    nr: 60,
    name: "ReleaseSemaphore",
    ret: "BOOL",
    failure: FALSE,
    params: [
      h("hSemaphore"),
      u32("lReleaseCount", "LONG"),
      { name: "lpPreviousCount", c: "LPLONG", kind: "outU32", optional: true },
    ],
    doc: "Adds lReleaseCount (> 0) to the count; past the maximum it changes nothing (ERROR_TOO_MANY_POSTS).",
  },
  {
    nr: 61,
    name: "GetFileInformationByHandle",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hFile"), outStruct("lpFileInformation", "LPBY_HANDLE_FILE_INFORMATION", BY_HANDLE_INFO_SIZE)],
    doc: "Attributes, times, size and a file index that is the same for every handle to one file.",
  },
  {
    nr: 62,
    name: "GetDiskFreeSpaceExW",
    ret: "BOOL",
    failure: FALSE,
    params: [
      wstr("lpDirectoryName", true),
      outStruct("lpFreeBytesAvailableToCaller", "PULARGE_INTEGER", 8, true),
      outStruct("lpTotalNumberOfBytes", "PULARGE_INTEGER", 8, true),
      outStruct("lpTotalNumberOfFreeBytes", "PULARGE_INTEGER", 8, true),
    ],
    doc: "The space under a directory (NULL: the current one): the host filesystem's, capped by the overlay's quota.",
  },
  {
    nr: 63,
    name: "PvxSetFileTime",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hFile"), u64("ftLastAccessTime", "ULONGLONG"), u64("ftLastWriteTime", "ULONGLONG")],
    doc: "Sets a file's access and write times (FILETIME values; 0 or ~0 leaves one as it is); needs write access.",
  },
  {
    nr: 64,
    name: "LockFile",
    ret: "BOOL",
    failure: FALSE,
    params: lockRange,
    doc: "Locks a byte range (it may lie past the end) against every other handle's reads, writes and locks.",
  },
  {
    nr: 65,
    name: "UnlockFile",
    ret: "BOOL",
    failure: FALSE,
    params: lockRange,
    doc: "Unlocks exactly a range this handle locked.",
  },
  {
    nr: 66,
    name: "FlushProcessWriteBuffers",
    ret: "VOID",
    failure: 0n,
    params: [],
    doc: "Returns once every other thread in the guest has been pulled out of it, which drains its write buffer.",
  },
  {
    nr: 67,
    name: "SetFileAttributesW",
    ret: "BOOL",
    failure: FALSE,
    params: [wstr("lpFileName"), u32("dwFileAttributes")],
    doc: "Sets a file's READONLY, HIDDEN, SYSTEM and ARCHIVE attributes; the others, and a directory's, are not kept.",
  },
  {
    nr: 68,
    name: "PvxDuplicateHandle",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hSourceHandle"), outStruct("lpTargetHandle", "LPHANDLE", 8, true), u32("dwOptions")],
    doc:
      "DuplicateHandle within the app, of a console, file or waitable handle; a file's twin shares position and locks.",
  },
  {
    nr: 69,
    name: "PvxOpenCurrentThread",
    ret: "HANDLE",
    failure: 0n,
    params: [],
    doc: "DuplicateHandle of GetCurrentThread(): a real handle to the calling thread, signalled when it exits.",
  },
  openByName(70, "OpenEventW", "event"),
  openByName(71, "OpenMutexW", "mutex"),
  openByName(72, "OpenSemaphoreW", "semaphore"),
  {
    nr: 73,
    name: "GetThreadId",
    ret: "DWORD",
    failure: 0n,
    params: [h("Thread")],
    doc: "The id of the thread a handle or GetCurrentThread() names, ended or not.",
  },
  {
    nr: 74,
    name: "SuspendThread",
    ret: "DWORD",
    failure: 0xffffffffn,
    params: [h("hThread")],
    doc:
      "Raises a thread's suspend count and returns the previous one; the thread holds at its next instruction boundary.",
  },
  {
    nr: 75,
    name: "TerminateThread",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hThread"), u32("dwExitCode")],
    doc: "Ends a thread wherever it is, running no more of its code; the mutexes it holds are abandoned.",
  },
  {
    nr: 76,
    name: "PvxLockFileEx",
    ret: "BOOL",
    failure: FALSE,
    params: [h("hFile"), u32("dwFlags"), u64("Offset", "ULONGLONG"), u64("Length", "ULONGLONG")],
    doc:
      "LockFileEx's one try: an exclusive lock (LOCKFILE_EXCLUSIVE_LOCK) or a shared one; ERROR_LOCK_VIOLATION when it conflicts.",
  },
  {
    nr: 77,
    name: "PvxOpenCurrentProcess",
    ret: "HANDLE",
    failure: 0n,
    params: [],
    doc: "DuplicateHandle of GetCurrentProcess(), and OpenProcess of its id: a real handle to the process.",
  },
  {
    nr: 78,
    name: "GetProcessId",
    ret: "DWORD",
    failure: 0n,
    params: [h("Process")],
    doc: "The process's id, for GetCurrentProcess() or a real handle to it; 0 and ERROR_INVALID_HANDLE for any other.",
  },
] as const satisfies readonly CallDef[];

export type CallName = (typeof calls)[number]["name"];

export const callsByName: ReadonlyMap<string, CallDef> = new Map(calls.map((c) => [c.name, c]));
export const callsByNr: readonly (CallDef | undefined)[] = (() => {
  const table: (CallDef | undefined)[] = [];
  for (const c of calls) {
    if (table[c.nr]) throw new Error(`hypercall ${c.nr} declared twice (${table[c.nr]!.name}, ${c.name})`);
    table[c.nr] = c;
  }
  return table;
})();

/** Bytes in a call's frame: the return slot plus one slot per parameter. */
export function frameSize(call: CallDef): number {
  return 8 * (1 + call.params.length);
}
