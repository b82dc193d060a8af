// guest/x86.ts and the kernel stubs built with it, read back by objdump: an
// independent decoder is the only witness that the bytes mean what the
// method names say.

import assert from "node:assert/strict";
import { Asm, Reg, registerNames } from "../guest/x86.ts";
import { faultFrameFields, writeKernel } from "../guest/kernel.ts";
import { kernelTextBase, kernelTextSize, MiB } from "../abi/memory_map.ts";
import { PageTables } from "../guest/paging.ts";
import { FAULT_DOORBELL } from "../abi/doorbell.ts";

interface Instruction {
  readonly address: number;
  /** Mnemonic and operands as objdump prints them (AT&T syntax). */
  readonly text: string;
}

const hex = (n: number) => `0x${n.toString(16)}`;

async function disassemble(code: Uint8Array, origin: number): Promise<Instruction[]> {
  const dir = await Deno.makeTempDir({ prefix: "pvx_x86_" });
  try {
    const file = `${dir}/code.bin`;
    await Deno.writeFile(file, code);
    const args = ["-D", "-b", "binary", "-mi386:x86-64", `--adjust-vma=${hex(origin)}`, file];
    const { success, stdout, stderr } = await new Deno.Command("objdump", { args }).output();
    if (!success) throw new Error(`objdump failed:\n${new TextDecoder().decode(stderr)}`);
    return new TextDecoder().decode(stdout).split("\n").flatMap((line) => {
      const listing = /^\s*([0-9a-f]+):\t[0-9a-f ]+\t(.+)$/.exec(line);
      return listing ? [{ address: parseInt(listing[1], 16), text: listing[2].trimEnd() }] : [];
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const allRegisters = registerNames.map((_, i) => i as Reg);

Deno.test("every Asm method encodes the instruction objdump decodes", async () => {
  const origin = 0x401000;
  const asm = new Asm(origin).label("top");
  for (const r of allRegisters) asm.push(r);
  for (const r of allRegisters.toReversed()) asm.pop(r);
  asm.pushImm(0x12345678).pushImm(-2);
  asm.movRaxCr2().movEaxEsp().movEdxImm(0x12345678).movMemRdxEax().hlt().cli();
  asm.jmp("forward").jmp("top").alignTo(16).label("forward").hlt();
  const code = asm.finish();

  // The code before the padding is 82 bytes, so alignment puts "forward" at origin + 96.
  assert.equal(asm.address("forward"), origin + 96);
  const listing = await disassemble(code, origin);
  assert.deepEqual(listing.map((i) => i.text), [
    ...registerNames.map((name) => `push   %${name}`),
    ...registerNames.toReversed().map((name) => `pop    %${name}`),
    "push   $0x12345678",
    "push   $0xfffffffffffffffe",
    "mov    %cr2,%rax",
    "mov    %esp,%eax",
    "mov    $0x12345678,%edx",
    "mov    %eax,(%rdx)",
    "hlt",
    "cli",
    `jmp    ${hex(origin + 96)}`,
    `jmp    ${hex(origin)}`,
    ...Array(14).fill("int3"),
    "hlt",
  ]);
  assert.equal(listing.at(-1)!.address, origin + 96);
});

Deno.test("Asm rejects a label defined twice or never defined", () => {
  assert.throws(() => new Asm(0).label("a").label("a"), /label a defined twice/);
  assert.throws(() => new Asm(0).jmp("nowhere").finish(), /label nowhere is not defined/);
});

Deno.test("the kernel's exception stubs push the vector and the frame the host decodes", async () => {
  const memory = new Uint8Array(8 * MiB);
  writeKernel(memory, new PageTables(memory));
  const text = await disassemble(memory.subarray(kernelTextBase, kernelTextBase + kernelTextSize), kernelTextBase);
  const instructionsIn = (start: number, end: number) =>
    text.filter((i) => i.address >= start && i.address < end).map((i) => i.text);

  // One 16-byte stub per vector (the IDT points at kernelTextBase + 16 * vector), then the common stub.
  const stubStride = 16;
  const stub = (vector: number) => kernelTextBase + vector * stubStride;
  const common = stub(256);
  const jmpCommon = `jmp    ${hex(common)}`;
  // SDM vol. 3, table 6-1: the CPU pushes an error code for these; the stub supplies a 0 for the rest.
  const withErrorCode = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
  for (let vector = 0; vector < 256; vector++) {
    const code = [...withErrorCode.has(vector) ? [] : ["push   $0x0"], `push   $${hex(vector)}`, jmpCommon];
    const slot = instructionsIn(stub(vector), stub(vector + 1));
    const padding = Array(Math.max(0, slot.length - code.length)).fill("int3");
    assert.deepEqual(slot, [...code, ...padding], `stub for vector ${vector}`);
  }

  // Pushed in the reverse of the frame's memory order: the last push lands lowest.
  const pushed = faultFrameFields.slice(0, faultFrameFields.indexOf("vector")).toReversed();
  assert.equal(pushed.at(-1), "cr2");
  const expected = [
    ...pushed.slice(0, -1).map((name) => `push   %${name}`),
    "mov    %cr2,%rax",
    "push   %rax",
    "mov    %esp,%eax",
    `mov    $${hex(FAULT_DOORBELL)},%edx`,
    "mov    %eax,(%rdx)",
    "hlt",
  ];
  const start = text.findIndex((i) => i.address === common);
  assert.notEqual(start, -1, "an instruction starts at the common stub");
  const commonStub = text.slice(start, start + expected.length + 1);
  const halt = commonStub.at(-2)!;
  assert.deepEqual(commonStub.map((i) => i.text), [...expected, `jmp    ${hex(halt.address)}`]);
});

Deno.test("the instructions of kernel32 thunks and the Windows entry trampoline encode as objdump reads them", async () => {
  const origin = 0xc0000;
  const asm = new Asm(origin);
  asm.movImm32(Reg.rax, 7).movImm32(Reg.r8, 0x12345678).movImm64(Reg.rcx, 0x140001000n).movImm64(Reg.r9, -1n);
  asm.storeToStack(8, Reg.rcx).storeToStack(0x20, Reg.r9).loadFromStack(Reg.rax, 0x48).loadFromStack(Reg.r10, 0);
  asm.subRsp(0x30).addRsp(0x30).movReg32(Reg.rcx, Reg.rax).zero(Reg.r8).zero(Reg.rdx);
  asm.callReg(Reg.rax).callReg(Reg.r11).ret().ud2();
  const text = (await disassemble(asm.finish(), origin)).map((i) => i.text);
  assert.deepEqual(text, [
    "mov    $0x7,%eax",
    "mov    $0x12345678,%r8d",
    "movabs $0x140001000,%rcx",
    "movabs $0xffffffffffffffff,%r9",
    "mov    %rcx,0x8(%rsp)",
    "mov    %r9,0x20(%rsp)",
    "mov    0x48(%rsp),%rax",
    "mov    0x0(%rsp),%r10",
    "sub    $0x30,%rsp",
    "add    $0x30,%rsp",
    "mov    %eax,%ecx",
    "xor    %r8d,%r8d",
    "xor    %edx,%edx",
    "call   *%rax",
    "call   *%r11",
    "ret",
    "ud2",
  ]);
  assert.throws(() => new Asm(0).movReg32(Reg.r8, Reg.rax), /rax..rdi only/);
});

Deno.test("the atomic and memory-operand instructions of the guest runtime encode as objdump reads them", async () => {
  const origin = 0xc0000;
  const asm = new Asm(origin).label("top");
  asm.movFromGs(Reg.rdx, 0x48).movFromGs(Reg.r9, 0x30);
  asm.storeMem64(Reg.rcx, 16, Reg.rdx).storeMem64(Reg.r8, -8, Reg.r10);
  asm.storeMem64Imm(Reg.rcx, 0x20, 0).storeMem32Imm(Reg.rcx, 12, 1);
  asm.cmpMem64(Reg.rcx, 16, Reg.rdx).incMem32(Reg.rcx, 12).decMem32(Reg.rcx, 12);
  asm.lockCmpxchgMem32(Reg.rcx, 8, Reg.r8).lockXaddMem32(Reg.rcx, 8, Reg.rax).xchgMem32(Reg.rcx, 8, Reg.rax);
  asm.lea(Reg.rcx, Reg.rcx, 8).test32(Reg.rax, Reg.rax).dec32(Reg.rax).dec32(Reg.r8);
  asm.inc32(Reg.rax).inc32(Reg.r9);
  asm.loadMem64(Reg.rdi, Reg.rsi, 0).loadMem64(Reg.rax, Reg.rdi, 0).addImm8(Reg.rsi, 8).reloadCr3();
  asm.ldmxcsrFromStack().fninit();
  asm.jcc("e", "top").jcc("ne", "top");
  const listing = await disassemble(asm.finish(), origin);
  assert.deepEqual(listing.map((i) => i.text), [
    "mov    %gs:0x48,%rdx",
    "mov    %gs:0x30,%r9",
    "mov    %rdx,0x10(%rcx)",
    "mov    %r10,-0x8(%r8)",
    "movq   $0x0,0x20(%rcx)",
    "movl   $0x1,0xc(%rcx)",
    "cmp    %rdx,0x10(%rcx)",
    "incl   0xc(%rcx)",
    "decl   0xc(%rcx)",
    "lock cmpxchg %r8d,0x8(%rcx)",
    "lock xadd %eax,0x8(%rcx)",
    "xchg   %eax,0x8(%rcx)",
    "lea    0x8(%rcx),%rcx",
    "test   %eax,%eax",
    "dec    %eax",
    "dec    %r8d",
    "inc    %eax",
    "inc    %r9d",
    "mov    0x0(%rsi),%rdi",
    "mov    0x0(%rdi),%rax",
    "add    $0x8,%rsi",
    "mov    %cr3,%rax",
    "mov    %rax,%cr3",
    "ldmxcsr (%rsp)",
    "fninit",
    `je     ${hex(origin)}`,
    `jne    ${hex(origin)}`,
  ]);
  assert.throws(() => new Asm(0).storeMem64(Reg.rsp, 0, Reg.rax), /rsp/);
  assert.throws(() => new Asm(0).incMem32(Reg.rcx, 200), /8 bits/);
});
