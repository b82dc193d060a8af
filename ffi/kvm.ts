// KVM's userspace ABI (<linux/kvm.h>, x86-64): ioctl numbers, struct layouts
// and exit reasons. tests/layout_test.ts compiles a C program against the real
// header and compares every number here with the compiler's.

import { array, struct, type StructLayout } from "./layout.ts";

const KVMIO = 0xae;
const IOC_NONE = 0n, IOC_WRITE = 1n, IOC_READ = 2n;

function ioc(dir: bigint, nr: number, size: number): bigint {
  return (dir << 30n) | (BigInt(size) << 16n) | (BigInt(KVMIO) << 8n) | BigInt(nr);
}
const io = (nr: number) => ioc(IOC_NONE, nr, 0);
const ior = (nr: number, s: StructLayout) => ioc(IOC_READ, nr, s.size);
const iow = (nr: number, s: StructLayout) => ioc(IOC_WRITE, nr, s.size);
const iowr = (nr: number, s: StructLayout) => ioc(IOC_READ | IOC_WRITE, nr, s.size);

export const kvm_regs = struct("struct kvm_regs", [
  ["rax", "u64"],
  ["rbx", "u64"],
  ["rcx", "u64"],
  ["rdx", "u64"],
  ["rsi", "u64"],
  ["rdi", "u64"],
  ["rsp", "u64"],
  ["rbp", "u64"],
  ["r8", "u64"],
  ["r9", "u64"],
  ["r10", "u64"],
  ["r11", "u64"],
  ["r12", "u64"],
  ["r13", "u64"],
  ["r14", "u64"],
  ["r15", "u64"],
  ["rip", "u64"],
  ["rflags", "u64"],
]);

export const kvm_segment = struct("struct kvm_segment", [
  ["base", "u64"],
  ["limit", "u32"],
  ["selector", "u16"],
  ["type", "u8"],
  ["present", "u8"],
  ["dpl", "u8"],
  ["db", "u8"],
  ["s", "u8"],
  ["l", "u8"],
  ["g", "u8"],
  ["avl", "u8"],
  ["unusable", "u8"],
  ["padding", "u8"],
]);

export const kvm_dtable = struct("struct kvm_dtable", [
  ["base", "u64"],
  ["limit", "u16"],
  ["padding", array("u16", 3)],
]);

export const kvm_sregs = struct("struct kvm_sregs", [
  ["cs", kvm_segment],
  ["ds", kvm_segment],
  ["es", kvm_segment],
  ["fs", kvm_segment],
  ["gs", kvm_segment],
  ["ss", kvm_segment],
  ["tr", kvm_segment],
  ["ldt", kvm_segment],
  ["gdt", kvm_dtable],
  ["idt", kvm_dtable],
  ["cr0", "u64"],
  ["cr2", "u64"],
  ["cr3", "u64"],
  ["cr4", "u64"],
  ["cr8", "u64"],
  ["efer", "u64"],
  ["apic_base", "u64"],
  ["interrupt_bitmap", array("u64", 4)],
]);

export const kvm_userspace_memory_region = struct("struct kvm_userspace_memory_region", [
  ["slot", "u32"],
  ["flags", "u32"],
  ["guest_phys_addr", "u64"],
  ["memory_size", "u64"],
  ["userspace_addr", "u64"],
]);

export const kvm_msr_entry = struct("struct kvm_msr_entry", [
  ["index", "u32"],
  ["reserved", "u32"],
  ["data", "u64"],
]);
/** Header only; `nmsrs` entries of kvm_msr_entry follow. */
export const kvm_msrs = struct("struct kvm_msrs", [["nmsrs", "u32"], ["pad", "u32"]]);

export const kvm_cpuid_entry2 = struct("struct kvm_cpuid_entry2", [
  ["function", "u32"],
  ["index", "u32"],
  ["flags", "u32"],
  ["eax", "u32"],
  ["ebx", "u32"],
  ["ecx", "u32"],
  ["edx", "u32"],
  ["padding", array("u32", 3)],
]);
/** Header only; `nent` entries of kvm_cpuid_entry2 follow. */
export const kvm_cpuid2 = struct("struct kvm_cpuid2", [["nent", "u32"], ["padding", "u32"]]);

/**
 * The 4096 bytes of KVM_GET_XSAVE. KVM_GET_XSAVE2 fills as many bytes as
 * KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) reports, which may be more.
 */
export const kvm_xsave = struct("struct kvm_xsave", [["region", array("u32", 1024)]]);

