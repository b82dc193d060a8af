import assert from "node:assert/strict";
import { renderHeader } from "../tools/gen_header.ts";
import { calls, frameSize } from "../abi/calls.ts";
import { HYPERCALL_COUNT } from "../abi/doorbell.ts";
import { guestCflags, run } from "../tools/guest_cc.ts";

Deno.test("the committed abi/pvx.h is what abi/calls.ts generates (run `deno task gen`)", async () => {
  const committed = await Deno.readTextFile(new URL("../abi/pvx.h", import.meta.url));
  assert.equal(committed, renderHeader());
});

Deno.test("every call is well formed: unique number in port range, length params exist and are u32", () => {
  const seen = new Set<number>();
  for (const c of calls) {
    assert.ok(c.nr >= 0 && c.nr < HYPERCALL_COUNT, `${c.name}: nr ${c.nr}`);
    assert.ok(!seen.has(c.nr), `${c.name}: nr ${c.nr} reused`);
    seen.add(c.nr);
    assert.equal(frameSize(c), 8 * (c.params.length + 1));
    for (const p of c.params) {
      if (p.kind === "in" || p.kind === "out") {
        const len = c.params.find((q) => q.name === p.len);
        assert.ok(len, `${c.name}.${p.name}: length parameter ${p.len} missing`);
        assert.equal(len.kind, "u32", `${c.name}.${p.len} must be a u32 length`);
      }
    }
  }
});

Deno.test("pvx.h compiles warning-free and every call emits a .pvx_calls record", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const zero = (c: string) => c === "LARGE_INTEGER" ? "(LARGE_INTEGER){ .QuadPart = 0 }" : "0";
    const args = (c: (typeof calls)[number]) => c.params.map((p) => zero(p.c)).join(", ");
    const body = calls.filter((c) => !("noreturn" in c)).map((c) => `  (void)${c.name}(${args(c)});`).join("\n");
    const src =
      `#include "pvx.h"\nint main(int argc, char **argv, char **envp) {\n  (void)argc, (void)argv, (void)envp;\n${
        body.replaceAll("(void)SetLastError", "SetLastError")
      }\n  return 0;\n}\n`;
    await Deno.writeTextFile(`${dir}/all.c`, src);
    await run("gcc", [...guestCflags, "-Wextra", "-o", `${dir}/all`, `${dir}/all.c`]);
    await run("objcopy", ["--dump-section", `.pvx_calls=${dir}/calls.bin`, `${dir}/all`, `${dir}/discard`]);
    const names = new Set(
      new TextDecoder().decode(await Deno.readFile(`${dir}/calls.bin`)).split("\0").filter(Boolean),
    );
    assert.deepEqual([...names].sort(), calls.map((c) => c.name).sort());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
