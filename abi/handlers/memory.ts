// Virtual memory (host-managed page tables) and the process heap (host-managed
// metadata, guest-visible blocks).

import type { Args, Handler, OutU32 } from "../dispatch.ts";
import { Win32Error } from "../call_errors.ts";
import type { Host } from "../handler_context.ts";
import { win32Constants as W, win32Errors } from "../win32.ts";
import { MEMORY_BASIC_INFORMATION_SIZE } from "../calls.ts";

/** A SIZE_T or address argument as a number; anything past 2^53 is no valid guest size. */
function size(value: unknown): number {
  const v = value as bigint;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Win32Error(win32Errors.ERROR_INVALID_PARAMETER);
  return Number(v);
}

export function memoryHandlers(host: Host) {
  const heapOf = (a: Args) => {
    if (a.hHeap !== host.handles.processHeap) throw new Win32Error(win32Errors.ERROR_INVALID_HANDLE);
  };
  const block = (a: Args) => {
    const address = size(a.lpMem);
    if (host.heap.size(address) < 0) throw new Win32Error(win32Errors.ERROR_INVALID_PARAMETER);
    return address;
  };
  const orOutOfMemory = (address: number) => {
    if (address === 0) throw new Win32Error(win32Errors.ERROR_NOT_ENOUGH_MEMORY);
    return address;
  };
  return {
    VirtualAlloc: (a) =>
      host.memory.alloc(size(a.lpAddress), size(a.dwSize), a.flAllocationType as number, a.flProtect as number),
    VirtualFree: (a) => {
      host.memory.free(size(a.lpAddress), size(a.dwSize), a.dwFreeType as number);
      return 1;
    },
    VirtualQuery: (a) => {
      if (size(a.dwLength) < MEMORY_BASIC_INFORMATION_SIZE) throw new Win32Error(win32Errors.ERROR_BAD_LENGTH);
      const info = host.memory.query(size(a.lpAddress));
      const out = a.lpBuffer as Uint8Array;
      const dv = new DataView(out.buffer, out.byteOffset, MEMORY_BASIC_INFORMATION_SIZE);
      dv.setBigUint64(0, BigInt(info.baseAddress), true);
      dv.setBigUint64(8, BigInt(info.allocationBase), true);
      dv.setUint32(16, info.allocationProtect, true);
      dv.setUint32(20, 0, true); // PartitionId and padding
      dv.setBigUint64(24, BigInt(info.regionSize), true);
      dv.setUint32(32, info.state, true);
      dv.setUint32(36, info.protect, true);
      dv.setUint32(40, info.type, true);
      dv.setUint32(44, 0, true);
      return MEMORY_BASIC_INFORMATION_SIZE;
    },
    VirtualProtect: (a) => {
      const old = host.memory.protect(size(a.lpAddress), size(a.dwSize), a.flNewProtect as number);
      (a.lpflOldProtect as OutU32).set(old);
      return 1;
    },
    GetProcessHeap: () => host.handles.processHeap,
    HeapAlloc: (a) => {
      heapOf(a);
      return orOutOfMemory(host.heap.alloc(size(a.dwBytes), ((a.dwFlags as number) & W.HEAP_ZERO_MEMORY) !== 0));
    },
    HeapFree: (a) => {
      heapOf(a);
      if (a.lpMem === 0n) return 1;
      if (!host.heap.free(size(a.lpMem))) throw new Win32Error(win32Errors.ERROR_INVALID_PARAMETER);
      return 1;
    },
    HeapReAlloc: (a) => {
      heapOf(a);
      const flags = a.dwFlags as number;
      return orOutOfMemory(host.heap.realloc(
        block(a),
        size(a.dwBytes),
        (flags & W.HEAP_ZERO_MEMORY) !== 0,
        (flags & W.HEAP_REALLOC_IN_PLACE_ONLY) !== 0,
      ));
    },
    HeapSize: (a) => {
      heapOf(a);
      return host.heap.size(block(a));
    },
  } satisfies Record<string, Handler>;
}
