import assert from "node:assert/strict";
import fc from "fast-check";
import { FileView, type OpenOptions } from "../abi/fileview.ts";
import { FileViewError } from "../abi/drive_errors.ts";
import { type OpenFile, SHARE_ALL } from "../abi/open_files.ts";
import { parseShareSpec } from "../abi/share.ts";
import { win32Constants as W, win32Errors as E } from "../abi/win32.ts";
import { fuzzRuns } from "./support/fuzz.ts";
import { openOptions } from "./support/open_options.ts";

const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

const BUNDLE: Record<string, string> = {
  "readme.txt": "hello bundle",
  "data/config.txt": "key=value",
  "data/sub/deep.bin": "deep",
  "bin/Tool.exe": "MZ tool",
};

interface Drive {
  /** Holds overlay/, share/ (rw, at C:\shared), ro/ (at C:\mnt\ro) and outside/, which no guest may touch. */
  root: string;
  overlay: string;
  share: string;
  ro: string;
  outside: string;
  bundle: Map<string, Uint8Array>;
  view: FileView;
  /** Another view over the same overlay, as after a restart. */
  reopen(): FileView;
}

async function withDrive(test: (d: Drive) => void | Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "pvx-fileview-" });
  try {
    const d = {
      root,
      overlay: `${root}/overlay`,
      share: `${root}/share`,
      ro: `${root}/ro`,
      outside: `${root}/outside`,
    };
    for (const dir of [d.share, d.ro, `${d.outside}/sub`]) Deno.mkdirSync(dir, { recursive: true });
    Deno.writeTextFileSync(`${d.share}/Host.txt`, "from the host");
    Deno.writeTextFileSync(`${d.ro}/locked.txt`, "read only");
    Deno.writeTextFileSync(`${d.outside}/secret.txt`, "host secret");
    const bundle = new Map(Object.entries(BUNDLE).map(([path, text]) => [path, encode(text)]));
    const reopen = () =>
      new FileView({
        bundleFiles: bundle,
        overlayDir: d.overlay,
        shares: [
          { guestPath: "C:\\shared", hostPath: d.share, readOnly: false },
          { guestPath: "\\mnt\\ro", hostPath: d.ro, readOnly: true },
        ],
      });
    await test({ ...d, bundle, view: reopen(), reopen });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function expectCode(code: number, action: () => unknown, what = ""): void {
  assert.throws(action, (e) => {
    assert.ok(e instanceof FileViewError, `${what}: expected FileViewError ${code}, got ${e}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return true;
  });
}

function readAll(view: FileView, path: string): string {
  const { file } = view.open(path, openOptions());
  try {
    const bytes = new Uint8Array(file.size());
    assert.equal(file.read(bytes, 0), bytes.length);
    return decode(bytes);
  } finally {
    file.close();
  }
}

function writeFile(view: FileView, path: string, text: string): void {
  const { file } = view.open(path, openOptions({ write: true, disposition: W.CREATE_ALWAYS }));
  file.write(encode(text), 0);
  file.close();
}

const names = (view: FileView, pattern: string) => view.find(pattern).map((e) => e.name);

Deno.test("each CreateFile disposition, with the existed flag", () =>
  withDrive(({ view }) => {
    const open = (path: string, disposition: OpenOptions["disposition"], write = true) => {
      const { file, existed } = view.open(path, openOptions({ write, disposition }));
      const size = file.size();
      file.close();
      return { existed, size };
    };
    assert.deepEqual(open("new.txt", W.CREATE_NEW), { existed: false, size: 0 });
    expectCode(E.ERROR_FILE_EXISTS, () => open("new.txt", W.CREATE_NEW));
    expectCode(E.ERROR_FILE_EXISTS, () => open("data", W.CREATE_NEW), "a directory");
    writeFile(view, "new.txt", "abc");
    assert.deepEqual(open("new.txt", W.CREATE_ALWAYS), { existed: true, size: 0 });
    assert.deepEqual(open("fresh.txt", W.CREATE_ALWAYS), { existed: false, size: 0 });
    expectCode(E.ERROR_FILE_NOT_FOUND, () => open("missing.txt", W.OPEN_EXISTING));
    expectCode(E.ERROR_PATH_NOT_FOUND, () => open("nodir\\x.txt", W.OPEN_EXISTING));
    expectCode(E.ERROR_PATH_NOT_FOUND, () => open("readme.txt\\x", W.OPEN_ALWAYS), "a file as a directory");
    assert.deepEqual(open("readme.txt", W.OPEN_EXISTING, false), { existed: true, size: 12 });
    assert.deepEqual(open("readme.txt", W.OPEN_ALWAYS), { existed: true, size: 12 });
    assert.deepEqual(open("always.txt", W.OPEN_ALWAYS), { existed: false, size: 0 });
    expectCode(E.ERROR_INVALID_PARAMETER, () => open("readme.txt", W.TRUNCATE_EXISTING, false));
    expectCode(E.ERROR_FILE_NOT_FOUND, () => open("missing.txt", W.TRUNCATE_EXISTING));
    assert.deepEqual(open("readme.txt", W.TRUNCATE_EXISTING), { existed: true, size: 0 });
    for (const bad of [0, 6]) {
      expectCode(E.ERROR_INVALID_PARAMETER, () => open("x", bad as OpenOptions["disposition"]), `disposition ${bad}`);
    }
  }));

Deno.test("read, write, write past the end zero-fills, SetEndOfFile, and handle checks", () =>
  withDrive(({ view }) => {
    const { file } = view.open("f.bin", openOptions({ write: true, disposition: W.CREATE_NEW }));
    assert.equal(file.path, "C:\\f.bin");
    assert.equal(file.write(encode("hello"), 0), 5);
    assert.equal(file.write(encode("X"), 10), 1);
    assert.equal(file.size(), 11);
    const all = new Uint8Array(16);
    assert.equal(file.read(all, 0), 11);
    assert.deepEqual([...all.subarray(0, 11)], [...encode("hello"), 0, 0, 0, 0, 0, ...encode("X")]);
    assert.equal(file.read(new Uint8Array(4), 11), 0, "at EOF");
    assert.equal(file.read(new Uint8Array(4), 100), 0, "past EOF");
    const middle = new Uint8Array(2);
    assert.equal(file.read(middle, 3), 2);
    assert.equal(decode(middle), "lo");
    file.setSize(3);
    assert.equal(file.size(), 3);
    file.setSize(6);
    assert.equal(readAll(view, "f.bin"), "hel\0\0\0");
    expectCode(E.ERROR_INVALID_PARAMETER, () => file.read(new Uint8Array(1), -1));
    expectCode(E.ERROR_INVALID_PARAMETER, () => file.setSize(-1));
    file.flush();
    file.close();
    expectCode(E.ERROR_INVALID_HANDLE, () => file.read(new Uint8Array(1), 0));
    expectCode(E.ERROR_INVALID_HANDLE, () => file.close());

    const readOnly = view.open("f.bin", openOptions()).file;
    expectCode(E.ERROR_ACCESS_DENIED, () => readOnly.write(encode("x"), 0));
    expectCode(E.ERROR_ACCESS_DENIED, () => readOnly.setSize(0));
    readOnly.close();
    const writeOnly = view.open("f.bin", openOptions({ read: false, write: true })).file;
    expectCode(E.ERROR_ACCESS_DENIED, () => writeOnly.read(new Uint8Array(1), 0));
    writeOnly.close();
  }));

Deno.test("copy-on-write: writing a bundle file changes the view, never the bundle", () =>
  withDrive(({ view, bundle, overlay, reopen }) => {
    const before = new Map([...bundle].map(([path, bytes]) => [path, bytes.slice()]));
    const reader = view.open("readme.txt", openOptions()).file;
    const writer = view.open("README.txt", openOptions({ write: true })).file;
    writer.write(encode("HELLO"), 0);
    const seen = new Uint8Array(12);
    reader.read(seen, 0);
    assert.equal(decode(seen), "HELLO bundle", "a handle opened before the copy-up sees the write too");
    writer.close();
    reader.close();
    assert.equal(readAll(view, "readme.txt"), "HELLO bundle");
    assert.equal(Deno.readTextFileSync(`${overlay}/files/readme.txt`), "HELLO bundle");

    const truncated = view.open("data\\config.txt", openOptions({ disposition: W.CREATE_ALWAYS })).file;
    truncated.close();
    assert.equal(readAll(view, "data\\config.txt"), "");
    const extended = view.open("bin\\tool.exe", openOptions({ write: true })).file;
    extended.setSize(10);
    extended.close();
    assert.equal(readAll(view, "bin\\tool.exe"), "MZ tool\0\0\0");

    assert.deepEqual(bundle, before);
    const again = reopen();
    assert.equal(readAll(again, "readme.txt"), "HELLO bundle");
    assert.equal(readAll(again, "data\\sub\\deep.bin"), "deep", "untouched bundle files still come from the bundle");
  }));

Deno.test("deleting a bundle file hides it, persistently, and the overlay's metadata stays out of sight", () =>
  withDrive(({ view, bundle, overlay, reopen }) => {
    view.delete("README.TXT");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.open("readme.txt", openOptions()));
    assert.ok(!names(view, "*").includes("readme.txt"));
    assert.deepEqual(view.describe().whiteouts, ["C:\\readme.txt"]);
    assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${overlay}/whiteouts.json`)).whiteouts, [["readme.txt"]]);
    assert.deepEqual([...Deno.readDirSync(`${overlay}/tmp`)], [], "the atomic write left no temp file");
    view.delete("data\\sub\\deep.bin");
    view.removeDirectory("data\\sub");
    assert.deepEqual(
      view.describe().whiteouts,
      ["C:\\data\\sub", "C:\\readme.txt"],
      "a directory's whiteout covers its files'",
    );
    assert.equal(decode(bundle.get("readme.txt")!), "hello bundle");

    const later = reopen();
    expectCode(E.ERROR_FILE_NOT_FOUND, () => later.open("readme.txt", openOptions()));
    assert.deepEqual(names(later, "*"), ["bin", "data", "mnt", "shared"]);
    writeFile(later, "readme.txt", "new");
    assert.equal(readAll(later, "readme.txt"), "new");
    later.delete("readme.txt");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => later.open("readme.txt", openOptions()), "the bundle copy stays hidden");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => later.delete("readme.txt"));
  }));

