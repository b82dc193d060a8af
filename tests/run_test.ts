// End to end: real C guests, packed into real bundles, run by the real `pvx`
// command on real KVM. Each test looks at what a user would see.

import assert from "node:assert/strict";
import { guestBundle, pvxCli, pvxScript, pvxStart, runGuest, whereKvm } from "./support/guests.ts";
import { EXIT_GUEST_FAILED, EXIT_PVX_ERROR, EXIT_TIMEOUT } from "../tools/report.ts";
import { encodeBundle, readBundle, writeBundle } from "../hv/bundle.ts";

Deno.test("hello: argv, the Windows command line and the exit code reach the guest", async () => {
  const r = await runGuest("hello", ["one", "two words", 'q"uote']);
  assert.equal(r.stderr, "");
  assert.equal(
    r.stdout,
    'argc=4\nargv[0]=hello\nargv[1]=one\nargv[2]=two words\nargv[3]=q"uote\ncmdline=hello one "two words" "q\\"uote"\n',
  );
  assert.equal(r.code, 4);
});

Deno.test("a signal that interrupts KVM setting the VM up (a profiler's SIGPROF every millisecond) is no failure", async () => {
  const profiles = await Deno.makeTempDir({ prefix: "pvx-profile-" });
  try {
    // Nested, KVM_CREATE_VM took long enough for a SIGPROF to end it with EINTR in two runs of three.
    const r = await whereKvm([
      "run",
      "-A",
      "--cpu-prof",
      `--cpu-prof-dir=${profiles}`,
      pvxScript,
      "run",
      await guestBundle("hello"),
    ]);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^argc=1\n/);
    assert.equal(r.code, 1);
  } finally {
    await Deno.remove(profiles, { recursive: true });
  }
});

