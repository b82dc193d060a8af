// The project's layering rule, checked on the source itself: imports flow down
// (tools → hv → guest → abi → ffi) and no modules import each other in a circle.
// Type-only imports count: a circle of types still ties two modules together.

import assert from "node:assert/strict";
import { dirname, join, resolve } from "../abi/host_path.ts";

const root = dirname(dirname(new URL(import.meta.url).pathname));
const layers = ["ffi", "abi", "guest", "hv", "tools"];

type Graph = Map<string, string[]>;

/** Every relative import of every module under the layers' directories, as paths from the project root. */
function moduleGraph(): Graph {
  const graph: Graph = new Map();
  const visit = (dir: string) => {
    for (const entry of Deno.readDirSync(join(root, dir))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) visit(path);
      else if (entry.name.endsWith(".ts")) graph.set(path, importsOf(path));
    }
  };
  layers.forEach(visit);
  return graph;
}

function importsOf(path: string): string[] {
  const text = Deno.readTextFileSync(join(root, path));
  const specifiers = text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)"(\.\.?\/[^"]+)"/gm);
  return [...specifiers].map((m) => resolve(root, dirname(path), m[1]).slice(root.length + 1));
}

/** One circle of imports, as the modules along it with the first repeated at the end, or undefined. */
function findCycle(graph: Graph): string[] | undefined {
  const done = new Set<string>();
  const path: string[] = [];
  const walk = (module: string): string[] | undefined => {
    const at = path.indexOf(module);
    if (at >= 0) return [...path.slice(at), module];
    if (done.has(module)) return undefined;
    path.push(module);
    for (const dep of graph.get(module) ?? []) {
      const cycle = walk(dep);
      if (cycle) return cycle;
    }
    path.pop();
    done.add(module);
    return undefined;
  };
  for (const module of graph.keys()) {
    const cycle = walk(module);
    if (cycle) return cycle;
  }
  return undefined;
}

const layerOf = (path: string) => layers.indexOf(path.split("/")[0]);

Deno.test("every import goes to its own layer or one below (tools → hv → guest → abi → ffi)", () => {
  const graph = moduleGraph();
  assert.ok(graph.size > 100, `only ${graph.size} modules found under ${root}`);
  const upward = [...graph].flatMap(([module, deps]) =>
    deps.filter((dep) => layerOf(dep) > layerOf(module)).map((dep) => `${module} imports ${dep}`)
  );
  assert.deepEqual(upward, []);
});

Deno.test("no modules import each other in a circle", () => {
  assert.equal(findCycle(moduleGraph())?.join(" → "), undefined);
});

Deno.test("the circle finder finds a circle of three and none in a diamond", () => {
  const circle: Graph = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(findCycle(circle), ["a", "b", "c", "a"]);
  const diamond: Graph = new Map([["a", ["b", "c"]], ["b", ["d"]], ["c", ["d"]], ["d", []]]);
  assert.equal(findCycle(diamond), undefined);
});

Deno.test("imports are read in every form a module uses", () => {
  const graph = moduleGraph();
  // tools/pvx.ts imports hv/bundle.ts with a named list over several lines; guest/paging.ts imports a type.
  assert.ok(graph.get("tools/pvx.ts")?.includes("hv/bundle.ts"), "tools/pvx.ts → hv/bundle.ts not seen");
  assert.ok(graph.get("guest/paging.ts")?.includes("abi/address_space.ts"), "a type import was not seen");
});