Deno.test("names are case-insensitive and case-preserving; paths normalize like Windows", () =>
  withDrive(({ view, overlay }) => {
    const opened = view.open("DATA\\CONFIG.TXT", openOptions()).file;
    assert.equal(opened.path, "C:\\data\\config.txt");
    opened.close();
    writeFile(view, "MixedCase.TXT", "m");
    assert.ok(names(view, "*").includes("MixedCase.TXT"));
    const again = view.open("mixedcase.txt", openOptions()).file;
    assert.equal(again.path, "C:\\MixedCase.TXT");
    again.close();
    expectCode(E.ERROR_FILE_EXISTS, () => view.open("MIXEDCASE.txt", openOptions({ disposition: W.CREATE_NEW })));
    writeFile(view, "mixedCASE.txt", "n");
    assert.deepEqual([...Deno.readDirSync(`${overlay}/files`)].map((e) => e.name), ["MixedCase.TXT"]);
    assert.equal(readAll(view, "MixedCase.TXT"), "n");
    assert.equal(readAll(view, "readme.txt. . "), "hello bundle", "trailing dots and spaces are stripped");

    assert.equal(view.fullPath("c:/a//b\\"), "C:\\a\\b");
    assert.equal(view.fullPath(".\\a\\..\\b"), "C:\\b");
    assert.equal(view.fullPath("\\x"), "C:\\x");
    view.setCurrentDirectory("data\\SUB");
    assert.equal(view.currentDirectory, "C:\\data\\sub");
    assert.equal(view.fullPath("C:rel"), "C:\\data\\sub\\rel");
    assert.equal(view.fullPath("..\\x"), "C:\\data\\x");
    assert.equal(view.fullPath("\\x"), "C:\\x");
    assert.equal(readAll(view, "deep.bin"), "deep");
  }));

