// The overlay's life cycle (abi/overlay.ts): merge, sync, reset, pack and unpack one at a time;
// a model test where a real FileView takes random guest file operations between random merges,
// syncs, resets and snapshot round trips, with every file compared against an in-memory model;
// and unpackOverlay against mutated archives.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { FileView } from "../abi/fileview.ts";
import { FileViewError } from "../abi/drive_errors.ts";
import { mergeOverlay, type MergeReport, OverlayError, resetOverlay, syncOverlay } from "../abi/overlay.ts";
import { OverlayArchiveError, packOverlay, unpackOverlay } from "../abi/overlay_archive.ts";
import { win32Constants as W, win32Errors as E } from "../abi/win32.ts";
import { overlayCommand } from "../tools/overlay_cli.ts";
import { fuzzRuns } from "./support/fuzz.ts";
import { openOptions } from "./support/open_options.ts";

const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
/** Explicit times, so which side is newer never depends on how fast the test runs. */
const at = (seconds: number) => Date.UTC(2024, 0, 1) + seconds * 1000;
const BUNDLE: Record<string, string> = {
  "readme.txt": "hello bundle",
  "data/config.txt": "key=value",
  "data/sub/deep.bin": "deep",
  "bin/Tool.exe": "MZ tool",
};
const bundleFiles = () => new Map(Object.entries(BUNDLE).map(([path, text]) => [path, encode(text)]));

