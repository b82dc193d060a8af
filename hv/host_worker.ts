// Worker entry: the host-services thread of an instance whose app can create
// threads. It owns the handle table, the drive, the heap and the virtual
// memory, and answers every vCPU's mailbox in turn (hv/control_block.ts).

/// <reference lib="deno.worker" />
import { ControlBlock, THREAD_EXITED } from "./control_block.ts";
import { HostService } from "./host_service.ts";
import type { ServiceInit, ServiceMessage } from "./vcpu_thread.ts";

const post = (m: ServiceMessage) => self.postMessage(m);
const describe = (err: unknown) => err instanceof Error ? `${err.message}\n${err.stack}` : String(err);

self.onmessage = (e: MessageEvent<ServiceInit>) => {
  const init = e.data;
  const control = new ControlBlock(init.control);
  let service: HostService;
  try {
    const { restore, ...boot } = init;
    service = new HostService({
      ...boot,
      control,
      threads: { threadStart: init.threadStart, launch: (thread) => post({ kind: "start-thread", thread }) },
      ...(restore ? { restore: restore.host, restoreThreads: restore.threads } : {}),
      ...(init.readyAt === "first-input" ? { onFirstRead: () => post({ kind: "ready" }) } : {}),
    });
  } catch (err) {
    post({ kind: "host-error", message: describe(err) });
    control.serve(() => ({ violation: "host services failed to start" }), () => {});
    post({ kind: "done" });
    return;
  }
  control.serve((cpu, nr, frame, thread) => {
    try {
      return nr === THREAD_EXITED ? service.threadExited(cpu) : service.answer(cpu, nr, frame, thread);
    } catch (err) {
      // A bug on the host side: the instance stops, but the vCPU waiting on this answer must still get one.
      post({ kind: "host-error", message: describe(err) });
      return { violation: "host error (reported separately)" };
    }
  }, () => post({ kind: "state", host: service.save(), threads: service.saveThreads() }));
  service.close();
  post({ kind: "done" });
};