Deno.test("moves within and across layers", () =>
  withDrive(({ view, share, bundle, reopen }) => {
    view.move("data\\config.txt", "moved.txt", false);
    assert.equal(readAll(view, "moved.txt"), "key=value");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.open("data\\config.txt", openOptions()));
    assert.equal(decode(bundle.get("data/config.txt")!), "key=value");

    view.move("moved.txt", "C:\\shared\\Moved.txt", false);
    assert.equal(Deno.readTextFileSync(`${share}/Moved.txt`), "key=value");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.open("moved.txt", openOptions()));
    view.move("C:\\shared\\host.txt", "\\back.txt", false);
    assert.equal(readAll(view, "back.txt"), "from the host");
    assert.ok(!Deno.readDirSync(share).some((e) => e.name === "Host.txt"));
    view.move("shared\\moved.txt", "shared\\Renamed.txt", false);
    assert.equal(Deno.readTextFileSync(`${share}/Renamed.txt`), "key=value");

    view.delete("data\\sub\\deep.bin");
    view.move("data", "Data2", false);
    assert.deepEqual(names(view, "data2\\*"), [".", "..", "sub"], "deleted files stay deleted after the move");
    assert.deepEqual(names(view, "data2\\sub\\*"), [".", ".."]);
    writeFile(view, "bin\\extra.txt", "extra");
    view.move("bin", "Programs", false);
    assert.deepEqual(names(view, "programs\\*"), [".", "..", "extra.txt", "Tool.exe"]);
    assert.equal(readAll(view, "programs\\tool.exe"), "MZ tool");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.attributes("bin"));
    view.move("programs", "shared\\programs", false);
    assert.equal(Deno.readTextFileSync(`${share}/programs/Tool.exe`), "MZ tool");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.attributes("programs"));

    writeFile(view, "a.txt", "A");
    writeFile(view, "b.txt", "B");
    expectCode(E.ERROR_ALREADY_EXISTS, () => view.move("a.txt", "B.TXT", false));
    view.move("a.txt", "B.TXT", true);
    assert.equal(readAll(view, "b.txt"), "A");
    assert.ok(names(view, "*.txt").includes("B.TXT"));
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.move("a.txt", "c.txt", false));

    view.move("readme.txt", "README.TXT", false);
    assert.ok(names(view, "*").includes("README.TXT"), "case-only rename");
    assert.equal(readAll(view, "readme.txt"), "hello bundle");

    expectCode(E.ERROR_SHARING_VIOLATION, () => view.move("data2", "data2\\sub\\inner", false));
    expectCode(E.ERROR_ACCESS_DENIED, () => view.move("data2", "b.txt", true), "a directory never replaces");
    expectCode(E.ERROR_PATH_NOT_FOUND, () => view.move("b.txt", "nodir\\b.txt", false));
    expectCode(E.ERROR_ACCESS_DENIED, () => view.move("shared", "elsewhere", false), "a mount point stays");
    expectCode(E.ERROR_ACCESS_DENIED, () => view.move("mnt", "elsewhere", false), "so do its parents");

    const later = reopen();
    assert.equal(readAll(later, "back.txt"), "from the host");
    assert.equal(readAll(later, "README.txt"), "hello bundle");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => later.attributes("bin"));
  }));

Deno.test("open files and moves: handles follow a rename; without FILE_SHARE_DELETE it is refused", () =>
  withDrive(({ view }) => {
    const locked = view.open("readme.txt", openOptions({ share: W.FILE_SHARE_READ })).file;
    expectCode(E.ERROR_SHARING_VIOLATION, () => view.move("readme.txt", "other.txt", false));
    locked.close();
    const file = view.open("readme.txt", openOptions({ share: SHARE_ALL })).file;
    view.move("readme.txt", "other.txt", false);
    assert.equal(file.path, "C:\\other.txt");
    const bytes = new Uint8Array(5);
    file.read(bytes, 0);
    assert.equal(decode(bytes), "hello");
    expectCode(E.ERROR_SHARING_VIOLATION, () => view.open("other.txt", openOptions({ share: 0 })), "it is still open");
    writeFile(view, "data\\sub\\open.txt", "o");
    const inside = view.open("data\\sub\\open.txt", openOptions()).file;
    expectCode(E.ERROR_ACCESS_DENIED, () => view.move("data", "data2", false));
    inside.close();
    view.move("other.txt", "shared\\other.txt", false);
    assert.equal(file.path, "C:\\other.txt", "copied to another layer: the handle keeps the old file");
    file.read(bytes, 0);
    assert.equal(decode(bytes), "hello");
    view.open("shared\\other.txt", openOptions({ share: 0 })).file.close();
    file.close();
    view.setCurrentDirectory("data\\sub");
    expectCode(E.ERROR_ACCESS_DENIED, () => view.move("\\data", "\\data2", false), "holds the current directory");
  }));