async function withTemp(test: (root: string) => void | Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "pvx-overlay-" });
  try {
    await test(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/**
 * Files and directories under `dir`: a key ending in "/" is a directory (value: its time or null),
 * any other a file (value: content, or [content, time]). Times are set after everything is in.
 */
type Spec = Record<string, string | [string, number] | number | null>;

function build(dir: string, spec: Spec): void {
  Deno.mkdirSync(dir, { recursive: true });
  const times: [string, number][] = [];
  for (const [path, value] of Object.entries(spec)) {
    const host = `${dir}/${path}`;
    if (path.endsWith("/")) {
      Deno.mkdirSync(host, { recursive: true });
      if (typeof value === "number") times.push([host, value]);
      continue;
    }
    Deno.mkdirSync(host.slice(0, host.lastIndexOf("/")), { recursive: true });
    const [text, time] = Array.isArray(value) ? value : [value as string, undefined];
    Deno.writeTextFileSync(host, text);
    if (time !== undefined) times.push([host, time]);
  }
  // Deepest first: setting a file's time does not touch its directory, but creating it did.
  for (const [host, time] of times.sort(([a], [b]) => b.length - a.length)) {
    Deno.utimeSync(host, new Date(time), new Date(time));
  }
}

function makeOverlay(dir: string, spec: Spec, whiteouts?: string[][]): void {
  build(`${dir}/files`, spec);
  if (whiteouts) Deno.writeTextFileSync(`${dir}/whiteouts.json`, JSON.stringify({ version: 1, whiteouts }));
}

/** Everything under `dir`: path -> content ("/" for a directory), and with `times`, "@time" appended. */
function tree(dir: string, times = false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (host: string, rel: string) => {
    for (const entry of [...Deno.readDirSync(host)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const path = `${host}/${entry.name}`;
      const info = Deno.lstatSync(path);
      const key = rel + entry.name;
      const time = times ? `@${info.mtime!.getTime()}` : "";
      if (info.isSymlink) out[key] = `-> ${Deno.readLinkSync(path)}`;
      else if (info.isDirectory) {
        out[`${key}/`] = `/${time}`;
        walk(path, `${key}/`);
      } else out[key] = Deno.readTextFileSync(path) + time;
    }
  };
  walk(dir, "");
  return out;
}

const whiteoutsOf = (dir: string): string[][] => {
  try {
    return JSON.parse(Deno.readTextFileSync(`${dir}/whiteouts.json`)).whiteouts;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
};

const sortedWhiteouts = (dir: string) => whiteoutsOf(dir).map((n) => n.join("\\")).sort();

function readAll(view: FileView, path: string): Uint8Array {
  const { file } = view.open(path, openOptions());
  try {
    const bytes = new Uint8Array(file.size());
    assert.equal(file.read(bytes, 0), bytes.length);
    return bytes;
  } finally {
    file.close();
  }
}

function expectCode(code: number, action: () => unknown): void {
  assert.throws(action, (e) => e instanceof FileViewError && e.code === code);
}

// ---------------------------------------------------------------------------------------------
// Merge

Deno.test("merge: a newer file wins, a tie keeps DEST's, new entries keep SRC's names and times; SRC is only read", () =>
  withTemp((root) => {
    const [src, dest] = [`${root}/src`, `${root}/dest`];
    makeOverlay(src, {
      "Docs/": at(50),
      "Docs/new.txt": ["n", at(10)],
      "Docs/same.txt": ["s-src", at(20)],
      "Docs/older.txt": ["o-src", at(5)],
      "Docs/newer.txt": ["w-src", at(30)],
      "Docs/Deep/": at(40),
      "Docs/Deep/x.bin": ["x", at(40)],
      "empty/": at(60),
    });
    makeOverlay(dest, {
      "docs/": at(45),
      "docs/same.txt": ["s-dest", at(20)],
      "docs/OLDER.TXT": ["o-dest", at(6)],
      "docs/newer.txt": ["w-dest", at(29)],
      "docs/mine.txt": ["m", at(1)],
    });
    const srcBefore = tree(src, true);
    const report = mergeOverlay(src, dest);
    assert.deepEqual(report, {
      added: ["C:\\docs\\Deep\\", "C:\\docs\\Deep\\x.bin", "C:\\docs\\new.txt", "C:\\empty\\"],
      replaced: ["C:\\docs\\newer.txt"],
      deleted: [],
      kept: ["C:\\docs\\OLDER.TXT", "C:\\docs\\same.txt"],
      whiteouts: [],
    });
    assert.deepEqual(tree(`${dest}/files`, true), {
      "docs/": `/@${at(50)}`,
      "docs/Deep/": `/@${at(40)}`,
      "docs/Deep/x.bin": `x@${at(40)}`,
      "docs/OLDER.TXT": `o-dest@${at(6)}`,
      "docs/mine.txt": `m@${at(1)}`,
      "docs/new.txt": `n@${at(10)}`,
      "docs/newer.txt": `w-src@${at(30)}`,
      "docs/same.txt": `s-dest@${at(20)}`,
      "empty/": `/@${at(60)}`,
    });
    assert.deepEqual(tree(src, true), srcBefore);
    assert.deepEqual([...Deno.readDirSync(`${dest}/tmp`)], [], "every copy went through tmp/ and left nothing");
    assert.throws(() => Deno.statSync(`${dest}/whiteouts.json`), Deno.errors.NotFound, "no whiteouts to write");

    const destAfter = tree(`${dest}/files`, true);
    const again = mergeOverlay(src, dest);
    assert.deepEqual(
      again.added.length + again.replaced.length + again.deleted.length,
      0,
      "merging twice changes nothing",
    );
    assert.equal(again.kept.length, 5);
    assert.deepEqual(tree(`${dest}/files`, true), destAfter);
  }));

Deno.test("merge: SRC's whiteouts delete DEST's entries and are carried; DEST's whiteouts stay, even under a SRC file", () =>
  withTemp((root) => {
    const [src, dest] = [`${root}/src`, `${root}/dest`];
    makeOverlay(src, { "readme.txt": ["recreated", at(10)], "BIN/tool.exe": ["src tool", at(5)] }, [["data"], [
      "readme.txt",
    ]]);
    makeOverlay(dest, {
      "Data/config.txt": "dest edit",
      "Data/mine.txt": "m",
      "bin/Tool.exe": ["dest tool", at(1)],
    }, [["data", "sub"], ["bin", "Tool.exe"]]);
    const report = mergeOverlay(src, dest);
    assert.deepEqual(report, {
      added: ["C:\\readme.txt"],
      replaced: ["C:\\bin\\Tool.exe"],
      deleted: ["C:\\Data\\", "C:\\Data\\config.txt", "C:\\Data\\mine.txt"],
      kept: [],
      whiteouts: ["C:\\data", "C:\\readme.txt"],
    });
    assert.deepEqual(sortedWhiteouts(dest), ["bin\\Tool.exe", "data", "readme.txt"], "data\\sub is under data now");
    assert.deepEqual(tree(`${dest}/files`), { "bin/": "/", "bin/Tool.exe": "src tool", "readme.txt": "recreated" });

    const view = new FileView({ bundleFiles: bundleFiles(), overlayDir: dest, shares: [] });
    assert.equal(decode(readAll(view, "readme.txt")), "recreated");
    assert.equal(decode(readAll(view, "bin\\tool.exe")), "src tool");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.attributes("data"));
    view.delete("bin\\Tool.exe");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.attributes("bin\\Tool.exe"));
    assert.deepEqual(
      view.find("*").map((e) => e.name),
      ["bin", "readme.txt"],
      "the kept whiteout keeps the bundle's copy hidden",
    );
  }));

Deno.test("merge: where the kinds differ, the side with the newest time in it wins, DEST on a tie", () =>
  withTemp((root) => {
    const [src, dest] = [`${root}/src`, `${root}/dest`];
    makeOverlay(src, {
      "a": ["file a", at(10)],
      "b/": at(1),
      "b/inner.txt": ["inner", at(20)],
      "c": ["file c", at(3)],
      "d": ["file d", at(7)],
      "e": ["file e", at(8)],
    }, [["e", "old"]]);
    makeOverlay(dest, {
      "A/": at(5),
      "A/x": ["x", at(5)],
      "b": ["file b", at(15)],
      "c/": at(1),
      "c/y": ["y", at(9)],
      "d/": at(7),
      // What SRC's whiteout deletes no longer makes DEST's directory newer than SRC's file.
      "e/": at(2),
      "e/old": ["old", at(50)],
    });
    const report = mergeOverlay(src, dest);
    assert.deepEqual(report, {
      added: ["C:\\a", "C:\\b\\", "C:\\b\\inner.txt", "C:\\e"],
      replaced: [],
      deleted: ["C:\\e\\old", "C:\\A\\", "C:\\A\\x", "C:\\b", "C:\\e\\"],
      kept: ["C:\\c\\", "C:\\d\\"],
      whiteouts: ["C:\\e\\old"],
    });
    assert.deepEqual(tree(`${dest}/files`), {
      "a": "file a",
      "b/": "/",
      "b/inner.txt": "inner",
      "c/": "/",
      "c/y": "y",
      "d/": "/",
      "e": "file e",
    });
  }));

Deno.test("merge: refuses non-overlays, itself, foreign entries and bad metadata before changing anything", () =>
  withTemp((root) => {
    const [src, dest] = [`${root}/src`, `${root}/dest`];
    makeOverlay(src, { "a.txt": "a" });
    makeOverlay(dest, { "keep.txt": "k" });
    Deno.writeTextFileSync(`${root}/secret.txt`, "secret");
    const destBefore = tree(dest, true);
    const refuses = (pattern: RegExp, from = src, into = dest) => {
      assert.throws(() => mergeOverlay(from, into), (e) => e instanceof OverlayError && pattern.test(e.message));
      assert.deepEqual(tree(dest, true), destBefore);
    };
    Deno.mkdirSync(`${root}/plain`);
    refuses(/plain is not an overlay: its files\/ is missing/, src, `${root}/plain`);
    refuses(/missing is not a directory/, `${root}/missing`);
    refuses(/same or nested/, dest, dest);

    Deno.symlinkSync(`${root}/secret.txt`, `${src}/files/link`);
    refuses(/link is neither a file nor a directory/);
    Deno.removeSync(`${src}/files/link`);
    Deno.writeTextFileSync(`${src}/files/A.TXT`, "twin");
    refuses(/differ only in case/);
    Deno.removeSync(`${src}/files/A.TXT`);
    Deno.writeTextFileSync(`${src}/whiteouts.json`, "{not json");
    refuses(/overlay metadata .*whiteouts.json/);
    Deno.writeTextFileSync(`${src}/whiteouts.json`, JSON.stringify({ version: 1, whiteouts: [["..", "x"]] }));
    refuses(/whiteout .*"\.\." is not a file name/);
    Deno.removeSync(`${src}/whiteouts.json`);

    Deno.writeTextFileSync(`${src}/files/keep.txt`, "newer");
    Deno.removeSync(`${dest}/files/keep.txt`);
    Deno.symlinkSync(`${root}/secret.txt`, `${dest}/files/KEEP.txt`);
    const linked = tree(dest, true);
    assert.throws(() => mergeOverlay(src, dest), /KEEP.txt is a symbolic link/);
    assert.deepEqual(tree(dest, true), linked);
    assert.equal(Deno.readTextFileSync(`${root}/secret.txt`), "secret");
  }));

Deno.test("merge: interrupted before any step, every DEST file is old or new, and merging again finishes the job", () =>
  withTemp((root) => {
    const src = `${root}/src`;
    makeOverlay(src, {
      "a": ["file a", at(10)],
      "b/": at(1),
      "b/inner.txt": ["inner", at(20)],
      "n/": at(3),
      "n/m/x.txt": ["x src", at(30)],
      "same.txt": ["same src", at(30)],
      "new.txt": ["new", at(2)],
    }, [["data"]]);
    const destSpec: Spec = {
      "A/x": ["x", at(5)],
      "b": ["file b", at(15)],
      "N/M/x.txt": ["x dest", at(3)],
      "same.txt": ["same dest", at(1)],
      "Data/config.txt": "edited",
    };
    const destAt = (name: string) => {
      makeOverlay(`${root}/${name}`, destSpec);
      return `${root}/${name}`;
    };
    const old = tree(`${destAt("old")}/files`);
    mergeOverlay(src, destAt("whole"));
    const whole = tree(`${root}/whole/files`, true);
    const finalFiles = tree(`${root}/whole/files`);
    let completed = false;
    for (let crashAt = 0; !completed; crashAt++) {
      const dest = destAt(`crash${crashAt}`);
      try {
        mergeOverlay(src, dest, {
          onProgress: (p) => {
            if (p.step === crashAt && p.step < p.steps) throw new Error("simulated crash");
          },
        });
        completed = true;
      } catch (e) {
        assert.equal((e as Error).message, "simulated crash");
      }
      const now = tree(`${dest}/files`);
      for (const path of new Set([...Object.keys(old), ...Object.keys(finalFiles), ...Object.keys(now)])) {
        const allowed: (string | undefined)[] = [old[path], finalFiles[path]];
        // Only a path that merging adds or deletes may be absent: one DEST keeps is old or new, never gone.
        if (!(path in old && path in finalFiles)) allowed.push(undefined);
        assert.ok(allowed.includes(now[path]), `crash at step ${crashAt}: ${path} is ${now[path]}`);
      }
      assert.deepEqual(sortedWhiteouts(dest), ["data"], "whiteouts.json is written before the first step");
      mergeOverlay(src, dest);
      const files = (t: Record<string, string>) =>
        Object.fromEntries(Object.entries(t).filter(([k]) => !k.endsWith("/")));
      assert.deepEqual(files(tree(`${dest}/files`, true)), files(whole), `crash at step ${crashAt}, merged again`);
      assert.deepEqual(tree(`${dest}/files`), finalFiles);
      assert.deepEqual([...Deno.readDirSync(`${dest}/tmp`)], []);
    }
  }));

// ---------------------------------------------------------------------------------------------
// Sync

Deno.test("sync: whiteouts delete, files and directories go in, host names match ignoring case; a dry run changes nothing", () =>
  withTemp((root) => {
    const [overlay, host] = [`${root}/overlay`, `${root}/host`];
    makeOverlay(overlay, {
      "Data/config.txt": ["edited", at(10)],
      "Data/New/n.txt": ["n", at(11)],
      "notes.txt": ["notes", at(12)],
      "bin": ["bin is a file now", at(13)],
    }, [["readme.txt"], ["data", "sub"], ["bin"], ["nothing", "here"]]);
    build(host, {
      "readme.txt": "hello bundle",
      "DATA/config.txt": "key=value",
      "DATA/sub/deep.bin": "deep",
      "bin/Tool.exe": "MZ tool",
      "user.txt": "the user's own",
    });
    const before = tree(host, true);
    const plan = syncOverlay(overlay, host, { dryRun: true });
    assert.deepEqual(tree(host, true), before);
    assert.equal(plan.dryRun, true);
    const real = syncOverlay(overlay, host);
    assert.deepEqual(real.actions, plan.actions, "the dry run shows what the sync does");
    assert.deepEqual(real.actions.map((a) => `${a.op} ${a.path}`), [
      "delete C:\\bin\\",
      "delete C:\\DATA\\sub\\",
      "delete C:\\readme.txt",
      "copy C:\\bin",
      "copy C:\\DATA\\config.txt",
      "mkdir C:\\DATA\\New\\",
      "copy C:\\DATA\\New\\n.txt",
      "copy C:\\notes.txt",
    ]);
    assert.deepEqual(real.actions[1], {
      op: "delete",
      path: "C:\\DATA\\sub\\",
      host: `${Deno.realPathSync(host)}/DATA/sub`,
      removed: ["C:\\DATA\\sub\\", "C:\\DATA\\sub\\deep.bin"],
    });
    assert.deepEqual(tree(host), {
      "DATA/": "/",
      "DATA/New/": "/",
      "DATA/New/n.txt": "n",
      "DATA/config.txt": "edited",
      "bin": "bin is a file now",
      "notes.txt": "notes",
      "user.txt": "the user's own",
    });
    assert.equal(Deno.statSync(`${host}/DATA/config.txt`).mtime!.getTime(), at(10), "files keep their times");
    assert.ok(real.actions.some((a) => a.op === "copy" && a.path === "C:\\DATA\\config.txt" && a.replaces));
    const synced = tree(host);
    syncOverlay(overlay, host);
    assert.deepEqual(tree(host), synced, "syncing again changes nothing");
    assert.ok(!Object.keys(tree(host)).some((path) => path.includes(".pvx-")), "no temp files left");
  }));

Deno.test("sync: refuses links and devices on the way, a missing host directory and nesting, before changing anything", () =>
  withTemp((root) => {
    const [overlay, host, outside] = [`${root}/overlay`, `${root}/host`, `${root}/outside`];
    makeOverlay(overlay, { "Data/config.txt": "edited", "top.txt": "top" });
    build(host, { "top.txt": "old top" });
    build(outside, { "config.txt": "outside" });
    Deno.symlinkSync(outside, `${host}/data`);
    const before = tree(host, true);
    assert.throws(
      () => syncOverlay(overlay, host),
      (e) => e instanceof OverlayError && /data is a symbolic link/.test(e.message),
    );
    assert.deepEqual(tree(host, true), before);
    assert.deepEqual(tree(outside), { "config.txt": "outside" });

    Deno.removeSync(`${host}/data`);
    makeOverlay(overlay, {}, [["gone"]]);
    Deno.symlinkSync(outside, `${host}/GONE`);
    assert.throws(() => syncOverlay(overlay, host), /GONE is a symbolic link/);
    assert.deepEqual(tree(outside), { "config.txt": "outside" });

    assert.throws(() => syncOverlay(overlay, `${root}/nowhere`), /host directory .*nowhere does not exist/);
    assert.throws(() => syncOverlay(overlay, `${overlay}/files`), /same or nested/);
    assert.throws(() => syncOverlay(host, outside), /is not an overlay/);
  }));

// ---------------------------------------------------------------------------------------------
// Reset

Deno.test("reset: empties files and whiteouts, reports the bytes, honours --if-larger, removes links not targets", () =>
  withTemp((root) => {
    const overlay = `${root}/overlay`;
    makeOverlay(overlay, { "readme.txt": "12345", "d/e/f.bin": "123" }, [["data"]]);
    build(`${overlay}/tmp`, { "debris": "12" });
    Deno.writeTextFileSync(`${root}/target.txt`, "not the overlay's");
    Deno.symlinkSync(`${root}/target.txt`, `${overlay}/files/link`);
    const bytes = 5 + 3 + 2 + Deno.statSync(`${overlay}/whiteouts.json`).size;
    const before = tree(overlay, true);
    assert.deepEqual(resetOverlay(overlay, { ifLargerThan: bytes }), { reset: false, bytes, freed: 0 });
    assert.deepEqual(tree(overlay, true), before, "not larger: untouched");
    assert.deepEqual(resetOverlay(overlay, { ifLargerThan: bytes - 1 }), { reset: true, bytes, freed: bytes });
    assert.deepEqual(tree(overlay), { "files/": "/", "tmp/": "/" });
    assert.equal(Deno.readTextFileSync(`${root}/target.txt`), "not the overlay's");
    assert.deepEqual(resetOverlay(overlay), { reset: true, bytes: 0, freed: 0 });
    const view = new FileView({ bundleFiles: bundleFiles(), overlayDir: overlay, shares: [] });
    assert.equal(decode(readAll(view, "readme.txt")), "hello bundle");
    assert.deepEqual(view.find("data\\*").map((e) => e.name), [".", "..", "config.txt", "sub"]);
  }));

Deno.test("reset: refuses a directory that is not an overlay, or whose files/ is a link", () =>
  withTemp((root) => {
    build(`${root}/plain`, { "precious.txt": "keep" });
    assert.throws(() => resetOverlay(`${root}/plain`), /plain is not an overlay: its files\/ is missing/);
    Deno.mkdirSync(`${root}/linked`);
    Deno.symlinkSync(`${root}/plain`, `${root}/linked/files`);
    assert.throws(() => resetOverlay(`${root}/linked`), /its files\/ is a symbolic link/);
    assert.throws(() => resetOverlay(`${root}/none`), /none is not a directory/);
    assert.deepEqual(tree(`${root}/plain`), { "precious.txt": "keep" });
  }));

// ---------------------------------------------------------------------------------------------
// Pack and unpack

const SAMPLE: Spec = {
  "Data/": at(100),
  "Data/config.txt": ["edited", at(10)],
  "Data/Ünïcode ✓.txt": ["unicode", at(11)],
  "Data/empty/": at(12),
  "b.bin": ["\u0000\u0001\u00ff", at(-5)],
  "B2/": at(13),
  "B2/c/": at(16),
  "B2/c/d/": at(15),
  "B2/c/d/e.txt": ["deep", at(14)],
};
const SAMPLE_WHITEOUTS = [["data", "sub"], ["readme.txt"], ["data", "sub", "deep.bin"]];

function sampleOverlay(dir: string, reversed = false): void {
  const order = <T>(list: T[]) => reversed ? list.toReversed() : list;
  makeOverlay(dir, Object.fromEntries(order(Object.entries(SAMPLE))), order(SAMPLE_WHITEOUTS));
}

Deno.test("pack and unpack: a deterministic archive that rebuilds the overlay exactly, into an empty or new directory", () =>
  withTemp((root) => {
    sampleOverlay(`${root}/a`);
    const bytes = packOverlay(`${root}/a`);
    assert.deepEqual(packOverlay(`${root}/a`), bytes);
    // Made in the other order, the same overlay may list differently on the host, and packs the same.
    sampleOverlay(`${root}/b`, true);
    assert.deepEqual(packOverlay(`${root}/b`), bytes);

    unpackOverlay(bytes, `${root}/restored/here`, "test archive");
    assert.deepEqual(tree(`${root}/restored/here/files`, true), tree(`${root}/a/files`, true));
    assert.deepEqual(
      sortedWhiteouts(`${root}/restored/here`),
      ["data\\sub", "readme.txt"],
      "redundant whiteouts are dropped",
    );
    assert.deepEqual(packOverlay(`${root}/restored/here`), bytes);
    Deno.mkdirSync(`${root}/empty`);
    unpackOverlay(bytes, `${root}/empty`, "test archive");
    assert.deepEqual(tree(`${root}/empty/files`, true), tree(`${root}/a/files`, true));
    assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name).sort(), ["a", "b", "empty", "restored"]);

    const view = new FileView({ bundleFiles: bundleFiles(), overlayDir: `${root}/empty`, shares: [] });
    assert.deepEqual(view.find("data\\*").map((e) => e.name), [".", "..", "config.txt", "empty", "Ünïcode ✓.txt"]);
    assert.equal(decode(readAll(view, "b2\\C\\d\\E.TXT")), "deep");

    assert.throws(
      () => unpackOverlay(bytes, `${root}/a`, "test archive"),
      /test archive: cannot unpack into .*a: it is not empty/,
    );
    Deno.writeTextFileSync(`${root}/file`, "x");
    assert.throws(() => unpackOverlay(bytes, `${root}/file`, "test archive"), /it is a file/);
  }));

