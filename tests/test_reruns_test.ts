// The nested run's reruns pick exactly the tests that failed, read off a real `deno test` JUnit report.

import assert from "node:assert/strict";
import { join } from "node:path";
import { failuresInJunit, MAX_SECOND_TRIES, rerunArgs, secondTry, testFiles } from "../tools/test_reruns.ts";

async function denoTest(dir: string, args: string[]): Promise<{ ran: string[]; xml: string }> {
  const report = join(dir, "junit.xml");
  await Deno.remove(report).catch(() => {});
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--no-check", `--junit-path=${report}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ran = [...new TextDecoder().decode(out.stdout).matchAll(/^RAN (.*)$/gm)].map((m) => m[1]);
  return { ran, xml: await Deno.readTextFile(report) };
}

Deno.test("a rerun after a nested VM death runs the failed tests of each file, and whole files that failed outside a test", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-reruns-" });
  try {
    const mark = (name: string) => `console.log("RAN " + ${JSON.stringify(name)});`;
    await Deno.writeTextFile(
      join(dir, "a_test.ts"),
      `Deno.test("passes (a)", () => { ${mark("a1")} });
Deno.test("fails: [a|b] 1.5 * $x / y", () => { ${mark("a2")} throw new Error("no"); });
Deno.test("fails: [a|b] 1.5 * $x / y and more", () => { ${mark("a3")} });
Deno.test("steps", async (t) => { ${mark("a4")} await t.step("inner > fails", () => { throw new Error("x"); }); });
`,
    );
    await Deno.writeTextFile(join(dir, "b_test.ts"), `Deno.test("passes", () => { ${mark("b1")} });\n`);
    // Fails as it loads the first time only, as a file whose top level needed a VM that died.
    await Deno.writeTextFile(
      join(dir, "c_test.ts"),
      `Deno.test("runs once the file loads", () => { ${mark("c1")} });
try { Deno.statSync(${JSON.stringify(join(dir, "loaded"))}); } catch {
  Deno.writeTextFileSync(${JSON.stringify(join(dir, "loaded"))}, ""); throw new Error("at load");
}
`,
    );
    const first = await denoTest(dir, [dir]);
    const failed = failuresInJunit(first.xml, testFiles([dir]));
    const a = failed.find((f) => f.file.endsWith("a_test.ts"));
    assert.deepEqual(a?.tests, ["fails: [a|b] 1.5 * $x / y", "steps"]);
    assert.ok(!failed.some((f) => f.file.endsWith("b_test.ts")), "a file that passed is not run again");
    const c = failed.find((f) => f.file.endsWith("c_test.ts"));
    assert.deepEqual(c?.tests, [], "a file that failed to load runs again whole");

    const ran: string[] = [];
    for (const args of rerunArgs([], failed)) ran.push(...(await denoTest(dir, args)).ran);
    assert.deepEqual(ran.sort(), ["a2", "a4", "c1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second try with the nested VM alive is for a few named tests only", () => {
  const named = (file: string, ...tests: string[]) => ({ file, tests });
  assert.deepEqual(secondTry([named("a_test.ts", "one"), named("b_test.ts", "two")]), [
    "one (a_test.ts)",
    "two (b_test.ts)",
  ]);
  assert.equal(secondTry([named("a_test.ts", "one"), named("c_test.ts")]), undefined, "a file failed whole");
  const many = Array.from({ length: MAX_SECOND_TRIES + 1 }, (_, k) => `t${k}`);
  assert.equal(secondTry([named("a_test.ts", ...many)]), undefined, "so many failures are a broken change");
  assert.deepEqual(secondTry([named("a_test.ts", ...many.slice(1))])?.length, MAX_SECOND_TRIES);
  assert.equal(secondTry([]), undefined);
});