Deno.test("directories: create, remove, not empty, wrong kind, current directory", () =>
  withDrive(({ view }) => {
    view.createDirectory("work");
    expectCode(E.ERROR_ALREADY_EXISTS, () => view.createDirectory("WORK"));
    expectCode(E.ERROR_ALREADY_EXISTS, () => view.createDirectory("data"), "a bundle directory");
    expectCode(E.ERROR_PATH_NOT_FOUND, () => view.createDirectory("missing\\sub"));
    writeFile(view, "work\\f.txt", "f");
    expectCode(E.ERROR_DIR_NOT_EMPTY, () => view.removeDirectory("work"));
    expectCode(E.ERROR_DIRECTORY, () => view.removeDirectory("work\\f.txt"));
    expectCode(E.ERROR_ACCESS_DENIED, () => view.delete("work"));
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.removeDirectory("nothing"));
    expectCode(E.ERROR_ACCESS_DENIED, () => view.removeDirectory("C:\\"));
    expectCode(E.ERROR_ACCESS_DENIED, () => view.removeDirectory("mnt"), "holds a share");
    expectCode(E.ERROR_DIR_NOT_EMPTY, () => view.removeDirectory("data\\sub"), "bundle content counts");
    view.delete("data\\sub\\deep.bin");
    view.removeDirectory("data\\sub");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.attributes("data\\sub"));
    view.createDirectory("data\\SUB");
    expectCode(E.ERROR_FILE_NOT_FOUND, () =>
      view.attributes("data\\sub\\deep.bin"), "a recreated directory starts empty");

    view.setCurrentDirectory("work");
    assert.equal(view.currentDirectory, "C:\\work");
    writeFile(view, "rel.txt", "r");
    assert.equal(readAll(view, "C:\\work\\rel.txt"), "r");
    expectCode(E.ERROR_FILE_NOT_FOUND, () =>
      view.setCurrentDirectory("missing"));
    expectCode(E.ERROR_PATH_NOT_FOUND, () =>
      view.setCurrentDirectory("missing\\deeper"));
    expectCode(E.ERROR_DIRECTORY, () => view.setCurrentDirectory("f.txt"));
    view.delete("f.txt");
    view.delete("rel.txt");
    expectCode(E.ERROR_SHARING_VIOLATION, () => view.removeDirectory("."), "the current directory");
    view.setCurrentDirectory("..");
    assert.equal(view.currentDirectory, "C:\\");
    view.removeDirectory("work");

    assert.equal(view.attributes("data"), W.FILE_ATTRIBUTE_DIRECTORY);
    assert.equal(view.attributes("readme.txt"), W.FILE_ATTRIBUTE_ARCHIVE);
    assert.equal(view.attributes("C:\\"), W.FILE_ATTRIBUTE_DIRECTORY);
    expectCode(E.ERROR_ACCESS_DENIED, () => view.open("data", openOptions()), "needs FILE_FLAG_BACKUP_SEMANTICS");
    const dir = view.open("data", openOptions({ flags: W.FILE_FLAG_BACKUP_SEMANTICS })).file;
    assert.ok(dir.isDirectory);
    assert.equal(dir.size(), 0);
    expectCode(E.ERROR_INVALID_FUNCTION, () => dir.read(new Uint8Array(1), 0));
    dir.close();
    expectCode(
      E.ERROR_ACCESS_DENIED,
      () => view.open("data", openOptions({ disposition: W.CREATE_ALWAYS, flags: W.FILE_FLAG_BACKUP_SEMANTICS })),
    );
  }));

Deno.test("find: wildcards, dot entries, merged layers minus whiteouts, sorted", () =>
  withDrive(({ view }) => {
    writeFile(view, "a.txt", "a");
    writeFile(view, "b.TXT", "bb");
    writeFile(view, "noext", "1234");
    writeFile(view, "data\\new.log", "n");
    view.delete("data\\config.txt");

    assert.deepEqual(names(view, "*"), ["a.txt", "b.TXT", "bin", "data", "mnt", "noext", "readme.txt", "shared"]);
    assert.deepEqual(names(view, "data\\*"), [".", "..", "new.log", "sub"]);
    assert.deepEqual(names(view, "*.txt"), ["a.txt", "b.TXT", "readme.txt"]);
    assert.deepEqual(names(view, "?.TXT"), ["a.txt", "b.TXT"]);
    assert.deepEqual(names(view, "*.*"), names(view, "*"), "*.* matches names without a dot too");
    assert.deepEqual(names(view, "*."), ["bin", "data", "mnt", "noext", "shared"], "*. matches only those");
    assert.deepEqual(names(view, "????????.???"), [
      "a.txt",
      "b.TXT",
      "bin",
      "data",
      "mnt",
      "noext",
      "readme.txt",
      "shared",
    ]);
    assert.deepEqual(names(view, "r*e.t?t"), ["readme.txt"]);
    assert.deepEqual(names(view, "data\\sub\\*"), [".", "..", "deep.bin"]);
    assert.deepEqual(names(view, "data\\.*"), [".", ".."]);
    assert.deepEqual(names(view, "mnt\\*"), [".", "..", "ro"]);
    assert.deepEqual(names(view, "DATA"), ["data"]);

    const [readme] = view.find("README.TXT");
    assert.deepEqual(readme, {
      name: "readme.txt",
      attributes: W.FILE_ATTRIBUTE_ARCHIVE,
      size: 12,
      lastWrite: 116444736000000000n,
    });
    const [noext] = view.find("noext");
    assert.equal(noext.size, 4);
    assert.ok(noext.lastWrite > 116444736000000000n, "overlay files carry their host mtime");
    assert.equal(view.find("data")[0].attributes, W.FILE_ATTRIBUTE_DIRECTORY);

    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.find("*.none"));
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.find("data\\config.txt"), "whited out");
    expectCode(E.ERROR_PATH_NOT_FOUND, () => view.find("nodir\\*"));
    expectCode(E.ERROR_PATH_NOT_FOUND, () => view.find("readme.txt\\*"));
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.find("C:\\"));
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.find("data\\"));
    expectCode(E.ERROR_INVALID_NAME, () => view.find("d*\\x"), "wildcards only in the last component");
  }));

