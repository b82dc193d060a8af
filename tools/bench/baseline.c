/* The C baseline for `deno task bench`: the smallest honest KVM VMM doing the
 * same work as pvx, so the ratios say what TypeScript and pvx's checks cost.
 *
 *   baseline boot          ns from open("/dev/kvm") to the guest's first exit (long mode, paging on)
 *   baseline null N        ns for N port-I/O exits, each answered by the exit loop
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

#define MEM (64ul << 20)
#define CODE 0x400000ul
#define FRAME 0x500000ul

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what) {
  int r = ioctl(fd, req, arg);
  if (r < 0) {
    perror(what);
    exit(1);
  }
  return r;
}

int main(int argc, char **argv) {
  int boot = argc > 1 && strcmp(argv[1], "boot") == 0;
  long n = argc > 2 ? atol(argv[2]) : 0;
  uint64_t t0 = now_ns();
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  int vm = xioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM");
  uint8_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = MEM, .userspace_addr = (uint64_t)mem};
  xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");

  /* Identity map the first 64 MiB with 2 MiB pages: PML4 at 0x1000, PDPT 0x2000, PD 0x3000. */
  uint64_t *pml4 = (uint64_t *)(mem + 0x1000), *pdpt = (uint64_t *)(mem + 0x2000), *pd = (uint64_t *)(mem + 0x3000);
  pml4[0] = 0x2000 | 3;
  pdpt[0] = 0x3000 | 3;
  for (int i = 0; i < 32; i++) pd[i] = ((uint64_t)i << 21) | 0x83;
  /* loop: mov edx,0x500; mov eax,FRAME; out dx,eax; dec rcx; jnz loop; then spin on out to a stop port */
  uint8_t code[] = {0xba, 0x00, 0x05, 0, 0, 0xb8, 0, 0, 0x50, 0, 0xef, 0x48, 0xff, 0xc9, 0x75, 0xf0,
                    0xba, 0xff, 0x05, 0, 0, 0xef, 0xeb, 0xfe};
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
  struct kvm_segment cs = {.base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1};
  struct kvm_segment ds = {.base = 0, .limit = 0xffffffff, .selector = 16, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1};
  s.cs = cs;
  s.ds = s.es = s.fs = s.gs = s.ss = ds;
  s.cr3 = 0x1000;
  s.cr4 = 0x20 | 0x200 | 0x400;
  s.cr0 = 0x80050033;
  s.efer = 0x500 | 0x800;
  xioctl(vcpu, KVM_SET_SREGS, &s, "KVM_SET_SREGS");
  struct kvm_regs r = {.rip = CODE, .rsp = FRAME, .rflags = 2, .rcx = boot ? 1 : (uint64_t)n};
  xioctl(vcpu, KVM_SET_REGS, &r, "KVM_SET_REGS");

  uint64_t exits = 0, t1 = 0;
  for (;;) {
    xioctl(vcpu, KVM_RUN, 0, "KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO) {
      fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
      return 1;
    }
    if (exits++ == 0) {
      t1 = now_ns();
      if (boot) break;
    }
    /* Answer like a hypercall: read the frame address, write a result slot. */
    uint32_t frame = *(uint32_t *)((uint8_t *)run + run->io.data_offset);
    if (run->io.port == 0x5ff) break;
    if (frame + 8 <= MEM) *(uint64_t *)(mem + frame) = 0;
  }
  uint64_t t2 = now_ns();
  printf("%llu\n", (unsigned long long)(boot ? t1 - t0 : t2 - t0));
  return 0;
}
