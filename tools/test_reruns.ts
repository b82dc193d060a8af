// Which tests `pvx test` runs again after the nested VM died under them: read off deno test's
// JUnit report, so that a death late in a long file costs the tests it broke, not the file.

import { join, resolve } from "../abi/host_path.ts";

export interface Failed {
  file: string;
  /** The failing top-level tests' names; empty when the file failed before or outside any test. */
  tests: string[];
}

/**
 * The failures a `deno test` JUnit report lists, by file; steps are rerun through their test. A file
 * of `ran` missing from the report failed as it loaded (the report leaves such files out) and is
 * failed whole.
 */
export function failuresInJunit(xml: string, ran: string[]): Failed[] {
  const unescape = (s: string) =>
    s.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">")
      .replace(/&amp;/g, "&");
  const failed: Failed[] = [];
  for (const suite of xml.matchAll(/<testsuite name="([^"]+)"[^>]* failures="(\d+)"[^>]*>([\s\S]*?)<\/testsuite>/g)) {
    const cases = [...suite[3].matchAll(/<testcase name="([^"]*)"[^>]*>([\s\S]*?)<\/testcase>/g)];
    const names = cases.filter((c) => c[2].includes("<failure")).map((c) => unescape(c[1]));
    const topLevel = names.filter((n) => !names.some((m) => n.startsWith(`${m} > `)));
    if (suite[2] !== "0" || topLevel.length) failed.push({ file: unescape(suite[1]), tests: topLevel });
  }
  const reported = new Set([...xml.matchAll(/<testsuite name="([^"]+)"/g)].map((m) => resolve(unescape(m[1]))));
  for (const file of ran) if (!reported.has(resolve(file))) failed.push({ file, tests: [] });
  return failed;
}

/** The test files `deno test` runs for these arguments: the files named and the test modules under the folders. */
export function testFiles(args: string[]): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of [...Deno.readDirSync(dir)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) walk(path);
      else if (/(^|[._])test\.(ts|tsx|mts|js|mjs|jsx)$/.test(entry.name)) files.push(path);
    }
  };
  for (const arg of args.filter((a) => !a.startsWith("-"))) {
    // A flag's value given apart (`--filter name`) is no path.
    const info = (() => {
      try {
        return Deno.statSync(arg);
      } catch {
        return undefined;
      }
    })();
    if (info?.isDirectory) walk(arg);
    else if (info) files.push(arg);
  }
  return files;
}

/** A --filter that picks exactly these tests by name. */
function filterFor(names: string[]): string {
  return `--filter=/^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|")})$/`;
}

/**
 * What to run again: only the failed tests of files where every failure is a named test (a rerun
 * of a whole file would cost as much as the first run), the whole file otherwise.
 */
export function rerunArgs(passThrough: string[], failed: Failed[]): string[][] {
  const whole = failed.filter((f) => !f.tests.length).map((f) => f.file);
  const some = failed.filter((f) => f.tests.length);
  const runs: string[][] = [];
  if (whole.length) runs.push([...passThrough, ...whole]);
  if (some.length) runs.push([...passThrough, filterFor(some.flatMap((f) => f.tests)), ...some.map((f) => f.file)]);
  return runs;
}

/**
 * At most this many failed tests, with the nested VM alive, are run once more: QEMU's emulation of SVM
 * mis-runs a guest now and then under load (a vCPU found stopped with its RIP in the helper kernel's own
 * text, outside anything a guest maps), which no test can tell from a fault of pvx's. More failures than
 * this are a change that broke something, and a second run of them would only cost time.
 */
export const MAX_SECOND_TRIES = 4;

/** The failed tests, by name, when all of them are named tests and there are few enough for a second try. */
export function secondTry(failed: Failed[]): string[] | undefined {
  if (failed.some((f) => !f.tests.length)) return undefined;
  const names = failed.flatMap((f) => f.tests.map((t) => `${t} (${f.file})`));
  return names.length && names.length <= MAX_SECOND_TRIES ? names : undefined;
}
