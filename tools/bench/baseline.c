/* The C baseline for `deno task bench`: the smallest honest KVM VMM doing the
 * same work as pvx (long mode, the app in ring 3, hypercalls as 32-bit stores
 * to an unbacked doorbell page), so the ratios say what TypeScript and pvx's
 * checks cost, not what the hypercall mechanism costs.
 *
 *   baseline boot     ns from open("/dev/kvm") to the guest's first exit
 *   baseline null N   ns for N doorbell hypercalls, each answered by the exit loop
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "now_ns.h"

#define MEM (64ul << 20)
#define CODE 0x400000ul
#define FRAME 0x500000ul
#define DOORBELL 0xc0000000ul
#define GDT 0x10000ul
#define TSS 0x12000ul

static int xioctl(int fd, unsigned long req, void *arg, const char *what) {
  int r = ioctl(fd, req, arg);
  if (r < 0) {
    perror(what);
    exit(1);
  }
  return r;
}

static struct kvm_segment flat(uint16_t selector, uint8_t type, int code) {
  struct kvm_segment s = {.base = 0, .limit = 0xffffffff, .selector = selector, .type = type, .present = 1,
                          .dpl = 3, .db = !code, .s = 1, .l = code, .g = 1};
  return s;
}

int main(int argc, char **argv) {
  int boot = argc > 1 && strcmp(argv[1], "boot") == 0;
  long n = argc > 2 ? atol(argv[2]) : 1;
  uint64_t t0 = now_ns();
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  int vm = xioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM");
  uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  struct kvm_userspace_memory_region region = {.slot = 0, .memory_size = MEM, .userspace_addr = (uint64_t)mem};
  xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");

  /* Identity map RAM with 2 MiB user pages (PML4 0x1000, PDPT 0x2000, PD 0x3000), plus the doorbell (PD 0x4000). */
  uint64_t *pml4 = (uint64_t *)(mem + 0x1000), *pdpt = (uint64_t *)(mem + 0x2000);
  uint64_t *pd = (uint64_t *)(mem + 0x3000), *pd3 = (uint64_t *)(mem + 0x4000);
  pml4[0] = 0x2000 | 7;
  pdpt[0] = 0x3000 | 7;
  pdpt[3] = 0x4000 | 7;
  for (int i = 0; i < 32; i++) pd[i] = ((uint64_t)i << 21) | 0x87;
  pd3[0] = DOORBELL | 0x87;
  /* GDT: kernel code/data, user data/code (DPL 3), TSS. */
  uint64_t *gdt = (uint64_t *)(mem + GDT);
  gdt[1] = 0x00af9b000000ffffull;
  gdt[2] = 0x00cf93000000ffffull;
  gdt[3] = 0x00cff3000000ffffull;
  gdt[4] = 0x00affb000000ffffull;
  gdt[5] = 103 | ((TSS & 0xffffff) << 16) | (0x8bull << 40);
  /* loop: mov edx,DOORBELL; mov eax,FRAME; mov [rdx],eax; dec rcx; jnz loop; then ring slot 1 to stop */
  uint8_t code[] = {0xba, 0x00, 0x00, 0x00, 0xc0, 0xb8, 0x00, 0x00, 0x50, 0x00, 0x89, 0x02, 0x48, 0xff, 0xc9, 0x75, 0xef,
                    0xba, 0x04, 0x00, 0x00, 0xc0, 0x89, 0x02, 0xeb, 0xfe};
  memcpy(mem + CODE, code, sizeof code);

  int vcpu = xioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU");
  int run_size = xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
  struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct {
    struct kvm_cpuid2 h;
    struct kvm_cpuid_entry2 e[256];
  } cpuid = {.h.nent = 256};
  xioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid, "KVM_GET_SUPPORTED_CPUID");
  xioctl(vcpu, KVM_SET_CPUID2, &cpuid, "KVM_SET_CPUID2");

  struct kvm_sregs s;
  xioctl(vcpu, KVM_GET_SREGS, &s, "KVM_GET_SREGS");
  s.cs = flat(0x23, 11, 1);
  s.ds = s.es = s.fs = s.gs = s.ss = flat(0x1b, 3, 0);
  struct kvm_segment tr = {.base = TSS, .limit = 103, .selector = 0x28, .type = 11, .present = 1};
  s.tr = tr;
  s.gdt.base = GDT;
  s.gdt.limit = 0x2f;
  s.cr3 = 0x1000;
  s.cr4 = 0x20 | 0x200 | 0x400;
  s.cr0 = 0x80050033;
  s.efer = 0x500 | 0x800;
  xioctl(vcpu, KVM_SET_SREGS, &s, "KVM_SET_SREGS");
  struct kvm_regs r = {.rip = CODE, .rsp = FRAME, .rflags = 2, .rcx = (uint64_t)n};
  xioctl(vcpu, KVM_SET_REGS, &r, "KVM_SET_REGS");

  uint64_t t1 = 0;
  for (long exits = 0;; exits++) {
    xioctl(vcpu, KVM_RUN, 0, "KVM_RUN");
    if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write) {
      fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
      return 1;
    }
    if (exits == 0) {
      t1 = now_ns();
      if (boot) break;
    }
    if (run->mmio.phys_addr != DOORBELL) break;
    /* Answer like a hypercall: take the frame address, write a result slot. */
    uint32_t frame;
    memcpy(&frame, run->mmio.data, 4);
    if (frame + 8 <= MEM) *(uint64_t *)(mem + frame) = 0;
  }
  printf("%llu\n", (unsigned long long)(boot ? t1 - t0 : now_ns() - t0));
  return 0;
}
