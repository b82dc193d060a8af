// Several guest threads make file calls at once, on the same and on different
// handles, through the same mailboxes and host-services loop a threaded
// instance uses. Whatever the interleaving, the outcome must be one a single
// thread could have produced: the test replays every call, one at a time, in
// the order the host served them, and every result, every thread's last error
// and every file byte must be the same. (What one thread's file calls do is
// checked against a model of Windows in tests/file_model_test.ts.)

import { HostWrites } from "../abi/host_writes.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ControlBlock } from "../hv/control_block.ts";
import { HostService } from "../hv/host_service.ts";
import { mapGuestRam, unmapGuestRam } from "../hv/memory.ts";
import { PageTables } from "../guest/paging.ts";
import { MiB, PAGE } from "../abi/memory_map.ts";
import { fuzzRuns } from "./support/fuzz.ts";
import {
  type FileOp,
  type HandleName,
  MAX_TRANSFER,
  type OpResult,
  SCRIPT_AREA,
  ScriptThread,
} from "./support/file_script.ts";
import type { ScriptJob } from "./support/file_script_worker.ts";

const THREADS = 3;
const RAM = 16 * MiB;
const HEAP = { start: 0x900000, end: 0x940000 };
const VIRTUAL = { start: 0xa00000, end: 0xa40000 };
const SHARED: [HandleName, string][] = [["shared", "shared.txt"], ["sharedToo", "shared.txt"], ["other", "other.txt"]];

const op: fc.Arbitrary<FileOp> = fc.oneof(
  fc.record({
    kind: fc.constant("write" as const),
    handle: fc.constantFrom<HandleName>("shared", "sharedToo", "other", "own"),
    length: fc.integer({ min: 1, max: MAX_TRANSFER }),
  }),
  fc.record({
    kind: fc.constant("read" as const),
    handle: fc.constantFrom<HandleName>("shared", "sharedToo", "other", "own"),
    length: fc.integer({ min: 1, max: MAX_TRANSFER }),
  }),
  fc.record({
    kind: fc.constant("seek" as const),
    handle: fc.constantFrom<HandleName>("shared", "sharedToo", "other", "own"),
    to: fc.integer({ min: 0, max: 3 * MAX_TRANSFER }),
  }),
  {
    arbitrary: fc.record({ kind: fc.constant("close" as const), handle: fc.constantFrom<HandleName>("shared", "own") }),
    weight: 1,
  },
);

/** A fresh instance's memory and host services, its shared handles opened by thread 0 before any script runs. */
function instance() {
  const ram = mapGuestRam(RAM);
  const pages = new PageTables(ram.bytes);
  pages.map(SCRIPT_AREA, THREADS * 2 * PAGE + 2 * PAGE, { write: true, exec: false });
  pages.map(HEAP.start, HEAP.end - HEAP.start, { write: true, exec: false });
  pages.reserveTables(VIRTUAL.start, VIRTUAL.end - VIRTUAL.start);
  const overlayDir = Deno.makeTempDirSync({ prefix: "pvx-concurrent-" });
  const control = new ControlBlock({ cpus: THREADS });
  const service = new HostService({
    ram: { hostAddress: ram.hostAddress, size: ram.size, writes: HostWrites.create(ram.size).buffer },
    pageTableRoot: pages.root,
    allowedCalls: ["CreateFileW", "ReadFile", "WriteFile", "SetFilePointerEx", "CloseHandle"],
    control,
    host: {
      bundleFiles: [],
      overlayDir,
      shares: [],
      environment: [],
      heap: HEAP,
      virtual: VIRTUAL,
      commandLineAddress: 0,
      modules: { exe: 0, modules: [] },
    },
  });
  const opener = new ScriptThread(
    THREADS,
    ram.view,
    new Map(),
    (nr, frame, t) => service.dispatch(THREADS, nr, frame, t),
  );
  const handles: [HandleName, number][] = SHARED.map(([name, path]) => [name, opener.open(path)]);
  const files = () => {
    service.close();
    const out: Record<string, number[]> = {};
    for (const e of Deno.readDirSync(overlayDir)) {
      if (e.isFile && e.name.endsWith(".txt")) out[e.name] = [...Deno.readFileSync(`${overlayDir}/${e.name}`)];
    }
    return out;
  };
  const dispose = () => {
    unmapGuestRam(ram);
    Deno.removeSync(overlayDir, { recursive: true });
  };
  return { ram, control, service, handles, files, dispose };
}

const workers = Array.from(
  { length: THREADS },
  () => new Worker(new URL("./support/file_script_worker.ts", import.meta.url), { type: "module" }),
);

Deno.test({
  name: "concurrent file calls from several threads give the results of the order the host served them in",
  // The workers serve every run of the property; they end with the test.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    let interleaved = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(op, { maxLength: 12 }), { minLength: THREADS, maxLength: THREADS }),
          async (scripts) => {
            // Concurrently: every script on its own Worker, the host-services loop on this thread, logging whose call it served.
            const live = instance();
            const running = new SharedArrayBuffer(4);
            new Int32Array(running)[0] = THREADS;
            const results = workers.map((w, cpu) =>
              new Promise<OpResult[]>((resolve, reject) => {
                w.onmessage = (e) => resolve(e.data);
                w.onerror = (e) => reject(e);
                const job: ScriptJob = {
                  cpu,
                  control: live.control.buffer,
                  running,
                  ram: { hostAddress: live.ram.hostAddress, size: live.ram.size },
                  handles: live.handles,
                  ownPath: `own${cpu}.txt`,
                  script: scripts[cpu],
                };
                w.postMessage(job);
              })
            );
            const served: number[] = [];
            // Never paused, so never asked for its state.
            live.control.serve((cpu, nr, frame, thread) => {
              served.push(cpu);
              return live.service.answer(cpu, nr, frame, thread);
            }, () => {});
            const concurrent = await Promise.all(results);
            const concurrentFiles = live.files();
            live.dispose();
            if (served.some((cpu, i) => i > 0 && cpu !== served[i - 1] && served.slice(i).includes(served[i - 1]))) {
              interleaved++;
            }

            // One call at a time, in the served order.
            const replay = instance();
            const threads = scripts.map((_, cpu) => {
              const handles = new Map(replay.handles);
              const t = new ScriptThread(
                cpu,
                replay.ram.view,
                handles,
                (nr, f, th) => replay.service.dispatch(cpu, nr, f, th),
              );
              return { t, handles, step: -1, results: [] as OpResult[] };
            });
            for (const cpu of served) {
              const s = threads[cpu];
              if (s.step < 0) {
                s.handles.set("own", s.t.open(`own${cpu}.txt`));
              } else s.results.push(s.t.perform(scripts[cpu][s.step], s.step));
              s.step++;
            }
            const replayFiles = replay.files();
            replay.dispose();
            assert.deepEqual(
              concurrent,
              threads.map((s) => s.results),
            );
            assert.deepEqual(concurrentFiles, replayFiles);
          },
        ),
        { numRuns: Math.max(10, fuzzRuns / 4) },
      );
    } finally {
      for (const w of workers) w.terminate();
    }
    // Were the threads really concurrent? Some runs must have had their calls served interleaved.
    assert.ok(interleaved > 0, "no run interleaved its threads' calls");
  },
});
