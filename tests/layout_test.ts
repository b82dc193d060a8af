// Every number ffi/kvm.ts hard-codes, checked against gcc's reading of the
// real <linux/kvm.h>: a wrong offset here would silently corrupt vCPU state.
// The C program is generated from the TypeScript data, so a new layout or
// constant is checked without touching this file.
//
// ffi/kvm.ts's `msrs` are not checked: their header, <asm/msr-index.h>, is
// kernel-internal and not installed under /usr/include.

import assert from "node:assert/strict";
import * as kvm from "../ffi/kvm.ts";
import * as libc from "../ffi/libc.ts";
import type { Field, StructLayout } from "../ffi/layout.ts";

/** One number pvx hard-codes, and the C expression that computes it from the header. */
interface Check {
  /** Names the struct and field (or the constant) in failure messages. */
  readonly what: string;
  readonly c: string;
  readonly pvx: bigint;
}

interface Mismatch {
  readonly what: string;
  readonly pvx: bigint;
  readonly header: bigint;
}

const memberSize = (type: string, member: string) => `sizeof(((${type} *)0)->${member})`;

/** A layout's cName is either a C type or "struct.member" for a member of an enclosing struct. */
function cPlace(layout: StructLayout): { type: string; member?: string } {
  const dot = layout.cName.indexOf(".");
  if (dot < 0) return { type: layout.cName };
  return { type: `struct ${layout.cName.slice(0, dot)}`, member: layout.cName.slice(dot + 1) };
}

function fieldChecks(layout: StructLayout): Check[] {
  const { type, member } = cPlace(layout);
  const path = (field: Field) => member ? `${member}.${field.name}` : field.name;
  // Members' offsets are relative to the member itself (the kvm_run exit union), not the struct.
  const relativeTo = member ? ` - offsetof(${type}, ${member})` : "";
  return layout.order.flatMap((field) => [
    {
      what: `${layout.cName}.${field.name} offset`,
      c: `offsetof(${type}, ${path(field)})${relativeTo}`,
      pvx: BigInt(field.offset),
    },
    { what: `${layout.cName}.${field.name} size`, c: memberSize(type, path(field)), pvx: BigInt(field.size) },
  ]);
}

function layoutChecks(layout: StructLayout): Check[] {
  const { type, member } = cPlace(layout);
  const size = { what: `sizeof ${layout.cName}`, c: member ? memberSize(type, member) : `sizeof(${type})` };
  return [{ ...size, pvx: BigInt(layout.size) }, ...fieldChecks(layout)];
}

/** pvx constants that are not header macros of the same name. */
const derivedConstants: Readonly<Record<string, string>> = {
  KVM_RUN_EXIT_UNION: "offsetof(struct kvm_run, io)",
};

function constantChecks(constants: Readonly<Record<string, number | bigint>>): Check[] {
  return Object.entries(constants).map(([name, value]) => ({
    what: name,
    c: derivedConstants[name] ?? name,
    pvx: BigInt(value),
  }));
}

function isLayout(value: unknown): value is StructLayout {
  return typeof value === "object" && value !== null && "cName" in value && "order" in value;
}

function pvxChecks(): Check[] {
  // Exported layouts too, so union members that `layouts` leaves out are covered.
  const all = new Set<StructLayout>([...kvm.layouts, ...Object.values(kvm).filter(isLayout)]);
  const topLevelConstants = Object.fromEntries(
    Object.entries(kvm).filter(([name, value]) => name.startsWith("KVM_") && typeof value === "number"),
  ) as Record<string, number>;
  return [
    // kvm_run is only the head of the shared page: its size is the exit union's offset (KVM_RUN_EXIT_UNION).
    ...[...all].flatMap((layout) => layout === kvm.kvm_run ? fieldChecks(layout) : layoutChecks(layout)),
    ...constantChecks({ ...kvm.ioctls, ...kvm.exitReasons, ...topLevelConstants }),
  ];
}

function cProgram(checks: readonly Check[], headers: readonly string[]): string {
  return [
    "#include <stddef.h>",
    "#include <stdio.h>",
    ...headers.map((h) => `#include <${h}>`),
    "int main(void) {",
    ...checks.map((check) => `\tprintf("%llu\\n", (unsigned long long)(${check.c}));`),
    "\treturn 0;",
    "}",
    "",
  ].join("\n");
}

async function run(command: string, args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(command, { args }).output();
  const text = new TextDecoder();
  if (!success) throw new Error(`${command} ${args.join(" ")} failed:\n${text.decode(stderr)}`);
  return text.decode(stdout);
}

