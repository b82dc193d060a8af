// Runs a bundle many times in this process and prints its host threads and
// descriptors before and after, as JSON on the last line (after the guests'
// output): a process of its own, so that what other tests open and close
// meanwhile is not counted.
//   deno run -A leak_probe.ts <bundle> <runs> [guest args...]

import { readBundle } from "../../hv/bundle.ts";
import { launchBundle } from "../../hv/launch.ts";

const [path, runsText, ...args] = Deno.args;
const bundle = await readBundle(path);

/** Host threads and open descriptors of this process, once Workers that are ending have ended. */
async function hostResources(): Promise<{ threads: number; fds: number }> {
  const count = () => ({
    threads: [...Deno.readDirSync("/proc/self/task")].length,
    fds: [...Deno.readDirSync("/proc/self/fd")].length,
  });
  // A terminated Worker's thread exits a little later: wait until three readings in a row agree.
  let last = count(), same = 0;
  for (let i = 0; i < 100 && same < 3; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = count();
    same = now.threads === last.threads && now.fds === last.fds ? same + 1 : 0;
    last = now;
  }
  return last;
}

const outcomes: unknown[] = [];
const runOnce = async () => outcomes.push((await launchBundle(bundle, { args })).outcome);
await runOnce(); // Deno's own pools grow once, on first use
const before = await hostResources();
for (let i = 0; i < Number(runsText); i++) await runOnce();
const after = await hostResources();
console.log(JSON.stringify({ before, after, outcomes }));