Deno.test("exit codes: main's return value and ExitProcess both become the process status", async () => {
  for (const [args, code] of [[["0"], 0], [["7"], 7], [["255"], 255], [["42", "via-ExitProcess"], 42]] as const) {
    const r = await runGuest("exit_code", [...args]);
    assert.equal(r.code, code, `exit_code ${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr, "");
  }
});

Deno.test("--memory is the guest's RAM: a commit that does not fit in it is refused, one that fits is made", async () => {
  const refused = await runGuest("alloc", ["24"], ["--memory", "16"]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.equal(refused.stdout, "refused: error 8\n"); // ERROR_NOT_ENOUGH_MEMORY
  // VirtualAlloc has about half of guest RAM; the heap has the rest.
  const fits = await runGuest("alloc", ["24"], ["--memory", "96"]);
  assert.deepEqual([fits.code, fits.stdout], [0, "committed\n"], fits.stderr);
  // Without it, the bundle's own 64 MiB.
  const packed = await runGuest("alloc", ["80"]);
  assert.deepEqual([packed.code, packed.stdout], [1, "refused: error 8\n"], packed.stderr);
  const bad = await runGuest("alloc", [], ["--memory", "4"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--memory "4": expected MiB, a whole number from 8 to 1024/);
});

Deno.test("--max-handles, --overlay-quota and --cpu-limit: the guest gets the Win32 error, or is stopped, at its limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pvx-limits-" });
  try {
    // The console's three handles and the process heap are open already.
    const handles = await runGuest("limits", ["handles"], ["--max-handles", "10", "--overlay", `${dir}/h`]);
    assert.deepEqual([handles.code, handles.stdout], [1, "opening stopped after 6: error 4\n"], handles.stderr);
    const full = await runGuest("limits", ["disk", "100"], ["--overlay-quota", "64K", "--overlay", `${dir}/d`]);
    assert.deepEqual([full.code, full.stdout], [1, "writing stopped after 64: error 112\n"], full.stderr);
    assert.equal((await Deno.stat(`${dir}/d/files/fill.bin`)).size, 64 * 1024, "the refused write left nothing behind");
    const fits = await runGuest("limits", ["disk", "64"], ["--overlay-quota", "64K"]);
    assert.deepEqual([fits.code, fits.stdout], [0, "wrote 64 KiB\n"], fits.stderr);
    const spin = await runGuest("spin", [], ["--cpu-limit", "5s"]);
    assert.equal(spin.code, 152, spin.stderr);
    assert.equal(spin.stdout, "spinning\n");
    assert.match(
      spin.stderr,
      /used up its CPU-time limit of 5000 ms; stopped 1 thread\(s\):\n {2}thread \d+ \(vCPU 0\) at RIP/,
    );
    for (const [flag, value] of [["--max-handles", "4"], ["--overlay-quota", "lots"], ["--cpu-limit", "soon"]]) {
      const bad = await runGuest("spin", [], [flag, value]);
      assert.equal(bad.code, 2, `${flag} ${value}`);
      assert.match(bad.stderr, new RegExp(`${flag} "${value}": expected`));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function faultReport(kind: string): Promise<string> {
  const r = await runGuest("fault", [kind]);
  assert.equal(r.code, EXIT_GUEST_FAILED, r.stderr);
  assert.equal(r.stdout, "");
  return r.stderr;
}

Deno.test("a NULL write is a page fault reported with RIP, symbol and CR2", async () => {
  const report = await faultReport("null");
  assert.match(report, /#PF page fault \(vector 14\)/);
  assert.match(report, /at RIP 0x[0-9a-f]+ <main\+0x[0-9a-f]+>/);
  assert.match(report, /write of 0x0 \(NULL pointer\): page not mapped/);
  assert.match(report, /rax 0x[0-9a-f]{16}/);
});

Deno.test("a divide by zero is #DE in the function that divided", async () => {
  const report = await faultReport("divide");
  assert.match(report, /#DE divide error \(vector 0\)/);
  assert.match(report, /at RIP 0x[0-9a-f]+ <divide\+0x[0-9a-f]+>/);
});

Deno.test("app text is not writable and data is not executable", async () => {
  assert.match(await faultReport("text"), /write of 0x[0-9a-f]+: protection violation/);
  assert.match(await faultReport("xdata"), /instruction fetch of 0x[0-9a-f]+: protection violation/);
});

Deno.test("a stack overflow hits the guard page and still reports (IST stack)", async () => {
  const report = await faultReport("stack");
  assert.match(report, /#PF page fault/);
  assert.match(report, /<main\+0x[0-9a-f]+>/);
});

Deno.test("the app runs in ring 3 and cannot read the kernel's descriptor or page tables", async () => {
  assert.match(await faultReport("kernel"), /read of 0x10000: protection violation/);
  assert.match(await faultReport("pagetables"), /read of 0x100000: protection violation/);
  assert.match(await faultReport("kernel"), /cs 0x0023/);
});

Deno.test("pages the app made read-only or freed fault at once, though it had just used them", async () => {
  // The hypervisor may hold these translations (a TLB, or PVM's shadow of the tables):
  // VirtualProtect and VirtualFree must reach it, not only the guest's page tables.
  assert.match(await faultReport("readonly"), /write of 0x[0-9a-f]+: protection violation/);
  assert.match(await faultReport("freed"), /read of 0x[0-9a-f]+: page not mapped/);
});

Deno.test("an invalid opcode is #UD", async () => {
  assert.match(await faultReport("ud2"), /#UD invalid opcode \(vector 6\)/);
});

Deno.test("--timeout stops a guest spinning forever and names where it was", async () => {
  const r = await runGuest("spin", [], ["--timeout", "300ms"]);
  assert.equal(r.code, EXIT_TIMEOUT);
  // A slow machine (the nested accelerator) may stop the guest before it has printed, still in its start-up.
  const where = r.stdout === "spinning\n" ? "<main\\+0x[0-9a-f]+>" : "<[^>]+>";
  assert.match(r.stdout, /^(spinning\n)?$/);
  assert.match(
    r.stderr,
    new RegExp(
      `did not finish within 300 ms; stopped 1 thread\\(s\\):\n {2}thread 8 \\(vCPU 0\\) at RIP 0x[0-9a-f]+ ${where}`,
    ),
  );
});

Deno.test("Ctrl-C (SIGINT) or SIGTERM stops a spinning guest and names where it was", async () => {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    const pvx = pvxStart(["run", await guestBundle("spin")]);
    await pvx.printed("spinning\n");
    pvx.kill(signal);
    const r = await pvx.result;
    assert.equal(r.code, code);
    assert.equal(r.stdout, "spinning\n");
    assert.match(
      r.stderr,
      new RegExp(
        `^pvx: spin was interrupted by ${signal}; stopped 1 thread\\(s\\):\n {2}thread 8 \\(vCPU 0\\) at RIP 0x[0-9a-f]+ <main\\+0x[0-9a-f]+>\n$`,
      ),
    );
  }
});

Deno.test("--timeout also stops a guest waiting for console input that never comes", async () => {
  const r = await pvxCli(["run", "--timeout", "300ms", await guestBundle("reader")], {}, true);
  assert.equal(r.code, EXIT_TIMEOUT);
  assert.match(r.stderr, /did not finish within 300 ms/);
});

Deno.test("a console read returns what arrives on stdin, and 0 bytes at its end", async () => {
  const r = await pvxCli(["run", await guestBundle("reader")]);
  assert.equal(r.stdout, "read 0 bytes\n");
  assert.equal(r.code, 0);
  const typed = await pvxStart(["run", await guestBundle("reader")], "typed\n").result;
  assert.equal(typed.stdout, "read 6 bytes\n");
  assert.equal(typed.code, 0);
});

Deno.test("pointers outside guest RAM or mapped memory are refused to the guest, not fatal", async () => {
  const r = await runGuest("bad_pointers");
  assert.equal(r.stderr, "");
  for (
    const what of [
      "outside RAM",
      "NULL buffer",
      "past the end of RAM",
      "wrapping length",
      "written into text",
      "into the guard page",
    ]
  ) {
    assert.ok(r.stdout.includes(`${what}: refused\n`), `${what}:\n${r.stdout}`);
  }
  assert.ok(r.stdout.endsWith("still alive\n"));
  assert.equal(r.code, 0);
});

Deno.test("a frame the host cannot use stops the guest with the hypercall's name", async () => {
  for (const args of [[], ["outside-ram"]]) {
    const r = await runGuest("bad_frame", args);
    assert.equal(r.code, EXIT_GUEST_FAILED);
    assert.equal(r.stdout, "about to break the ABI\n");
    assert.match(
      r.stderr,
      /broke the hypercall ABI on thread 8 \(vCPU 0\) at RIP 0x[0-9a-f]+ <main\+0x[0-9a-f]+>: hypercall WriteFile: argument frame 0x(8|fffff000)\+48 is not mapped/,
    );
  }
});

Deno.test("a call the manifest does not allow stops the guest", async () => {
  const original = await readBundle(await guestBundle("hello"));
  const { files: _files, format: _format, ...manifest } = original.manifest;
  const path = (await Deno.makeTempDir()) + "/restricted.pvx";
  await writeBundle(
    path,
    await encodeBundle(
      { ...manifest, allowedCalls: manifest.allowedCalls.filter((c) => c !== "GetCommandLineW") },
      [...original.files].map(([p, bytes]) => ({ path: p, bytes })),
    ),
  );
  const r = await pvxCli(["run", path]);
  assert.equal(r.code, EXIT_GUEST_FAILED);
  assert.match(r.stderr, /hypercall GetCommandLineW: not allowed by this bundle's manifest/);
  await Deno.remove(path);
});

Deno.test("bad bundles and ELFs are refused with file and offset, and nothing runs", async () => {
  const dir = await Deno.makeTempDir();
  const good = await Deno.readFile(await guestBundle("hello"));
  await Deno.writeFile(`${dir}/truncated.pvx`, good.subarray(0, good.length - 1));
  const tampered = good.slice();
  tampered[tampered.length - 100] ^= 1;
  await Deno.writeFile(`${dir}/tampered.pvx`, tampered);
  await Deno.writeFile(
    `${dir}/notelf`,
    new TextEncoder().encode("#!/bin/sh\n# a shell script is no ELF, however long it is\necho hi\n".repeat(2)),
  );

  let r = await pvxCli(["run", `${dir}/truncated.pvx`]);
  assert.equal(r.code, EXIT_PVX_ERROR);
  assert.match(r.stderr, /truncated\.pvx: offset \d+: .*hello/);
  r = await pvxCli(["run", `${dir}/tampered.pvx`]);
  assert.equal(r.code, EXIT_PVX_ERROR);
  assert.match(r.stderr, /tampered\.pvx: offset \d+: .*sha256/i);
  r = await pvxCli(["pack", `${dir}/notelf`, "-o", `${dir}/x.pvx`]);
  assert.equal(r.code, EXIT_PVX_ERROR);
  assert.match(r.stderr, /notelf: offset 0x0: .*magic/i);
  r = await pvxCli(["run", `${dir}/missing.pvx`]);
  assert.equal(r.code, EXIT_PVX_ERROR);
  assert.match(r.stderr, /missing\.pvx/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("inspect lists the manifest: name, memory, allowed calls and hashed files", async () => {
  const r = await pvxCli(["inspect", await guestBundle("hello")]);
  assert.equal(r.code, 0, r.stderr);
  for (const s of ["hello", "WriteFile", "GetStdHandle", "GetCommandLineW", "hello.elf"]) {
    assert.ok(r.stdout.includes(s), s);
  }
  assert.match(r.stdout, /[0-9a-f]{64}/);
});
