/* Capturing and restoring a thread's whole register state (CONTEXT, x64
 * layout: integer registers from 0x78, Rip at 0xf8, the FXSAVE area at
 * 0x100), in assembly because C cannot name every register. */
#include "pvxrt.h"

_Static_assert(__builtin_offsetof(CONTEXT, Rax) == 0x78 && __builtin_offsetof(CONTEXT, Rip) == 0xf8 &&
                   __builtin_offsetof(CONTEXT, FltSave) == 0x100 && __builtin_offsetof(CONTEXT, EFlags) == 0x44,
               "CONTEXT layout");

/* RtlCaptureContext(rcx = CONTEXT*): the caller's registers as they are at its call, Rsp and Rip as after the return. */
__asm__(".globl RtlCaptureContext\n"
        ".globl pvx_capture_context\n"
        "RtlCaptureContext:\n"
        "pvx_capture_context:\n"
        "  movq %rax, 0x78(%rcx)\n"
        "  movq %rcx, 0x80(%rcx)\n"
        "  movq %rdx, 0x88(%rcx)\n"
        "  movq %rbx, 0x90(%rcx)\n"
        "  leaq 8(%rsp), %rax\n"
        "  movq %rax, 0x98(%rcx)\n"
        "  movq %rbp, 0xa0(%rcx)\n"
        "  movq %rsi, 0xa8(%rcx)\n"
        "  movq %rdi, 0xb0(%rcx)\n"
        "  movq %r8, 0xb8(%rcx)\n"
        "  movq %r9, 0xc0(%rcx)\n"
        "  movq %r10, 0xc8(%rcx)\n"
        "  movq %r11, 0xd0(%rcx)\n"
        "  movq %r12, 0xd8(%rcx)\n"
        "  movq %r13, 0xe0(%rcx)\n"
        "  movq %r14, 0xe8(%rcx)\n"
        "  movq %r15, 0xf0(%rcx)\n"
        "  movq (%rsp), %rax\n"
        "  movq %rax, 0xf8(%rcx)\n"
        "  pushfq\n"
        "  popq %rax\n"
        "  movl %eax, 0x44(%rcx)\n"
        "  movw %cs, 0x38(%rcx)\n"
        "  movw %ds, 0x3a(%rcx)\n"
        "  movw %es, 0x3c(%rcx)\n"
        "  movw %fs, 0x3e(%rcx)\n"
        "  movw %gs, 0x40(%rcx)\n"
        "  movw %ss, 0x42(%rcx)\n"
        "  fxsave 0x100(%rcx)\n"
        "  stmxcsr 0x34(%rcx)\n"
        "  movl $0x10000f, 0x30(%rcx)\n" /* CONTEXT_CONTROL | INTEGER | SEGMENTS | FLOATING_POINT */
        "  movq 0x78(%rcx), %rax\n"
        "  ret\n"
        ".section .drectve\n"
        ".ascii \" -export:RtlCaptureContext\"\n"
        ".text\n");

/* pvx_restore_context(rcx = CONTEXT*): continues at ctx->Rip with every register from ctx; never returns. The
 * return address is pushed below the new Rsp, space that is free at any point a thread can be resumed at. */
__asm__(".globl pvx_restore_context\n"
        "pvx_restore_context:\n"
        "  fxrstor 0x100(%rcx)\n"
        "  ldmxcsr 0x34(%rcx)\n"
        "  movq 0x78(%rcx), %rax\n"
        "  movq 0x88(%rcx), %rdx\n"
        "  movq 0x90(%rcx), %rbx\n"
        "  movq 0xa0(%rcx), %rbp\n"
        "  movq 0xa8(%rcx), %rsi\n"
        "  movq 0xb0(%rcx), %rdi\n"
        "  movq 0xb8(%rcx), %r8\n"
        "  movq 0xc0(%rcx), %r9\n"
        "  movq 0xc8(%rcx), %r10\n"
        "  movq 0xd0(%rcx), %r11\n"
        "  movq 0xd8(%rcx), %r12\n"
        "  movq 0xe0(%rcx), %r13\n"
        "  movq 0xe8(%rcx), %r14\n"
        "  movq 0xf0(%rcx), %r15\n"
        "  movq 0x98(%rcx), %rsp\n"
        "  pushq 0xf8(%rcx)\n"
        "  movq 0x80(%rcx), %rcx\n"
        "  ret\n");

/* Where the host resumes a thread whose fault goes to the app (guest/exception_frame.ts): rcx = the
 * EXCEPTION_RECORD, rdx = the CONTEXT at rsp, the faulting rip/cs/rflags/rsp/ss above both. Its unwind info
 * says so, so an unwind through it (a handler's longjmp, an __except) lands in the faulting frame. The FPU
 * state is still the faulting code's: it is saved here first. */
__asm__(".globl pvx_fault_entry\n"
        ".def pvx_fault_entry; .scl 2; .type 32; .endef\n"
        ".seh_proc pvx_fault_entry\n"
        "pvx_fault_entry:\n"
        ".seh_pushframe\n"
        ".seh_stackalloc 0x4d0 + 152\n"
        ".seh_endprologue\n"
        "  fxsave 0x100(%rdx)\n"
        "  stmxcsr 0x34(%rdx)\n"
        "  orl $0x8, 0x30(%rdx)\n" /* CONTEXT_FLOATING_POINT */
        "  call pvx_dispatch_fault\n"
        "  ud2\n"
        ".seh_endproc\n"
        ".section .drectve\n"
        ".ascii \" -export:pvx_fault_entry\"\n"
        ".text\n");
