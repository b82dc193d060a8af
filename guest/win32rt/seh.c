/* Structured exception handling, x64, as Windows documents it: function
 * tables from each loaded image's .pdata, RtlVirtualUnwind over its unwind
 * codes, RaiseException dispatching through vectored handlers, then frame
 * handlers (__C_specific_handler, gcc's SEH personality), then the unhandled-
 * exception filter; RtlUnwindEx calling termination handlers on its way to
 * the target frame. C++ exceptions and msvcrt's unwinding longjmp rest on it.
 *
 * Hardware faults in the app's code arrive through pvx_fault_entry
 * (context.c). What pvx leaves out: a fault inside an epilog is unwound as if
 * in the body; collided unwinds are not detected. */
#include "pvxrt.h"

/* winnt.h declares the Rtl unwind functions dllimport whatever NTSYSAPI says; here they are defined. */
#pragma GCC diagnostic ignored "-Wattributes"

#define UWOP_PUSH_NONVOL 0
#define UWOP_ALLOC_LARGE 1
#define UWOP_ALLOC_SMALL 2
#define UWOP_SET_FPREG 3
#define UWOP_SAVE_NONVOL 4
#define UWOP_SAVE_NONVOL_FAR 5
#define UWOP_EPILOG 6
#define UWOP_SAVE_XMM128 8
#define UWOP_SAVE_XMM128_FAR 9
#define UWOP_PUSH_MACHFRAME 10

#define STATUS_UNWIND ((DWORD)0xc0000027)
#define STATUS_LONGJUMP ((DWORD)0x80000026)
#define STATUS_UNWIND_CONSOLIDATE ((DWORD)0x80000029)
#define EXCEPTION_UNWINDING 0x2
#define EXCEPTION_EXIT_UNWIND 0x4
#define EXCEPTION_TARGET_UNWIND 0x20
#define EXCEPTION_COLLIDED_UNWIND 0x40

typedef struct {
  BYTE Version : 3;
  BYTE Flags : 5;
  BYTE SizeOfProlog;
  BYTE CountOfCodes;
  BYTE FrameRegister : 4;
  BYTE FrameOffset : 4;
  USHORT Codes[];
} UNWIND_INFO;

/* Where a jump buffer keeps what RtlRestoreContext puts back for STATUS_LONGJUMP (msvcrt's x64 _JUMP_BUFFER). */
typedef struct {
  ULONG64 Frame, Rbx, Rsp, Rbp, Rsi, Rdi, R12, R13, R14, R15, Rip;
  ULONG MxCsr;
  USHORT FpCsr, Spare;
  M128A Xmm6, Xmm7, Xmm8, Xmm9, Xmm10, Xmm11, Xmm12, Xmm13, Xmm14, Xmm15;
} JUMP_BUFFER;

/* context.c: RtlCaptureContext and the restore, under names winnt.h does not declare dllimport. */
void pvx_capture_context(PCONTEXT ctx);
void pvx_restore_context(PCONTEXT ctx);

EXPORT void NTAPI RtlRestoreContext(PCONTEXT ctx, PEXCEPTION_RECORD rec) {
  if (rec && rec->ExceptionCode == STATUS_LONGJUMP && rec->NumberParameters >= 1) {
    JUMP_BUFFER *j = (JUMP_BUFFER *)rec->ExceptionInformation[0];
    ctx->Rbx = j->Rbx, ctx->Rsp = j->Rsp, ctx->Rbp = j->Rbp, ctx->Rsi = j->Rsi, ctx->Rdi = j->Rdi;
    ctx->R12 = j->R12, ctx->R13 = j->R13, ctx->R14 = j->R14, ctx->R15 = j->R15, ctx->Rip = j->Rip;
    ctx->MxCsr = j->MxCsr;
    ctx->FltSave.MxCsr = j->MxCsr;
    ctx->FltSave.ControlWord = j->FpCsr;
    M128A *x = &j->Xmm6;
    for (int i = 0; i < 10; i++) (&ctx->Xmm6)[i] = x[i];
  } else if (rec && rec->ExceptionCode == STATUS_UNWIND_CONSOLIDATE && rec->NumberParameters >= 1) {
    PVOID (*callback)(EXCEPTION_RECORD *) = (PVOID(*)(EXCEPTION_RECORD *))rec->ExceptionInformation[0];
    ctx->Rip = (DWORD64)callback(rec);
  }
  pvx_restore_context(ctx);
}