Deno.test("sharing violations in both directions, delete sharing and DELETE_ON_CLOSE", () =>
  withDrive(({ view }) => {
    const open = (path: string, o: Partial<OpenOptions>) => view.open(path, openOptions(o)).file;
    const reader = open("readme.txt", { share: W.FILE_SHARE_READ });
    expectCode(E.ERROR_SHARING_VIOLATION, () =>
      open("readme.txt", { write: true }), "existing share mode excludes write");
    const second = open("README.TXT", { share: W.FILE_SHARE_READ });
    expectCode(E.ERROR_SHARING_VIOLATION, () =>
      open("readme.txt", { share: W.FILE_SHARE_WRITE }), "new share excludes read");
    open("readme.txt", { read: false, share: 0 }).close(); // no data access: no conflict
    expectCode(E.ERROR_SHARING_VIOLATION, () =>
      view.delete("readme.txt"));
    expectCode(E.ERROR_SHARING_VIOLATION, () =>
      open("readme.txt", { deleteAccess: true }));
    reader.close();
    second.close();

    const writer = open("readme.txt", { read: false, write: true, share: SHARE_ALL });
    expectCode(E.ERROR_SHARING_VIOLATION, () =>
      open("readme.txt", { share: W.FILE_SHARE_READ }), "excludes the writer");
    const shared = open("readme.txt", { share: SHARE_ALL });
    assert.deepEqual(view.describe().openFiles, ["C:\\readme.txt", "C:\\readme.txt"]);
    view.delete("readme.txt");
    expectCode(E.ERROR_FILE_NOT_FOUND, () =>
      open("readme.txt", {}));
    const bytes = new Uint8Array(5);
    shared.read(bytes, 0);
    assert.equal(decode(bytes), "hello", "open handles keep their data after a shared delete");
    writeFile(view, "readme.txt", "new file, new sharing");
    writer.close();
    shared.close();
    assert.equal(readAll(view, "readme.txt"), "new file, new sharing");
    assert.deepEqual(view.describe().openFiles, []);

    const temp = open("temp.txt", { write: true, disposition: W.CREATE_NEW, flags: W.FILE_FLAG_DELETE_ON_CLOSE });
    const other = open("temp.txt", { share: SHARE_ALL });
    temp.close();
    assert.equal(view.attributes("temp.txt"), W.FILE_ATTRIBUTE_ARCHIVE, "deleted when the last handle closes");
    other.close();
    expectCode(E.ERROR_FILE_NOT_FOUND, () =>
      view.attributes("temp.txt"));
    const exclusive = open("data\\config.txt", { share: 0, flags: W.FILE_FLAG_DELETE_ON_CLOSE });
    exclusive.close();
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.attributes("data\\config.txt"), "a bundle file is whited out");
  }));

Deno.test("shares: read-write reaches the host directory, read-only refuses every change", () =>
  withDrive(({ view, share, ro }) => {
    assert.equal(readAll(view, "C:\\SHARED\\host.TXT"), "from the host");
    const f = view.open("shared\\Host.txt", openOptions({ write: true })).file;
    assert.equal(f.path, "C:\\shared\\Host.txt");
    f.write(encode("FROM"), 0);
    f.close();
    assert.equal(Deno.readTextFileSync(`${share}/Host.txt`), "FROM the host");
    writeFile(view, "shared\\New.txt", "new");
    assert.equal(Deno.readTextFileSync(`${share}/New.txt`), "new");
    view.createDirectory("shared\\Dir");
    assert.ok(Deno.statSync(`${share}/Dir`).isDirectory);
    view.removeDirectory("shared\\dir");
    view.delete("shared\\new.txt");
    assert.deepEqual([...Deno.readDirSync(share)].map((e) => e.name), ["Host.txt"]);
    assert.equal(view.attributes("shared\\host.txt"), W.FILE_ATTRIBUTE_ARCHIVE);
    expectCode(E.ERROR_ACCESS_DENIED, () => view.removeDirectory("shared"));

    assert.equal(readAll(view, "mnt\\ro\\LOCKED.txt"), "read only");
    assert.equal(view.attributes("mnt\\ro\\locked.txt"), W.FILE_ATTRIBUTE_ARCHIVE | W.FILE_ATTRIBUTE_READONLY);
    assert.equal(view.attributes("mnt\\ro"), W.FILE_ATTRIBUTE_DIRECTORY);
    const denied: [string, () => unknown][] = [
      ["open for write", () => view.open("mnt\\ro\\locked.txt", openOptions({ write: true }))],
      ["open for delete", () => view.open("mnt\\ro\\locked.txt", openOptions({ deleteAccess: true }))],
      ["truncate", () => view.open("mnt\\ro\\locked.txt", openOptions({ disposition: W.CREATE_ALWAYS }))],
      ["create", () => view.open("mnt\\ro\\new.txt", openOptions({ write: true, disposition: W.CREATE_NEW }))],
      ["delete", () => view.delete("mnt\\ro\\locked.txt")],
      ["mkdir", () => view.createDirectory("mnt\\ro\\dir")],
      ["move out", () => view.move("mnt\\ro\\locked.txt", "C:\\stolen.txt", false)],
      ["move in", () => view.move("readme.txt", "mnt\\ro\\readme.txt", false)],
      ["rename inside", () => view.move("mnt\\ro\\locked.txt", "mnt\\ro\\other.txt", false)],
    ];
    for (const [what, action] of denied) expectCode(E.ERROR_ACCESS_DENIED, action, what);
    assert.deepEqual([...Deno.readDirSync(ro)].map((e) => e.name), ["locked.txt"]);
    assert.equal(Deno.readTextFileSync(`${ro}/locked.txt`), "read only");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.attributes("stolen.txt"));
  }));

