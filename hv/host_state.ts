// Builds an instance's host-side state (handle table, virtual drive, heap,
// virtual memory, environment) from plain data, in whichever thread serves
// the instance's hypercalls.

import { HandleTable } from "../abi/handles.ts";
import { FileView, type ShareSpec } from "../abi/fileview.ts";
import { GuestHeap } from "../abi/heap.ts";
import { VirtualMemory } from "../abi/virtual_memory.ts";
import type { ConsoleIo, Host } from "../abi/host.ts";
import type { ModuleTable } from "../abi/handlers/modules.ts";
import type { PageTables } from "../guest/paging.ts";

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
  startedAt: number;
}

function writeAll(stream: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length;) off += stream.writeSync(bytes.subarray(off));
}

export const processConsole: ConsoleIo = {
  write: (stream, bytes) => writeAll(stream === "stderr" ? Deno.stderr : Deno.stdout, bytes),
  read: (into) => into.length === 0 ? 0 : Deno.stdin.readSync(into) ?? 0,
};

export function createHost(
  init: HostInit,
  ram: Uint8Array,
  pages: PageTables,
  hooks: { sleep(ms: number): void; exit(code: number): void },
): Host {
  return {
    handles: new HandleTable(),
    files: new FileView({ bundleFiles: new Map(init.bundleFiles), overlayDir: init.overlayDir, shares: init.shares }),
    heap: new GuestHeap(ram, init.heap.start, init.heap.end),
    memory: new VirtualMemory(pages, ram, init.virtual.start, init.virtual.end),
    environment: new Map(init.environment.map(([k, v]) => [k.toUpperCase(), v])),
    commandLineAddress: init.commandLineAddress,
    modules: init.modules,
    console: processConsole,
    startedAt: init.startedAt,
    sleep: hooks.sleep,
    exit: hooks.exit,
  };
}
