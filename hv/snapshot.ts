// An instance's state, taken apart for a snapshot file and put back together
// (Firecracker's Persist shape): each component saves plain, versioned data
// beside itself (vCPUs in hv/vcpu_state.ts, host bookkeeping in
// hv/host_state.ts, the overlay in abi/overlay.ts), and this module gathers
// them into the "state" section of a snapshot (hv/snapshot_file.ts,
// docs/snapshot.md) and checks them on the way back.

import { MAX_SUSPEND_COUNT } from "./control_block.ts";
import { PAGE } from "../abi/memory_map.ts";
import type { HostInit, HostState } from "./host_state.ts";
import type { ParkedThread } from "./vcpu_thread.ts";
import { callsByNr } from "../abi/calls.ts";
import type { Instance, PausedState } from "./instance.ts";
import { InstanceStateError } from "./instance.ts";
import { decodeVcpuState, encodeVcpuState } from "./vcpu_state.ts";
import type { ShareSpec } from "../abi/share.ts";
import { packOverlay } from "../abi/overlay_archive.ts";
import { SnapshotError } from "./snapshot_format.ts";
import { HEADER_SIZE } from "./file_header.ts";
import { writeSnapshot, type WrittenSnapshot } from "./snapshot_writer.ts";
import { mapSnapshotChain, openSnapshot, type Snapshot } from "./snapshot_file.ts";
import { unmapGuestRam } from "./memory.ts";
import { type SealedBlob, type SealKey, unsealSnapshot, writeSealedSnapshot } from "./sealed_snapshot.ts";
import { basename, dirname, join, resolve } from "../abi/host_path.ts";

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
  /** HostInit without what the restore supplies: the bundle's files and special-call rules, the overlay directory, the shares. */
  host: Omit<HostInit, "bundleFiles" | "overlayDir" | "shares" | "specialCalls">;
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
  /**
   * Store only the pages written since this snapshot (a path), which must be the last one the instance was
   * saved as or restored from: the dirty log counts from there.
   */
  diffFrom?: string;
  /** Write one blob sealed under `key` (hv/sealed_snapshot.ts) instead of a snapshot file; always full. */
  seal?: { key: SealKey; expiresAt?: Date };
  progress?: (done: number, total: number) => void;
}

export interface SnapshotResult {
  id: string;
  kind: "full" | "diff";
  /** The snapshot a diff is laid over. */
  parent?: string;
  path: string;
  fileBytes: number;
  pages: number;
  threads: number;
  /** For a sealed blob: when it was sealed and when it expires, as ISO times. */
  sealed?: { createdAt: string; expiresAt?: string };
}

/** A snapshot the instance's RAM was equal to: where the dirty log counts from. */
export interface SnapshotRef {
  id: string;
  path: string;
  /** The snapshot is inside a sealed blob at `path`, which no diff can name as its parent. */
  sealed?: boolean;
}

/** A running instance as snapshots see it: what it was booted from, and where its files go. */
export class InstanceSession {
  #base: SnapshotRef | undefined;

  /** `base` is the snapshot a restored instance came from. */
  constructor(
    readonly instance: Instance,
    readonly boot: BootState,
    readonly bundle: BundleFile | undefined,
    readonly overlayDir: string,
    base?: SnapshotRef,
  ) {
    this.#base = base;
  }