Deno.test("symlinks in a share: inside the share they work, out of it they are refused and unlisted", () =>
  withDrive(({ view, share, outside }) => {
    Deno.mkdirSync(`${share}/sub`);
    Deno.writeTextFileSync(`${share}/sub/f.txt`, "inside");
    Deno.symlinkSync("sub", `${share}/inner`);
    Deno.symlinkSync(`${share}/sub/f.txt`, `${share}/file-link`);
    Deno.symlinkSync("/etc", `${share}/etc`);
    Deno.symlinkSync(outside, `${share}/out`);
    Deno.symlinkSync(`${outside}/secret.txt`, `${share}/secret.txt`);
    Deno.symlinkSync(`${outside}/created.txt`, `${share}/dangling.txt`);

    assert.equal(readAll(view, "shared\\inner\\F.TXT"), "inside");
    assert.equal(readAll(view, "shared\\file-link"), "inside");
    assert.deepEqual(names(view, "shared\\*"), [".", "..", "file-link", "Host.txt", "inner", "sub"]);

    const refused: [string, () => unknown][] = [
      ["open through /etc", () => view.open("shared\\etc\\passwd", openOptions())],
      ["list /etc", () => view.find("shared\\etc\\*")],
      ["read outside", () => view.open("shared\\secret.txt", openOptions())],
      [
        "write outside",
        () => view.open("shared\\secret.txt", openOptions({ write: true, disposition: W.CREATE_ALWAYS })),
      ],
      [
        "create through a dangling link",
        () => view.open("shared\\dangling.txt", openOptions({ disposition: W.OPEN_ALWAYS })),
      ],
      ["mkdir through a link", () => view.createDirectory("shared\\out\\x")],
      ["delete through a link", () => view.delete("shared\\out\\secret.txt")],
      ["cd through a link", () => view.setCurrentDirectory("shared\\out")],
    ];
    for (const [what, action] of refused) expectCode(E.ERROR_ACCESS_DENIED, action, what);
    assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name).sort(), ["secret.txt", "sub"]);
    assert.equal(Deno.readTextFileSync(`${outside}/secret.txt`), "host secret");

    view.delete("shared\\file-link");
    assert.equal(Deno.readTextFileSync(`${share}/sub/f.txt`), "inside", "deleting a link leaves its target");
  }));

Deno.test(".. at the root stays at the root, as in Windows: the drive has no way up", () =>
  withDrive(({ view, root }) => {
    assert.equal(view.fullPath("C:\\..\\x"), "C:\\x");
    assert.equal(view.fullPath("..\\..\\etc\\passwd"), "C:\\etc\\passwd");
    assert.equal(view.fullPath("data\\..\\..\\x"), "C:\\x");
    expectCode(
      E.ERROR_PATH_NOT_FOUND,
      () => view.open("..\\..\\etc\\passwd", openOptions()),
      "open ..\\..\\etc\\passwd",
    );
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.open("C:\\..\\x", openOptions()), "open C:\\..\\x");
    view.open("..\\..\\up.txt", openOptions({ write: true, disposition: W.CREATE_ALWAYS })).file.close();
    assert.equal(readAll(view, "C:\\up.txt"), "", "created at the drive's root");
    for (const dir of [root, `${root}/outside`]) {
      assert.ok(!Deno.readDirSync(dir).some((e) => e.name === "up.txt"), `nothing in ${dir}`);
    }
    assert.equal(readAll(view, "C:\\..\\readme.txt"), "hello bundle");
  }));

Deno.test("escape attempts fail with the Win32 error Windows would give, for every call", () =>
  withDrive(({ view, root }) => {
    const attempts: [string, number][] = [
      ["\\\\?\\C:\\x", E.ERROR_ACCESS_DENIED],
      ["//?/C:/x", E.ERROR_ACCESS_DENIED],
      ["\\\\.\\PhysicalDrive0", E.ERROR_ACCESS_DENIED],
      ["\\\\server\\share\\x", E.ERROR_BAD_NETPATH],
      ["D:\\x", E.ERROR_PATH_NOT_FOUND],
      ["NUL", E.ERROR_ACCESS_DENIED],
      ["con.txt", E.ERROR_ACCESS_DENIED],
      ["Aux .log", E.ERROR_ACCESS_DENIED],
      ["lpt9", E.ERROR_ACCESS_DENIED],
      ["a\\com1\\b", E.ERROR_ACCESS_DENIED],
      ["a\0b", E.ERROR_INVALID_NAME],
      ["a\x1fb", E.ERROR_INVALID_NAME],
      ["a<b", E.ERROR_INVALID_NAME],
      ["x\\a:stream", E.ERROR_INVALID_NAME],
      ["a:rel", E.ERROR_PATH_NOT_FOUND],
      ["x".repeat(256), E.ERROR_FILENAME_EXCED_RANGE],
      ["a\\".repeat(16384), E.ERROR_FILENAME_EXCED_RANGE],
      ["", E.ERROR_PATH_NOT_FOUND],
      ["/etc/passwd", E.ERROR_PATH_NOT_FOUND],
      [`${root}/outside/secret.txt`, E.ERROR_PATH_NOT_FOUND],
    ];
    for (const [path, code] of attempts) {
      const calls: [string, () => unknown][] = [
        ["fullPath", () => view.fullPath(path)],
        ["open", () => view.open(path, openOptions())],
        ["create", () => view.open(path, openOptions({ write: true, disposition: W.CREATE_ALWAYS }))],
        ["delete", () => view.delete(path)],
        ["createDirectory", () => view.createDirectory(path)],
        ["find", () => view.find(path)],
        ["attributes", () => view.attributes(path)],
        ["setCurrentDirectory", () => view.setCurrentDirectory(path)],
        ["move", () => view.move("readme.txt", path, true)],
      ];
      for (const [what, action] of calls) {
        // fullPath only checks syntax: a well-formed path is fine there even if it leads nowhere.
        if (what === "fullPath" && code === E.ERROR_PATH_NOT_FOUND && path.startsWith("/")) continue;
        expectCode(code, action, `${what}(${JSON.stringify(path.slice(0, 40))})`);
      }
    }
    assert.equal(view.fullPath("/etc/passwd"), "C:\\etc\\passwd", "host-absolute paths stay on the drive");
    assert.equal(Deno.readTextFileSync(`${root}/outside/secret.txt`), "host secret");
    assert.equal(readAll(view, "readme.txt"), "hello bundle");
    expectCode(E.ERROR_INVALID_NAME, () => view.find("a*\\b"));
    assert.deepEqual(names(view, "re?dme.*"), ["readme.txt"], "wildcards are fine in a find's last component");
  }));

