// Host threads for vCPUs. Starting a Deno Worker costs tens of milliseconds
// (a new isolate) while a whole VM boots in about one, so a process that will
// run guests starts its threads early (`prewarm`) and reuses them: a thread
// serves one vCPU at a time and every vCPU is run by a single thread.

const idle: Worker[] = [];
let keepIdle = 0;

function spawn(): Worker {
  return new Worker(new URL("./vcpu_worker.ts", import.meta.url), { type: "module" });
}

/** Keeps `count` threads ready from now on; they load while the caller prepares its VM. */
export function prewarm(count = 1): void {
  keepIdle = Math.max(keepIdle, count);
  while (idle.length < keepIdle) idle.push(spawn());
}

export function takeThread(): Worker {
  return idle.pop() ?? spawn();
}

/** Returns a thread whose vCPU has finished cleanly; one that failed is never reused. */
export function releaseThread(worker: Worker, healthy: boolean): void {
  worker.onmessage = worker.onerror = null;
  if (healthy && idle.length < keepIdle) idle.push(worker);
  else worker.terminate();
}

/** Ends every idle thread, so a process (or a test) can finish. */
export function stopIdleThreads(): void {
  keepIdle = 0;
  for (const w of idle.splice(0)) w.terminate();
}
