// fast-check settings shared by the property tests: PVX_FUZZ_RUNS sets the
// run count (small in CI, large on demand); fc.assert prints seed and path on failure.

export const fuzzRuns = Number(Deno.env.get("PVX_FUZZ_RUNS") ?? 200);