/** An archive written by hand, so the reader can be shown what the writer never makes. */
interface Crafted {
  magic?: string;
  version?: number;
  entries?: {
    kind: number;
    names: (string | number[])[];
    mtime?: number;
    attributes?: number;
    bytes?: string;
    size?: number;
  }[];
  whiteouts?: (string | number[])[][];
  trailing?: number;
  corrupt?: boolean;
}

function craft(c: Crafted): Uint8Array {
  const parts: number[] = [];
  const u = (value: number | bigint, size: number) => {
    const b = new Uint8Array(size);
    const v = new DataView(b.buffer);
    if (size === 1) v.setUint8(0, Number(value));
    if (size === 2) v.setUint16(0, Number(value), true);
    if (size === 4) v.setUint32(0, Number(value), true);
    if (size === 8) v.setBigInt64(0, BigInt(value), true);
    parts.push(...b);
  };
  const path = (names: (string | number[])[]) => {
    u(names.length, 2);
    for (const name of names) {
      const b = typeof name === "string" ? encode(name) : name;
      u(b.length, 1);
      parts.push(...b);
    }
  };
  parts.push(...encode(c.magic ?? "PVXOVLY\0"));
  const version = c.version ?? 2;
  u(version, 4);
  u(c.entries?.length ?? 0, 4);
  u(c.whiteouts?.length ?? 0, 4);
  for (const e of c.entries ?? []) {
    u(e.kind, 1);
    path(e.names);
    u(e.mtime ?? at(0), 8);
    if (e.kind !== 2) continue;
    if (version >= 2) u(e.attributes ?? W.FILE_ATTRIBUTE_ARCHIVE, 1);
    const content = encode(e.bytes ?? "");
    u(e.size ?? content.length, 8);
    parts.push(...content);
  }
  for (const w of c.whiteouts ?? []) path(w);
  const body = new Uint8Array(parts);
  const hash = new Uint8Array(createHash("sha256").update(body).digest());
  if (c.corrupt) hash[0] ^= 1;
  return new Uint8Array([...body, ...hash, ...new Array(c.trailing ?? 0).fill(0)]);
}

