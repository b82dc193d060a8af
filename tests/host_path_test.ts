// abi/host_path.ts against node:path itself, which pvx's processes no longer load.

import assert from "node:assert/strict";
import * as node from "node:path";
import fc from "fast-check";
import { basename, dirname, isAbsolute, join, resolve } from "../abi/host_path.ts";

const segment = fc.constantFrom("", ".", "..", "a", "bc", "d.e", "...", " ");
const path = fc.array(segment, { maxLength: 6 }).map((names) => names.join("/"));
const paths = fc.array(path, { maxLength: 4 });

Deno.test("host paths: join, resolve, dirname, basename and isAbsolute agree with node:path on any path", () => {
  fc.assert(
    fc.property(paths, path, (parts, one) => {
      assert.equal(join(...parts), node.join(...parts), `join ${JSON.stringify(parts)}`);
      assert.equal(resolve(...parts), node.resolve(...parts), `resolve ${JSON.stringify(parts)}`);
      assert.equal(dirname(one), node.dirname(one), `dirname ${JSON.stringify(one)}`);
      assert.equal(basename(one), node.basename(one), `basename ${JSON.stringify(one)}`);
      assert.equal(isAbsolute(one), node.isAbsolute(one));
    }),
    { numRuns: 5000 },
  );
});
