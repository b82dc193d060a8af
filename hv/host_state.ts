// Builds an instance's host-side state (handle table, virtual drive, heap,
// virtual memory, environment) from plain data, in whichever thread serves
// the instance's hypercalls.

import { HandleTable, type HandleTableState } from "../abi/handles.ts";
import { FileView } from "../abi/fileview.ts";
import type { ShareSpec } from "../abi/share.ts";
import { GuestHeap, type GuestHeapData } from "../abi/heap.ts";
import { VirtualMemory, type VirtualMemoryData } from "../abi/virtual_memory.ts";
import { win32Constants as W } from "../abi/win32.ts";
import type { ConsoleIo, Host, ModuleTable, ThreadStarter } from "../abi/handler_context.ts";
import type { SyncObjects, WaitControl } from "../abi/sync_objects.ts";
import { type SpecialCallRules, SpecialCalls } from "../abi/special_calls.ts";
import { ObjectNames, type ObjectNamesState } from "../abi/object_names.ts";
import type { PageTables } from "../guest/paging.ts";
import type { HostWrites } from "../abi/host_writes.ts";
import { libc, stdinReady } from "../ffi/libc.ts";

/** An instance's partitions the host services enforce: what the guest gets past them is a Win32 error. */
export interface HostLimits {
  /** Open handles in the handle table: files, searches, heaps, the console (ERROR_TOO_MANY_OPEN_FILES). */
  maxHandles?: number;
  /** Bytes of files in the overlay, its writes and copies of bundle files together (ERROR_DISK_FULL). */
  overlayQuotaBytes?: number;
}

/** Structured-cloneable description of an instance's host state at boot. */
export interface HostInit {
  bundleFiles: [string, Uint8Array][];
  overlayDir: string;
  limits?: HostLimits;
  shares: ShareSpec[];
  environment: [string, string][];
  heap: { start: number; end: number };
  virtual: { start: number; end: number };
  commandLineAddress: number;
  modules: ModuleTable;
  /** A Windows app's: what its analysis saw and the manifest's policy. Without them a call outside the manifest stops the app. */
  specialCalls?: SpecialCallRules;
}

/** What an app without rules (an ELF guest) gets: it has no dynamic lookups, and nothing unseen goes through. */
const NO_SPECIAL_CALLS: SpecialCallRules = { policy: "stop", procs: [], libraries: [] };

/** What a snapshot keeps of the host state beyond its HostInit: the bookkeeping that changed since boot. */
export interface HostState {
  handles: HandleTableState;
  heap: GuestHeapData;
  virtual: VirtualMemoryData;
  currentDirectory: string;
  /** Absent from snapshots made before objects had names. */
  names?: ObjectNamesState;
}

export function saveHost(host: Host): HostState {
  return {
    handles: host.handles.save(),
    heap: host.heap.serialize(),
    virtual: host.memory.serialize(),
    currentDirectory: host.files.currentDirectory,
    names: host.names.save(),
  };
}

function writeAll(stream: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length;) off += stream.writeSync(bytes.subarray(off));
}

/** How long a console read blocks before it looks again whether the instance is stopping or pausing. */
const STDIN_POLL_MS = 50;

/**
 * The process's console. A read waits in poll() slices rather than in read():
 * a read blocked on a terminal would keep --timeout and ExitProcess on
 * another thread from ever stopping the instance, and a pause must find it
 * with nothing read yet.
 */
function processConsole(waits: WaitControl, onFirstRead?: () => void): ConsoleIo {
  return {
    write: (stream, bytes) => writeAll(stream === "stderr" ? Deno.stderr : Deno.stdout, bytes),
    read: (into) => {
      if (into.length === 0) return 0;
      if (onFirstRead) {
        // A template's ready point: the read waits, reading nothing, for the pause of the snapshot it triggers.
        onFirstRead();
        onFirstRead = undefined;
        while (!waits.checkpoint(Infinity)) libc().poll(null, 0n, STDIN_POLL_MS);
        return 0;
      }
      while (!waits.checkpoint(Infinity)) {
        // Ready, end of input and errors all return > 0; readSync then reports which.
        if (stdinReady(STDIN_POLL_MS)) return Deno.stdin.readSync(into) ?? 0;
      }
      return 0;
    },
  };
}

export function createHost(
  init: HostInit,
  ram: Uint8Array,
  pages: PageTables,
  shared: { sync: SyncObjects; waits: WaitControl; writes: HostWrites; onFirstRead?: () => void },
  threads: (memory: VirtualMemory) => ThreadStarter,
  restored?: HostState,
): Host {
  const { virtual: v, heap: h } = init;
  const memory = restored
    ? VirtualMemory.restore(pages, ram, v.start, v.end, restored.virtual, shared.writes)
    : new VirtualMemory(pages, ram, v.start, v.end, shared.writes);
  const files = new FileView({
    bundleFiles: new Map(init.bundleFiles),
    overlayDir: init.overlayDir,
    shares: init.shares,
    overlayQuotaBytes: init.limits?.overlayQuotaBytes,
  });
  if (restored) files.setCurrentDirectory(restored.currentDirectory);
  // A restored file handle opens what is there now: the file must still exist, with the same access and sharing.
  const reopen = (path: string, options: Parameters<FileView["open"]>[1]) =>
    files.open(path, { ...options, disposition: W.OPEN_EXISTING }).file;
  return {
    handles: restored
      ? HandleTable.restore(restored.handles, reopen, init.limits?.maxHandles)
      : new HandleTable(init.limits?.maxHandles),
    files,
    heap: restored
      ? GuestHeap.restore(ram, h.start, h.end, restored.heap, shared.writes)
      : new GuestHeap(ram, h.start, h.end, shared.writes),
    memory,
    environment: new Map(init.environment.map(([k, v]) => [k.toUpperCase(), v])),
    commandLineAddress: init.commandLineAddress,
    modules: init.modules,
    special: new SpecialCalls(init.specialCalls ?? NO_SPECIAL_CALLS),
    console: processConsole(shared.waits, shared.onFirstRead),
    sync: shared.sync,
    names: restored?.names
      ? ObjectNames.restore(shared.sync, restored.names, "snapshot: host")
      : new ObjectNames(shared.sync),
    threads: threads(memory),
  };
}