/** What the header says for each check, in order. */
async function headerValues(checks: readonly Check[], headers: readonly string[]): Promise<bigint[]> {
  const dir = await Deno.makeTempDir({ prefix: "pvx_layout_" });
  try {
    const source = `${dir}/layout.c`;
    const binary = `${dir}/layout`;
    await Deno.writeTextFile(source, cProgram(checks, headers));
    await run("gcc", ["-std=gnu11", "-Wall", "-Werror", "-o", binary, source]);
    const values = (await run(binary, [])).trim().split("\n").map(BigInt);
    assert.equal(values.length, checks.length, "the C program prints one value per check");
    return values;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function mismatches(checks: readonly Check[], headers = ["linux/kvm.h"]): Promise<Mismatch[]> {
  const header = await headerValues(checks, headers);
  return checks.flatMap((check, i) =>
    check.pvx === header[i] ? [] : [{ what: check.what, pvx: check.pvx, header: header[i] }]
  );
}

Deno.test("ffi/kvm.ts layouts, ioctl numbers and constants match <linux/kvm.h>", async () => {
  const checks = pvxChecks();
  const covered = new Set(checks.map((check) => check.what));
  // Guards against the discovery in pvxChecks quietly checking nothing.
  const samples = [
    "sizeof struct kvm_sregs",
    "struct kvm_run.cr8 offset",
    "kvm_run.io.port offset",
    "sizeof kvm_run.system_event",
    "KVM_RUN",
    "KVM_SET_SREGS",
    "KVM_EXIT_INTERNAL_ERROR",
    "KVM_CAP_IMMEDIATE_EXIT",
    "KVM_MEM_LOG_DIRTY_PAGES",
    "KVM_EXIT_IO_OUT",
    "KVM_API_VERSION",
    "KVM_RUN_EXIT_UNION",
    "sizeof struct kvm_xsave",
    "struct kvm_xcrs.xcrs offset",
    "sizeof struct kvm_xcr",
    "struct kvm_debugregs.dr7 offset",
    "struct kvm_vcpu_events.exception_payload offset",
    "kvm_vcpu_events.smi.latched_init offset",
    "sizeof kvm_vcpu_events.triple_fault",
    "KVM_GET_XSAVE2",
    "KVM_SET_VCPU_EVENTS",
    "KVM_CAP_XSAVE2",
    "KVM_MAX_XCRS",
  ];
  for (const what of samples) assert.ok(covered.has(what), `no check for ${what}`);
  assert.ok(!covered.has("sizeof struct kvm_run"), "kvm_run's size is the exit union offset, not sizeof");

  assert.deepEqual(await mismatches(checks), []);
});

Deno.test("ffi/libc.ts layouts match <sys/statvfs.h> and <sys/resource.h>", async () => {
  const checks = libc.libcLayouts.flatMap(layoutChecks);
  for (const what of ["sizeof struct statvfs", "struct statvfs.f_bavail offset", "struct rusage.ru_stime offset"]) {
    assert.ok(checks.some((check) => check.what === what), `no check for ${what}`);
  }
  assert.deepEqual(await mismatches(checks, ["sys/statvfs.h", "sys/resource.h"]), []);
});

function withField(layout: StructLayout, name: string, change: Partial<Field>): StructLayout {
  assert.ok(layout.fields[name], `${layout.cName} has a field ${name} to corrupt`);
  return { ...layout, order: layout.order.map((field) => field.name === name ? { ...field, ...change } : field) };
}

Deno.test("a corrupted layout or constant is reported by struct and field", async () => {
  const corrupted = [
    ...layoutChecks(withField(kvm.kvm_regs, "rip", { offset: kvm.kvm_regs.fields.rip.offset + 8 })),
    ...layoutChecks({ ...kvm.kvm_segment, size: kvm.kvm_segment.size + 8 }),
    ...layoutChecks(withField(kvm.kvm_run_mmio, "data", { size: 16 })),
    ...fieldChecks(withField(kvm.kvm_run, "exit_reason", { offset: 12 })),
    ...constantChecks({ KVM_RUN: kvm.ioctls.KVM_RUN + 1n }),
  ];
  assert.deepEqual(await mismatches(corrupted), [
    { what: "struct kvm_regs.rip offset", pvx: 136n, header: 128n },
    { what: "sizeof struct kvm_segment", pvx: 32n, header: 24n },
    { what: "kvm_run.mmio.data size", pvx: 16n, header: 8n },
    { what: "struct kvm_run.exit_reason offset", pvx: 12n, header: 8n },
    { what: "KVM_RUN", pvx: 0xae81n, header: 0xae80n },
  ]);
});