Deno.test("parseShareSpec splits host and guest at the right colon and checks the host directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-share-" });
  try {
    Deno.mkdirSync(`${dir}/with:colon`);
    Deno.writeTextFileSync(`${dir}/file`, "");
    assert.deepEqual(parseShareSpec(`${dir}:C:\\data:ro`), { hostPath: dir, guestPath: "C:\\data", readOnly: true });
    assert.deepEqual(parseShareSpec(`${dir}:c:/Data/Sub`), {
      hostPath: dir,
      guestPath: "C:\\Data\\Sub",
      readOnly: false,
    });
    assert.deepEqual(parseShareSpec(`${dir}:\\data`), { hostPath: dir, guestPath: "C:\\data", readOnly: false });
    assert.deepEqual(parseShareSpec(`${dir}/with:colon:C:\\x`), {
      hostPath: `${dir}/with:colon`,
      guestPath: "C:\\x",
      readOnly: false,
    });
    const bad: [string, RegExp][] = [
      ["nocolon", /is not "hostdir:guestdir\[:ro\]"/],
      [`relative:C:\\data`, /must be an absolute path/],
      [`${dir}/missing:C:\\data`, /missing/],
      [`${dir}/file:C:\\data`, /is not a directory/],
      [`${dir}:C:\\`, /drive root/],
      [`${dir}:C:\\a<b`, /not allowed/],
      [`${dir}:D:\\data`, /no drive D:/],
    ];
    for (const [spec, message] of bad) assert.throws(() => parseShareSpec(spec), message, spec);
    assert.throws(
      () =>
        new FileView({
          bundleFiles: new Map(),
          overlayDir: `${dir}/overlay`,
          shares: [
            { guestPath: "C:\\a", hostPath: dir, readOnly: false },
            { guestPath: "C:\\A\\b", hostPath: dir, readOnly: true },
          ],
        }),
      /overlap/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Every entry below `dir` with its kind and content, to prove nothing there changed. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    for (const entry of [...Deno.readDirSync(path)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const full = `${path}/${entry.name}`;
      const info = Deno.lstatSync(full);
      if (entry.isSymlink) out.push(`${full} -> ${Deno.readLinkSync(full)}`);
      else if (entry.isDirectory) {
        out.push(`${full}/ ${info.mode}`);
        walk(full);
      } else out.push(`${full} ${info.mode} ${info.mtime?.getTime()} ${Deno.readTextFileSync(full)}`);
    }
  };
  walk(dir);
  return out;
}

Deno.test("property: arbitrary paths only ever fail with FileViewError and touch nothing outside overlay and shares", () =>
  withDrive(({ view, root, share, ro, outside, bundle }) => {
    const bundleBefore = new Map([...bundle].map(([path, bytes]) => [path, bytes.slice()]));
    Deno.symlinkSync(outside, `${share}/out`);
    Deno.symlinkSync("/etc", `${share}/etc`);
    const untouchable = () => [
      ...snapshot(outside),
      ...snapshot(ro),
      ...[...Deno.readDirSync(root)].map((e) => e.name).sort(),
    ];
    const before = untouchable();
    const piece = fc.oneof(
      fc.constantFrom(
        "..",
        ".",
        "\\",
        "/",
        "C:",
        "c:",
        "D:",
        "\\\\?\\",
        "\\\\.\\",
        "\\\\",
        "\\??\\",
        "NUL",
        "con.txt",
        "COM1",
        "lpt¹.x",
        "*",
        "?",
        "*.*",
        "a",
        "B",
        "readme.txt",
        "data",
        "shared",
        "mnt",
        "ro",
        "locked.txt",
        "out",
        "etc",
        "passwd",
        "secret.txt",
        "outside",
        root,
        root.replaceAll("/", "\\"),
        "\0",
        "\x01",
        "<",
        ":",
        "|",
        " ",
        ". .",
        "...",
        "é",
        "日本",
        "🙂",
        "\ud800",
        "x".repeat(255),
        "y".repeat(256),
      ),
      fc.string({ maxLength: 6 }),
      fc.string({ unit: "grapheme", maxLength: 4 }),
      fc.nat(40000).map((n) => "\\".repeat(n)),
    );
    // Well-formed paths through what exists, so calls also succeed, next to arbitrary strings.
    const component = fc.constantFrom(
      "..",
      ".",
      "data",
      "sub",
      "shared",
      "out",
      "etc",
      "mnt",
      "ro",
      "readme.txt",
      "new",
    );
    const path = fc.oneof(
      fc.array(piece, { maxLength: 10 }).map((pieces) => pieces.join("")),
      fc.tuple(fc.constantFrom("", "\\", "C:\\", "c:/"), fc.array(component, { minLength: 1, maxLength: 5 }))
        .map(([start, names]) => start + names.join("\\")),
    );
    const openOptions = fc.record({
      read: fc.boolean(),
      write: fc.boolean(),
      deleteAccess: fc.boolean(),
      disposition: fc.constantFrom(1, 2, 3, 4, 5) as fc.Arbitrary<OpenOptions["disposition"]>,
      share: fc.nat(7),
      attributes: fc.constant(0),
      flags: fc.constantFrom(0, W.FILE_FLAG_BACKUP_SEMANTICS, W.FILE_FLAG_DELETE_ON_CLOSE),
    });
    const step = fc.oneof(
      fc.record({ call: fc.constantFrom("fullPath", "find", "delete", "createDirectory", "removeDirectory"), path }),
      fc.record({ call: fc.constantFrom("attributes", "setCurrentDirectory"), path }),
      fc.record({ call: fc.constant("open"), path, o: openOptions }),
      fc.record({ call: fc.constant("move"), path, to: path, replace: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 6 }), (steps) => {
        const open: OpenFile[] = [];
        for (const s of steps) {
          try {
            if (s.call === "open") {
              const { file } = view.open(s.path, s.o);
              open.push(file);
              if (s.o.write && !file.isDirectory) file.write(encode("fuzz"), 3);
            } else if (s.call === "move") view.move(s.path, s.to, s.replace);
            else view[s.call](s.path);
          } catch (e) {
            if (!(e instanceof FileViewError)) throw e;
          }
        }
        for (const file of open) file.close();
        view.setCurrentDirectory("C:\\");
        assert.deepEqual(untouchable(), before);
        assert.deepEqual(bundle, bundleBefore);
      }),
      { numRuns: fuzzRuns },
    );
  }));