Deno.test("unpack: each malformed field is an OverlayArchiveError naming where, the offset and why; the directory stays missing", () =>
  withTemp((root) => {
    const where = "snap.pvx overlay section";
    const refused = (c: Crafted, reason: RegExp, offset?: number) => {
      const dir = `${root}/out`;
      assert.throws(() => unpackOverlay(craft(c), dir, where), (e) => {
        assert.ok(e instanceof OverlayArchiveError, String(e));
        assert.equal(e.where, where);
        assert.match(e.reason, reason);
        if (offset !== undefined) assert.equal(e.offset, offset, e.message);
        assert.equal(e.message, `${where}: offset ${e.offset}: ${e.reason}`);
        return true;
      });
      assert.deepEqual([...Deno.readDirSync(root)], [], "nothing was created");
    };
    const dir = (names: string[]) => ({ kind: 1, names });
    const file = (names: string[], bytes = "") => ({ kind: 2, names, bytes });
    // After the 20-byte header, an entry's name starts at 23: kind (1), component count (2).
    refused({ magic: "PVXBNDL\0" }, /bad magic/, 0);
    refused({ version: 3 }, /version 3 is not supported/, 8);
    refused({ entries: [{ kind: 3, names: ["a"] }] }, /entry 0: kind 3/, 20);
    refused({ entries: [{ kind: 1, names: [] }] }, /entry 0 has no components/, 21);
    refused({ entries: [dir([".."])] }, /component 0: "\.\." is not a file name/, 23);
    refused({ entries: [dir(["."])] }, /is not a file name/, 23);
    refused({ entries: [dir([""])] }, /is not a file name/, 23);
    for (const bad of ["a/b", "a\\b", "a\0"]) refused({ entries: [dir([bad])] }, /contains "\/", "\\" or NUL/, 23);
    refused({ entries: [{ kind: 1, names: [[0xff, 0x41]] }] }, /not valid UTF-8/, 23);
    refused({ entries: [{ kind: 1, names: [[0xed, 0xa0, 0x80]] }] }, /not valid UTF-8/, 23);
    refused({ entries: [dir(["b"]), dir(["a"])] }, /entry 1 C:\\a is not after C:\\b/);
    refused({ entries: [dir(["A"]), file(["a"])] }, /entry 1 C:\\a has the name of an earlier entry, ignoring case/);
    refused({ entries: [dir(["x", "y"])] }, /entry 0 C:\\x\\y: its directory is not an earlier directory entry/, 20);
    refused({ entries: [file(["x"]), file(["x", "y"])] }, /its directory is not an earlier directory entry/);
    // Found by the property test below (seed 1105417427): the host's names are case-sensitive.
    refused(
      { entries: [dir(["X"]), file(["x", "y"])] },
      /entry 1 C:\\x\\y: its directory is spelled X in its own entry/,
    );
    refused({ entries: [{ kind: 1, names: ["a"], mtime: 9e15 }] }, /time 9000000000000000 ms is out of range/, 25);
    refused(
      { entries: [{ kind: 2, names: ["a"], bytes: "abc", attributes: 0x10 }] },
      /entry 0 C:\\a: attributes 0x10 hold more than READONLY, HIDDEN, SYSTEM and ARCHIVE/,
      33,
    );
    refused(
      { entries: [{ kind: 2, names: ["a"], bytes: "abc", size: 40 }] },
      /truncated: entry 0 C:\\a has 40 bytes/,
      34,
    );
    refused({ whiteouts: [["a"], ["a", "b"]] }, /whiteout 1 C:\\a\\b repeats or is under an earlier whiteout/);
    refused({ whiteouts: [["b"], ["a"]] }, /whiteout 1 C:\\a is not after C:\\b/);
    // The 43 bytes before the hash: header 20, kind 1, count 2, length 1, "a", time 8, attributes 1, size 8, "x".
    refused({ entries: [file(["a"], "x")], corrupt: true }, /SHA-256 mismatch/, 43);
    refused({ trailing: 3 }, /3 bytes after the SHA-256/, 52);

    // A leading BOM is part of the name, not an encoding mark to drop.
    const bom = craft({ entries: [file(["\uFEFFa"], "bom")] });
    unpackOverlay(bom, `${root}/bom`, where);
    assert.deepEqual(packOverlay(`${root}/bom`), bom);
  }));

