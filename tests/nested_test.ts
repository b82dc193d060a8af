// The nested accelerator's parsers of outside input (the job frames, kernel
// modules' .modinfo), the accelerator choice, and `pvx run` on a VM of its own.

import assert from "node:assert/strict";
import fc from "fast-check";
import { FrameWriter, Kind, MAX_PAYLOAD, ProtocolError, readFrames } from "../tools/nested/protocol.ts";
import { moduleInfo, moduleLoadOrder } from "../tools/nested/image.ts";
import { kvmAccess } from "../hv/kvm_access.ts";
import { fuzzRuns } from "./support/fuzz.ts";
import { guestBundle, pvxCli } from "./support/guests.ts";
import { EXIT_PVX_ERROR } from "../tools/report.ts";
import { NESTED_SOCKET_ENV } from "../tools/accel.ts";

/** A byte stream that hands out `bytes` in the given chunk sizes. */
function chunked(bytes: Uint8Array, sizes: number[]) {
  let at = 0, i = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, sizes[i++ % sizes.length], bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

async function encode(frames: { job: number; kind: Kind; payload: Uint8Array }[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const w = new FrameWriter({ write: (p) => (parts.push(p.slice()), Promise.resolve(p.length)) });
  await Promise.all(frames.map((f) => w.send(f.job, f.kind, f.payload)));
  return new Uint8Array(parts.flatMap((p) => [...p]));
}

async function decode(bytes: Uint8Array, sizes: number[]) {
  const out = [];
  for await (const f of readFrames(chunked(bytes, sizes), "test")) out.push(f);
  return out;
}

const kinds = Object.values(Kind).filter((k): k is Kind => typeof k === "number");

Deno.test("frames sent at once arrive whole and in order, however the stream splits them (fast-check)", async () => {
  const frame = fc.record({
    job: fc.nat(),
    kind: fc.constantFrom(...kinds),
    payload: fc.uint8Array({ maxLength: 300 }),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(frame, { maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 70 }), { minLength: 1 }),
      async (frames, sizes) => {
        assert.deepEqual(await decode(await encode(frames), sizes), frames.map((f) => ({ ...f })));
      },
    ),
    { numRuns: fuzzRuns },
  );
});

Deno.test("a truncated, oversized or unknown frame is refused with the byte it starts at (fast-check)", async () => {
  const good = await encode([{ job: 1, kind: Kind.Stdout, payload: new Uint8Array(10) }]);
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: good.length - 1 }), async (cut) => {
      await assert.rejects(decode(good.subarray(0, cut), [7]), /test: stream ended inside a frame at byte 0/);
    }),
    { numRuns: fuzzRuns },
  );
  const oversized = new Uint8Array([...good, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, Kind.Stdout]);
  await assert.rejects(decode(oversized, [64]), (e) => {
    assert.ok(e instanceof ProtocolError);
    assert.match(e.message, new RegExp(`test: frame at byte 19 claims 2147483647 bytes \\(at most ${MAX_PAYLOAD}\\)`));
    return true;
  });
  const unknown = new Uint8Array([...good, 0, 0, 0, 0, 1, 0, 0, 0, 99]);
  await assert.rejects(decode(unknown, [64]), /test: frame at byte 19 has unknown kind 99/);
  // Whatever the bytes, the reader yields frames or throws a ProtocolError, nothing else.
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
      try {
        await decode(bytes, [13]);
      } catch (e) {
        assert.ok(e instanceof ProtocolError, String(e));
      }
    }),
    { numRuns: fuzzRuns },
  );
});

/** A minimal ELF64 relocatable with a .modinfo section holding `info`. */
function fakeModule(info: string[]): Uint8Array {
  const shstrtab = new TextEncoder().encode("\0.modinfo\0.shstrtab\0");
  const modinfo = new TextEncoder().encode(info.join("\0") + "\0");
  const dataAt = 64, strAt = dataAt + modinfo.length, shoff = strAt + shstrtab.length;
  const bytes = new Uint8Array(shoff + 3 * 64);
  const v = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setBigUint64(0x28, BigInt(shoff), true);
  v.setUint16(0x3a, 64, true);
  v.setUint16(0x3c, 3, true);
  v.setUint16(0x3e, 2, true);
  bytes.set(modinfo, dataAt);
  bytes.set(shstrtab, strAt);
  const section = (i: number, name: number, offset: number, size: number) => {
    v.setUint32(shoff + i * 64, name, true);
    v.setBigUint64(shoff + i * 64 + 0x18, BigInt(offset), true);
    v.setBigUint64(shoff + i * 64 + 0x20, BigInt(size), true);
  };
  section(1, 1, dataAt, modinfo.length);
  section(2, 10, strAt, shstrtab.length);
  return bytes;
}

