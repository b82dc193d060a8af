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
  /** mov edx, imm32 */
  movEdxImm(v: number): this {
    return this.#emit(0xba, ...this.#imm32(v));
  }
  /** mov [rdx], eax: rings a doorbell (abi/doorbell.ts). */
  movMemRdxEax(): this {
    return this.#emit(0x89, 0x02);
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
