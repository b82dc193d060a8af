// A bounds-checked little-endian view of an executable the user gave us. Every
// refusal names the file, the offset of the field responsible and the reason,
// as the loader's own error class (ElfError, PeError).

export type FormatErrorClass = new (file: string, offset: number, reason: string) => Error;

const hex = (n: number) => `0x${n.toString(16)}`;
const utf8 = new TextDecoder("utf-8");

export class BinaryReader {
  readonly #view: DataView;

  constructor(readonly bytes: Uint8Array, readonly file: string, private readonly formatError: FormatErrorClass) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.length;
  }
  u8(at: number): number {
    return this.#view.getUint8(at);
  }
  u16(at: number): number {
    return this.#view.getUint16(at, true);
  }
  u32(at: number): number {
    return this.#view.getUint32(at, true);
  }
  /** Exact below 2^53; larger values are far beyond every bound they are checked against, so rounding is harmless. */
  u64(at: number): number {
    return Number(this.#view.getBigUint64(at, true));
  }

  fail(at: number, reason: string): never {
    throw new this.formatError(this.file, at, reason);
  }

  /** Refuses [offset, offset+size) unless it lies inside the file; `declaredAt` is the field that named it. */
  requireInFile(offset: number, size: number, declaredAt: number, what: string): void {
    if (offset + size > this.length) {
      this.fail(
        declaredAt,
        `${what} [${hex(offset)}, ${hex(offset + size)}) lies outside the ${this.length}-byte file`,
      );
    }
  }

  /** The NUL-terminated string starting at `offset`, which must end before `end`. */
  cString(offset: number, end: number, declaredAt: number, unterminatedReason: string): string {
    const length = this.bytes.subarray(offset, end).indexOf(0);
    if (length < 0) this.fail(declaredAt, unterminatedReason);
    return utf8.decode(this.bytes.subarray(offset, offset + length));
  }
}