export const kvm_xcr = struct("struct kvm_xcr", [
  ["xcr", "u32"],
  ["reserved", "u32"],
  ["value", "u64"],
]);
export const KVM_MAX_XCRS = 16;
export const kvm_xcrs = struct("struct kvm_xcrs", [
  ["nr_xcrs", "u32"],
  ["flags", "u32"],
  ["xcrs", array(kvm_xcr, KVM_MAX_XCRS)],
  ["padding", array("u64", 16)],
]);

export const kvm_debugregs = struct("struct kvm_debugregs", [
  ["db", array("u64", 4)],
  ["dr6", "u64"],
  ["dr7", "u64"],
  ["flags", "u64"],
  ["reserved", array("u64", 9)],
]);

// kvm_vcpu_events' members are anonymous structs, checked as members of it.
export const kvm_vcpu_events_exception = struct("kvm_vcpu_events.exception", [
  ["injected", "u8"],
  ["nr", "u8"],
  ["has_error_code", "u8"],
  ["pending", "u8"],
  ["error_code", "u32"],
]);
export const kvm_vcpu_events_interrupt = struct("kvm_vcpu_events.interrupt", [
  ["injected", "u8"],
  ["nr", "u8"],
  ["soft", "u8"],
  ["shadow", "u8"],
]);
export const kvm_vcpu_events_nmi = struct("kvm_vcpu_events.nmi", [
  ["injected", "u8"],
  ["pending", "u8"],
  ["masked", "u8"],
  ["pad", "u8"],
]);
export const kvm_vcpu_events_smi = struct("kvm_vcpu_events.smi", [
  ["smm", "u8"],
  ["pending", "u8"],
  ["smm_inside_nmi", "u8"],
  ["latched_init", "u8"],
]);
export const kvm_vcpu_events_triple_fault = struct("kvm_vcpu_events.triple_fault", [["pending", "u8"]]);
export const kvm_vcpu_events = struct("struct kvm_vcpu_events", [
  ["exception", kvm_vcpu_events_exception],
  ["interrupt", kvm_vcpu_events_interrupt],
  ["nmi", kvm_vcpu_events_nmi],
  ["sipi_vector", "u32"],
  ["flags", "u32"],
  ["smi", kvm_vcpu_events_smi],
  ["triple_fault", kvm_vcpu_events_triple_fault],
  ["reserved", array("u8", 26)],
  ["exception_has_payload", "u8"],
  ["exception_payload", "u64"],
]);

export const kvm_dirty_log = struct("struct kvm_dirty_log", [
  ["slot", "u32"],
  ["padding1", "u32"],
  ["dirty_bitmap", "u64"],
]);

export const kvm_clear_dirty_log = struct("struct kvm_clear_dirty_log", [
  ["slot", "u32"],
  ["num_pages", "u32"],
  ["first_page", "u64"],
  ["dirty_bitmap", "u64"],
]);

export const kvm_enable_cap = struct("struct kvm_enable_cap", [
  ["cap", "u32"],
  ["flags", "u32"],
  ["args", array("u64", 4)],
  ["pad", array("u8", 64)],
]);

/** The head of the shared kvm_run page, and the exit-union members pvx decodes. */
export const kvm_run = struct("struct kvm_run", [
  ["request_interrupt_window", "u8"],
  ["immediate_exit", "u8"],
  ["padding1", array("u8", 6)],
  ["exit_reason", "u32"],
  ["ready_for_interrupt_injection", "u8"],
  ["if_flag", "u8"],
  ["flags", "u16"],
  ["cr8", "u64"],
  ["apic_base", "u64"],
]);
/** Offset of the exit union inside kvm_run; the members below are relative to it. */
export const KVM_RUN_EXIT_UNION = kvm_run.size;
export const kvm_run_io = struct("kvm_run.io", [
  ["direction", "u8"],
  ["size", "u8"],
  ["port", "u16"],
  ["count", "u32"],
  ["data_offset", "u64"],
]);
export const kvm_run_mmio = struct("kvm_run.mmio", [
  ["phys_addr", "u64"],
  ["data", array("u8", 8)],
  ["len", "u32"],
  ["is_write", "u8"],
]);
export const kvm_run_fail_entry = struct("kvm_run.fail_entry", [
  ["hardware_entry_failure_reason", "u64"],
  ["cpu", "u32"],
]);
export const kvm_run_internal = struct("kvm_run.internal", [
  ["suberror", "u32"],
  ["ndata", "u32"],
  ["data", array("u64", 16)],
]);
export const kvm_run_system_event = struct("kvm_run.system_event", [
  ["type", "u32"],
  ["ndata", "u32"],
  ["data", array("u64", 16)],
]);

