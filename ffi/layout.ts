// C struct layouts, declared once. Offsets follow the System V x86-64 rules
// (natural alignment, tail padding to the largest member), so a layout here can
// be checked field by field against the compiler's view (tests/layout_test.ts).

export type Scalar = "u8" | "u16" | "u32" | "u64" | "i32" | "i64";
export type FieldType = Scalar | { array: FieldType; length: number } | StructLayout;

export interface Field {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly type: FieldType;
}

export interface StructLayout {
  readonly cName: string;
  readonly size: number;
  readonly align: number;
  readonly fields: Readonly<Record<string, Field>>;
  /** Fields in declaration order, for printing and comparison. */
  readonly order: readonly Field[];
}

const scalarSize: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, u64: 8, i32: 4, i64: 8 };

function sizeAlign(t: FieldType): [number, number] {
  if (typeof t === "string") return [scalarSize[t], scalarSize[t]];
  if ("array" in t) {
    const [s, a] = sizeAlign(t.array);
    return [s * t.length, a];
  }
  return [t.size, t.align];
}

export function array(of: FieldType, length: number): FieldType {
  return { array: of, length };
}

/** `cName` is the C spelling (e.g. "struct kvm_regs") used by the layout test. */
export function struct(cName: string, members: ReadonlyArray<readonly [string, FieldType]>): StructLayout {
  let offset = 0;
  let align = 1;
  const fields: Record<string, Field> = {};
  const order: Field[] = [];
  for (const [name, type] of members) {
    const [size, a] = sizeAlign(type);
    offset = Math.ceil(offset / a) * a;
    const field = { name, offset, size, type };
    fields[name] = field;
    order.push(field);
    offset += size;
    align = Math.max(align, a);
  }
  return { cName, size: Math.ceil(offset / align) * align, align, fields, order };
}

/** A field that overlays others at a fixed offset (C unions inside a struct). */
export function at(layout: StructLayout, name: string): number {
  const f = layout.fields[name];
  if (!f) throw new Error(`${layout.cName} has no field ${name}`);
  return f.offset;
}