Deno.test("a file's attributes travel in the archive and through a merge; a version 1 archive, without them, unpacks", () =>
  withTemp((root) => {
    const entries = [
      { kind: 2, names: ["hidden.txt"], bytes: "h", attributes: W.FILE_ATTRIBUTE_HIDDEN | W.FILE_ATTRIBUTE_SYSTEM },
      { kind: 2, names: ["new.txt"], bytes: "n" },
      { kind: 2, names: ["plain.txt"], bytes: "p", attributes: 0 },
      { kind: 2, names: ["ro.txt"], bytes: "r", attributes: W.FILE_ATTRIBUTE_READONLY },
    ];
    const archive = craft({ entries });
    unpackOverlay(archive, `${root}/a`, "test");
    const mode = (name: string, dir = "a") => Deno.statSync(`${root}/${dir}/files/${name}`).mode! & 0o777;
    assert.equal(mode("ro.txt") & 0o200, 0, "read-only: no owner write");
    assert.equal(mode("hidden.txt") & 0o011, 0o011, "hidden and system: the others' and the group's execute");
    assert.equal(Deno.statSync(`${root}/a/files/plain.txt`).mode! & 0o1000, 0o1000, "not archived: sticky");
    assert.equal(mode("new.txt") & 0o211, 0o200);
    assert.deepEqual(packOverlay(`${root}/a`), archive, "packed again, byte for byte");

    makeOverlay(`${root}/b`, {});
    mergeOverlay(`${root}/a`, `${root}/b`);
    assert.deepEqual([mode("ro.txt", "b"), mode("hidden.txt", "b")], [mode("ro.txt"), mode("hidden.txt")]);

    unpackOverlay(craft({ version: 1, entries: entries.map(({ attributes: _, ...e }) => e) }), `${root}/old`, "v1");
    assert.deepEqual(packOverlay(`${root}/old`), craft({ entries: entries.map(({ attributes: _, ...e }) => e) }));
  }));

Deno.test("unpack: every truncation of a real archive is refused as truncated", () =>
  withTemp((root) => {
    sampleOverlay(`${root}/a`);
    const bytes = packOverlay(`${root}/a`);
    for (let length = 0; length < bytes.length; length++) {
      assert.throws(
        () => unpackOverlay(bytes.subarray(0, length), `${root}/out`, "cut"),
        (e) => e instanceof OverlayArchiveError && /truncated/.test(e.reason) && e.offset <= length,
        `length ${length}`,
      );
    }
    assert.deepEqual(Deno.readDirSync(root).toArray().map((e) => e.name), ["a"]);
  }));

Deno.test("property: unpack of mutated archives only ever refuses clearly, never escapes, and what it accepts repacks to the same bytes", () =>
  withTemp((root) => {
    const sources: Uint8Array[] = [];
    sampleOverlay(`${root}/a`);
    sources.push(packOverlay(`${root}/a`));
    makeOverlay(`${root}/b`, { "x/": at(1), "x/y.txt": ["yy", at(2)], "z": ["", at(3)] }, [["q"]]);
    sources.push(packOverlay(`${root}/b`));
    build(`${root}/sentinel`, { "keep.txt": "sentinel" });
    const work = `${root}/work`;
    Deno.mkdirSync(work);
    const sentinel = tree(`${root}/sentinel`, true);

    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.nat(255) }),
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
      fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
      fc.record({
        kind: fc.constant("insert" as const),
        at: fc.nat(),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
      }),
      fc.record({ kind: fc.constant("drop" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
    );
    let run = 0;
    fc.assert(
      fc.property(
        fc.nat(sources.length - 1),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (which, mutations, rehash) => {
          let bytes = sources[which].slice();
          for (const m of mutations) {
            const i = bytes.length === 0 ? 0 : m.at % bytes.length;
            if (m.kind === "set") bytes[i] = m.value;
            else if (m.kind === "flip") bytes[i] ^= 1 << m.bit;
            else if (m.kind === "cut") bytes = bytes.slice(0, i);
            else if (m.kind === "insert") {
              bytes = new Uint8Array([...bytes.subarray(0, i), ...m.bytes, ...bytes.subarray(i)]);
            } else bytes = new Uint8Array([...bytes.subarray(0, i), ...bytes.subarray(i + m.length)]);
          }
          // With the hash fixed up, mutations get past the checksum to the structure behind it.
          if (rehash && bytes.length >= 32) {
            bytes.set(createHash("sha256").update(bytes.subarray(0, bytes.length - 32)).digest(), bytes.length - 32);
          }
          const dir = `${work}/run${run++}`;
          try {
            unpackOverlay(bytes, dir, "fuzzed");
          } catch (e) {
            assert.ok(e instanceof OverlayError, `not a clear error: ${e instanceof Error ? e.stack : e}`);
            assert.match(e.message, /^fuzzed: /);
            if (e instanceof OverlayArchiveError) {
              assert.ok(e.offset >= 0 && e.offset <= bytes.length, e.message);
            }
            assert.throws(() => Deno.lstatSync(dir), Deno.errors.NotFound, "a refused archive leaves nothing");
            return;
          } finally {
            assert.deepEqual(tree(`${root}/sentinel`, true), sentinel);
            assert.ok([...Deno.readDirSync(work)].every((e) => e.name.startsWith("run") && !e.name.includes(".pvx-")));
          }
          for (const path of Object.keys(tree(dir))) {
            assert.ok(Deno.realPathSync(`${dir}/${path}`).startsWith(`${Deno.realPathSync(dir)}/`), path);
          }
          assert.deepEqual(packOverlay(dir), bytes, "an accepted archive is the one encoding of what it rebuilt");
          Deno.removeSync(dir, { recursive: true });
        },
      ),
      { numRuns: fuzzRuns },
    );
  }));

// ---------------------------------------------------------------------------------------------
// The model test

const fold = (name: string) => name.toUpperCase().toLowerCase();
const keyOf = (names: readonly string[]) => names.map(fold).join("\\");
const compareNames = (a: string, b: string) =>
  fold(a) < fold(b) ? -1 : fold(a) > fold(b) ? 1 : a < b ? -1 : a > b ? 1 : 0;
