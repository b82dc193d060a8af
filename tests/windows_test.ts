// Unmodified Windows programs (built by mingw against the real kernel32) run
// in pvx micro-VMs, and behave exactly as under Wine, except where Wine itself
// departs from Windows (tests/win32/wine_divergences.md).

import assert from "node:assert/strict";
import {
  asWindows,
  buildDefaultMingw,
  buildExeImportingAbsentDll,
  buildExeWithDll,
  buildWindowsExe,
  notJudgedByWine,
  pvxOnly,
  win32Dir,
  win32Programs,
} from "./support/win32.ts";
import { pvxCli } from "./support/guests.ts";
import { EXIT_GUEST_FAILED, EXIT_PVX_ERROR } from "../tools/report.ts";
import { WINE_DLL_DIR } from "../tools/pack.ts";

const dir = await Deno.makeTempDir({ prefix: "pvx-windows-" });
const cache = `${dir}/bundle-cache`;
// One Wine prefix for every run in this process: creating it takes Wine tens of seconds.
const winePrefix = `${dir}/wine-prefix`;
globalThis.addEventListener("unload", () => {
  // wineserver outlives its last client for a while and writes the prefix as it exits: end it first.
  for (const args of [["-k"], ["-w"]]) {
    new Deno.Command("wineserver", { args, env: { WINEPREFIX: winePrefix }, stdout: "null", stderr: "null" })
      .outputSync();
  }
  Deno.removeSync(dir, { recursive: true });
});
const env = { PVX_TEST_VAR: "hello-env" };

async function wine(exe: string, cwd: string, args: string[] = []): Promise<{ code: number; stdout: string }> {
  const out = await new Deno.Command("wine", {
    args: [exe, ...args],
    cwd,
    stdout: "piped",
    stderr: "null",
    stdin: "null",
    // A pvx app runs in UTC; Wine takes the host's zone, so it is told UTC too.
    env: { ...env, WINEPREFIX: winePrefix, WINEDEBUG: "-all", TZ: "UTC" },
  }).output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}

