// Random hypercall frames against the real dispatcher and handlers: the host
// never throws anything but an AbiViolation, never writes guest memory outside
// the frame's return slot, the call's declared out-buffers and the memory the
// call itself manages (heap blocks, committed pages and their page tables),
// never reads outside mapped guest pages, and never touches memory around
// guest RAM or host files outside the instance's overlay.

import { ObjectNames } from "../abi/object_names.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { type CallDef, calls, callsByNr } from "../abi/calls.ts";
import { Dispatcher, type Thread } from "../abi/dispatch.ts";
import { AbiViolation } from "../abi/call_errors.ts";
import { SpecialCalls } from "../abi/special_calls.ts";
import { HandleTable } from "../abi/handles.ts";
import { hostHandlers } from "../abi/host_handlers.ts";
import { FileView } from "../abi/fileview.ts";
import { GuestHeap } from "../abi/heap.ts";
import { VirtualMemory } from "../abi/virtual_memory.ts";
import { PageTables } from "../guest/paging.ts";
import { maxVcpus, MiB, PAGE, pageTablePoolBase, pageTablePoolEnd, tebBase, tebSize } from "../abi/memory_map.ts";
import { mapTebs } from "../guest/teb.ts";
import { threadHandlers } from "../abi/handlers/threads.ts";
import { SYNC_HANDLE_BASE } from "../abi/sync_objects.ts";
import { ControlBlock } from "../hv/control_block.ts";
import { FIRST_THREAD_ID, GuestThreads } from "../hv/guest_threads.ts";
import { fuzzRuns } from "./support/fuzz.ts";
import { encodeWide } from "../abi/handlers/strings.ts";

// Small enough that comparing all of it after every call stays cheap.
const RAM = 6 * MiB;
const CANARY = PAGE;
const text = { start: 0x400000, size: 16 * PAGE };
const data = { start: 0x480000, size: 128 * PAGE };
const heap = { start: 0x500000, size: 64 * PAGE };
const virtual = { start: 0x540000, size: 64 * PAGE };
const stack = { start: RAM - 64 * PAGE, size: 64 * PAGE };

function makeGuest() {
  const backing = new Uint8Array(CANARY + RAM + CANARY).fill(0x5a);
  const bytes = backing.subarray(CANARY, CANARY + RAM);
  bytes.fill(0);
  const pages = new PageTables(bytes);
  pages.map(text.start, text.size, { write: false, exec: true });
  pages.map(data.start, data.size, { write: true, exec: false });
  pages.map(stack.start, stack.size, { write: true, exec: false });
  pages.map(heap.start, heap.size, { write: true, exec: false });
  pages.reserveTables(virtual.start, virtual.size);
  mapTebs(pages);
  for (let i = 0; i < text.size; i++) bytes[text.start + i] = i & 0xff;
  pathStrings.forEach((path, i) => bytes.set(encodeWide(path), pathAddress(i)));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { backing, bytes, view, pages };
}

/** Paths that try every way out of the virtual drive, placed in guest memory for path arguments to point at. */
const pathStrings = [
  "..\\..\\..\\..\\sentinel\\secret.txt",
  "C:\\..\\sentinel",
  "/sentinel/secret.txt",
  "\\\\?\\C:\\x",
  "\\\\.\\PhysicalDrive0",
  "\\\\server\\share",
  "D:\\x",
  "NUL",
  "con.txt",
  "a\\com1\\b",
  "new.txt",
  "dir\\..\\..\\up",
  "app.txt",
  "*",
  "..\\*",
  "x".repeat(300),
];
/** The last 64 KiB of the data region holds the path strings, 2 KiB apart. */
const pathAddress = (i: number) => data.start + data.size - 0x10000 + 0x800 * i;

const interestingAddress = fc.oneof(
  fc.constantFrom(
    0,
    8,
    PAGE - 1,
    0x10000,
    text.start,
    text.start + text.size - 4,
    data.start,
    data.start + data.size - 4,
    data.start + data.size,
    stack.start - 8,
    RAM - 8,
    RAM,
    RAM + PAGE,
    0xffffffff,
    2 ** 32,
    2 ** 53,
    2 ** 63,
    2 ** 64 - 1,
  ),
  fc.integer({ min: data.start, max: data.start + data.size }),
  fc.constantFrom(...pathStrings.map((_, i) => pathAddress(i))),
  fc.integer({ min: text.start, max: text.start + text.size }),
  fc.integer({ min: 0, max: RAM + PAGE }),
);
const interestingValue = fc.oneof(
  interestingAddress,
  fc.constantFrom(
    0,
    1,
    2,
    4,
    4095,
    4096,
    65536,
    0x7fffffff,
    0x80000000,
    0xfffffff4,
    0xfffffff5,
    0xfffffff6,
    0xffffffff,
  ),
  fc.nat(),
);
const frameAddress = fc.oneof(
  { arbitrary: fc.integer({ min: data.start - 64, max: data.start + data.size }), weight: 3 },
  fc.integer({ min: stack.start - 64, max: RAM }),
  fc.constantFrom(0, text.start, RAM - 8, RAM, 0xfffffff8),
);
const callNr = fc.oneof(
  { arbitrary: fc.constantFrom(...calls.map((c) => c.nr)), weight: 4 },
  fc.integer({ min: 0, max: 255 }),
);
const dataAddress = fc.integer({ min: data.start, max: data.start + data.size - 1 });

