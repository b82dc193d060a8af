// The libc symbols pvx calls, each with its C prototype. Every call is
// synchronous: a `nonblocking` call would hop threads, which KVM punishes.
// statvfs and getrusage stand in for node:fs and node:process, which would cost
// every pvx process and vCPU thread the loading of Deno's Node layer.

import { array, struct } from "./layout.ts";

export const libcSymbols = {
  // int open(const char *path, int flags, mode_t mode);
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, void *arg);
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int ioctl(int fd, unsigned long request, unsigned long arg);
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  // void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  // int munmap(void *addr, size_t len);
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count);
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // ssize_t pread(int fd, void *buf, size_t count, off_t offset);
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  // int memfd_create(const char *name, unsigned int flags);
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  // off_t lseek(int fd, off_t offset, int whence);
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  // int mincore(void *addr, size_t len, unsigned char *vec);
  mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
  // int mprotect(void *addr, size_t len, int prot);
  mprotect: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
  // pid_t getpid(void);
  getpid: { parameters: [], result: "i32" },
  // pid_t getppid(void);
  getppid: { parameters: [], result: "i32" },
  // pid_t gettid(void);
  gettid: { parameters: [], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout_ms);
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  // int sched_yield(void);
  sched_yield: { parameters: [], result: "i32" },
  // int tgkill(pid_t tgid, pid_t tid, int sig);
  tgkill: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int statvfs(const char *path, struct statvfs *buf);
  statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
  // int getrusage(int who, struct rusage *usage);
  getrusage: { parameters: ["i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof libcSymbols> | undefined;

/** libc, opened once per thread (each Worker has its own isolate). */
export function libc(): Deno.DynamicLibrary<typeof libcSymbols>["symbols"] {
  lib ??= Deno.dlopen("libc.so.6", libcSymbols);
  return lib.symbols;
}

export const O_RDONLY = 0x0;
export const O_RDWR = 0x2;
export const O_CLOEXEC = 0x80000;
export const MFD_CLOEXEC = 0x1;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_FAILED = -1n;
/**
 * Kicks a vCPU thread out of KVM_RUN or poll(). Its default action is to be
 * ignored, so a kick that lands after the run's listener is gone does nothing
 * (SIGUSR1's default would kill the process).
 */
export const SIGURG = 23;
const POLLIN = 0x1;
const stdinPoll = new Uint8Array(8); // struct pollfd { int fd = 0 (stdin); short events = POLLIN; short revents; }
new DataView(stdinPoll.buffer).setInt16(4, POLLIN, true);

/** Waits up to `timeoutMs` for stdin: true once it has input, has ended or has failed (a read then says which). */
export function stdinReady(timeoutMs: number): boolean {
  return libc().poll(stdinPoll, 1n, timeoutMs) > 0;
}
export const SEEK_END = 2;
/** lseek to the next byte the file stores at or after the offset; holes read as zero and are skipped. */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
/** What SEEK_DATA returns when no data follows the offset. */
export const EINTR = 4;
export const ENXIO = 6;
export const EINVAL = 22;

const errnoNames: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
};

export function errnoName(errno: number): string {
  return errnoNames[errno] ?? `errno ${errno}`;
}

/** Must be called on the thread that made the failing call, before any other libc call. */
export function lastErrno(): number {
  const p = libc().__errno_location();
  return new Deno.UnsafePointerView(p!).getInt32();
}

/** A failed system call: which operation, and the errno it returned. */
export class SysError extends Error {
  constructor(readonly operation: string, readonly errno: number) {
    super(`${operation} failed: ${errnoName(errno)} (${errno})`);
    this.name = "SysError";
  }
}

/** Throws SysError when a libc call returned -1; returns the result otherwise. */
export function check(operation: string, result: number): number {
  if (result === -1) throw new SysError(operation, lastErrno());
  return result;
}

/** NUL-terminated C string in a buffer kept alive by the caller. */
export function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

/** <sys/statvfs.h> on x86-64 glibc. */
export const statvfs = struct("struct statvfs", [
  ["f_bsize", "u64"],
  ["f_frsize", "u64"],
  ["f_blocks", "u64"],
  ["f_bfree", "u64"],
  ["f_bavail", "u64"],
  ["f_files", "u64"],
  ["f_ffree", "u64"],
  ["f_favail", "u64"],
  ["f_fsid", "u64"],
  ["f_flag", "u64"],
  ["f_namemax", "u64"],
  ["__f_spare", array("i32", 6)],
]);

export const timeval = struct("struct timeval", [["tv_sec", "i64"], ["tv_usec", "i64"]]);

/** <sys/resource.h>: the two times pvx reads, and the size the kernel fills. */
export const rusage = struct("struct rusage", [
  ["ru_utime", timeval],
  ["ru_stime", timeval],
  ["ru_maxrss", "i64"],
  ["ru_ixrss", "i64"],
  ["ru_idrss", "i64"],
  ["ru_isrss", "i64"],
  ["ru_minflt", "i64"],
  ["ru_majflt", "i64"],
  ["ru_nswap", "i64"],
  ["ru_inblock", "i64"],
  ["ru_oublock", "i64"],
  ["ru_msgsnd", "i64"],
  ["ru_msgrcv", "i64"],
  ["ru_nsignals", "i64"],
  ["ru_nvcsw", "i64"],
  ["ru_nivcsw", "i64"],
]);

export const libcLayouts = [statvfs, timeval, rusage] as const;

/** The filesystem's space under `path`, in bytes, as statvfs(3) has it: `free` counts root's reserve, `available` not. */
export function fileSystemSpace(path: string): { total: number; free: number; available: number } {
  const buf = new Uint8Array(statvfs.size);
  check(`statvfs ${path}`, libc().statvfs(cString(path), buf));
  const dv = new DataView(buf.buffer);
  const u64 = (name: string) => Number(dv.getBigUint64(statvfs.fields[name].offset, true));
  const unit = u64("f_frsize");
  return { total: u64("f_blocks") * unit, free: u64("f_bfree") * unit, available: u64("f_bavail") * unit };
}

const RUSAGE_SELF = 0;

/** The CPU time this process has used, in microseconds, user and system together. */
export function processCpuMicros(): number {
  const buf = new Uint8Array(rusage.size);
  check("getrusage", libc().getrusage(RUSAGE_SELF, buf));
  const dv = new DataView(buf.buffer);
  const micros = (name: string) => {
    const at = rusage.fields[name].offset;
    return Number(dv.getBigInt64(at + timeval.fields.tv_sec.offset, true)) * 1e6 +
      Number(dv.getBigInt64(at + timeval.fields.tv_usec.offset, true));
  };
  return micros("ru_utime") + micros("ru_stime");
}
