// Whether this process can use /dev/kvm, and if not, why and what would fix it:
// pvx says so before it falls back to the nested accelerator or gives up.

export type KvmAccess = { ok: true } | { ok: false; cause: string; remedy: string };

function cpuFlags(): Set<string> {
  try {
    const line = /^flags\s*:(.*)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? "";
    return new Set(line.trim().split(/\s+/));
  } catch {
    return new Set();
  }
}

export function kvmAccess(path = "/dev/kvm"): KvmAccess {
  try {
    Deno.openSync(path, { read: true, write: true }).close();
    return { ok: true };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      const flags = cpuFlags();
      if (!flags.has("vmx") && !flags.has("svm")) {
        return {
          ok: false,
          cause: `${path} does not exist: this CPU has no virtualization extensions (no vmx or svm flag in ` +
            "/proc/cpuinfo; a virtual machine without nested virtualization looks like this)",
          remedy: "run on a host with VT-x or AMD-V, enable nested virtualization for this VM, or use --accel nested",
        };
      }
      const module = flags.has("vmx") ? "kvm_intel" : "kvm_amd";
      return {
        ok: false,
        cause: `${path} does not exist: the CPU has ${
          flags.has("vmx") ? "vmx" : "svm"
        }, but the kvm module is not loaded`,
        remedy: `modprobe ${module} as root (check that virtualization is enabled in the firmware)`,
      };
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      return {
        ok: false,
        cause: `no permission to open ${path} for reading and writing`,
        remedy: `add this user to the group that owns ${path} (usually kvm), then log in again`,
      };
    }
    return { ok: false, cause: `${path} cannot be opened: ${(e as Error).message}`, remedy: "check the kvm module" };
  }
}