/** Values for one slot, biased toward what that kind of parameter accepts so handlers run too. */
function slotValue(p: CallDef["params"][number] | undefined): fc.Arbitrary<number | bigint> {
  switch (p?.kind) {
    case "handle":
      return fc.oneof(
        { arbitrary: fc.constantFrom(4, 8, 12, 16, SYNC_HANDLE_BASE, SYNC_HANDLE_BASE + 4), weight: 3 },
        interestingValue,
      );
    case "wstr":
      return fc.oneof(
        { arbitrary: fc.constantFrom(...pathStrings.map((_, i) => pathAddress(i))), weight: 4 },
        interestingAddress,
      );
    case "in":
    case "inStruct":
    case "out":
    case "outU32":
    case "outStruct":
      return fc.oneof({ arbitrary: dataAddress, weight: 3 }, fc.constant(0), interestingAddress);
    case "null":
      return fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, interestingValue);
    case "u32":
      return fc.oneof({ arbitrary: fc.integer({ min: 0, max: 600 }), weight: 3 }, interestingValue);
    default:
      return interestingValue;
  }
}
const hypercall = callNr.chain((nr) =>
  fc.tuple(
    fc.constant(nr),
    frameAddress,
    fc.tuple(...Array.from({ length: 8 }, (_, i) => slotValue(callsByNr[nr]?.params[i]))),
  )
);

/** Memory a call manages on the guest's behalf, beyond its arguments. */
const managed: Record<string, [number, number][]> = {
  HeapAlloc: [[heap.start, heap.start + heap.size]],
  HeapReAlloc: [[heap.start, heap.start + heap.size]],
  VirtualAlloc: [[virtual.start, virtual.start + virtual.size], [pageTablePoolBase, pageTablePoolEnd]],
  VirtualFree: [[pageTablePoolBase, pageTablePoolEnd]],
  VirtualProtect: [[pageTablePoolBase, pageTablePoolEnd]],
  // A thread's stack comes from virtual memory; its TEB is the page of its vCPU slot.
  CreateThread: [
    [virtual.start, virtual.start + virtual.size],
    [pageTablePoolBase, pageTablePoolEnd],
    [tebBase, tebBase + maxVcpus * tebSize],
  ],
};

/** Byte ranges the host may write for this call and frame: the return slot, declared outputs, managed memory. */
function writableRanges(call: CallDef, frame: number, slots: bigint[]): [number, number][] {
  const ranges: [number, number][] = [[frame, frame + 8], ...managed[call.name] ?? []];
  call.params.forEach((p, i) => {
    const at = Number(slots[i]);
    if (p.kind === "outU32") ranges.push([at, at + 4]);
    if (p.kind === "outStruct") ranges.push([at, at + p.size]);
    if (p.kind === "out") {
      const len = Number(slots[call.params.findIndex((q) => q.name === p.len)] & 0xffffffffn);
      ranges.push([at, at + len * p.unit]);
    }
  });
  return ranges;
}

