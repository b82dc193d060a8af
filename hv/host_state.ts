// Builds an instance's host-side state (handle table, virtual drive, heap,
// virtual memory, environment) from plain data, in whichever thread serves
// the instance's hypercalls.

import { HandleTable } from "../abi/handles.ts";
import { FileView, type ShareSpec } from "../abi/fileview.ts";
import { GuestHeap } from "../abi/heap.ts";
import { VirtualMemory } from "../abi/virtual_memory.ts";
import type { ConsoleIo, Host, ThreadStarter } from "../abi/host.ts";
import type { SyncObjects } from "../abi/sync_objects.ts";
import type { ModuleTable } from "../abi/handlers/modules.ts";
import type { PageTables } from "../guest/paging.ts";
import { libc, POLLIN } from "../ffi/libc.ts";

/** Structured-cloneable description of an instance's host state at boot. */
export interface HostInit {
  bundleFiles: [string, Uint8Array][];
  overlayDir: string;
  shares: ShareSpec[];
  environment: [string, string][];
  heap: { start: number; end: number };
  virtual: { start: number; end: number };
  commandLineAddress: number;
  modules: ModuleTable;
}

function writeAll(stream: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length;) off += stream.writeSync(bytes.subarray(off));
}

/** How long a console read blocks before it looks again whether the instance is stopping. */
const STDIN_POLL_MS = 50;

/**
 * The process's console. A read waits in poll() slices rather than in read():
 * a read blocked on a terminal would keep --timeout and ExitProcess on
 * another thread from ever stopping the instance.
 */
function processConsole(stopping: () => boolean): ConsoleIo {
  const pollfd = new Uint8Array(8); // struct pollfd { int fd = 0 (stdin); short events; short revents; }
  new DataView(pollfd.buffer).setInt16(4, POLLIN, true);
  return {
    write: (stream, bytes) => writeAll(stream === "stderr" ? Deno.stderr : Deno.stdout, bytes),
    read: (into) => {
      if (into.length === 0) return 0;
      while (!stopping()) {
        // Ready, end of input and errors all return > 0; readSync then reports which.
        if (libc().poll(pollfd, 1n, STDIN_POLL_MS) > 0) return Deno.stdin.readSync(into) ?? 0;
      }
      return 0;
    },
  };
}

export function createHost(
  init: HostInit,
  ram: Uint8Array,
  pages: PageTables,
  shared: { sync: SyncObjects; stopping(): boolean },
  threads: (memory: VirtualMemory) => ThreadStarter,
): Host {
  const memory = new VirtualMemory(pages, ram, init.virtual.start, init.virtual.end);
  return {
    handles: new HandleTable(),
    files: new FileView({ bundleFiles: new Map(init.bundleFiles), overlayDir: init.overlayDir, shares: init.shares }),
    heap: new GuestHeap(ram, init.heap.start, init.heap.end),
    memory,
    environment: new Map(init.environment.map(([k, v]) => [k.toUpperCase(), v])),
    commandLineAddress: init.commandLineAddress,
    modules: init.modules,
    console: processConsole(shared.stopping),
    sync: shared.sync,
    threads: threads(memory),
  };
}
