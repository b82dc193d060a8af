// Threads and synchronisation. Creating threads and named objects needs the
// instance's shared state (threadObjectHandlers); everything a thread does to
// itself, to another thread, to the process or to an existing sync object runs
// on its own vCPU thread (threadHandlers), so a blocked wait holds up nobody else.

import { type Args, type Handler, handleValue, type OutU32, type Thread } from "../dispatch.ts";
import { Win32Error } from "../call_errors.ts";
import type { Host, ThreadContext } from "../handler_context.ts";
import { CURRENT_PROCESS, CURRENT_THREAD, SyncKind, type SyncObjects, type SyncRef } from "../sync_objects.ts";
import { PROCESS_ID, win32Constants as C, win32Errors as E } from "../win32.ts";
import { timeHandlers } from "./time.ts";

export function threadObjectHandlers(host: Host) {
  const created = (handle: number | undefined) => {
    if (handle === undefined) throw new Win32Error(E.ERROR_NOT_ENOUGH_MEMORY);
    return handle;
  };
  /** A create's last error is set either way, as kernel32 does: ERROR_ALREADY_EXISTS when the name had an object. */
  const named = (a: Args, t: Thread, kind: SyncKind, init: Parameters<SyncObjects["create"]>[1]) => {
    const { handle, existed } = host.names.create(
      a.lpName as string | null,
      kind,
      () => created(host.sync.create(kind, init)),
    );
    t.lastError = existed ? E.ERROR_ALREADY_EXISTS : 0;
    return handle;
  };
  return {
    CreateThread: (a) => {
      const flags = a.dwCreationFlags as number;
      const { handle, threadId } = host.threads.create(
        a.lpStartAddress as bigint,
        a.lpParameter as bigint,
        Number(a.dwStackSize as bigint),
        (flags & C.CREATE_SUSPENDED) !== 0,
      );
      (a.lpThreadId as OutU32 | null)?.set(threadId);
      return handle;
    },
    CreateEventW: (a, t) =>
      named(a, t, SyncKind.Event, { manual: a.bManualReset !== 0, signaled: a.bInitialState !== 0 }),
    CreateMutexW: (a, t) => named(a, t, SyncKind.Mutex, { owner: a.bInitialOwner ? t.id : 0 }),
    CreateSemaphoreW: (a, t) => {
      const count = (a.lInitialCount as number) | 0, maximum = (a.lMaximumCount as number) | 0;
      if (maximum <= 0 || count < 0 || count > maximum) throw new Win32Error(E.ERROR_INVALID_PARAMETER);
      return named(a, t, SyncKind.Semaphore, { count, maximum });
    },
    OpenEventW: (a) => host.names.open(a.lpName as string | null, SyncKind.Event),
    OpenMutexW: (a) => host.names.open(a.lpName as string | null, SyncKind.Mutex),
    OpenSemaphoreW: (a) => host.names.open(a.lpName as string | null, SyncKind.Semaphore),
  } satisfies Record<string, Handler>;
}