Deno.test("the overlay's quota: a write, a copy-up or a resize past it is ERROR_DISK_FULL and changes nothing", () =>
  withDrive((d) => {
    const quota = 64;
    const view = () =>
      new FileView({
        bundleFiles: d.bundle,
        overlayDir: d.overlay,
        shares: [{ guestPath: "C:\\shared", hostPath: d.share, readOnly: false }],
        overlayQuotaBytes: quota,
      });
    const v = view();
    const create = (path: string) =>
      v.open(path, openOptions({ write: true, disposition: W.CREATE_ALWAYS, share: W.FILE_SHARE_READ })).file;
    const a = create("a.txt");
    assert.equal(a.write(new Uint8Array(50), 0), 50);
    // Rewriting what is there takes nothing more; growing past the quota is refused whole.
    assert.equal(a.write(new Uint8Array(50).fill(1), 0), 50);
    expectCode(E.ERROR_DISK_FULL, () => a.write(new Uint8Array(30), 50), "grow a.txt past the quota");
    assert.equal(a.size(), 50);
    expectCode(E.ERROR_DISK_FULL, () => a.setSize(100), "SetEndOfFile past the quota");
    assert.equal(a.size(), 50);
    // readme.txt (12 bytes) is copied up whole when opened for writing: 62 of 64 bytes.
    const readme = v.open("readme.txt", openOptions({ write: true })).file;
    readme.write(encode("HELLO"), 0);
    expectCode(E.ERROR_DISK_FULL, () => v.open("data\\config.txt", openOptions({ write: true })), "copy-up");
    // A share is the user's own directory: not counted.
    const shared = create("C:\\shared\\big.bin");
    assert.equal(shared.write(new Uint8Array(1000), 0), 1000);
    shared.close();
    // Shrinking, truncating and deleting give the bytes back.
    a.setSize(10);
    v.open("data\\config.txt", openOptions({ write: true })).file.close();
    a.close();
    v.delete("a.txt");
    const b = create("b.txt");
    assert.equal(b.write(new Uint8Array(64 - 12 - 9), 0), 43);
    expectCode(E.ERROR_DISK_FULL, () => b.write(new Uint8Array(1), 43));
    b.close();
    readme.close();
    // Nothing else broke: every file reads back as written.
    const read = (path: string) => {
      const f = v.open(path, openOptions()).file;
      const into = new Uint8Array(f.size());
      f.read(into, 0);
      f.close();
      return into;
    };
    assert.equal(decode(read("readme.txt")), "HELLO bundle");
    assert.equal(decode(read("data\\config.txt")), "key=value");
    assert.equal(read("b.txt").length, 43);
    // The drive's free space is what the quota leaves; a share's is its own filesystem's.
    assert.deepEqual(v.freeSpace("C:\\"), { available: 0, total: quota, free: 0 });
    assert.ok(v.freeSpace("C:\\shared").total > quota);
    expectCode(E.ERROR_DIRECTORY, () => v.freeSpace("readme.txt"));
    // A view over the same overlay, as after a restore, counts what it holds from the start.
    const again = view();
    expectCode(
      E.ERROR_DISK_FULL,
      () =>
        again.open("c.txt", openOptions({ write: true, disposition: W.CREATE_NEW })).file.write(new Uint8Array(1), 0),
    );
  }));

Deno.test("attributes: a bundle file is copied up to keep them, a share file keeps READONLY in its write bit, a restart sees them", () =>
  withDrive(({ view, share, overlay, bundle, reopen }) => {
    const { FILE_ATTRIBUTE_READONLY: READONLY, FILE_ATTRIBUTE_HIDDEN: HIDDEN, FILE_ATTRIBUTE_ARCHIVE: ARCHIVE } = W;
    assert.equal(view.attributes("readme.txt"), ARCHIVE);
    view.setAttributes("readme.txt", READONLY | HIDDEN);
    assert.equal(view.attributes("readme.txt"), READONLY | HIDDEN);
    assert.equal(
      Deno.statSync(`${overlay}/files/readme.txt`).mode! & 0o1201,
      0o1001,
      "copied up: no write, o+x, sticky",
    );
    assert.equal(decode(bundle.get("readme.txt")!), "hello bundle");
    assert.equal(readAll(view, "readme.txt"), "hello bundle");
    expectCode(E.ERROR_ACCESS_DENIED, () => view.open("readme.txt", openOptions({ write: true })), "write");
    expectCode(E.ERROR_ACCESS_DENIED, () => view.delete("readme.txt"), "delete");
    view.move("readme.txt", "renamed.txt", false);
    assert.equal(reopen().attributes("renamed.txt"), READONLY | HIDDEN, "a restart reads them from the mode");

    view.setAttributes("shared\\Host.txt", READONLY | HIDDEN);
    assert.equal(Deno.statSync(`${share}/Host.txt`).mode! & 0o201, 0, "the owner's write bit only");
    assert.equal(view.attributes("shared\\Host.txt"), READONLY | ARCHIVE, "a share keeps nothing but READONLY");
    view.setAttributes("shared\\Host.txt", 0);
    assert.equal(Deno.statSync(`${share}/Host.txt`).mode! & 0o200, 0o200);
    Deno.chmodSync(`${share}/Host.txt`, 0o755);
    assert.equal(view.attributes("shared\\Host.txt"), ARCHIVE, "the host's execute bits are not HIDDEN or SYSTEM");
    expectCode(E.ERROR_ACCESS_DENIED, () => view.setAttributes("mnt\\ro\\locked.txt", 0), "a read-only share");
    expectCode(E.ERROR_FILE_NOT_FOUND, () => view.setAttributes("missing.txt", 0));
    view.setAttributes("data", HIDDEN);
    assert.equal(view.attributes("data"), W.FILE_ATTRIBUTE_DIRECTORY, "a directory keeps none");
  }));