/** Every file under `root` with its content, by relative path. */
async function tree(root: string, skip: ReadonlySet<string> = new Set()): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${root}/${rel}`)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (skip.has(path)) continue;
      if (e.isDirectory) {
        files.set(`${path}/`, "");
        await walk(path);
      } else files.set(path, await Deno.readTextFile(`${root}/${path}`));
    }
  };
  await walk("");
  return files;
}

function pvxRun(exe: string, overlay: string, extra: string[] = [], args: string[] = []) {
  const guestArgs = args.length ? ["--", ...args] : [];
  return pvxCli(
    ["run", "--overlay", overlay, "--env", `PVX_TEST_VAR=${env.PVX_TEST_VAR}`, ...extra, exe, ...guestArgs],
    {
      PVX_CACHE_DIR: cache,
    },
  );
}

for (const name of (await win32Programs()).filter((n) => notJudgedByWine.has(n))) {
  Deno.test(`${name}.exe prints what Windows documents`, async () => {
    const underPvx = await pvxRun(await buildWindowsExe(name, dir), await Deno.makeTempDir({ dir }));
    assert.equal(underPvx.stderr, "");
    assert.equal(underPvx.stdout, await Deno.readTextFile(`${win32Dir}${name}.expected`));
    assert.equal(underPvx.code, 0);
  });
}

for (const name of (await win32Programs()).filter((n) => !pvxOnly.has(n) && !notJudgedByWine.has(n))) {
  Deno.test(`${name}.exe prints, exits and leaves files as under Wine`, async () => {
    const exe = await buildWindowsExe(name, dir);
    const wineCwd = await Deno.makeTempDir({ dir }), overlay = await Deno.makeTempDir({ dir });
    const underWine = await wine(exe, wineCwd);
    const underPvx = await pvxRun(exe, overlay);
    assert.equal(underPvx.stderr, "");
    assert.equal(underPvx.stdout, asWindows(name, underWine.stdout));
    assert.equal(underPvx.code, underWine.code);
    assert.deepEqual(await tree(`${overlay}/files`), await tree(wineCwd));
  });
}

const crtDir = new URL("./crt/", import.meta.url).pathname;
const crtArgs = ["a", "b c", "-x"];
const crtStderr: Record<string, string> = {
  crt: "to stderr\r\n",
  jumps: "pvx: unhandled exception 0xe0000002 in the app: it ends with that code\n",
};

for await (const e of Deno.readDir(crtDir)) {
  if (!/\.(c|cpp)$/.test(e.name)) continue;
  const name = e.name.replace(/\.[^.]+$/, "");
  // libstdc++ is built for msvcrt, so only the C programs are also built against the Universal CRT, and as MSVC
  // links, with VCRUNTIME140.dll too.
  for (const crt of e.name.endsWith(".c") ? ["msvcrt", "ucrt", "vcruntime"] as const : ["msvcrt"] as const) {
    const against = crt === "vcruntime" ? "ucrt and VCRUNTIME140 as MSVC links" : crt;
    Deno.test(`${e.name}, built the default way against ${against}, prints, exits and leaves files as under Wine`, async () => {
      const exe = await buildDefaultMingw(`${crtDir}${e.name}`, await Deno.makeTempDir({ dir }), crt);
      if (crt === "vcruntime") {
        assert.match((await pvxCli(["analyse", exe])).stdout, /^bundles vcruntime140\.dll from /m);
      }
      const wineCwd = await Deno.makeTempDir({ dir }), overlay = await Deno.makeTempDir({ dir });
      const underWine = await wine(exe, wineCwd, crtArgs);
      const underPvx = await pvxRun(exe, overlay, [], crtArgs);
      assert.equal(underPvx.stderr, crtStderr[name] ?? "");
      assert.equal(underPvx.stdout, underWine.stdout);
      assert.equal(underPvx.code, underWine.code);
      assert.deepEqual(await tree(`${overlay}/files`), await tree(wineCwd));
    });
  }
}

Deno.test("a default mingw exe's bundle carries its system DLLs: it runs with the DLL source gone", async () => {
  const work = await Deno.makeTempDir({ dir });
  const exe = await buildDefaultMingw(`${crtDir}hello.c`, work);
  const source = `${work}/dlls`;
  await Deno.mkdir(source);
  await Deno.copyFile(`${WINE_DLL_DIR}/msvcrt.dll`, `${source}/msvcrt.dll`);
  const analysed = await pvxCli(["analyse", exe, "--dll-dir", source]);
  assert.match(
    analysed.stdout,
    new RegExp(`^bundles msvcrt\\.dll from ${source}/msvcrt\\.dll \\(system\\), sha256 [0-9a-f]{64}$`, "m"),
  );
  assert.match(analysed.stdout, /^bundles pvxrt\.dll from pvx/m);
  assert.match(analysed.stdout, /^kernel32\/ntdll coverage: \d+ of \d+ imports implemented \(\d+\.\d%\)$/m);
  assert.match(analysed.stdout, /hello\.exe imports msvcrt\.dll:\n( {2}\w+ +\w+\n)* {2}shipped +vfprintf\n/);
  const packed = await pvxCli(["pack", exe, "--dll-dir", source, "-o", `${work}/hello.pvx`]);
  assert.equal(packed.code, 0, packed.stderr);
  await Deno.remove(source, { recursive: true });
  const ran = await pvxCli(["run", `${work}/hello.pvx`, "--", "x"]);
  assert.equal(ran.stdout, 'hello, world! 1 argument(s), pi is 3.142\r\nargv[1] = "x"\r\n'); // msvcrt's text mode
  assert.equal(ran.code, 7);
  const inspected = await pvxCli(["inspect", `${work}/hello.pvx`]);
  assert.match(inspected.stdout, /[0-9a-f]{64} {2}msvcrt\.dll\n/);
  // Without a DLL source, msvcrt is nowhere: the pack refuses and names it.
  const bare = await pvxCli(["pack", exe, "--dll-dir", `${work}/nothing`, "-o", `${work}/bare.pvx`]);
  assert.equal(bare.code, EXIT_PVX_ERROR);
  assert.match(bare.stderr, /needs imports pvx does not implement: .*msvcrt\.dll!vfprintf/);
});

Deno.test("a fault a default mingw exe does not handle ends it with pvx's report at the faulting instruction", async () => {
  const work = await Deno.makeTempDir({ dir });
  await Deno.writeTextFile(
    `${work}/crash.c`,
    '#include <stdio.h>\nstatic volatile int *p;\nint main(void) { puts("before"); fflush(stdout); *p = 5; return 0; }\n',
  );
  const exe = await buildDefaultMingw(`${work}/crash.c`, work);
  const ran = await pvxRun(exe, await Deno.makeTempDir({ dir }));
  assert.equal(ran.stdout, "before\r\n");
  assert.equal(ran.code, EXIT_GUEST_FAILED);
  assert.match(
    ran.stderr,
    /#PF page fault .*\n {2}at RIP 0x[0-9a-f]+ <crash\.exe!main\+0x[0-9a-f]+>\n {2}write of 0x0 \(NULL pointer\)/,
  );
});

Deno.test("what a one-app VM and its drive lack fails with Windows' errors: child processes, pipes, console input events, links", async () => {
  const work = await Deno.makeTempDir({ dir });
  await Deno.writeTextFile(
    `${work}/alone.c`,
    `#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