EXPORT PVOID NTAPI RtlPcToFileHeader(PVOID pc, PVOID *base) {
  const struct pvx_module *m = pvx_module_of((ULONG64)pc);
  *base = m ? (PVOID)m->base : NULL;
  return *base;
}

EXPORT PRUNTIME_FUNCTION NTAPI RtlLookupFunctionEntry(DWORD64 pc, PDWORD64 base, PUNWIND_HISTORY_TABLE history) {
  (void)history;
  const struct pvx_module *m = pvx_module_of(pc);
  if (!m || !m->pdata_size) {
    *base = 0;
    return NULL;
  }
  *base = m->base;
  RUNTIME_FUNCTION *table = (RUNTIME_FUNCTION *)(m->base + m->pdata_rva);
  DWORD rva = (DWORD)(pc - m->base), lo = 0, hi = m->pdata_size / sizeof(RUNTIME_FUNCTION);
  while (lo < hi) {
    DWORD mid = (lo + hi) / 2;
    if (rva < table[mid].BeginAddress) hi = mid;
    else if (rva >= table[mid].EndAddress) lo = mid + 1;
    else return &table[mid];
  }
  return NULL;
}

static DWORD64 *int_reg(CONTEXT *c, int r) { return &c->Rax + r; }

static void restore_int(CONTEXT *c, int r, DWORD64 *from, PKNONVOLATILE_CONTEXT_POINTERS ptrs) {
  *int_reg(c, r) = *from;
  if (ptrs) ptrs->IntegerContext[r] = from;
}

static void restore_xmm(CONTEXT *c, int r, M128A *from, PKNONVOLATILE_CONTEXT_POINTERS ptrs) {
  (&c->Xmm0)[r] = *from;
  if (ptrs) ptrs->FloatingContext[r] = from;
}

/* A 32-bit operand kept in two code slots, low half first. */
static DWORD operand32(const USHORT *slots) { return slots[0] | (DWORD)slots[1] << 16; }

/* How many code slots an unwind op takes. */
static int op_slots(USHORT code) {
  int op = (code >> 8) & 0xf, info = code >> 12;
  switch (op) {
  case UWOP_ALLOC_LARGE:
    return info ? 3 : 2;
  case UWOP_SAVE_NONVOL:
  case UWOP_SAVE_XMM128:
  case UWOP_EPILOG:
    return 2;
  case UWOP_SAVE_NONVOL_FAR:
  case UWOP_SAVE_XMM128_FAR:
    return 3;
  default:
    return 1;
  }
}

