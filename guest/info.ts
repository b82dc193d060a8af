// struct pvx_info: the read-only page at infoBase where the kernel tells the
// app where its heap and stack are. One u64 per field, in this order.

import { infoBase, PAGE } from "../abi/memory_map.ts";

export const INFO_MAGIC = 0x4f464e49585650n; // "PVXINFO"

export const infoFields = [
  "magic",
  "abi_version",
  "memory_size",
  "image_start",
  "image_end",
  "heap_start",
  "heap_end",
  "virtual_start",
  "virtual_end",
  "stack_start",
  "stack_end",
  // Guest runtime routines (guest/runtime.ts), ms_abi, for pvx.h's critical sections.
  "initialize_critical_section",
  "enter_critical_section",
  "try_enter_critical_section",
  "leave_critical_section",
] as const;
export type Info = Record<(typeof infoFields)[number], bigint>;

export function writeInfo(mem: DataView, info: Info): void {
  if (infoFields.length * 8 > PAGE) throw new Error("struct pvx_info outgrew its page");
  infoFields.forEach((f, i) => mem.setBigUint64(infoBase + 8 * i, info[f], true));
}
