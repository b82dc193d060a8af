// What pvx says about how a run ended, for the cases no real guest can be made to produce on demand.

import assert from "node:assert/strict";
import { describeOutcome } from "../tools/report.ts";

Deno.test("a thread stopped at a RIP no guest maps is blamed on the accelerator, one at a guest address is not", () => {
  const text = describeOutcome(
    {
      kind: "interrupted",
      reason: "SIGTERM",
      threads: [{ cpu: 0, threadId: 8, rip: 0xe0148n }, { cpu: 2, threadId: 84, rip: 0xffffffffc06e420cn }],
    },
    "slim_sync",
    (address) => address < 0x100000 ? "<pvx kernel32 thunk>" : "<no symbol>",
  );
  assert.equal(
    text,
    "pvx: slim_sync was interrupted by SIGTERM; stopped 2 thread(s):\n" +
      "  thread 8 (vCPU 0) at RIP 0xe0148 <pvx kernel32 thunk>\n" +
      "  thread 84 (vCPU 2) at RIP 0xffffffffc06e420c <no symbol>, outside any guest mapping: the accelerator lost " +
      "this vCPU's state",
  );
});