EXPORT PEXCEPTION_ROUTINE NTAPI RtlVirtualUnwind(DWORD type, DWORD64 base, DWORD64 pc, PRUNTIME_FUNCTION fn,
                                                 PCONTEXT c, PVOID *data, PDWORD64 frame,
                                                 PKNONVOLATILE_CONTEXT_POINTERS ptrs) {
  *data = NULL;
  if (!fn) { /* a leaf: only the return address is on the stack */
    *frame = c->Rsp;
    c->Rip = *(DWORD64 *)c->Rsp;
    c->Rsp += 8;
    return NULL;
  }
  PEXCEPTION_ROUTINE handler = NULL;
  BOOL first = TRUE;
  DWORD64 offset = pc - (base + fn->BeginAddress);
  for (;;) {
    UNWIND_INFO *info = (UNWIND_INFO *)(base + fn->UnwindData);
    if (first) {
      *frame = info->FrameRegister ? *int_reg(c, info->FrameRegister) - info->FrameOffset * 16 : c->Rsp;
      /* Before the prolog set the frame register, RSP is still the frame. */
      for (int i = 0; i < info->CountOfCodes; i += op_slots(info->Codes[i])) {
        BYTE at = info->Codes[i] & 0xff;
        if (((info->Codes[i] >> 8) & 0xf) == UWOP_SET_FPREG && at > offset) *frame = c->Rsp;
      }
    }
    DWORD64 frame_base = *frame;
    for (int i = 0; i < info->CountOfCodes; i += op_slots(info->Codes[i])) {
      USHORT code = info->Codes[i];
      int op = (code >> 8) & 0xf, reg = code >> 12;
      if (first && (code & 0xff) > offset) continue; /* not yet done in the prolog */
      switch (op) {
      case UWOP_PUSH_NONVOL:
        restore_int(c, reg, (DWORD64 *)c->Rsp, ptrs);
        c->Rsp += 8;
        break;
      case UWOP_ALLOC_LARGE:
        c->Rsp += reg ? operand32(&info->Codes[i + 1]) : info->Codes[i + 1] * 8u;
        break;
      case UWOP_ALLOC_SMALL:
        c->Rsp += reg * 8 + 8;
        break;
      case UWOP_SET_FPREG:
        c->Rsp = *int_reg(c, info->FrameRegister) - info->FrameOffset * 16;
        break;
      case UWOP_SAVE_NONVOL:
        restore_int(c, reg, (DWORD64 *)(frame_base + info->Codes[i + 1] * 8u), ptrs);
        break;
      case UWOP_SAVE_NONVOL_FAR:
        restore_int(c, reg, (DWORD64 *)(frame_base + operand32(&info->Codes[i + 1])), ptrs);
        break;
      case UWOP_SAVE_XMM128:
        restore_xmm(c, reg, (M128A *)(frame_base + info->Codes[i + 1] * 16u), ptrs);
        break;
      case UWOP_SAVE_XMM128_FAR:
        restore_xmm(c, reg, (M128A *)(frame_base + operand32(&info->Codes[i + 1])), ptrs);
        break;
      case UWOP_PUSH_MACHFRAME:
        c->Rsp += reg ? 8 : 0; /* an error code was pushed */
        c->Rip = *(DWORD64 *)c->Rsp;
        c->Rsp = *(DWORD64 *)(c->Rsp + 24);
        return NULL;
      default: /* UWOP_EPILOG and the spares describe nothing to undo here */
        break;
      }
    }
    USHORT *after = &info->Codes[(info->CountOfCodes + 1) & ~1];
    if (first && (info->Flags & type & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER)) && offset >= info->SizeOfProlog) {
      handler = (PEXCEPTION_ROUTINE)(base + operand32(after));
      *data = after + 2;
    }
    if (!(info->Flags & UNW_FLAG_CHAININFO)) break;
    fn = (PRUNTIME_FUNCTION)after; /* the parent's prolog ran in full */
    first = FALSE;
  }
  c->Rip = *(DWORD64 *)c->Rsp;
  c->Rsp += 8;
  return handler;
}

/* One frame up from `c`; FALSE once the walk leaves the loaded images (the entry trampoline). */
static BOOL step(CONTEXT *c, DWORD type, DISPATCHER_CONTEXT *d) {
  DWORD64 base;
  if (!pvx_module_of(c->Rip)) return FALSE;
  d->ControlPc = c->Rip;
  d->FunctionEntry = RtlLookupFunctionEntry(c->Rip, &base, NULL);
  d->ImageBase = base;
  d->LanguageHandler = RtlVirtualUnwind(type, base, c->Rip, d->FunctionEntry, c, &d->HandlerData,
                                        &d->EstablisherFrame, NULL);
  return TRUE;
}

/* Vectored handlers, in call order; an app adds them while it starts, so additions are not made safe against a
 * dispatch on another thread, only against each other. */
#define MAX_VECTORED 64
static PVECTORED_EXCEPTION_HANDLER vectored[MAX_VECTORED];