const isUnder = (key: string, top: string) => key === top || key.startsWith(`${top}\\`);
const show = (e: { names: string[]; isDir: boolean }) => `C:\\${e.names.join("\\")}${e.isDir ? "\\" : ""}`;

/** What the guest sees: every file and directory by case-folded path, with its stored names. */
interface ViewEntry {
  names: string[];
  isDir: boolean;
  bytes?: number[];
}
type ViewModel = Map<string, ViewEntry>;

function bundleView(): ViewModel {
  const view: ViewModel = new Map();
  for (const [path, text] of Object.entries(BUNDLE)) {
    const names = path.split("/");
    names.slice(0, -1).forEach((_, i) =>
      view.set(keyOf(names.slice(0, i + 1)), { names: names.slice(0, i + 1), isDir: true })
    );
    view.set(keyOf(names), { names, isDir: false, bytes: [...encode(text)] });
  }
  return view;
}

type GuestOp =
  | { op: "write"; path: string[]; bytes: number[] }
  /** deltree removes a file, or a directory with everything in it, the way `rd /s` does. */
  | { op: "delete" | "mkdir" | "rmdir" | "deltree"; path: string[] }
  | { op: "move"; path: string[]; to: string[]; replace: boolean };

/** The view after `op`, or undefined when the drive must refuse it (as Windows would). */
function modelGuest(view: ViewModel, op: GuestOp): ViewModel | undefined {
  const isDirAt = (names: string[]) => names.length === 0 || view.get(keyOf(names))?.isDir === true;
  const storedParent = (names: string[]) => names.length === 1 ? [] : view.get(keyOf(names.slice(0, -1)))!.names;
  const key = keyOf(op.path);
  const existing = view.get(key);
  const next = new Map(view);
  const parentOk = isDirAt(op.path.slice(0, -1));
  switch (op.op) {
    case "write":
      if (!parentOk || existing?.isDir) return undefined;
      next.set(key, {
        names: existing?.names ?? [...storedParent(op.path), op.path.at(-1)!],
        isDir: false,
        bytes: op.bytes,
      });
      return next;
    case "delete":
      if (!existing || existing.isDir) return undefined;
      next.delete(key);
      return next;
    case "mkdir":
      if (!parentOk || existing) return undefined;
      next.set(key, { names: [...storedParent(op.path), op.path.at(-1)!], isDir: true });
      return next;
    case "rmdir":
      if (!existing?.isDir || [...view.keys()].some((k) => k.startsWith(`${key}\\`))) return undefined;
      next.delete(key);
      return next;
    case "deltree":
      if (!existing) return undefined;
      for (const k of view.keys()) if (isUnder(k, key)) next.delete(k);
      return next;
    case "move": {
      const toKey = keyOf(op.to);
      const same = key === toKey;
      if (!existing || !isDirAt(op.to.slice(0, -1))) return undefined;
      if (existing.isDir && !same && isUnder(toKey, key)) return undefined;
      const target = same ? undefined : view.get(toKey);
      if (target && (!op.replace || target.isDir || existing.isDir)) return undefined;
      const toNames = [...storedParent(op.to), op.to.at(-1)!];
      next.delete(toKey);
      for (const k of view.keys()) if (isUnder(k, key)) next.delete(k);
      for (const [k, e] of view) {
        if (!isUnder(k, key)) continue;
        const names = [...toNames, ...e.names.slice(op.path.length)];
        next.set(keyOf(names), { ...e, names });
      }
      return next;
    }
  }
}

function runGuest(view: FileView, op: GuestOp): void {
  const path = op.path.join("\\");
  switch (op.op) {
    case "write": {
      const { file } = view.open(path, openOptions({ read: false, write: true, disposition: W.CREATE_ALWAYS }));
      try {
        file.write(new Uint8Array(op.bytes), 0);
      } finally {
        file.close();
      }
      return;
    }
    case "delete":
      return view.delete(path);
    case "mkdir":
      return view.createDirectory(path);
    case "rmdir":
      return view.removeDirectory(path);
    case "deltree": {
      const remove = (p: string) => {
        if (!(view.attributes(p) & W.FILE_ATTRIBUTE_DIRECTORY)) return view.delete(p);
        for (const entry of view.find(`${p}\\*`)) {
          if (entry.name !== "." && entry.name !== "..") remove(`${p}\\${entry.name}`);
        }
        view.removeDirectory(p);
      };
      return remove(path);
    }
    case "move":
      return view.move(path, op.to.join("\\"), op.replace);
  }
}

/** Everything the guest sees, through FindFirstFile and ReadFile. */
function readView(view: FileView): ViewModel {
  const out: ViewModel = new Map();
  const walk = (names: string[]) => {
    let entries;
    try {
      entries = view.find(`C:\\${[...names, "*"].join("\\")}`);
    } catch (e) {
      if (e instanceof FileViewError && e.code === E.ERROR_FILE_NOT_FOUND) return;
      throw e;
    }
    for (const entry of entries) {
      if (entry.name === "." || entry.name === "..") continue;
      const child = [...names, entry.name];
      const isDir = (entry.attributes & W.FILE_ATTRIBUTE_DIRECTORY) !== 0;
      out.set(
        keyOf(child),
        isDir ? { names: child, isDir } : { names: child, isDir, bytes: [...readAll(view, child.join("\\"))] },
      );
      if (isDir) walk(child);
    }
  };
  walk([]);
  return out;
}

/** A host directory read like a view: names as stored, file bytes, and times. */
function readHost(dir: string): Map<string, ViewEntry & { mtime: number }> {
  const out = new Map<string, ViewEntry & { mtime: number }>();
  const walk = (host: string, names: string[]) => {
    for (const entry of Deno.readDirSync(host)) {
      const path = `${host}/${entry.name}`;
      const info = Deno.lstatSync(path);
      assert.ok(info.isFile || info.isDirectory, `${path}: only files and directories belong here`);
      const child = [...names, entry.name];
      const mtime = info.mtime!.getTime();
      out.set(keyOf(child), {
        names: child,
        isDir: info.isDirectory,
        mtime,
        ...(info.isFile ? { bytes: [...Deno.readFileSync(path)] } : {}),
      });
      if (info.isDirectory) walk(path, child);
    }
  };
  walk(dir, []);
  return out;
}

/** An overlay as the model sees it, read without abi/overlay.ts. */
interface Snap {
  entries: Map<string, ViewEntry & { mtime: number }>;
  whiteouts: Map<string, string[]>;
  /** Files plus whiteouts.json, what a reset frees. */
  bytes: number;
}

