// Builds examples/*.c into runnable bundles when a source is newer than its bundle.

import { compileGuest } from "./guest_cc.ts";
import { main as pvx } from "./pvx.ts";

const dir = new URL("../examples/", import.meta.url).pathname;

async function mtime(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return -1;
    throw e;
  }
}

const header = new URL("../abi/pvx.h", import.meta.url).pathname;
for await (const entry of Deno.readDir(dir)) {
  if (!entry.name.endsWith(".c")) continue;
  const stem = entry.name.slice(0, -2);
  const source = dir + entry.name, elf = `${dir}${stem}.elf`, bundle = `${dir}${stem}.pvx`;
  const built = await mtime(bundle);
  if (built >= await mtime(source) && built >= await mtime(header)) continue;
  await compileGuest(source, elf);
  const status = await pvx(["pack", elf, "-o", bundle, "--name", stem]);
  await Deno.remove(elf);
  if (status !== 0) Deno.exit(status);
}