  /**
   * Saves the instance to `path`: it is paused (if it was not already),
   * written, then resumed, or stopped when asked, or left paused if it was.
   */
  async snapshot(path: string, request: SnapshotRequest = {}): Promise<SnapshotResult> {
    const bundle = this.bundle;
    if (!bundle) {
      throw new InstanceStateError("the instance was not started from a bundle file, which a snapshot names");
    }
    if (request.seal && request.diffFrom !== undefined) {
      throw new RangeError("a sealed snapshot is always full: it cannot be a diff");
    }
    const parent = request.diffFrom === undefined ? undefined : this.#checkDiffBase(request.diffFrom);
    const pausedBefore = await this.instance.settledPause();
    const wasPaused = pausedBefore !== undefined;
    const paused = pausedBefore ?? await this.instance.pause();
    // Taken for a full snapshot too: the next diff counts from this one.
    const dirty = this.instance.takeDirtyPages();
    try {
      if (parent && !dirty) {
        throw new InstanceStateError(
          "the pages written since the last snapshot are not known (this host's KVM does not log them), " +
            "so only a full snapshot can be taken",
        );
      }
      const state: InstanceState = { version: STATE_VERSION, boot: this.boot, paused };
      const common = {
        bundleSha256: bundle.sha256,
        meta: { ...describeState(state), bundlePath: bundle.path, ...(parent ? { parentPath: parent.path } : {}) },
        sections: {
          state: new TextEncoder().encode(JSON.stringify(encodeState(state))),
          overlay: packOverlay(this.overlayDir),
        },
      };
      const bytes = this.instance.ram.bytes;
      const input = parent
        ? { ...common, kind: "diff" as const, parent: parent.id, memory: { bytes, pages: dirty! } }
        : { ...common, kind: "full" as const, parent: null, memory: { bytes } };
      const { seal, progress } = request;
      const written: WrittenSnapshot & { sealed?: SealedBlob } = seal
        ? await writeSealedSnapshot(path, input, seal.key, { expiresAt: seal.expiresAt, progress })
        : await writeSnapshot(path, input, progress);
      this.#base = { id: written.id, path: resolve(path), ...(seal ? { sealed: true } : {}) };
      if (request.stop) this.instance.stopAfterSnapshot(path);
      return {
        id: written.id,
        kind: parent ? "diff" : "full",
        ...(parent ? { parent: parent.id } : {}),
        path,
        fileBytes: written.fileBytes,
        pages: written.pages,
        threads: state.paused.threads.length,
        ...(written.sealed
          ? {
            sealed: {
              createdAt: written.sealed.createdAt.toISOString(),
              ...(written.sealed.expiresAt ? { expiresAt: written.sealed.expiresAt.toISOString() } : {}),
            },
          }
          : {}),
      };
    } catch (e) {
      if (dirty) this.instance.giveBackDirtyPages(dirty);
      throw e;
    } finally {
      if (!wasPaused && !request.stop) this.instance.resume();
    }
  }

