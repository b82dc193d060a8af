// Win32 programs built from one source two ways; the pvx build runs on real
// KVM and must print exactly what Windows documents (tests/win32/*.expected).

import assert from "node:assert/strict";
import { buildPvxGuest, buildWindowsExe, win32Dir, win32Programs, windowsOnly } from "./support/win32.ts";
import { pvxCli } from "./support/guests.ts";
import { defaultPackOptions, packApp } from "../tools/pack.ts";
import { writeBundle } from "../hv/bundle.ts";

const dir = await Deno.makeTempDir({ prefix: "pvx-win32-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

for (const name of await win32Programs()) {
  Deno.test(`${name}.c builds unchanged with mingw against kernel32`, async () => {
    const exe = await buildWindowsExe(name, dir);
    assert.equal(new TextDecoder().decode((await Deno.readFile(exe)).subarray(0, 2)), "MZ");
  });

  if (windowsOnly.has(name)) continue;
  Deno.test(`${name}.c as a pvx guest prints what Windows documents`, async () => {
    const bundle = `${dir}/${name}.pvx`;
    await writeBundle(bundle, await packApp(await buildPvxGuest(name, dir), defaultPackOptions));
    const work = await Deno.makeTempDir({ dir });
    const r = await pvxCli(["run", "--overlay", work, "--env", "PVX_TEST_VAR=hello-env", bundle]);
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, await Deno.readTextFile(`${win32Dir}${name}.expected`));
    assert.equal(r.code, 0);
  });
}
