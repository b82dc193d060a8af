// Which accelerator runs a guest: the host's /dev/kvm, or the nested one (KVM
// inside a QEMU TCG guest with emulated SVM) where the host has none, the way
// QEMU falls back from KVM to TCG. `--accel` or PVX_ACCEL chooses explicitly.

import { kvmAccess } from "../hv/kvm_access.ts";
import { type JobRunner, RemoteRunner, runAsThisProcess } from "./nested/jobs.ts";
import { defaultNestedVm, NestedVm, type NestedVmOptions } from "./nested/vm.ts";
import type { JobSpec } from "./nested/protocol.ts";

export type Accel = "kvm" | "nested";
export const accelChoices = ["auto", "kvm", "nested"] as const;

/** Set by whoever owns a running nested VM (the test runner) so that every pvx it starts shares that VM. */
export const NESTED_SOCKET_ENV = "PVX_NESTED_SOCKET";
export const ACCEL_ENV = "PVX_ACCEL";

export class AccelError extends Error {}

/** The accelerator to use for `choice` (from --accel, else PVX_ACCEL, else auto), saying why when it falls back. */
export function chooseAccel(choice = Deno.env.get(ACCEL_ENV) ?? "auto"): Accel {
  if (!(accelChoices as readonly string[]).includes(choice)) {
    throw new AccelError(`--accel ${JSON.stringify(choice)}: expected one of ${accelChoices.join(", ")}`);
  }
  if (choice === "nested") return "nested";
  const access = kvmAccess();
  if (access.ok) return "kvm";
  if (choice === "kvm") throw new AccelError(`--accel kvm: ${access.cause}. To fix: ${access.remedy}`);
  console.error(
    `pvx: ${access.cause}; using the nested accelerator: KVM in a QEMU TCG guest with emulated AMD SVM. ` +
      "Just as isolated, but it boots a helper VM first (about 10 s) and runs guests 10-50x slower. " +
      "--accel kvm refuses instead.",
  );
  return "nested";
}

/** The VM to hand a job to: the shared one named by PVX_NESTED_SOCKET, else a new one for this job alone. */
async function nestedRunner(vmOptions: NestedVmOptions): Promise<{ runner: JobRunner; close(): Promise<void> }> {
  const shared = Deno.env.get(NESTED_SOCKET_ENV);
  if (shared) return { runner: new RemoteRunner(shared), close: async () => {} };
  const vm = await NestedVm.boot(vmOptions);
  return { runner: vm, close: () => vm.shutdown() };
}

/** A job that runs `deno <args>` inside as it would run here: same cwd and environment. */
export function denoJob(args: string[]): JobSpec {
  const env = Deno.env.toObject();
  delete env[NESTED_SOCKET_ENV];
  delete env[ACCEL_ENV];
  delete env.DENO_DIR; // the guest keeps its own Deno cache
  env[IN_NESTED_ENV] = "1";
  return { argv: [Deno.execPath(), ...args], cwd: Deno.cwd(), env };
}

/** Set in every job the nested VM runs, so that what runs there can say so (the bench labels its figures). */
export const IN_NESTED_ENV = "PVX_IN_NESTED";

/**
 * Runs `deno <args>` on the nested accelerator as if here: same paths, cwd,
 * environment, stdio and exit status. `alongside` serves something else from
 * the same VM while the job runs (an instance's control API).
 */
export async function runDenoNested(
  args: string[],
  alongside?: (runner: JobRunner) => Promise<{ close(): Promise<void> }>,
  vmOptions = defaultNestedVm,
): Promise<number> {
  const { runner, close } = await nestedRunner(vmOptions);
  try {
    const served = await alongside?.(runner);
    try {
      return await runAsThisProcess(runner, denoJob(args));
    } finally {
      await served?.close();
    }
  } finally {
    await close();
  }
}
