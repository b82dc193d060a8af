// The nested accelerator's boot image: a Debian kernel and a busybox initramfs
// that loads KVM, mounts the host's root over 9p and starts the agent. Built
// once per kernel version into ~/.cache/pvx/nested/<version>/, never touching
// the host's /boot or module tree.

import { join } from "../../abi/host_path.ts";
import { initScript } from "./init.ts";
import { cacheRoot } from "../cache_dir.ts";
import { ensureInstalled, type Need } from "../packages.ts";
import { hexBytes } from "../../abi/hex.ts";

const progress = (what: string) => console.error(`pvx: ${what}`);

/** The modules the initramfs loads, in order; each one's `depends=` is loaded before it. */
const wantedModules = ["virtio_pci", "virtio_console", "9pnet_virtio", "9p", "kvm_amd"];

/**
 * pvx's guests need neither a virtual GIF nor nested SVM of their own, and QEMU's TCG emulation
 * of those is where a helper kernel was seen spinning at VMRUN with interrupts off: keep KVM off them.
 * Nor do they need KVM's iTLB-multihit workaround (NX huge pages), whose recovery thread is where
 * the helper kernel's soft lockups were seen (kvm-nx-lpage-recovery holding the MMU lock while a
 * vCPU thread spun on it): "never" keeps that thread from being created at all.
 */
const moduleParameters: Record<string, string> = { kvm: "nx_huge_pages=never", kvm_amd: "vgif=0 nested=0" };

export interface NestedImage {
  version: string;
  kernel: string;
  initrd: string;
}

/** A piece the image needs that this machine does not have, and what brings it. */
export class MissingPiece extends Error {
  constructor(piece: string, remedy: string) {
    super(`the nested accelerator needs ${piece}: ${remedy}`);
  }
}

async function output(cmd: string, args: string[], cwd?: string): Promise<string> {
  let out;
  try {
    out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new MissingPiece(`the command ${cmd}`, `install it`);
    throw e;
  }
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed (exit ${out.code}): ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

export const qemuBinary = "qemu-system-x86_64";
export const busyboxBinary = "/bin/busybox";

/** What the VM needs installed on the host; whoever boots it installs them first (as root). */
export const nestedNeeds: Need[] = [
  { command: qemuBinary, packages: ["qemu-system-x86"] },
  // Debian's plain busybox is linked dynamically, and the initramfs has no libc.
  { test: `test -x ${busyboxBinary} && ! ldd ${busyboxBinary}`, packages: ["busybox-static"] },
];

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The Debian kernel package that linux-image-amd64 stands for today, as apt sees it. */
async function kernelPackage(): Promise<string> {
  const depends = async () =>
    /Depends: (linux-image-[^\s]+-amd64)\b/.exec(
      await output("apt-cache", ["depends", "linux-image-amd64"]).catch(() => ""),
    )?.[1];
  let name = await depends();
  if (!name && Deno.uid() === 0) {
    progress("nested: apt-get update (the package lists have no kernel package)");
    await output("apt-get", ["update", "-q"]);
    name = await depends();
  }
  if (!name) {
    throw new MissingPiece(
      "a Debian kernel package (linux-image-amd64)",
      "apt's lists do not name one; run apt-get update as root, then again",
    );
  }
  return name;
}

export function nestedCacheDir(): string {
  return join(cacheRoot(), "nested");
}

/** The boot image, built on first use and reused after. */
export async function nestedImage(): Promise<NestedImage> {
  await ensureInstalled(nestedNeeds, "the nested accelerator");
  const pkg = await kernelPackage();
  // A new init script or module set makes a new image, beside the old one.
  const recipe = JSON.stringify({ initScript, wantedModules, moduleParameters });
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(recipe)));
  const dir = join(
    nestedCacheDir(),
    `${pkg}-${hexBytes(digest.subarray(0, 4))}`,
  );
  const image = { version: pkg, kernel: join(dir, "vmlinuz"), initrd: join(dir, "initrd.cpio") };
  if (await exists(join(dir, "ready"))) return image;

  await Deno.mkdir(nestedCacheDir(), { recursive: true });
  const work = await Deno.makeTempDir({ dir: nestedCacheDir(), prefix: `${pkg}.tmp-` });
  try {
    progress(`nested: downloading ${pkg}`);
    await output("apt-get", ["download", "-q", pkg], work).catch((e) => {
      throw new MissingPiece(`the kernel package ${pkg}`, `apt-get download failed: ${(e as Error).message}`);
    });
    const deb = [...Deno.readDirSync(work)].find((e) => e.name.endsWith(".deb"))!.name;
    progress(`nested: unpacking ${deb}`);
    const root = join(work, "root");
    await output("dpkg-deb", ["-x", join(work, deb), root]);
    const release = [...Deno.readDirSync(join(root, "lib/modules"))][0].name;
    await Deno.copyFile(join(root, "boot", `vmlinuz-${release}`), join(work, "vmlinuz"));

    progress("nested: building the initramfs");
    const initrd = join(work, "initrd");
    await Deno.mkdir(join(initrd, "bin"), { recursive: true });
    await Deno.mkdir(join(initrd, "modules"));
    await Deno.copyFile(busyboxBinary, join(initrd, "bin/busybox"));
    await Deno.chmod(join(initrd, "bin/busybox"), 0o755);
    const order = await moduleLoadOrder(join(root, "lib/modules", release, "kernel"), wantedModules);
    for (const m of order) await Deno.copyFile(m.path, join(initrd, "modules", `${m.name}.ko`));
    await Deno.writeTextFile(
      join(initrd, "modules/order"),
      order.map((m) => `${m.name} ${moduleParameters[m.name] ?? ""}`.trim()).join("\n") + "\n",
    );
    await Deno.writeTextFile(join(initrd, "init"), initScript, { mode: 0o755 });
    await output("sh", [
      "-c",
      `cd ${initrd} && ${busyboxBinary} find . | ${busyboxBinary} cpio -o -H newc > ../initrd.cpio 2>/dev/null`,
    ]);
    await Deno.remove(root, { recursive: true });
    await Deno.remove(initrd, { recursive: true });
    await Deno.remove(join(work, deb));
    await Deno.writeTextFile(join(work, "ready"), `${pkg} ${release}\n`);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.rename(work, dir);
    // Images of other kernels or recipes are never booted again.
    for (const e of Deno.readDirSync(nestedCacheDir())) {
      const path = join(nestedCacheDir(), e.name);
      if (path !== dir && !e.name.includes(".tmp-") && await exists(join(path, "ready"))) {
        await Deno.remove(path, { recursive: true });
      }
    }
  } catch (e) {
    await Deno.remove(work, { recursive: true }).catch(() => {});
    throw e;
  }
  return image;
}