Deno.test("random hypercall frames never crash the host nor touch memory they must not", () => {
  const guest = makeGuest();
  const written: Uint8Array[] = [];
  let exitCode: number | undefined;
  // A sentinel tree beside the overlay: nothing a guest does may reach it.
  const root = Deno.makeTempDirSync({ prefix: "pvx-fuzz-" });
  const overlayDir = `${root}/overlay`;
  Deno.mkdirSync(`${root}/sentinel`);
  Deno.writeTextFileSync(`${root}/sentinel/secret.txt`, "untouched");
  const control = new ControlBlock({ cpus: 2 });
  const memory = new VirtualMemory(
    new PageTables(guest.bytes, guest.pages.root),
    guest.bytes,
    virtual.start,
    virtual.start + virtual.size,
  );
  const handlers = {
    ...threadHandlers({
      sync: control.sync,
      threads: control,
      threadId: FIRST_THREAD_ID,
      startedAt: Date.now(),
      // Waits and sleeps return at once: a random frame must not block the test.
      waits: { now: () => control.now(), checkpoint: () => true },
      deadline: () => 0,
      sleep: () => {},
      ready: () => {},
      openCurrentThread: () => control.sync.openThread(FIRST_THREAD_ID)?.handle,
      exitProcess: (c) => exitCode = c,
      exitThread: (c) => exitCode = c,
      // No other vCPU runs here: the real one's wait would be for nobody.
      serializeOtherThreads: () => control.pullOutOthers(0),
    }),
    ...hostHandlers({
      handles: new HandleTable(),
      files: new FileView({ bundleFiles: new Map([["app.txt", new Uint8Array([1, 2, 3])]]), overlayDir, shares: [] }),
      heap: new GuestHeap(guest.bytes, heap.start, heap.start + heap.size),
      memory,
      environment: new Map([["HOME", "C:\\"]]),
      commandLineAddress: data.start,
      special: new SpecialCalls({ policy: "allow", procs: [], libraries: [] }, () => {}),
      modules: { exe: text.start, modules: [["kernel32.dll", 0xc0000, [["GetLastError", 0, 0xc0000]]]] },
      console: { write: (_s, b) => written.push(b.slice()), read: () => 0 },
      sync: control.sync,
      names: new ObjectNames(control.sync),
      threads: new GuestThreads(guest.bytes, memory, control, text.start, () => {}),
    }),
  };
  const dispatcher = new Dispatcher(guest, handlers, calls.map((c) => c.name));
  const thread: Thread = { lastError: 0, id: FIRST_THREAD_ID };
  const seen = { violations: 0, consoleWrites: 0, refusedArguments: 0 };

  fc.assert(
    fc.property(hypercall, ([nr, frame, values]) => {
      const slots = values.map((v) => BigInt.asUintN(64, BigInt(v)));
      const call = callsByNr[nr];
      if (call && guest.pages.accessible(frame, 8 * (1 + call.params.length), true)) {
        slots.slice(0, call.params.length).forEach((s, i) => guest.view.setBigUint64(frame + 8 * (i + 1), s, true));
      }
      const before = guest.backing.slice();
      written.length = 0;
      try {
        dispatcher.dispatch(nr, frame, thread);
        if (thread.lastError === 998) seen.refusedArguments++;
        thread.lastError = 0;
      } catch (e) {
        if (!(e instanceof AbiViolation)) throw e;
        seen.violations++;
      }
      const allowed = call ? writableRanges(call, frame, slots) : [];
      const [now, then] = [new Int32Array(guest.backing.buffer), new Int32Array(before.buffer)];
      for (let i = 0; i < guest.backing.length; i++) {
        if (i % 4 === 0 && now[i / 4] === then[i / 4]) {
          i += 3;
          continue;
        }
        if (guest.backing[i] === before[i]) continue;
        const at = i - CANARY;
        assert.ok(at >= 0 && at < RAM, `host wrote outside guest RAM at backing offset ${i}`);
        assert.ok(
          allowed.some(([s, e]) => at >= s && at < e),
          `${call?.name}: host wrote guest byte 0x${at.toString(16)} it had no right to`,
        );
        // Page tables are the host's to change and never mapped for the guest; anything else must be guest-writable.
        const pageTable = at >= pageTablePoolBase && at < pageTablePoolEnd;
        assert.ok(
          pageTable || guest.pages.lookup(at)?.write,
          `${call?.name}: host wrote read-only or unmapped page at 0x${at.toString(16)}`,
        );
      }
      if (call?.name === "WriteFile" && written.length) {
        seen.consoleWrites++;
        const [buf, len] = [Number(slots[1]), Number(slots[2] & 0xffffffffn)];
        assert.ok(guest.pages.accessible(buf, len, false), "WriteFile read an unmapped buffer");
        // A buffer that overlaps the frame or the count it writes back may change under the call: no fixed answer.
        if (!allowed.some(([s, e]) => s < buf + len && buf < e)) {
          assert.deepEqual(written[0], guest.bytes.slice(buf, buf + len));
        }
      }
    }),
    {
      numRuns: fuzzRuns,
      // Always run one of each outcome, so the coverage check below cannot depend on luck.
      examples: [
        [[3, data.start, [8, data.start + 0x100, 16, data.start + 0x200, 0, 0, 0, 0]]], // WriteFile to stdout
        [[3, data.start, [8, 0x10, 16, 0, 0, 0, 0, 0]]], // WriteFile from the NULL guard
        [[3, 0, [8, data.start, 16, 0, 0, 0, 0, 0]]], // frame in the NULL guard
      ],
    },
  );
  assert.ok(exitCode === undefined || Number.isInteger(exitCode));
  assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["overlay", "sentinel"]);
  assert.deepEqual([...Deno.readDirSync(`${root}/sentinel`)].map((e) => e.name), ["secret.txt"]);
  assert.equal(Deno.readTextFileSync(`${root}/sentinel/secret.txt`), "untouched");
  Deno.removeSync(root, { recursive: true });
  // The generators must reach every outcome, or the property above proves little.
  assert.ok(seen.violations > 0 && seen.consoleWrites > 0 && seen.refusedArguments > 0, JSON.stringify(seen));
});
