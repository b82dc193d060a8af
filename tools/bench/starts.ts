// The daemon part of `deno task bench`'s Windows comparison: how soon after a
// `POST /instances` to a `pvx serve` here (its warm processes waiting, as on a
// daemon idle a while) the Windows hello prints and exits, and the same from a
// template of a hello that waits for a console line first. tools/bench.ts sets
// them against warm Wine's start of the same programs, measured in the same run.

import { call } from "../daemon_client.ts";
import { printed, serve, stop, warmWaiting } from "./daemons.ts";

/** As many as pvx serve keeps by default: each create then finds one waiting. */
const WARM = 2;

/**
 * `hello` is the hello's bundle; `greet` the bundle of the one that reads a line first. Returns, per repeat, the
 * milliseconds from the create to its first output and to its exit, and from a create from the template of greet,
 * with its line written at once, to its exit.
 */
export async function measureDaemonStarts(pvx: string[], dir: string, hello: string, greet: string, repeats: number) {
  const host = await serve(pvx, dir);
  try {
    const template = await call(host.daemon, "POST", "/templates", { bundle: greet, ready: "first-input" });
    const firstOutput: number[] = [], exit: number[] = [], fromTemplate: number[] = [];
    for (let i = 0; i < repeats; i++) {
      await warmWaiting(host, WARM);
      let t0 = performance.now();
      const { id } = await call(host.daemon, "POST", "/instances", { bundle: hello });
      const first = printed(host, id, "hello\n").then(() => performance.now() - t0);
      await call(host.daemon, "POST", `/instances/${id}/wait`);
      exit.push(performance.now() - t0);
      firstOutput.push(await first);
      await call(host.daemon, "DELETE", `/instances/${id}`);

      await warmWaiting(host, WARM);
      t0 = performance.now();
      const { id: clone } = await call(host.daemon, "POST", "/instances", { template: template.id });
      const line = new TextEncoder().encode("x\n");
      await call(host.daemon, "POST", `/instances/${clone}/stdin?close=true`, undefined, line);
      await call(host.daemon, "POST", `/instances/${clone}/wait`);
      fromTemplate.push(performance.now() - t0);
      await call(host.daemon, "DELETE", `/instances/${clone}`);
    }
    return { firstOutput, exit, fromTemplate };
  } finally {
    await stop([host]);
  }
}