interface KernelModule {
  name: string;
  path: string;
}

/** `wanted` and everything they depend on, each after its dependencies, found by name under `tree`. */
export async function moduleLoadOrder(tree: string, wanted: string[]): Promise<KernelModule[]> {
  const byName = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) walk(p);
      else if (e.name.endsWith(".ko")) byName.set(e.name.slice(0, -3).replaceAll("-", "_"), p);
    }
  };
  walk(tree);
  const order: KernelModule[] = [];
  const visiting = new Set<string>();
  const visit = async (name: string) => {
    const key = name.replaceAll("-", "_");
    if (order.some((m) => m.name === key) || visiting.has(key)) return;
    const path = byName.get(key);
    if (!path) throw new Error(`kernel module ${name} is not in ${tree}`);
    visiting.add(key);
    for (const dep of moduleInfo(await Deno.readFile(path), path).get("depends")?.split(",").filter(Boolean) ?? []) {
      await visit(dep);
    }
    order.push({ name: key, path });
  };
  for (const w of wanted) await visit(w);
  return order;
}

/** The key=value pairs of a kernel module's .modinfo section. */
export function moduleInfo(ko: Uint8Array, file: string): Map<string, string> {
  const view = new DataView(ko.buffer, ko.byteOffset, ko.byteLength);
  const bad = (why: string) => new Error(`${file}: not a 64-bit ELF kernel module: ${why}`);
  if (ko.length < 64 || view.getUint32(0) !== 0x7f454c46 || ko[4] !== 2) throw bad("no ELF64 header");
  const shoff = Number(view.getBigUint64(0x28, true));
  const shentsize = view.getUint16(0x3a, true);
  const shnum = view.getUint16(0x3c, true);
  const shstrndx = view.getUint16(0x3e, true);
  if (shoff + shnum * shentsize > ko.length || shstrndx >= shnum) throw bad(`section table at ${shoff} out of range`);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: view.getUint32(at, true),
      offset: Number(view.getBigUint64(at + 0x18, true)),
      size: Number(view.getBigUint64(at + 0x20, true)),
    };
  };
  const strtab = section(shstrndx);
  const dec = new TextDecoder();
  const nameOf = (off: number) => {
    const start = strtab.offset + off;
    return dec.decode(ko.subarray(start, ko.indexOf(0, start)));
  };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (nameOf(s.name) !== ".modinfo") continue;
    if (s.offset + s.size > ko.length) throw bad(`.modinfo at ${s.offset} out of range`);
    const info = new Map<string, string>();
    for (const entry of dec.decode(ko.subarray(s.offset, s.offset + s.size)).split("\0")) {
      const eq = entry.indexOf("=");
      if (eq > 0) info.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
    return info;
  }
  throw bad("no .modinfo section");
}
