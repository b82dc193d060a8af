// An instance's state, taken apart for a snapshot file and put back together
// (Firecracker's Persist shape): each component saves plain, versioned data
// beside itself (vCPUs in hv/vcpu_state.ts, host bookkeeping in
// hv/host_state.ts, the overlay in abi/overlay.ts), and this module gathers
// them into the "state" section of a snapshot (hv/snapshot_file.ts,
// docs/snapshot.md) and checks them on the way back.

import type { HostInit, HostState } from "./host_state.ts";
import type { ParkedThread } from "./vcpu_thread.ts";
import { callsByNr } from "../abi/calls.ts";
import type { Instance, PausedState } from "./instance.ts";
import { InstanceStateError } from "./instance.ts";
import { decodeVcpuState, encodeVcpuState } from "./vcpu_state.ts";
import type { ShareSpec } from "../abi/fileview.ts";
import { packOverlay } from "../abi/overlay.ts";
import { openSnapshot, type Snapshot, SnapshotError, writeSnapshot } from "./snapshot_file.ts";

/** The version of the "state" section; a reader refuses any other. */
export const STATE_VERSION = 1;

/** How the guest was booted: what a restore needs besides the bundle and the snapshot's RAM. */
export interface BootState {
  app: string;
  memoryBytes: number;
  pageTableRoot: number;
  missingImports: string[];
  /** Where the threads the app creates begin (guest/runtime.ts); unset when it cannot create any. */
  threadStart?: number;
  /** GetTickCount64's zero, on the guest clock. */
  startedAt: number;
  /** HostInit without what the restore supplies: the bundle's files, the overlay directory and the shares. */
  host: Omit<HostInit, "bundleFiles" | "overlayDir" | "shares">;
  /** The shares the app was run with; a restore must mount the same guest paths. */
  shares: ShareSpec[];
}

/** The "state" section: how the guest was booted, and everything of it but its RAM and its overlay, paused. */
export interface InstanceState {
  version: typeof STATE_VERSION;
  boot: BootState;
  paused: PausedState;
}

/** A bundle file as a snapshot names it. */
export interface BundleFile {
  path: string;
  sha256: string;
}

/** Options of one snapshot. */
export interface SnapshotRequest {
  /** End the instance once the snapshot is safely written. */
  stop?: boolean;
  progress?: (done: number, total: number) => void;
}

export interface SnapshotResult {
  id: string;
  path: string;
  fileBytes: number;
  pages: number;
  threads: number;
}

/** A running instance as snapshots see it: what it was booted from, and where its files go. */
export class InstanceSession {
  constructor(
    readonly instance: Instance,
    readonly boot: BootState,
    readonly bundle: BundleFile | undefined,
    readonly overlayDir: string,
  ) {}

  /**
   * Saves the instance to `path`: it is paused (if it was not already),
   * written, then resumed, or stopped when asked, or left paused if it was.
   */
  async snapshot(path: string, request: SnapshotRequest = {}): Promise<SnapshotResult> {
    const bundle = this.bundle;
    if (!bundle) {
      throw new InstanceStateError("the instance was not started from a bundle file, which a snapshot names");
    }
    const wasPaused = this.instance.paused;
    const paused = wasPaused ? this.instance.pausedState! : await this.instance.pause();
    try {
      const state: InstanceState = { version: STATE_VERSION, boot: this.boot, paused };
      const written = await writeSnapshot(path, {
        kind: "full",
        parent: null,
        bundleSha256: bundle.sha256,
        meta: { ...describeState(state), bundlePath: bundle.path },
        memory: { bytes: this.instance.ram.bytes },
        sections: {
          state: new TextEncoder().encode(JSON.stringify(encodeState(state))),
          overlay: packOverlay(this.overlayDir),
        },
      }, request.progress);
      if (request.stop) this.instance.stopAfterSnapshot(path);
      return {
        id: written.id,
        path,
        fileBytes: written.fileBytes,
        pages: written.pages,
        threads: state.paused.threads.length,
      };
    } finally {
      if (!wasPaused && !request.stop) this.instance.resume();
    }
  }
}

/** The state as JSON holds it: vCPU registers and save areas in their encoded form. */
function encodeState(state: InstanceState): unknown {
  return {
    ...state,
    paused: {
      ...state.paused,
      threads: state.paused.threads.map((t) => ({ ...t, vcpu: encodeVcpuState(t.vcpu) })),
    },
  };
}

