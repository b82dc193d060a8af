// Where pvx keeps what it can rebuild: bundles packed on the fly, the nested accelerator's boot image.

import { join } from "../abi/host_path.ts";

export function cacheRoot(): string {
  return join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache"), "pvx");
}