Deno.test("kernel modules load after what they depend on; a missing one is named", async () => {
  const tree = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${tree}/a/b`, { recursive: true });
    const mod = (path: string, depends: string) =>
      Deno.writeFile(`${tree}/${path}`, fakeModule(["license=GPL", `depends=${depends}`, "name=x"]));
    await mod("a/kvm-amd.ko", "kvm,ccp");
    await mod("a/b/kvm.ko", "irqbypass");
    await mod("irqbypass.ko", "");
    await mod("a/ccp.ko", "");
    await mod("a/orphan.ko", "gone");
    const order = (await moduleLoadOrder(tree, ["kvm_amd"])).map((m) => m.name);
    assert.deepEqual(order, ["irqbypass", "kvm", "ccp", "kvm_amd"]);
    await assert.rejects(moduleLoadOrder(tree, ["orphan"]), new RegExp(`kernel module gone is not in ${tree}`));
  } finally {
    await Deno.remove(tree, { recursive: true });
  }
});

Deno.test("a damaged kernel module is refused with its file and what is wrong, never misread (fast-check)", () => {
  const good = fakeModule(["depends=virtio,virtio_ring", "vermagic=6.1"]);
  assert.equal(moduleInfo(good, "m.ko").get("depends"), "virtio,virtio_ring");
  fc.assert(
    fc.property(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 }), (at, byte) => {
      const bad = good.slice();
      bad[at] = byte;
      try {
        const info = moduleInfo(bad, "m.ko");
        assert.ok(info instanceof Map);
      } catch (e) {
        assert.match((e as Error).message, /^m\.ko: not a 64-bit ELF kernel module: /);
      }
    }),
    { numRuns: fuzzRuns },
  );
  assert.throws(
    () => moduleInfo(good.subarray(0, 40), "m.ko"),
    /m\.ko: not a 64-bit ELF kernel module: no ELF64 header/,
  );
});

Deno.test("without a usable KVM device, the reason names the path and a remedy", () => {
  const access = kvmAccess("/nonexistent/kvm");
  assert.equal(access.ok, false);
  if (!access.ok) {
    assert.match(access.cause, /^\/nonexistent\/kvm does not exist: /);
    assert.ok(access.remedy.length > 0);
  }
});

Deno.test("--accel kvm is refused with the cause where /dev/kvm cannot be used, and runs where it can", async () => {
  const r = await pvxCli(["run", "--accel", "kvm", await guestBundle("hello")]);
  const access = kvmAccess();
  if (access.ok) {
    assert.equal(r.code, 1, r.stderr); // hello exits with its argument count
  } else {
    assert.equal(r.code, EXIT_PVX_ERROR);
    assert.equal(r.stderr, `pvx: --accel kvm: ${access.cause}. To fix: ${access.remedy}\n`);
  }
  const bad = await pvxCli(["run", "--accel", "tcg", "x.pvx"]);
  assert.equal(bad.code, EXIT_PVX_ERROR);
  assert.equal(bad.stderr, 'pvx: --accel "tcg": expected one of auto, kvm, nested\n');
});

Deno.test("pvx run --accel nested boots a VM of its own and behaves as on the host's KVM", async () => {
  const overlay = await Deno.makeTempDir({ prefix: "pvx-nested-overlay-" });
  try {
    const r = await pvxCli(
      ["run", "--accel", "nested", "--overlay", overlay, await guestBundle("hello"), "--", "a b", "c"],
      { [NESTED_SOCKET_ENV]: "" },
    );
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, 'argc=3\nargv[0]=hello\nargv[1]=a b\nargv[2]=c\ncmdline=hello "a b" c\n');
    assert.match(
      r.stderr,
      // A host with its own KVM has no nested kernel prepared by the setup step: the first run fetches it.
      /^(pvx: nested: (downloading|unpacking|building) .*\n)*pvx: nested: booting linux-image-\S+ in QEMU TCG \(emulated AMD SVM, 2 vCPUs, \d+ MiB\)\npvx: nested: ready in [\d.]+ s\n$/,
    );
  } finally {
    await Deno.remove(overlay, { recursive: true });
  }
});