static void show(const char *what, BOOL ok) { printf("%s: %d, error %lu\\n", what, ok, ok ? 0ul : GetLastError()); }
int main(void) {
  STARTUPINFOW si = { sizeof si };
  PROCESS_INFORMATION pi;
  WCHAR cmd[] = L"cmd /c echo hi";
  HANDLE r, w, in = GetStdHandle(STD_INPUT_HANDLE);
  INPUT_RECORD rec;
  DWORD n, mode;
  show("CreateProcessW", CreateProcessW(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
  show("CreatePipe", CreatePipe(&r, &w, NULL, 0));
  show("GetConsoleMode(stdin)", GetConsoleMode(in, &mode));
  show("ReadConsoleInputW(stdin)", ReadConsoleInputW(in, &rec, 1, &n));
  show("PeekConsoleInputA(stdin)", PeekConsoleInputA(in, &rec, 1, &n));
  show("CreateSymbolicLinkW", CreateSymbolicLinkW(L"link.txt", L"target.txt", 0));
  show("CreateHardLinkA", CreateHardLinkA("link.txt", "target.txt", NULL));
  fflush(stdout);
  printf("system() = %d\\n", system("echo from a child"));
  return 0;
}
`,
  );
  const exe = await buildDefaultMingw(`${work}/alone.c`, work);
  const ran = await pvxRun(exe, await Deno.makeTempDir({ dir }));
  assert.equal(ran.stderr, "");
  assert.equal(
    ran.stdout,
    [
      "CreateProcessW: 0, error 50", // ERROR_NOT_SUPPORTED
      "CreatePipe: 0, error 50",
      "GetConsoleMode(stdin): 0, error 6", // ERROR_INVALID_HANDLE: a redirected handle's answer
      "ReadConsoleInputW(stdin): 0, error 6",
      "PeekConsoleInputA(stdin): 0, error 6",
      "CreateSymbolicLinkW: 0, error 1314", // ERROR_PRIVILEGE_NOT_HELD: a standard user's answer
      "CreateHardLinkA: 0, error 1", // ERROR_INVALID_FUNCTION: a volume without hard links
      "system() = -1",
      "",
    ].join("\r\n"),
  );
  assert.equal(ran.code, 0);
});

Deno.test("a shipped DLL loads, DllMain runs, imports bind by name and ordinal, GetProcAddress finds exports", async () => {
  const exe = await buildExeWithDll(await Deno.makeTempDir({ dir }));
  const underWine = await wine(exe, await Deno.makeTempDir({ dir }));
  // What the exe's bytes name is seen; the ordinal and the names made at run time take a trace.
  const work = await Deno.makeTempDir({ dir }), trace = `${work}/useadder.trace`;
  const analysed = await pvxCli(["analyse", "--trace", "-o", trace, exe]);
  assert.equal(analysed.code, 0, analysed.stderr);
  for (
    const line of [
      "adder.dll!#5",
      "kernel32.dll!QueryPerformanceFrequency",
      "adder.dll!nope (not found)",
      "nowhere.dll (not in the bundle)",
    ]
  ) assert.ok(analysed.stdout.split("\n").includes(`  ${line}`), line);
  const packed = await pvxCli(["pack", "--trace", trace, exe, "-o", `${work}/useadder.pvx`]);
  assert.equal(packed.code, 0, packed.stderr);
  const underPvx = await pvxCli(["run", `${work}/useadder.pvx`]);
  for (
    const line of [
      "add(2, 3) after DllMain ran = 5",
      "mul(6, 7) by ordinal = 42",
      "GetProcAddress(adder, #5)(3, 4) = 12",
      "GetProcAddress(kernel32, a name made at run time) works = 1",
    ]
  ) {
    assert.ok(underPvx.stdout.includes(`  ${line}\n`), line);
  }
  assert.equal(underPvx.stdout, underWine.stdout);
  assert.equal(underPvx.stderr, "");
  assert.equal(underPvx.code, 0);
  const inspected = await pvxCli(["inspect", `${work}/useadder.pvx`]);
  assert.match(inspected.stdout, /^special calls: deny, /m);
  assert.match(inspected.stdout, /^ {2}adder\.dll {2}\/.*\/adder\.dll$/m);
});

Deno.test("special calls: what the analysis never saw is denied, allowed or stops the app, as the policy says", async (t) => {
  const exe = await buildExeWithDll(await Deno.makeTempDir({ dir }));
  const underWine = await wine(exe, await Deno.makeTempDir({ dir }));
  const unseen = (what: string) => `pvx: special call: ${what}, which the bundle's analysis never saw`;
  const ordinal = "GetProcAddress(adder.dll, #5)", qpf = "GetProcAddress(kernel32.dll, QueryPerformanceFrequency)";
  const library = "LoadLibrary(nowhere.dll)";

  await t.step(
    "deny, the default: the Win32 error the app would get for something absent, and a log line",
    async () => {
      const ran = await pvxRun(exe, await Deno.makeTempDir({ dir }));
      assert.equal(ran.code, 0);
      const expected = underWine.stdout
        .replace("GetProcAddress(adder, #5)(3, 4) = 12", "GetProcAddress(adder, #5)(3, 4) = -1")
        .replace("a name made at run time) works = 1", "a name made at run time) works = 0");
      assert.notEqual(expected, underWine.stdout);
      assert.equal(ran.stdout, expected);
      assert.equal(
        ran.stderr,
        [
          `${unseen(ordinal)}, denied (Win32 error 127; pvx analyse --trace records it)`,
          `${unseen(qpf)}, denied (Win32 error 127; pvx analyse --trace records it)`,
          `${unseen(library)}, denied (Win32 error 126; pvx analyse --trace records it)`,
          "",
        ].join("\n"),
      );
    },
  );

  await t.step(
    "allow: the app runs as under Wine, each one logged and traced, the call beyond the manifest too",
    async () => {
      const trace = `${await Deno.makeTempDir({ dir })}/trace`;
      const ran = await pvxRun(exe, await Deno.makeTempDir({ dir }), ["--special-calls", "allow", "--trace", trace]);
      assert.equal(ran.code, 0);
      assert.equal(ran.stdout, underWine.stdout);
      const allowed = (what: string) => `${unseen(what)}, allowed and recorded`;
      assert.equal(
        ran.stderr,
        [allowed(ordinal), allowed(qpf), allowed("hypercall QueryPerformanceFrequency"), allowed(library), ""].join(
          "\n",
        ),
      );
      const events = (await Deno.readTextFile(trace)).trim().split("\n").map((l) => JSON.parse(l));
      for (
        const e of [
          { kind: "proc", module: "adder.dll", name: "#5", found: true },
          { kind: "call", name: "QueryPerformanceFrequency" },
          { kind: "library", name: "nowhere.dll", found: false },
        ]
      ) assert.ok(events.some((x) => JSON.stringify(x) === JSON.stringify(e)), JSON.stringify(e));
    },
  );

  await t.step("stop: the app ends at the first one, which the report names", async () => {
    const ran = await pvxRun(exe, await Deno.makeTempDir({ dir }), ["--special-calls", "stop"]);
    assert.equal(ran.code, EXIT_GUEST_FAILED);
    assert.ok(ran.stdout.endsWith("GetProcAddress(adder, add)(20, 22) = 42\n"), ran.stdout);
    assert.match(
      ran.stderr,
      /^pvx: useadder was stopped on thread \d+ \(vCPU \d+\) at RIP 0x[0-9a-f]+ <[^>]+> by a special call: GetProcAddress\(adder\.dll, #5\), which the bundle's analysis never saw; the policy is stop\n$/,
    );
  });

  await t.step("a pack's policy is the bundle's, and a run may override it", async () => {
    const bundle = `${await Deno.makeTempDir({ dir })}/useadder.pvx`;
    assert.equal((await pvxCli(["pack", "--special-calls", "stop", exe, "-o", bundle])).code, 0);
    assert.equal((await pvxCli(["run", bundle])).code, EXIT_GUEST_FAILED);
    const allowed = await pvxCli(["run", "--special-calls", "allow", bundle]);
    assert.equal(allowed.stdout, underWine.stdout);
    const bad = await pvxCli(["pack", "--special-calls", "ask", exe, "-o", bundle]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--special-calls "ask": expected one of deny, allow, stop/);
  });
});

Deno.test("pvx run app.exe packs it once into the bundle cache and reuses it", async () => {
  const exe = await buildWindowsExe("process", await Deno.makeTempDir({ dir }));
  await pvxRun(exe, await Deno.makeTempDir({ dir }));
  const bundles = async () => {
    const found: [string, number][] = [];
    for await (const e of Deno.readDir(cache)) {
      found.push([e.name, (await Deno.stat(`${cache}/${e.name}`)).mtime!.getTime()]);
    }
    return found.sort();
  };
  const first = await bundles();
  const again = await pvxRun(exe, await Deno.makeTempDir({ dir }));
  assert.equal(again.code, 0);
  assert.deepEqual(await bundles(), first);
});

Deno.test("imports pvx lacks: analyse lists them, pack refuses, --allow-missing stops at the first call", async () => {
  const exe = await buildExeImportingAbsentDll(await Deno.makeTempDir({ dir }));
  const analysed = await pvxCli(["analyse", exe]);
  assert.equal(analysed.code, 1);
  assert.match(analysed.stdout, /absent\.exe imports absent\.dll:\n {2}missing +Frobnicate\n/);
  assert.match(analysed.stdout, /implemented +GetLastError/);
  const packed = await pvxCli(["pack", exe, "-o", `${dir}/absent.pvx`]);
  assert.equal(packed.code, EXIT_PVX_ERROR);
  assert.match(packed.stderr, /needs imports pvx does not implement: absent\.dll!Frobnicate \(/);
  const ran = await pvxRun(exe, await Deno.makeTempDir({ dir }), ["--allow-missing"]);
  assert.equal(ran.code, EXIT_GUEST_FAILED);
  assert.match(ran.stderr, /called absent\.dll!Frobnicate, which pvx does not implement/);
});