EXPORT PVOID WINAPI AddVectoredExceptionHandler(ULONG first, PVECTORED_EXCEPTION_HANDLER handler) {
  for (;;) {
    int n = 0;
    while (n < MAX_VECTORED && vectored[n]) n++;
    if (n == MAX_VECTORED) return NULL;
    PVECTORED_EXCEPTION_HANDLER expected = NULL;
    if (!first) {
      if (__atomic_compare_exchange_n(&vectored[n], &expected, handler, FALSE, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return (PVOID)handler;
      continue;
    }
    /* At the front: shift the others along, one at a time, then claim slot 0. */
    for (int i = n; i > 0; i--) vectored[i] = vectored[i - 1];
    vectored[0] = handler;
    return (PVOID)handler;
  }
}

EXPORT ULONG WINAPI RemoveVectoredExceptionHandler(PVOID handle) {
  for (int i = 0; i < MAX_VECTORED && vectored[i]; i++) {
    if ((PVOID)vectored[i] != handle) continue;
    for (; i + 1 < MAX_VECTORED && vectored[i + 1]; i++) vectored[i] = vectored[i + 1];
    vectored[i] = NULL;
    return 1;
  }
  return 0;
}

LPTOP_LEVEL_EXCEPTION_FILTER pvx_unhandled_filter(void);
void pvx_write_stderr(const char *text);

static void set_in_fault(DWORD v) { *pvx_in_fault() = v; }

/* Continues at `ctx`: the exception is dealt with. */
static void resume(CONTEXT *ctx, EXCEPTION_RECORD *rec) {
  set_in_fault(0);
  RtlRestoreContext(ctx, rec);
}

static void unhandled(EXCEPTION_RECORD *rec, CONTEXT *ctx, BOOL hardware) {
  EXCEPTION_POINTERS ptrs = {rec, ctx};
  LPTOP_LEVEL_EXCEPTION_FILTER filter = pvx_unhandled_filter();
  if (filter) {
    LONG r = filter(&ptrs);
    if (r == EXCEPTION_CONTINUE_EXECUTION) resume(ctx, NULL);
  }
  /* A fault nobody took faults again where it was, still marked: the host then ends the app with its report. */
  if (hardware) pvx_restore_context(ctx);
  char msg[96] = "pvx: unhandled exception 0x";
  int at = 27;
  for (int shift = 28; shift >= 0; shift -= 4) msg[at++] = "0123456789abcdef"[(rec->ExceptionCode >> shift) & 0xf];
  const char *tail = " in the app: it ends with that code\n";
  for (int i = 0; tail[i]; i++) msg[at++] = tail[i];
  msg[at] = 0;
  pvx_write_stderr(msg);
  ExitProcess(rec->ExceptionCode);
}

static void dispatch(EXCEPTION_RECORD *rec, CONTEXT *ctx, BOOL hardware) {
  /* A probe that faulted answers "bad": its one instruction is all that runs before the fixup. */
  if (hardware && rec->ExceptionCode == EXCEPTION_ACCESS_VIOLATION && ctx->Rip >= (DWORD64)pvx_probe_read &&
      ctx->Rip < (DWORD64)pvx_probe_failed) {
    ctx->Rip = (DWORD64)pvx_probe_failed;
    resume(ctx, NULL);
  }
  EXCEPTION_POINTERS ptrs = {rec, ctx};
  PVECTORED_EXCEPTION_HANDLER handlers[MAX_VECTORED];
  int n = 0;
  for (; n < MAX_VECTORED && vectored[n]; n++) handlers[n] = vectored[n];
  for (int i = 0; i < n; i++)
    if (handlers[i](&ptrs) == EXCEPTION_CONTINUE_EXECUTION) resume(ctx, NULL);

  CONTEXT walk = *ctx;
  for (;;) {
    CONTEXT here = walk;
    DISPATCHER_CONTEXT d = {0};
    if (!step(&walk, UNW_FLAG_EHANDLER, &d)) break;
    if (!d.LanguageHandler) continue;
    d.ContextRecord = &here;
    EXCEPTION_DISPOSITION r = d.LanguageHandler(rec, (PVOID)d.EstablisherFrame, ctx, &d);
    if (r == ExceptionContinueExecution) {
      if (rec->ExceptionFlags & EXCEPTION_NONCONTINUABLE) {
        EXCEPTION_RECORD again = {STATUS_NONCONTINUABLE_EXCEPTION, EXCEPTION_NONCONTINUABLE, rec, rec->ExceptionAddress};
        unhandled(&again, ctx, FALSE);
      }
      resume(ctx, NULL);
    }
    if (r != ExceptionContinueSearch && r != ExceptionNestedException) {
      EXCEPTION_RECORD bad = {STATUS_INVALID_DISPOSITION, EXCEPTION_NONCONTINUABLE, rec, rec->ExceptionAddress};
      unhandled(&bad, ctx, FALSE);
    }
  }
  unhandled(rec, ctx, hardware);
}

/* context.c's pvx_fault_entry: a fault in the app's code, handed over by the host. */
void pvx_dispatch_fault(EXCEPTION_RECORD *rec, CONTEXT *ctx) { dispatch(rec, ctx, TRUE); }

EXPORT void WINAPI RaiseException(DWORD code, DWORD flags, DWORD nargs, const ULONG_PTR *args) {
  EXCEPTION_RECORD rec = {0};
  CONTEXT ctx;
  pvx_capture_context(&ctx);
  /* The exception happens at our caller: unwind our own frame first. */
  DISPATCHER_CONTEXT d;
  step(&ctx, UNW_FLAG_NHANDLER, &d);
  rec.ExceptionCode = code;
  rec.ExceptionFlags = flags & EXCEPTION_NONCONTINUABLE;
  rec.ExceptionAddress = (PVOID)ctx.Rip;
  rec.NumberParameters = nargs > EXCEPTION_MAXIMUM_PARAMETERS ? EXCEPTION_MAXIMUM_PARAMETERS : nargs;
  for (DWORD i = 0; i < rec.NumberParameters; i++) rec.ExceptionInformation[i] = args[i];
  dispatch(&rec, &ctx, FALSE);
}

EXPORT BOOLEAN NTAPI RtlDispatchException(PEXCEPTION_RECORD rec, PCONTEXT ctx) {
  dispatch(rec, ctx, FALSE);
  return FALSE;
}

EXPORT void NTAPI RtlRaiseException(PEXCEPTION_RECORD rec) {
  CONTEXT ctx;
  pvx_capture_context(&ctx);
  DISPATCHER_CONTEXT d;
  step(&ctx, UNW_FLAG_NHANDLER, &d);
  rec->ExceptionAddress = (PVOID)ctx.Rip;
  dispatch(rec, &ctx, FALSE);
}

EXPORT void NTAPI RtlUnwindEx(PVOID target_frame, PVOID target_ip, PEXCEPTION_RECORD rec, PVOID retval, PCONTEXT ctx,
                              PUNWIND_HISTORY_TABLE history) {
  EXCEPTION_RECORD own = {0};
  if (!rec) {
    own.ExceptionCode = STATUS_UNWIND;
    rec = &own;
  }
  rec->ExceptionFlags |= EXCEPTION_UNWINDING | (target_frame ? 0 : EXCEPTION_EXIT_UNWIND);
  pvx_capture_context(ctx);
  CONTEXT next = *ctx;
  for (;;) {
    DISPATCHER_CONTEXT d = {0};
    if (!step(&next, UNW_FLAG_UHANDLER, &d)) break;
    if (d.EstablisherFrame == (DWORD64)target_frame) rec->ExceptionFlags |= EXCEPTION_TARGET_UNWIND;
    if (d.LanguageHandler) {
      d.ContextRecord = ctx;
      d.TargetIp = (DWORD64)target_ip;
      d.HistoryTable = history;
      d.LanguageHandler(rec, (PVOID)d.EstablisherFrame, ctx, &d);
    }
    if (d.EstablisherFrame == (DWORD64)target_frame) break;
    *ctx = next;
  }
  ctx->Rax = (DWORD64)retval;
  ctx->Rip = (DWORD64)target_ip;
  resume(ctx, rec);
}

EXPORT void NTAPI RtlUnwind(PVOID target_frame, PVOID target_ip, PEXCEPTION_RECORD rec, PVOID retval) {
  CONTEXT ctx;
  RtlUnwindEx(target_frame, target_ip, rec, retval, &ctx, NULL);
}

/* The frame handler of C's __try blocks: HandlerData is a scope table of
 * [Begin, End) code ranges, each with a filter (or EXCEPTION_EXECUTE_HANDLER)
 * and the __except block's address, or, with no JumpTarget, a __finally
 * block to run while unwinding. */
typedef struct {
  DWORD Count;
  struct { DWORD BeginAddress, EndAddress, HandlerAddress, JumpTarget; } ScopeRecord[];
} C_SCOPE_TABLE;

typedef LONG(WINAPI *C_FILTER)(EXCEPTION_POINTERS *, PVOID frame);
typedef void(WINAPI *C_TERMINATION)(BOOLEAN abnormal, PVOID frame);

static BOOL in_scope(const DISPATCHER_CONTEXT *d, DWORD64 pc, DWORD begin, DWORD end) {
  return pc >= d->ImageBase + begin && pc < d->ImageBase + end;
}

EXPORT EXCEPTION_DISPOSITION __cdecl __C_specific_handler(PEXCEPTION_RECORD rec, PVOID frame, PCONTEXT ctx,
                                                         PDISPATCHER_CONTEXT d) {
  const C_SCOPE_TABLE *t = d->HandlerData;
  if (rec->ExceptionFlags & (EXCEPTION_UNWINDING | EXCEPTION_EXIT_UNWIND)) {
    for (DWORD i = d->ScopeIndex; i < t->Count; i++) {
      if (!in_scope(d, d->ControlPc, t->ScopeRecord[i].BeginAddress, t->ScopeRecord[i].EndAddress)) continue;
      if (t->ScopeRecord[i].JumpTarget) continue; /* an __except: nothing to run on the way out */
      /* Unwinding into this very scope: its __finally is not left, so it does not run. */
      if ((rec->ExceptionFlags & EXCEPTION_TARGET_UNWIND) &&
          in_scope(d, d->TargetIp, t->ScopeRecord[i].BeginAddress, t->ScopeRecord[i].EndAddress))
        break;
      d->ScopeIndex = i + 1; /* a collided unwind resumes after it */
      ((C_TERMINATION)(d->ImageBase + t->ScopeRecord[i].HandlerAddress))(TRUE, frame);
    }
    return ExceptionContinueSearch;
  }
  for (DWORD i = d->ScopeIndex; i < t->Count; i++) {
    if (!in_scope(d, d->ControlPc, t->ScopeRecord[i].BeginAddress, t->ScopeRecord[i].EndAddress)) continue;
    if (!t->ScopeRecord[i].JumpTarget) continue; /* a __finally filters nothing */
    if (t->ScopeRecord[i].HandlerAddress != EXCEPTION_EXECUTE_HANDLER) {
      EXCEPTION_POINTERS ptrs = {rec, ctx};
      LONG verdict = ((C_FILTER)(d->ImageBase + t->ScopeRecord[i].HandlerAddress))(&ptrs, frame);
      if (verdict == EXCEPTION_CONTINUE_EXECUTION) return ExceptionContinueExecution;
      if (verdict == EXCEPTION_CONTINUE_SEARCH) continue;
    }
    RtlUnwindEx(frame, (PVOID)(d->ImageBase + t->ScopeRecord[i].JumpTarget), rec, (PVOID)(ULONG_PTR)rec->ExceptionCode,
                d->ContextRecord, d->HistoryTable);
  }
  return ExceptionContinueSearch;
}

/* What the outermost __except of a Windows thread asks: the app's filter, if it set one. */
EXPORT LONG WINAPI UnhandledExceptionFilter(EXCEPTION_POINTERS *ptrs) {
  LPTOP_LEVEL_EXCEPTION_FILTER filter = pvx_unhandled_filter();
  return filter ? filter(ptrs) : EXCEPTION_EXECUTE_HANDLER;
}