export function threadHandlers(ctx: ThreadContext) {
  const sync = ctx.sync;
  const object = (handle: unknown, kind: SyncKind): SyncRef => {
    const ref = sync.resolve(handle as number, kind);
    if (!ref) throw new Win32Error(E.ERROR_INVALID_HANDLE);
    return ref;
  };
  const threadIdOf = (handle: unknown) => {
    const id = handle === CURRENT_THREAD ? ctx.threadId : sync.threadId(object(handle, SyncKind.Thread));
    // A thread object restored from a snapshot made before they kept their thread's id has none.
    if (!id) throw new Win32Error(E.ERROR_INVALID_HANDLE, "the thread object has no id");
    return id;
  };
  const wait = (handles: number[], all: boolean, ms: number) => {
    const r = sync.wait(handles, all, ctx.deadline(ms), ctx.threadId, ctx.waits);
    if ("error" in r) throw new Win32Error(r.error);
    // A stopping instance never resumes this thread: what it reads back does not matter.
    return "code" in r ? r.code : C.WAIT_FAILED;
  };
  const setEvent = (handle: unknown, signaled: boolean) => {
    if (!sync.setEvent(object(handle, SyncKind.Event), signaled)) throw new Win32Error(E.ERROR_INVALID_HANDLE);
    return 1;
  };
  return {
    ...timeHandlers(ctx),
    PvxNull: () => 0,
    PvxReady: () => {
      ctx.ready();
      return 0;
    },
    ExitProcess: (a) => {
      ctx.exitProcess(a.uExitCode as number);
      return 0;
    },
    ExitThread: (a) => {
      ctx.exitThread(a.dwExitCode as number);
      return 0;
    },
    FlushProcessWriteBuffers: () => {
      ctx.serializeOtherThreads();
      return 0;
    },
    GetLastError: (_a, t) => t.lastError,
    SetLastError: (a, t) => {
      t.lastError = a.dwErrCode as number;
      return 0;
    },
    GetCurrentThreadId: () => ctx.threadId,
    PvxOpenCurrentThread: () => {
      const handle = ctx.openCurrentThread();
      if (handle === undefined) throw new Win32Error(E.ERROR_NOT_ENOUGH_MEMORY, "no sync object or handle is left");
      return handle;
    },
    Sleep: (a) => {
      ctx.sleep(a.dwMilliseconds as number);
      return 0;
    },
    WaitForSingleObject: (a) => wait([a.hHandle as number], false, a.dwMilliseconds as number),
    WaitForMultipleObjects: (a) => {
      const bytes = a.lpHandles as Uint8Array;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const handles = Array.from({ length: a.nCount as number }, (_, i) => handleValue(view.getBigUint64(8 * i, true)));
      return wait(handles, a.bWaitAll !== 0, a.dwMilliseconds as number);
    },
    SetEvent: (a) => setEvent(a.hEvent, true),
    ResetEvent: (a) => setEvent(a.hEvent, false),
    ReleaseMutex: (a) => {
      if (!sync.releaseMutex(object(a.hMutex, SyncKind.Mutex), ctx.threadId)) throw new Win32Error(E.ERROR_NOT_OWNER);
      return 1;
    },
    ReleaseSemaphore: (a) => {
      const n = (a.lReleaseCount as number) | 0;
      if (n <= 0) throw new Win32Error(E.ERROR_INVALID_PARAMETER);
      const previous = sync.releaseSemaphore(object(a.hSemaphore, SyncKind.Semaphore), n);
      if (previous === undefined) throw new Win32Error(E.ERROR_TOO_MANY_POSTS);
      (a.lpPreviousCount as OutU32 | null)?.set(previous);
      return 1;
    },
    GetExitCodeThread: (a) => {
      const code = a.hThread === CURRENT_THREAD ? C.STILL_ACTIVE : sync.exitCode(object(a.hThread, SyncKind.Thread));
      if (code === undefined) throw new Win32Error(E.ERROR_INVALID_HANDLE);
      (a.lpExitCode as OutU32).set(code);
      return 1;
    },
    GetThreadId: (a) => threadIdOf(a.Thread),
    PvxOpenCurrentProcess: () => {
      const handle = sync.create(SyncKind.Process, {});
      if (handle === undefined) throw new Win32Error(E.ERROR_NOT_ENOUGH_MEMORY, "no sync object is left");
      return handle;
    },
    GetProcessId: (a) => {
      if (a.Process !== CURRENT_PROCESS) object(a.Process, SyncKind.Process);
      return PROCESS_ID;
    },
    SuspendThread: (a) => {
      const previous = ctx.threads.suspendThread(threadIdOf(a.hThread));
      if (previous === "ended") throw new Win32Error(E.ERROR_ACCESS_DENIED, "the thread has ended");
      if (previous === "limit") throw new Win32Error(E.ERROR_SIGNAL_REFMSG_EXCEEDED);
      return previous;
    },
    ResumeThread: (a) => {
      const previous = ctx.threads.resumeThread(threadIdOf(a.hThread));
      return previous === "ended" ? 0 : previous;
    },
    // An ended thread stays ended: Windows answers TRUE and changes nothing.
    TerminateThread: (a) => (ctx.threads.terminateThread(threadIdOf(a.hThread), a.dwExitCode as number), 1),
    PvxWaitOnAddress: (a) => {
      const word = a.Address as Uint8Array;
      const view = new DataView(word.buffer, word.byteOffset, 4);
      const woken = sync.waitOnAddress(
        word.byteOffset,
        () => view.getInt32(0, true),
        a.CompareValue as number,
        ctx.deadline(a.dwMilliseconds as number),
        ctx.waits,
      );
      if (!woken) throw new Win32Error(E.ERROR_TIMEOUT);
      return 1;
    },
    PvxWakeByAddress: (a) => {
      sync.wakeByAddress((a.Address as Uint8Array).byteOffset);
      return 0;
    },
  } satisfies Record<string, Handler>;
}
