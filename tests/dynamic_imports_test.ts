// Trace files are outside input to `pvx pack --trace`: any content gives
// checked events or a TraceError naming the line, and merging takes exactly
// what the trace saw.

import assert from "node:assert/strict";
import fc from "fast-check";
import { mergeTrace, noDynamicImports, readTrace, TraceError } from "../tools/dynamic_imports.ts";
import { fuzzRuns } from "./support/fuzz.ts";

const dir = await Deno.makeTempDir({ prefix: "pvx-trace-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const traceLine = fc.oneof(
  fc.record({
    kind: fc.constant("proc"),
    module: fc.constantFrom("kernel32.dll", "ADDER.DLL", ""),
    name: fc.string(),
    found: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("library"), name: fc.string(), found: fc.oneof(fc.boolean(), fc.anything()) }),
  fc.record({
    kind: fc.constantFrom("call", "file", "nope"),
    name: fc.string(),
    path: fc.string(),
    write: fc.boolean(),
  }),
  fc.anything(),
).map((v) => JSON.stringify(v) ?? "undefined");

Deno.test("fuzz: a trace file reads as checked events or a TraceError that names its line", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.oneof(traceLine, fc.string()), { maxLength: 5 }), async (lines) => {
      const path = `${dir}/fuzz.trace`;
      await Deno.writeTextFile(path, lines.join("\n"));
      try {
        for (const e of await readTrace(path)) {
          if (e.kind === "proc") assert.ok(e.module === e.module.toLowerCase() && e.name !== "");
          else if (e.kind === "library") assert.ok(e.name !== "" && typeof e.found === "boolean");
          else if (e.kind === "file") assert.ok(e.path !== "" && typeof e.write === "boolean");
          else assert.equal(e.kind, "call");
        }
      } catch (e) {
        if (!(e instanceof TraceError)) throw e;
        assert.match(e.message, new RegExp(`^${path}:\\d+: `));
      }
    }),
    { numRuns: fuzzRuns },
  );
});

Deno.test("a merged trace adds the lookups that found something, every DLL asked for, files and known calls", async () => {
  const path = `${dir}/merge.trace`;
  await Deno.writeTextFile(
    path,
    [
      { kind: "proc", module: "Adder.dll", name: "#5", found: true },
      { kind: "proc", module: "adder.dll", name: "nope", found: false },
      { kind: "library", name: "Nowhere.DLL", found: false },
      { kind: "file", path: "C:\\data\\in.txt", write: false },
      { kind: "call", name: "QueryPerformanceFrequency" },
      { kind: "call", name: "NoSuchCall" },
    ].map((e) => JSON.stringify(e)).join("\n") + "\n\n",
  );
  const into = noDynamicImports(), calls = new Set<string>();
  mergeTrace(into, await readTrace(path), calls);
  assert.deepEqual([...into.procs], ["adder.dll!#5"]);
  assert.deepEqual([...into.libraries], ["nowhere.dll"]);
  assert.deepEqual([...into.files], ["C:\\data\\in.txt"]);
  assert.deepEqual([...calls], ["QueryPerformanceFrequency"]);
  await Deno.writeTextFile(path, '{"kind":"proc","module":"a.dll","name":"x"}\n');
  await assert.rejects(readTrace(path), new TraceError(`${path}:1: "found" must be true or false`));
});