function readSnap(dir: string): Snap {
  const entries = readHost(`${dir}/files`);
  const whiteouts = new Map(whiteoutsOf(dir).map((names) => [keyOf(names), names]));
  let bytes = [...entries.values()].reduce((sum, e) => sum + (e.bytes?.length ?? 0), 0);
  try {
    bytes += Deno.statSync(`${dir}/whiteouts.json`).size;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return { entries, whiteouts, bytes };
}

/** What the drive shows for an overlay over BUNDLE: overlay entries, and bundle entries nothing hides or shadows. */
function viewOf(snap: Snap): ViewModel {
  const view: ViewModel = new Map();
  for (const [key, e] of snap.entries) {
    view.set(key, { names: e.names, isDir: e.isDir, ...(e.bytes ? { bytes: e.bytes } : {}) });
  }
  for (const [key, b] of bundleView()) {
    if (view.has(key)) continue;
    const prefixes = b.names.map((_, i) => b.names.slice(0, i + 1));
    const visible = prefixes.every((p, i) =>
      !snap.whiteouts.has(keyOf(p)) && (i === prefixes.length - 1 || snap.entries.get(keyOf(p))?.isDir !== false)
    );
    if (!visible) continue;
    const names = prefixes.map((p, i) => snap.entries.get(keyOf(p))?.names[i] ?? b.names[i]);
    view.set(key, { ...b, names });
  }
  return view;
}

/** The documented merge rule, on plain data: DEST's expected overlay, which times are certain, and the report. */
function modelMerge(
  src: Snap,
  dest: Snap,
): { entries: Snap["entries"]; timed: Set<string>; whiteouts: Set<string>; report: MergeReport } {
  const out = new Map(dest.entries);
  const timed = new Set([...out].filter(([, e]) => !e.isDir).map(([k]) => k));
  const report: MergeReport = { added: [], replaced: [], deleted: [], kept: [], whiteouts: [] };
  const under = (top: string) => [...out].filter(([k]) => isUnder(k, top));
  const remove = (top: string) => {
    for (const [k, e] of under(top)) {
      out.delete(k);
      report.deleted.push(show(e));
    }
  };
  const whiteouts = new Map(dest.whiteouts);
  const hiddenIn = (map: Map<string, string[]>, names: string[]) =>
    names.some((_, i) => map.has(keyOf(names.slice(0, i + 1))));
  for (const names of src.whiteouts.values()) {
    if (hiddenIn(src.whiteouts, names.slice(0, -1))) continue;
    const key = keyOf(names);
    if (!hiddenIn(whiteouts, names)) {
      for (const k of [...whiteouts.keys()]) if (k.startsWith(`${key}\\`)) whiteouts.delete(k);
      whiteouts.set(key, names);
      report.whiteouts.push(`C:\\${names.join("\\")}`);
    }
    remove(key);
  }
  const srcAll = [...src.entries.values()];
  const children = (names: string[]) =>
    srcAll.filter((e) => e.names.length === names.length + 1 && keyOf(e.names.slice(0, -1)) === keyOf(names));
  const newestSrc = (e: ViewEntry & { mtime: number }) =>
    Math.max(...srcAll.filter((c) => isUnder(keyOf(c.names), keyOf(e.names))).map((c) => c.mtime));
  const add = (e: ViewEntry & { mtime: number }, parent: string[]) => {
    const names = [...parent, e.names.at(-1)!];
    out.set(keyOf(names), { ...e, names });
    timed.add(keyOf(names));
    report.added.push(show({ names, isDir: e.isDir }));
    if (e.isDir) { for (const c of children(e.names)) add(c, names); }
  };
  const merge = (dir: string[], into: string[]) => {
    for (const s of children(dir)) {
      const key = keyOf(s.names);
      const d = out.get(key);
      if (!d) add(s, into);
      else if (s.isDir && d.isDir) {
        out.set(key, { ...d, mtime: Math.max(s.mtime, d.mtime) });
        timed.add(key);
        merge(s.names, d.names);
      } else if (newestSrc(s) <= Math.max(...under(key).map(([, e]) => e.mtime))) report.kept.push(show(d));
      else if (s.isDir || d.isDir) {
        remove(key);
        add(s, into);
      } else {
        out.set(key, { ...s, names: d.names });
        report.replaced.push(show(d));
      }
    }
  };
  merge([], []);
  return { entries: out, timed, whiteouts: new Set(whiteouts.keys()), report };
}

const rows = (view: Map<string, ViewEntry>) =>
  [...view.values()].map((e) => `${e.names.join("\\")}${e.isDir ? "\\" : ` = ${e.bytes!.join(",")}`}`).sort();
const sortedReport = (r: MergeReport) =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [k, [...(v as string[])].sort(compareNames)]));

interface Session {
  dir: string;
  view: FileView;
  model: ViewModel;
}

type LifeOp =
  | { op: "guest"; session: number; guest: GuestOp }
  | { op: "merge" | "sync" | "pack" | "restart"; session: number }
  | { op: "reset"; session: number; threshold: number | null };

const spelling = fc.constantFrom(
  (s: string) => s,
  (s: string) => s.toUpperCase(),
  (s: string) => s[0].toUpperCase() + s.slice(1),
);
const component = fc.tuple(fc.constantFrom("readme.txt", "data", "config.txt", "sub", "bin", "x", "y.txt"), spelling)
  .map(([name, spell]) => spell(name));
const BUNDLE_PATHS = Object.keys(BUNDLE).flatMap((path) => path.split("/").map((_, i, names) => names.slice(0, i + 1)));
// Mostly paths that exist, or nearly: random deep paths would make nearly every operation a refusal.
const guestPath = fc.oneof(
  fc.tuple(fc.constantFrom(...BUNDLE_PATHS), spelling).map(([names, spell]) => names.map(spell)),
  fc.array(component, { minLength: 1, maxLength: 2 }),
  fc.array(component, { minLength: 3, maxLength: 3 }),
);
/** Where a file can usually go, so both sessions often write the same files. */
const filePath = fc.oneof(
  fc.tuple(fc.constantFrom(...Object.keys(BUNDLE).map((p) => p.split("/"))), spelling).map(([names, spell]) =>
    names.map(spell)
  ),
  fc.tuple(fc.constantFrom([], ["data"], ["bin"], ["x"]), fc.constantFrom("readme.txt", "y.txt", "x", "config.txt"))
    .map(([dir, name]) => [...dir, name]),
  guestPath,
);
const guestOp: fc.Arbitrary<GuestOp> = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      path: filePath,
      bytes: fc.array(fc.nat(255), { maxLength: 6 }),
    }),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      op: fc.constantFrom("delete" as const, "mkdir" as const, "rmdir" as const),
      path: guestPath,
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ op: fc.constant("deltree" as const), path: guestPath }), weight: 1 },
  {
    arbitrary: fc.record({ op: fc.constant("move" as const), path: guestPath, to: guestPath, replace: fc.boolean() }),
    weight: 2,
  },
);
const session = fc.constantFrom(0, 1);
const lifeOp: fc.Arbitrary<LifeOp> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("guest" as const), session, guest: guestOp }), weight: 20 },
  { arbitrary: fc.record({ op: fc.constant("merge" as const), session }), weight: 3 },
  {
    arbitrary: fc.record({ op: fc.constantFrom("sync" as const, "pack" as const, "restart" as const), session }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("reset" as const),
      session,
      threshold: fc.constantFrom(null, 0, 40, 1 << 30),
    }),
    weight: 1,
  },
);

