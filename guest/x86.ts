// Just enough of an x86-64 encoder for the portable kernel's stubs. Each
// method emits one instruction; tests/x86_test.ts checks them against objdump.

export const enum Reg {
  rax = 0,
  rcx = 1,
  rdx = 2,
  rbx = 3,
  rsp = 4,
  rbp = 5,
  rsi = 6,
  rdi = 7,
  r8 = 8,
  r9 = 9,
  r10 = 10,
  r11 = 11,
  r12 = 12,
  r13 = 13,
  r14 = 14,
  r15 = 15,
}

/** 64-bit register names, index = encoding (the `Reg` value). */
export const registerNames = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
] as const;

export class Asm {
  readonly bytes: number[] = [];
  #labels = new Map<string, number>();
  #fixups: { at: number; label: string }[] = [];

  constructor(readonly origin: number) {}

  get here(): number {
    return this.origin + this.bytes.length;
  }

  #emit(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }

  #imm32(v: number): number[] {
    return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  }

  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.#labels.set(name, this.here);
    return this;
  }

  address(name: string): number {
    const a = this.#labels.get(name);
    if (a === undefined) throw new Error(`label ${name} is not defined`);
    return a;
  }

  push(r: Reg): this {
    return r >= 8 ? this.#emit(0x41, 0x50 + (r - 8)) : this.#emit(0x50 + r);
  }
  pop(r: Reg): this {
    return r >= 8 ? this.#emit(0x41, 0x58 + (r - 8)) : this.#emit(0x58 + r);
  }
  /** push imm32, sign-extended to 64 bits. */
  pushImm(v: number): this {
    return this.#emit(0x68, ...this.#imm32(v));
  }
  /** mov rax, cr2 */
  movRaxCr2(): this {
    return this.#emit(0x0f, 0x20, 0xd0);
  }
  /** mov eax, esp: frames live below 4 GiB, so the low half is the whole address. */
  movEaxEsp(): this {
    return this.#emit(0x89, 0xe0);
  }
  /** mov r32, imm32 (zero-extends into the 64-bit register). */
  movImm32(r: Reg, v: number): this {
    return this.#emit(...(r >= 8 ? [0x41] : []), 0xb8 + (r & 7), ...this.#imm32(v));
  }
  /** mov edx, imm32 */
  movEdxImm(v: number): this {
    return this.movImm32(Reg.rdx, v);
  }
  /** mov r64, imm64 */
  movImm64(r: Reg, v: bigint): this {
    const bytes = Array.from({ length: 8 }, (_, i) => Number((BigInt.asUintN(64, v) >> BigInt(8 * i)) & 0xffn));
    return this.#emit(r >= 8 ? 0x49 : 0x48, 0xb8 + (r & 7), ...bytes);
  }
  /** mov [rsp + disp32], r64 */
  storeToStack(disp: number, r: Reg): this {
    return this.#emit(r >= 8 ? 0x4c : 0x48, 0x89, 0x84 | ((r & 7) << 3), 0x24, ...this.#imm32(disp));
  }
  /** mov r64, [rsp + disp32] */
  loadFromStack(r: Reg, disp: number): this {
    return this.#emit(r >= 8 ? 0x4c : 0x48, 0x8b, 0x84 | ((r & 7) << 3), 0x24, ...this.#imm32(disp));
  }
  /** sub rsp, imm32 */
  subRsp(v: number): this {
    return this.#emit(0x48, 0x81, 0xec, ...this.#imm32(v));
  }
  /** add rsp, imm32 */
  addRsp(v: number): this {
    return this.#emit(0x48, 0x81, 0xc4, ...this.#imm32(v));
  }
  /** mov dst32, src32 (low registers only) */
  movReg32(dst: Reg, src: Reg): this {
    if (dst >= 8 || src >= 8) throw new Error("movReg32 takes rax..rdi only");
    return this.#emit(0x89, 0xc0 | (src << 3) | dst);
  }
  /** xor r32, r32: zeroes the whole register. */
  zero(r: Reg): this {
    return this.#emit(...(r >= 8 ? [0x45] : []), 0x31, 0xc0 | ((r & 7) << 3) | (r & 7));
  }
  /** call r64 */
  callReg(r: Reg): this {
    return this.#emit(...(r >= 8 ? [0x41] : []), 0xff, 0xd0 | (r & 7));
  }
  ret(): this {
    return this.#emit(0xc3);
  }
  ud2(): this {
    return this.#emit(0x0f, 0x0b);
  }
  /** mov [rdx], eax: rings a doorbell (abi/doorbell.ts). */
  movMemRdxEax(): this {
    return this.#emit(0x89, 0x02);
  }

  /** mov r64, gs:[disp32]: how a thread finds its TEB fields. */
  movFromGs(r: Reg, disp: number): this {
    return this.#emit(0x65, r >= 8 ? 0x4c : 0x48, 0x8b, 0x04 | ((r & 7) << 3), 0x25, ...this.#imm32(disp));
  }
  /** mov r64, [base + disp8] */
  loadMem64(r: Reg, base: Reg, disp: number): this {
    return this.#memOp([0x8b], r, base, disp, true);
  }
  /** add r64, imm8 (sign-extended) */
  addImm8(r: Reg, v: number): this {
    return this.#emit(r >= 8 ? 0x49 : 0x48, 0x83, 0xc0 | (r & 7), v & 0xff);
  }
  /** mov rax, cr3; mov cr3, rax: flushes this CPU's non-global translations. */
  reloadCr3(): this {
    return this.#emit(0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8);
  }
  /** ldmxcsr [rsp] */
  ldmxcsrFromStack(): this {
    return this.#emit(0x0f, 0xae, 0x14, 0x24);
  }
  /** fninit: the x87 unit's default state. */
  fninit(): this {
    return this.#emit(0xdb, 0xe3);
  }
  /** mov [base + disp8], r64 */
  storeMem64(base: Reg, disp: number, r: Reg): this {
    return this.#memOp([0x89], r, base, disp, true);
  }
  /** mov qword [base + disp8], imm32 (sign-extended) */
  storeMem64Imm(base: Reg, disp: number, v: number): this {
    return this.#memOp([0xc7], 0, base, disp, true, this.#imm32(v));
  }
  /** mov dword [base + disp8], imm32 */
  storeMem32Imm(base: Reg, disp: number, v: number): this {
    return this.#memOp([0xc7], 0, base, disp, false, this.#imm32(v));
  }
  /** cmp [base + disp8], r64 */
  cmpMem64(base: Reg, disp: number, r: Reg): this {
    return this.#memOp([0x39], r, base, disp, true);
  }
  /** inc dword [base + disp8] */
  incMem32(base: Reg, disp: number): this {
    return this.#memOp([0xff], 0, base, disp, false);
  }
  /** dec dword [base + disp8]: ZF says it reached zero. */
  decMem32(base: Reg, disp: number): this {
    return this.#memOp([0xff], 1, base, disp, false);
  }
  /** lock cmpxchg [base + disp8], r32: compares with eax. */
  lockCmpxchgMem32(base: Reg, disp: number, r: Reg): this {
    return this.#emit(0xf0).#memOp([0x0f, 0xb1], r, base, disp, false);
  }
  /** lock xadd [base + disp8], r32 */
  lockXaddMem32(base: Reg, disp: number, r: Reg): this {
    return this.#emit(0xf0).#memOp([0x0f, 0xc1], r, base, disp, false);
  }
  /** xchg [base + disp8], r32 (locked by definition) */
  xchgMem32(base: Reg, disp: number, r: Reg): this {
    return this.#memOp([0x87], r, base, disp, false);
  }
  /** lea r64, [base + disp8] */
  lea(r: Reg, base: Reg, disp: number): this {
    return this.#memOp([0x8d], r, base, disp, true);
  }
  /** test r32, r32 */
  test32(a: Reg, b: Reg): this {
    if (a >= 8 || b >= 8) throw new Error("test32 takes rax..rdi only");
    return this.#emit(0x85, 0xc0 | (b << 3) | a);
  }
  /** inc r32: ZF says it wrapped to zero. */
  inc32(r: Reg): this {
    return this.#emit(...(r >= 8 ? [0x41] : []), 0xff, 0xc0 | (r & 7));
  }
  /** dec r32 */
  dec32(r: Reg): this {
    return this.#emit(...(r >= 8 ? [0x41] : []), 0xff, 0xc8 | (r & 7));
  }
  /** jcc rel32 to a label: "e" (ZF set) or "ne". */
  jcc(cond: "e" | "ne", label: string): this {
    this.#emit(0x0f, cond === "e" ? 0x84 : 0x85);
    this.#fixups.push({ at: this.bytes.length, label });
    return this.#emit(0, 0, 0, 0);
  }

  /** An instruction on [base + disp8] (mod 01; base is not rsp/r12, which would need a SIB byte). */
  #memOp(opcode: number[], reg: number, base: Reg, disp: number, wide: boolean, imm: number[] = []): this {
    if ((base & 7) === Reg.rsp) throw new Error("memory operands based on rsp/r12 are not encoded");
    if (disp < -128 || disp > 127) throw new Error(`displacement ${disp} does not fit in 8 bits`);
    const rex = 0x40 | (wide ? 8 : 0) | (reg >= 8 ? 4 : 0) | (base >= 8 ? 1 : 0);
    return this.#emit(
      ...(rex !== 0x40 ? [rex] : []),
      ...opcode,
      0x40 | ((reg & 7) << 3) | (base & 7),
      disp & 0xff,
      ...imm,
    );
  }

  hlt(): this {
    return this.#emit(0xf4);
  }
  cli(): this {
    return this.#emit(0xfa);
  }
  /** jmp rel32 to a label, resolved by finish(). */
  jmp(label: string): this {
    this.#emit(0xe9);
    this.#fixups.push({ at: this.bytes.length, label });
    return this.#emit(0, 0, 0, 0);
  }
  /** Pads with int3 so a stray jump into padding traps. */
  alignTo(n: number): this {
    while (this.here % n) this.#emit(0xcc);
    return this;
  }

  finish(): Uint8Array {
    for (const { at, label } of this.#fixups) {
      const rel = this.address(label) - (this.origin + at + 4);
      this.bytes.splice(at, 4, ...this.#imm32(rel));
    }
    this.#fixups = [];
    return Uint8Array.from(this.bytes);
  }
}