/** What `pvx inspect` shows of a snapshot, kept in its manifest so it can be read without the state section. */
function describeState(state: InstanceState) {
  return {
    app: state.boot.app,
    memoryBytes: state.boot.memoryBytes,
    threads: state.paused.threads.map((t) => ({
      threadId: t.threadId,
      cpu: t.cpu,
      blockedIn: t.pending ? callsByNr[t.pending.nr]?.name ?? t.pending.nr : null,
    })),
    openHandles: state.paused.host.handles.handles.length,
    currentDirectory: state.paused.host.currentDirectory,
  };
}

/** A snapshot opened for restore: its checked state, and the file its RAM maps from. */
export interface LoadedSnapshot {
  file: Snapshot;
  state: InstanceState;
  overlay: Uint8Array;
}

/**
 * Opens and checks a snapshot: every section's hash, the state's version and
 * shape, and (unless `verifyMemory` is false) its RAM's hashes, which costs a
 * read of every page it stores.
 */
export function loadSnapshot(path: string, { verifyMemory = true } = {}): LoadedSnapshot {
  const file = openSnapshot(path);
  try {
    if (file.manifest.kind !== "full") {
      throw new SnapshotError(path, 0, `a ${file.manifest.kind} snapshot cannot be restored on its own yet`);
    }
    const text = new TextDecoder("utf-8", { fatal: true }).decode(file.section("state"));
    const state = decodeState(JSON.parse(text), `${path}: state`);
    if (verifyMemory) file.verifyMemory();
    return { file, state, overlay: file.section("overlay") };
  } catch (e) {
    file.close();
    if (e instanceof SyntaxError || e instanceof TypeError) {
      throw new SnapshotError(path, 0, `state section: ${e.message}`);
    }
    throw e;
  }
}

/** Checks the state section's shape; the components check their own parts as they rebuild (heap, handles, ...). */
function decodeState(data: unknown, where: string): InstanceState {
  const fail = (what: string): never => {
    throw new Error(`${where}: ${what}`);
  };
  const object = (v: unknown, name: string) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? v as Record<string, unknown>
      : fail(`${name} is not an object`);
  const s = object(data, "state");
  if (s.version !== STATE_VERSION) fail(`version ${JSON.stringify(s.version)} is not ${STATE_VERSION}`);
  const boot = object(s.boot, "boot") as unknown as BootState;
  for (const k of ["memoryBytes", "pageTableRoot", "startedAt"] as const) {
    if (typeof boot[k] !== "number" || !Number.isFinite(boot[k])) fail(`boot.${k} is not a number`);
  }
  if (typeof boot.app !== "string") fail("boot.app is not a string");
  if (!Array.isArray(boot.missingImports) || !Array.isArray(boot.shares)) fail("boot.missingImports or boot.shares");
  object(boot.host, "boot.host");
  const paused = object(s.paused, "paused");
  if (typeof paused.guestNow !== "number" || !Number.isFinite(paused.guestNow)) fail("paused.guestNow is not a number");
  if (!Number.isInteger(paused.liveThreads)) fail("paused.liveThreads is not an integer");
  if (!Array.isArray(paused.threads) || paused.threads.length === 0) fail("paused.threads is not a non-empty list");
  const threads = (paused.threads as unknown[]).map((t, i) => {
    const thread = object(t, `paused.threads[${i}]`);
    for (const k of ["cpu", "threadId", "lastError"]) {
      if (!Number.isInteger(thread[k])) fail(`paused.threads[${i}].${k} is not an integer`);
    }
    if (thread.object !== undefined) {
      const ref = object(thread.object, `paused.threads[${i}].object`);
      if (!Number.isInteger(ref.slot) || !Number.isInteger(ref.gen)) fail(`paused.threads[${i}].object is not a ref`);
    }
    const pending = thread.pending === undefined ? undefined : object(thread.pending, `paused.threads[${i}].pending`);
    if (pending && !(Number.isInteger(pending.nr) && Number.isInteger(pending.frame))) {
      fail(`paused.threads[${i}].pending: nr or frame is not an integer`);
    }
    if (pending && pending.deadline !== null && typeof pending.deadline !== "number") {
      fail(`paused.threads[${i}].pending.deadline is not a number or null`);
    }
    return {
      ...thread,
      vcpu: decodeVcpuState(thread.vcpu, `${where}: paused.threads[${i}].vcpu`),
    } as unknown as ParkedThread;
  });
  const host = object(paused.host, "paused.host") as unknown as HostState;
  object(host.handles, "paused.host.handles");
  if (typeof host.currentDirectory !== "string") fail("paused.host.currentDirectory is not a string");
  object(paused.sync, "paused.sync");
  if (paused.guestThreads !== undefined) object(paused.guestThreads, "paused.guestThreads");
  // The parts' own restores check the rest: the heap, virtual memory, handles, sync objects and threads.
  return { version: STATE_VERSION, boot, paused: { ...(paused as unknown as PausedState), threads } };
}