Deno.test("model: guest file operations through a real FileView, between random merges, syncs, resets and snapshot round trips", () =>
  withTemp((root) => {
    let made = 0;
    fc.assert(
      fc.property(fc.array(lifeOp, { minLength: 20, maxLength: 50 }), (ops) => {
        const base = `${root}/run${made++}`;
        const open = (dir: string) => new FileView({ bundleFiles: bundleFiles(), overlayDir: dir, shares: [] });
        const sessions: Session[] = [0, 1].map((i) => ({
          dir: `${base}/s${i}`,
          view: open(`${base}/s${i}`),
          model: bundleView(),
        }));
        const check = (s: Session, what: string) => {
          assert.deepEqual(rows(readView(s.view)), rows(s.model), `${what}: the guest's view`);
          assert.deepEqual(rows(viewOf(readSnap(s.dir))), rows(s.model), `${what}: the overlay on disk`);
        };
        for (const [i, o] of ops.entries()) {
          const s = sessions[o.session];
          const what = `step ${i} ${JSON.stringify(o)}`;
          switch (o.op) {
            case "guest": {
              const next = modelGuest(s.model, o.guest);
              if (next) {
                runGuest(s.view, o.guest);
                s.model = next;
              } else assert.throws(() => runGuest(s.view, o.guest), FileViewError, what);
              break;
            }
            case "merge": {
              const dest = sessions[1 - o.session];
              const [src, before] = [readSnap(s.dir), readSnap(dest.dir)];
              const expected = modelMerge(src, before);
              const report = mergeOverlay(s.dir, dest.dir);
              assert.deepEqual(sortedReport(report), sortedReport(expected.report), `${what}: report`);
              assert.deepEqual(readSnap(s.dir), src, `${what}: SRC is only read`);
              const after = readSnap(dest.dir);
              const timedRows = (m: Snap["entries"]) =>
                [...m].map(([k, e]) =>
                  `${e.names.join("\\")} ${e.isDir} ${e.bytes} ${expected.timed.has(k) ? e.mtime : ""}`
                ).sort();
              assert.deepEqual(timedRows(after.entries), timedRows(expected.entries), `${what}: DEST's files`);
              assert.deepEqual(new Set(after.whiteouts.keys()), expected.whiteouts, `${what}: DEST's whiteouts`);
              dest.model = viewOf({ ...after, entries: expected.entries });
              dest.view = open(dest.dir);
              check(dest, what);
              break;
            }
            case "sync": {
              const host = `${base}/host${i}`;
              build(host, BUNDLE);
              const before = readHost(host);
              const dry = syncOverlay(s.dir, host, { dryRun: true });
              assert.deepEqual(readHost(host), before, `${what}: a dry run changes nothing`);
              assert.deepEqual(syncOverlay(s.dir, host).actions, dry.actions, `${what}: the dry run's plan`);
              // Synced onto the bundle's files, the overlay leaves exactly what the guest sees.
              const synced = readHost(host);
              assert.deepEqual(rows(synced), rows(s.model), `${what}: the host copy`);
              for (const [k, e] of readSnap(s.dir).entries) {
                if (!e.isDir) {
                  assert.equal(synced.get(k)?.mtime, e.mtime, `${what}: ${e.names.join("\\")} keeps its time`);
                }
              }
              break;
            }
            case "reset": {
              const threshold = o.threshold ?? undefined;
              const { bytes } = readSnap(s.dir);
              const report = resetOverlay(s.dir, { ifLargerThan: threshold });
              const resets = threshold === undefined || bytes > threshold;
              assert.deepEqual(report, { reset: resets, bytes, freed: resets ? bytes : 0 }, what);
              if (resets) s.model = bundleView();
              s.view = open(s.dir);
              break;
            }
            case "pack": {
              const bytes = packOverlay(s.dir);
              const restored = `${base}/restored${i}`;
              unpackOverlay(bytes, restored, what);
              const [original, copy] = [readSnap(s.dir), readSnap(restored)];
              assert.deepEqual(
                [...copy.entries].sort(),
                [...original.entries].sort(),
                `${what}: files, directories and times`,
              );
              assert.deepEqual(
                new Set(copy.whiteouts.keys()),
                new Set(original.whiteouts.keys()),
                `${what}: whiteouts`,
              );
              assert.deepEqual(packOverlay(restored), bytes, `${what}: packs the same`);
              s.dir = restored;
              s.view = open(restored);
              break;
            }
            case "restart":
              s.view = open(s.dir);
          }
          check(s, what);
        }
        Deno.removeSync(base, { recursive: true });
      }),
      // Each run is a long sequence of steps, so a fifth of the usual runs covers as much.
      { numRuns: Math.ceil(fuzzRuns / 5) },
    );
  }));

// ---------------------------------------------------------------------------------------------
// The CLI

function cli(args: string[]): { status: number; out: string; err: string } {
  const [log, error] = [console.log, console.error];
  let out = "", err = "";
  console.log = (...a: unknown[]) => void (out += `${a.join(" ")}\n`);
  console.error = (...a: unknown[]) => void (err += `${a.join(" ")}\n`);
  try {
    return { status: overlayCommand(args), out, err };
  } finally {
    [console.log, console.error] = [log, error];
  }
}

Deno.test("pvx overlay: reports for people and --json for scripts; usage errors exit 2, refusals 125", () =>
  withTemp((root) => {
    const [src, dest, host] = [`${root}/src`, `${root}/dest`, `${root}/host`];
    makeOverlay(src, { "a.txt": ["a", at(2)] }, [["readme.txt"]]);
    makeOverlay(dest, { "A.TXT": ["old", at(1)] });
    build(host, { "readme.txt": "hello" });

    const merged = cli(["merge", src, "--into", dest]);
    assert.equal(merged.status, 0, merged.err);
    assert.equal(
      merged.out,
      `merged ${src} into ${dest}: 0 added, 1 replaced, 0 deleted, 0 kept, 1 new whiteout\n` +
        "  replaced  C:\\A.TXT\n  whiteout  C:\\readme.txt\n",
    );
    assert.deepEqual(JSON.parse(cli(["merge", src, "--into", dest, "--json"]).out), {
      added: [],
      replaced: [],
      deleted: [],
      kept: ["C:\\A.TXT"],
      whiteouts: [],
    });

    const dry = cli(["sync", dest, "--to", host, "--dry-run"]);
    assert.match(
      dry.out,
      /^dry run: syncing .* would make 1 deletion, 0 new directories, 1 file copied; nothing was changed\n/,
    );
    assert.ok(dry.out.endsWith("  delete   C:\\readme.txt\n  copy     C:\\A.TXT (1 byte)\n"), dry.out);
    assert.deepEqual(tree(host), { "readme.txt": "hello" });
    const synced = JSON.parse(cli(["sync", dest, "--to", host, "--json"]).out);
    assert.deepEqual(synced.actions.map((a: { op: string }) => a.op), ["delete", "copy"]);
    assert.deepEqual(tree(host), { "A.TXT": "a" });

    assert.match(
      cli(["reset", dest, "--if-larger", "1"]).out,
      /^left .* as it is: it holds \d+ bytes, not more than 1 MiB\n$/,
    );
    assert.deepEqual(JSON.parse(cli(["reset", dest, "--json"]).out).reset, true);

    for (
      const [args, message] of [
        [[], /overlay needs a command/],
        [["frobnicate"], /unknown overlay command frobnicate/],
        [["merge", src], /overlay merge needs --into/],
        [["merge", src, dest], /needs exactly one source overlay/],
        [["sync", src, "--into", host], /overlay sync does not take --into/],
        [["reset", src, "--if-larger", "lots"], /--if-larger "lots": expected a size in MiB/],
        [["reset", src, "--bogus"], /overlay reset: Unknown option '--bogus'/],
      ] as const
    ) {
      const r = cli([...args]);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, message);
      assert.ok(r.err.includes("usage:\n  pvx overlay merge"), r.err);
    }
    const refused = cli(["reset", host]);
    assert.equal(refused.status, 125);
    assert.equal(refused.err, `pvx overlay: ${host} is not an overlay: its files/ is missing\n`);
    assert.deepEqual(tree(host), { "A.TXT": "a" });
  }));