  /** The snapshot at `path`, if it is the one the dirty log counts from. */
  #checkDiffBase(path: string): SnapshotRef {
    const base = this.#base;
    if (!base) {
      throw new InstanceStateError(
        "the instance has not been snapshotted or restored yet, so there is nothing to diff from: take a full snapshot",
      );
    }
    if (base.sealed) {
      throw new InstanceStateError(
        `diffFrom: the instance's changes are counted from ${base.path}, a sealed snapshot, which no diff can be ` +
          "laid over: take a full snapshot",
      );
    }
    let id: string;
    {
      using parent = openSnapshot(path);
      id = parent.id;
    }
    if (id !== base.id) {
      throw new InstanceStateError(
        `diffFrom: ${path} is snapshot ${id}, but the instance's changes are counted from ${base.id} ` +
          `(${base.path}), its last snapshot or restore`,
      );
    }
    return { id, path: resolve(path) };
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

/** What a snapshot is, from its manifest alone: `pvx inspect` and the daemon's GET /snapshots/:id show it. */
export interface SnapshotSummary {
  path: string;
  id: string;
  kind: "full" | "diff";
  format: number;
  createdAt: string;
  /** A diff's parent's id, and the chain from the full snapshot up to this one, or why it is broken. */
  parent?: string;
  chain?: string[] | { broken: string };
  bundle: { sha256: string; path?: string };
  app?: string;
  memory: { bytes: number; pagesStored: number; extents: number };
  threads: ReturnType<typeof describeState>["threads"];
  openHandles?: number;
  currentDirectory?: string;
  sections: { name: string; length: number }[];
}

export function summarizeSnapshot(path: string): SnapshotSummary {
  using snapshot = openSnapshot(path);
  const m = snapshot.manifest;
  const meta = m.meta as Partial<ReturnType<typeof describeState>> & { bundlePath?: string };
  let chain: SnapshotSummary["chain"];
  if (m.kind === "diff") {
    try {
      const files = openChain(path);
      chain = files.map((s) => s.path);
      files.forEach((s) => s.close());
    } catch (e) {
      chain = { broken: (e as Error).message };
    }
  }
  return {
    path: snapshot.path,
    id: snapshot.id,
    kind: m.kind,
    format: m.format,
    createdAt: m.createdAt,
    ...(m.parent ? { parent: m.parent } : {}),
    ...(chain ? { chain } : {}),
    bundle: { sha256: m.bundle.sha256, ...(meta.bundlePath ? { path: meta.bundlePath } : {}) },
    ...(meta.app ? { app: meta.app } : {}),
    memory: {
      bytes: m.memory.size,
      pagesStored: m.memory.extents.reduce((n, e) => n + e.length / PAGE, 0),
      extents: m.memory.extents.length,
    },
    threads: meta.threads ?? [],
    ...(meta.openHandles === undefined ? {} : { openHandles: meta.openHandles }),
    ...(meta.currentDirectory === undefined ? {} : { currentDirectory: meta.currentDirectory }),
    sections: m.sections.map((sec) => ({ name: sec.name, length: sec.length })),
  };
}

/** A snapshot opened for restore: its checked state, and the chain of files its RAM maps from. */
export interface LoadedSnapshot {
  /** The snapshot asked for, whose state and overlay these are. */
  file: Snapshot;
  /** The full snapshot first, then each diff over it; `file` last. */
  chain: [Snapshot, ...Snapshot[]];
  state: InstanceState;
  overlay: Uint8Array;
  /** The sealed blob `file` was unsealed from (its path then names nothing on disk). */
  sealedFrom?: string;
  /** Closes every file of the chain. */
  close(): void;
}

/** Longer chains than this are refused as a likely loop rather than followed. */
const MAX_CHAIN = 256;

/**
 * Opens and checks a snapshot and, for a diff, every snapshot below it: every
 * section's hash, each diff's parent, the state's version and shape, and
 * (unless `verifyMemory` is false) the RAM hashes, which costs a read of every
 * page stored.
 */
export function loadSnapshot(path: string, { verifyMemory = true } = {}): LoadedSnapshot {
  return loadChain(openChain(path), path, verifyMemory);
}

/**
 * Opens a sealed blob with `key` (every segment decrypted and authenticated, into memory) and checks the
 * snapshot inside as loadSnapshot does. A sealed snapshot is always full.
 */
export async function loadSealedSnapshot(path: string, key: SealKey, { verifyMemory = true } = {}) {
  const file = await unsealSnapshot(path, key);
  if (file.manifest.kind !== "full") {
    file.close();
    throw new SnapshotError(file.path, HEADER_SIZE, "manifest.kind: a sealed snapshot is full, this one is a diff");
  }
  return { ...loadChain([file], file.path, verifyMemory), sealedFrom: path };
}

function loadChain(chain: [Snapshot, ...Snapshot[]], path: string, verifyMemory: boolean): LoadedSnapshot {
  const file = chain.at(-1)!;
  const close = () => chain.forEach((s) => s.close());
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(file.section("state"));
    const state = decodeState(JSON.parse(text), `${path}: state`);
    if (verifyMemory) chain.forEach((s) => s.verifyMemory());
    return { file, chain, state, overlay: file.section("overlay"), close };
  } catch (e) {
    close();
    if (e instanceof SyntaxError || e instanceof TypeError) {
      throw new SnapshotError(path, 0, `state section: ${e.message}`);
    }
    throw e;
  }
}

