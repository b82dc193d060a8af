// A pvx started before its job: under emulation, starting Deno and loading pvx
// take seconds, so the agent keeps one of these ready. It loads pvx, warms a
// vCPU thread, then reads its job (JSON: args, cwd, env) from the first line
// of stdin, one byte at a time so that the rest stays the guest's input.

import { main } from "../pvx.ts";
import { prewarm } from "../../hv/vcpu_threads.ts";

prewarm();
const line: number[] = [];
const byte = new Uint8Array(1);
for (;;) {
  const n = Deno.stdin.readSync(byte);
  if (n === null) Deno.exit(0); // the agent shut down before giving a job
  if (byte[0] === 0x0a) break;
  line.push(byte[0]);
}
const job = JSON.parse(new TextDecoder().decode(new Uint8Array(line))) as {
  args: string[];
  cwd: string;
  env: Record<string, string>;
};
Deno.chdir(job.cwd);
for (const name of Object.keys(Deno.env.toObject())) Deno.env.delete(name);
for (const [name, value] of Object.entries(job.env)) Deno.env.set(name, value);
Deno.exit(await main(job.args));
