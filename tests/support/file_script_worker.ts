// Worker entry for tests/concurrent_files_test.ts: plays one thread's script
// through the instance's mailbox, exactly as a vCPU thread forwards calls.

/// <reference lib="deno.worker" />
import { ControlBlock } from "../../hv/control_block.ts";
import { GuestRam } from "../../hv/memory.ts";
import { type FileOp, type HandleName, type OpResult, ScriptThread } from "./file_script.ts";

export interface ScriptJob {
  cpu: number;
  control: SharedArrayBuffer;
  /** [0]: scripts still running; the last one to finish ends the service loop. */
  running: SharedArrayBuffer;
  ram: { hostAddress: bigint; size: number };
  handles: [HandleName, number][];
  ownPath: string;
  script: FileOp[];
}

self.onmessage = (e: MessageEvent<ScriptJob>) => {
  const job = e.data;
  const control = new ControlBlock(job.control);
  const ram = new GuestRam(job.ram.hostAddress, job.ram.size);
  const results: OpResult[] = [];
  try {
    const handles = new Map(job.handles);
    const t = new ScriptThread(
      job.cpu,
      ram.view,
      handles,
      (nr, frame, thread) => control.call(job.cpu, nr, frame, thread),
    );
    handles.set("own", t.open(job.ownPath));
    job.script.forEach((op, step) => results.push(t.perform(op, step)));
  } finally {
    if (Atomics.sub(new Int32Array(job.running), 0, 1) === 1) control.quitService();
  }
  self.postMessage(results);
};