/**
 * Compacts the chain ending at `path` into one full snapshot at `output`, with that snapshot's state and
 * overlay; every hash is checked first, so a merge never carries damage forward.
 */
export async function mergeSnapshot(
  path: string,
  output: string,
  progress?: (done: number, total: number) => void,
): Promise<WrittenSnapshot & { chain: number }> {
  const snapshot = loadSnapshot(path);
  try {
    const ram = mapSnapshotChain(snapshot.chain);
    try {
      // A page no file of the chain stores is zero, and stays a hole.
      const pages = new Set<number>();
      for (const { manifest } of snapshot.chain) {
        for (const e of manifest.memory.extents) {
          for (let at = e.start; at < e.start + e.length; at += PAGE) pages.add(at / PAGE);
        }
      }
      const { manifest } = snapshot.file;
      const { parentPath: _, ...meta } = manifest.meta;
      const written = await writeSnapshot(output, {
        kind: "full",
        parent: null,
        bundleSha256: manifest.bundle.sha256,
        meta,
        memory: { bytes: ram.bytes, pages },
        sections: Object.fromEntries(manifest.sections.map((s) => [s.name, snapshot.file.section(s.name)])),
      }, progress);
      return { ...written, chain: snapshot.chain.length };
    } finally {
      unmapGuestRam(ram);
    }
  } finally {
    snapshot.close();
  }
}

/** The snapshot at `path` and, below it, each parent back to a full snapshot; the full one first. */
export function openChain(path: string): [Snapshot, ...Snapshot[]] {
  const chain = [openSnapshot(path)];
  try {
    while (chain[0].manifest.kind === "diff") {
      if (chain.length === MAX_CHAIN) {
        throw new SnapshotError(path, 0, `its chain of diffs is longer than ${MAX_CHAIN}: merge it first`);
      }
      chain.unshift(openParent(chain[0]));
    }
    return chain as [Snapshot, ...Snapshot[]];
  } catch (e) {
    chain.forEach((s) => s.close());
    throw e;
  }
}

/**
 * A diff's parent: where it was when the diff was taken, else any snapshot
 * beside the diff with the parent's id (the chain was moved together).
 */
function openParent(diff: Snapshot): Snapshot {
  const want = diff.manifest.parent!;
  const here = dirname(diff.path);
  const recorded = diff.manifest.meta.parentPath;
  const candidates = [
    ...(typeof recorded === "string" ? [resolve(here, recorded), join(here, basename(recorded))] : []),
    ...[...Deno.readDirSync(here)].filter((e) => e.isFile).map((e) => join(here, e.name)).sort(),
  ];
  for (const candidate of new Set(candidates)) {
    if (resolve(candidate) === resolve(diff.path)) continue;
    let parent: Snapshot;
    try {
      parent = openSnapshot(candidate);
    } catch {
      continue;
    }
    if (parent.id === want) return parent;
    parent.close();
  }
  throw new SnapshotError(
    diff.path,
    0,
    `manifest.parent: its parent snapshot ${want}${typeof recorded === "string" ? ` (was ${recorded})` : ""} ` +
      `is not there nor beside it in ${here}`,
  );
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
    if (thread.requests !== undefined) {
      const { suspendCount, terminate } = object(thread.requests, `paused.threads[${i}].requests`);
      if (
        !Number.isInteger(suspendCount) || (suspendCount as number) < 0 || (suspendCount as number) > MAX_SUSPEND_COUNT
      ) {
        fail(`paused.threads[${i}].requests.suspendCount is not a whole number from 0 to ${MAX_SUSPEND_COUNT}`);
      }
      if (terminate !== undefined && !(Number.isInteger(terminate) && (terminate as number) >>> 0 === terminate)) {
        fail(`paused.threads[${i}].requests.terminate is not a 32-bit exit code`);
      }
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