export const KVM_API_VERSION = 12;

export const ioctls = {
  KVM_GET_API_VERSION: io(0x00),
  KVM_CREATE_VM: io(0x01),
  KVM_CHECK_EXTENSION: io(0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(0x04),
  KVM_GET_SUPPORTED_CPUID: iowr(0x05, kvm_cpuid2),
  KVM_CREATE_VCPU: io(0x41),
  KVM_GET_DIRTY_LOG: iow(0x42, kvm_dirty_log),
  KVM_SET_USER_MEMORY_REGION: iow(0x46, kvm_userspace_memory_region),
  KVM_RUN: io(0x80),
  KVM_GET_REGS: ior(0x81, kvm_regs),
  KVM_SET_REGS: iow(0x82, kvm_regs),
  KVM_GET_SREGS: ior(0x83, kvm_sregs),
  KVM_SET_SREGS: iow(0x84, kvm_sregs),
  KVM_GET_MSRS: iowr(0x88, kvm_msrs),
  KVM_SET_MSRS: iow(0x89, kvm_msrs),
  KVM_SET_CPUID2: iow(0x90, kvm_cpuid2),
  KVM_GET_CPUID2: iowr(0x91, kvm_cpuid2),
  KVM_GET_VCPU_EVENTS: ior(0x9f, kvm_vcpu_events),
  KVM_SET_VCPU_EVENTS: iow(0xa0, kvm_vcpu_events),
  KVM_GET_DEBUGREGS: ior(0xa1, kvm_debugregs),
  KVM_SET_DEBUGREGS: iow(0xa2, kvm_debugregs),
  KVM_GET_XSAVE: ior(0xa4, kvm_xsave),
  KVM_SET_XSAVE: iow(0xa5, kvm_xsave),
  KVM_GET_XCRS: ior(0xa6, kvm_xcrs),
  KVM_SET_XCRS: iow(0xa7, kvm_xcrs),
  KVM_GET_XSAVE2: ior(0xcf, kvm_xsave),
  KVM_ENABLE_CAP: iow(0xa3, kvm_enable_cap),
  KVM_CLEAR_DIRTY_LOG: iowr(0xc0, kvm_clear_dirty_log),
} as const;

export const KVM_CAP_IMMEDIATE_EXIT = 136;
export const KVM_CAP_XSAVE2 = 208;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1;
export const KVM_MEM_LOG_DIRTY_PAGES = 1;

export const exitReasons = {
  KVM_EXIT_UNKNOWN: 0,
  KVM_EXIT_EXCEPTION: 1,
  KVM_EXIT_IO: 2,
  KVM_EXIT_HYPERCALL: 3,
  KVM_EXIT_DEBUG: 4,
  KVM_EXIT_HLT: 5,
  KVM_EXIT_MMIO: 6,
  KVM_EXIT_IRQ_WINDOW_OPEN: 7,
  KVM_EXIT_SHUTDOWN: 8,
  KVM_EXIT_FAIL_ENTRY: 9,
  KVM_EXIT_INTR: 10,
  KVM_EXIT_INTERNAL_ERROR: 17,
  KVM_EXIT_SYSTEM_EVENT: 24,
} as const;

export const KVM_EXIT_IO_OUT = 1;

// MSRs pvx sets for the guest or keeps in a vCPU's saved state (SDM vol. 4).
export const msrs = {
  MSR_EFER: 0xc0000080,
  MSR_STAR: 0xc0000081,
  MSR_LSTAR: 0xc0000082,
  MSR_CSTAR: 0xc0000083,
  MSR_SYSCALL_MASK: 0xc0000084,
  MSR_FS_BASE: 0xc0000100,
  MSR_GS_BASE: 0xc0000101,
  MSR_KERNEL_GS_BASE: 0xc0000102,
  MSR_IA32_TSC: 0x10,
  MSR_IA32_PAT: 0x277,
} as const;

/** Every layout the C comparison test checks. */
export const layouts = [
  kvm_regs,
  kvm_segment,
  kvm_dtable,
  kvm_sregs,
  kvm_userspace_memory_region,
  kvm_msr_entry,
  kvm_msrs,
  kvm_cpuid_entry2,
  kvm_cpuid2,
  kvm_dirty_log,
  kvm_clear_dirty_log,
  kvm_enable_cap,
  kvm_xsave,
  kvm_xcr,
  kvm_xcrs,
  kvm_debugregs,
  kvm_vcpu_events,
] as const;
