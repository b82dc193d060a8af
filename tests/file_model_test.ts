// Random sequences of Win32 file calls go through the real dispatcher and
// handlers (guest memory is a plain Uint8Array, no KVM) and every result is
// compared with a small model of what Windows does: sharing, dispositions,
// error codes, positions, sizes and data. The model follows Windows, not pvx;
// where pvx differs in a known, reported way, that one case is left out where
// the deviation is named (mostly in a command's check()), so the rest keeps running.

import { ObjectNames } from "../abi/object_names.ts";
import assert from "node:assert/strict";
import fc from "fast-check";
import { callsByName, FIND_DATA_SIZE } from "../abi/calls.ts";
import { Dispatcher, type Thread } from "../abi/dispatch.ts";
import { SpecialCalls } from "../abi/special_calls.ts";
import { SYNC_BYTES, SyncObjects } from "../abi/sync_objects.ts";
import { HandleTable } from "../abi/handles.ts";
import { hostHandlers } from "../abi/host_handlers.ts";
import { FileView } from "../abi/fileview.ts";
import { GuestHeap } from "../abi/heap.ts";
import { VirtualMemory } from "../abi/virtual_memory.ts";
import { encodeWide } from "../abi/handlers/strings.ts";
import { INVALID_HANDLE_VALUE, win32Constants as W, win32Errors as E } from "../abi/win32.ts";
import { PageTables } from "../guest/paging.ts";
import { MiB, PAGE } from "../abi/memory_map.ts";
import { fuzzRuns } from "./support/fuzz.ts";

// ---------------------------------------------------------------------------------------------
// The real system: guest memory, a fresh drive per run, and one way to make a call

const RAM_SIZE = 16 * MiB;
/** User pages holding the argument frame, then strings and buffers. */
const USER = { start: 0x400000, end: 0x800000 };
const FRAME = USER.start;
const SCRATCH = USER.start + PAGE;
/** What unwritten output bytes hold, so a host that writes too little shows. */
const UNWRITTEN = 0xcc;

const FILE_CALLS = [
  "CreateFileW",
  "ReadFile",
  "WriteFile",
  "SetFilePointerEx",
  "GetFileSizeEx",
  "SetEndOfFile",
  "CloseHandle",
  "DeleteFileW",
  "MoveFileExW",
  "FindFirstFileW",
  "FindNextFileW",
  "FindClose",
];

/** The bundle: one file at the root and one in a directory, both changed only copy-on-write. */
const BUNDLE: readonly [string, readonly number[]][] = [
  ["seed.txt", [...new TextEncoder().encode("bundled seed\n")]],
  ["dir\\x.txt", [0, 1, 2, 0xfe, 0xff, 0x80]],
];
/** The drive's directories: none of the calls under test creates or removes one. */
const DIRECTORIES = new Set(["", "dir"]);

class Guest {
  readonly bytes = new Uint8Array(RAM_SIZE);
  readonly view = new DataView(this.bytes.buffer);
  readonly pages = new PageTables(this.bytes);
  #free = SCRATCH;

  constructor() {
    this.pages.map(USER.start, USER.end - USER.start, { write: true, exec: false });
  }

  /** Allocations last one property run; the next run starts over. */
  reset(): void {
    this.#free = SCRATCH;
  }

  reserve(length: number): number {
    const at = this.#free;
    // The spare byte keeps even empty buffers at distinct addresses.
    this.#free += Math.ceil((length + 1) / 16) * 16;
    assert.ok(this.#free <= USER.end, "guest scratch space exhausted");
    this.bytes.fill(UNWRITTEN, at, at + length);
    return at;
  }

  wide(text: string): number {
    const encoded = encodeWide(text);
    const at = this.reserve(encoded.length);
    this.bytes.set(encoded, at);
    return at;
  }

  data(bytes: readonly number[]): number {
    const at = this.reserve(bytes.length);
    this.bytes.set(bytes, at);
    return at;
  }

  u32(at: number): number {
    return this.view.getUint32(at, true);
  }
  i64(at: number): bigint {
    return this.view.getBigInt64(at, true);
  }
}

class Real {
  readonly overlayDir = Deno.makeTempDirSync({ prefix: "pvx-file-model-" });
  readonly bundle = new Map(BUNDLE.map(([name, bytes]) => [name.replaceAll("\\", "/"), new Uint8Array(bytes)]));
  readonly handles = new HandleTable();
  readonly thread: Thread = { lastError: 0, id: 8 };
  readonly #dispatcher: Dispatcher;

  constructor(readonly guest: Guest) {
    guest.reset();
    // Only the file calls are allowed; the heap, virtual memory and modules are there because every Host has them.
    const sync = new SyncObjects(new SharedArrayBuffer(SYNC_BYTES));
    const handlers = hostHandlers({
      handles: this.handles,
      files: new FileView({ bundleFiles: this.bundle, overlayDir: this.overlayDir, shares: [] }),
      heap: new GuestHeap(guest.bytes, 0x800000, 0x840000),
      memory: new VirtualMemory(new PageTables(guest.bytes, guest.pages.root), guest.bytes, 0x900000, 0x940000),
      environment: new Map(),
      modules: { exe: USER.start, modules: [] },
      commandLineAddress: SCRATCH,
      special: new SpecialCalls({ policy: "stop", procs: [], libraries: [] }, () => {}),
      console: { write: () => assert.fail("a file call reached the console"), read: () => 0 },
      sync,
      names: new ObjectNames(sync),
      threads: { create: () => assert.fail("a file call created a thread") },
    });
    this.#dispatcher = new Dispatcher(guest, handlers, FILE_CALLS);
  }

  call(name: string, args: (number | bigint)[]): { ret: bigint; lastError: number } {
    const call = callsByName.get(name)!;
    assert.equal(args.length, call.params.length, `${name} takes ${call.params.length} arguments`);
    const view = this.guest.view;
    args.forEach((a, i) => view.setBigUint64(FRAME + 8 * (i + 1), BigInt.asUintN(64, BigInt(a)), true));
    this.#dispatcher.dispatch(call.nr, FRAME, this.thread);
    return { ret: view.getBigUint64(FRAME, true), lastError: this.thread.lastError };
  }

  /** Releases host files a failed run left open, so shrinking does not pile up descriptors. */
  dispose(): void {
    for (const { handle, kind } of this.handles.describe()) {
      const object = this.handles.take(handle);
      if (kind === "file" && object?.kind === "file") object.file.close();
    }
    Deno.removeSync(this.overlayDir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The model: what Windows does

interface Access {
  read: boolean;
  write: boolean;
  delete: boolean;
}
interface FileState {
  /** The path as the guest last spelled it when creating or renaming; lookups ignore case. */
  name: string;
  bytes: number[];
}
interface HandleState {
  real: number;
  file: FileState;
  position: number;
  access: Access;
  share: number;
  open: boolean;
}

const SHARE_ALL = W.FILE_SHARE_READ | W.FILE_SHARE_WRITE | W.FILE_SHARE_DELETE;
/** DeleteFileW and MoveFileExW open their source for DELETE, sharing everything. */
const DELETING: Access = { read: false, write: false, delete: true };

const fold = (path: string) => path.toLowerCase();
const parentOf = (path: string) => path.slice(0, Math.max(0, path.lastIndexOf("\\")));
const parentExists = (path: string) => DIRECTORIES.has(fold(parentOf(path)));
/** Why a missing name fails: ERROR_PATH_NOT_FOUND when a directory on the way is missing too. */
const missingError = (path: string) => parentExists(path) ? E.ERROR_FILE_NOT_FOUND : E.ERROR_PATH_NOT_FOUND;

function accessOf(desired: number): Access {
  return {
    read: (desired & W.GENERIC_READ) !== 0,
    write: (desired & W.GENERIC_WRITE) !== 0,
    delete: (desired & W.DELETE) !== 0,
  };
}

function sharePermits(share: number, access: Access): boolean {
  return (!access.read || (share & W.FILE_SHARE_READ) !== 0) &&
    (!access.write || (share & W.FILE_SHARE_WRITE) !== 0) &&
    (!access.delete || (share & W.FILE_SHARE_DELETE) !== 0);
}

/** IoCheckShareAccess: opens that touch no data are ignored; otherwise each side's share mode must allow the other's access. */
function admits(existing: readonly HandleState[], access: Access, share: number): boolean {
  const usesData = (a: Access) => a.read || a.write || a.delete;
  return !usesData(access) ||
    existing.every((h) => !usesData(h.access) || (sharePermits(h.share, access) && sharePermits(share, h.access)));
}

class Model {
  readonly files = new Map<string, FileState>(BUNDLE.map(([name, bytes]) => [fold(name), { name, bytes: [...bytes] }]));
  /** Every handle ever opened: closed ones stay, so commands can use them stale. */
  readonly handles: HandleState[] = [];
  lastError = 0;

  openHandles(file?: FileState): HandleState[] {
    return this.handles.filter((h) => h.open && (file === undefined || h.file === file));
  }
}

/** What the real call must return: failure with an error, or success with lastError left as it was. */
type Outcome = { error: number } | { error?: undefined };

/** A failed call returns the call's failure value and sets exactly this last error. */
function expectFailure(model: Model, name: string, error: number, got: { ret: bigint; lastError: number }) {
  const failure = callsByName.get(name)!.failure;
  assert.equal(got.ret, failure, `${name} should fail with ${error}`);
  assert.equal(got.lastError, error, `${name} failed with the wrong error`);
  model.lastError = error;
  seen.add(`${name}:${error}`);
}

function expectSuccess(model: Model, name: string, got: { ret: bigint; lastError: number }) {
  assert.equal(got.ret, 1n, `${name} should succeed (last error ${got.lastError})`);
  assert.equal(got.lastError, model.lastError, `${name} changed the last error on success`);
  seen.add(`${name}:ok`);
}

// ---------------------------------------------------------------------------------------------
// Handles the commands name: chosen when the command runs, since the model decides what exists

type HandleRef = { open: number } | { any: number } | { forged: number };

interface Resolved {
  value: number;
  /** The handle Windows would act on; undefined makes the call fail with ERROR_INVALID_HANDLE. */
  target?: HandleState;
}

function resolve(model: Model, ref: HandleRef): Resolved {
  if ("forged" in ref) return { value: ref.forged };
  const pool = "open" in ref ? model.openHandles() : model.handles;
  // With nothing to pick from, the call gets NULL, which is never a handle.
  if (pool.length === 0) return { value: 0 };
  const h = pool[("open" in ref ? ref.open : ref.any) % pool.length];
  // pvx never hands a closed handle's value out again within a run, so a stale one stays invalid.
  return { value: h.real, target: h.open ? h : undefined };
}

function refText(ref: HandleRef): string {
  if ("forged" in ref) return `forged 0x${ref.forged.toString(16)}`;
  return "open" in ref ? `open[${ref.open}]` : `any[${ref.any}]`;
}

const handleRef: fc.Arbitrary<HandleRef> = fc.oneof(
  { weight: 6, arbitrary: fc.nat(15).map((open) => ({ open })) },
  { weight: 1, arbitrary: fc.nat(15).map((any) => ({ any })) },
  // NULL and a value far above anything a 30-call run allocates.
  { weight: 1, arbitrary: fc.constantFrom(0, 0x12340).map((forged) => ({ forged })) },
);

/** The handle checks every handle-based call makes first. */
function handleError(r: Resolved, needs?: keyof Access): number | undefined {
  if (!r.target) return E.ERROR_INVALID_HANDLE;
  if (needs && !r.target.access[needs]) return E.ERROR_ACCESS_DENIED;
  return undefined;
}

function accessText(desired: number): string {
  const parts = [[W.GENERIC_READ, "R"], [W.GENERIC_WRITE, "W"], [W.DELETE, "DEL"]] as const;
  return parts.filter(([bit]) => desired & bit).map(([, text]) => text).join("|") || "0";
}

function shareText(share: number): string {
  return ["R", "W", "D"].map((letter, i) => share & (1 << i) ? letter : "-").join("");
}

const DISPOSITIONS = ["", "CREATE_NEW", "CREATE_ALWAYS", "OPEN_EXISTING", "OPEN_ALWAYS", "TRUNCATE_EXISTING"];

type Cmd = fc.Command<Model, Real>;

// Records which outcomes the generated sequences reached, for the coverage check at the end.
const seen = new Set<string>();

// ---------------------------------------------------------------------------------------------
// Commands

/** Most calls make sense in any state: a handle or name that does not exist is itself a case to test. */
abstract class AnyState implements Cmd {
  check(): boolean {
    return true;
  }
  abstract run(model: Model, real: Real): void;
}

class CreateFile implements Cmd {
  constructor(
    readonly name: string,
    readonly desired: number,
    readonly share: number,
    readonly disposition: number,
  ) {}

  /** Windows' answer; `impliedWrite` false gives pvx's sharing rule instead, to spot the known deviation. */
  predict(model: Model, impliedWrite = true): Outcome & { file?: FileState; truncates?: boolean } {
    const access = accessOf(this.desired);
    // kernel32 refuses this before looking at the path.
    if (this.disposition === W.TRUNCATE_EXISTING && !access.write) return { error: E.ERROR_INVALID_PARAMETER };
    const file = model.files.get(fold(this.name));
    if (!file) {
      const mustExist = this.disposition === W.OPEN_EXISTING || this.disposition === W.TRUNCATE_EXISTING;
      if (mustExist || !parentExists(this.name)) return { error: missingError(this.name) };
      return {};
    }
    if (this.disposition === W.CREATE_NEW) return { error: E.ERROR_FILE_EXISTS };
    const truncates = this.disposition === W.CREATE_ALWAYS || this.disposition === W.TRUNCATE_EXISTING;
    // Overwriting checks sharing as if write access were asked for, without granting it (FatOpenExistingFcb's
    // AddedAccess in Microsoft's FastFAT source): another handle that denies writing blocks CREATE_ALWAYS.
    const checked = truncates && impliedWrite ? { ...access, write: true } : access;
    if (!admits(model.openHandles(file), checked, this.share)) return { error: E.ERROR_SHARING_VIOLATION };
    return { file, truncates };
  }

  check(model: Model): boolean {
    // Known deviation: pvx checks an overwrite's sharing with only the access asked for, so CREATE_ALWAYS
    // without GENERIC_WRITE truncates a file whose other handles deny writing, and one asking no access
    // skips the check altogether; Windows fails both with ERROR_SHARING_VIOLATION.
    return (this.predict(model).error === E.ERROR_SHARING_VIOLATION) ===
      (this.predict(model, false).error === E.ERROR_SHARING_VIOLATION);
  }

  run(model: Model, real: Real): void {
    const got = real.call("CreateFileW", [
      real.guest.wide(this.name),
      this.desired,
      this.share,
      0,
      this.disposition,
      W.FILE_ATTRIBUTE_NORMAL,
      0,
    ]);
    const expected = this.predict(model);
    if (expected.error !== undefined) return expectFailure(model, "CreateFileW", expected.error, got);
    assert.notEqual(got.ret, INVALID_HANDLE_VALUE, `CreateFileW failed with ${got.lastError}`);
    const handle = Number(got.ret);
    assert.ok(handle > 0 && handle % 4 === 0, `handle ${handle} is not a non-zero multiple of 4`);
    assert.ok(!model.openHandles().some((h) => h.real === handle), `handle ${handle} is already open`);
    const reportsExisting = this.disposition === W.CREATE_ALWAYS || this.disposition === W.OPEN_ALWAYS;
    model.lastError = expected.file && reportsExisting ? E.ERROR_ALREADY_EXISTS : E.ERROR_SUCCESS;
    assert.equal(got.lastError, model.lastError, "CreateFileW's last error on success");
    seen.add(`CreateFileW:ok${model.lastError}`);
    let file = expected.file;
    if (!file) model.files.set(fold(this.name), file = { name: this.name, bytes: [] });
    if (expected.truncates) file.bytes = [];
    model.handles.push({
      real: handle,
      file,
      position: 0,
      access: accessOf(this.desired),
      share: this.share,
      open: true,
    });
  }

  toString(): string {
    const how = `${accessText(this.desired)}, share ${shareText(this.share)}, ${DISPOSITIONS[this.disposition]}`;
    return `CreateFileW(${JSON.stringify(this.name)}, ${how})`;
  }
}

class WriteFile extends AnyState {
  constructor(readonly handle: HandleRef, readonly data: number[]) {
    super();
  }

  run(model: Model, real: Real): void {
    const r = resolve(model, this.handle);
    const count = real.guest.reserve(4);
    const got = real.call("WriteFile", [r.value, real.guest.data(this.data), this.data.length, count, 0]);
    const error = handleError(r, "write");
    if (error !== undefined) {
      expectFailure(model, "WriteFile", error, got);
      return assert.equal(real.guest.u32(count), 0, "a failed WriteFile reports 0 bytes written");
    }
    expectSuccess(model, "WriteFile", got);
    assert.equal(real.guest.u32(count), this.data.length, "bytes written");
    const h = r.target!;
    // Writing nothing leaves the size alone even past the end; anything else zero-fills the gap.
    if (this.data.length > 0) {
      while (h.file.bytes.length < h.position) h.file.bytes.push(0);
      h.file.bytes.splice(h.position, this.data.length, ...this.data);
    }
    h.position += this.data.length;
  }

  override toString(): string {
    return `WriteFile(${refText(this.handle)}, ${this.data.length} bytes)`;
  }
}

class ReadFile extends AnyState {
  constructor(readonly handle: HandleRef, readonly length: number) {
    super();
  }

  run(model: Model, real: Real): void {
    const r = resolve(model, this.handle);
    const buffer = real.guest.reserve(this.length);
    const count = real.guest.reserve(4);
    const got = real.call("ReadFile", [r.value, buffer, this.length, count, 0]);
    const error = handleError(r, "read");
    if (error !== undefined) {
      expectFailure(model, "ReadFile", error, got);
      return assert.equal(real.guest.u32(count), 0, "a failed ReadFile reports 0 bytes read");
    }
    expectSuccess(model, "ReadFile", got);
    const h = r.target!;
    const expected = h.file.bytes.slice(h.position, h.position + this.length);
    assert.equal(real.guest.u32(count), expected.length, "bytes read");
    assert.deepEqual([...real.guest.bytes.subarray(buffer, buffer + expected.length)], expected, "data read");
    h.position += expected.length;
    if (expected.length > 0) seen.add("ReadFile:data");
  }

  override toString(): string {
    return `ReadFile(${refText(this.handle)}, ${this.length})`;
  }
}

class SetFilePointer extends AnyState {
  constructor(readonly handle: HandleRef, readonly distance: number, readonly method: number) {
    super();
  }

  run(model: Model, real: Real): void {
    const r = resolve(model, this.handle);
    const out = real.guest.reserve(8);
    const got = real.call("SetFilePointerEx", [r.value, BigInt(this.distance), out, this.method]);
    const error = handleError(r);
    if (error !== undefined) return expectFailure(model, "SetFilePointerEx", error, got);
    const h = r.target!;
    const target = [0, h.position, h.file.bytes.length][this.method] + this.distance;
    if (target < 0) return expectFailure(model, "SetFilePointerEx", E.ERROR_NEGATIVE_SEEK, got);
    expectSuccess(model, "SetFilePointerEx", got);
    assert.equal(real.guest.i64(out), BigInt(target), "new file pointer");
    h.position = target;
  }

  override toString(): string {
    return `SetFilePointerEx(${refText(this.handle)}, ${this.distance}, ${this.method})`;
  }
}

class GetFileSize extends AnyState {
  constructor(readonly handle: HandleRef) {
    super();
  }

  run(model: Model, real: Real): void {
    const r = resolve(model, this.handle);
    const out = real.guest.reserve(8);
    const got = real.call("GetFileSizeEx", [r.value, out]);
    const error = handleError(r);
    if (error !== undefined) return expectFailure(model, "GetFileSizeEx", error, got);
    expectSuccess(model, "GetFileSizeEx", got);
    assert.equal(real.guest.i64(out), BigInt(r.target!.file.bytes.length), "file size");
  }

  override toString(): string {
    return `GetFileSizeEx(${refText(this.handle)})`;
  }
}

class SetEndOfFile extends AnyState {
  constructor(readonly handle: HandleRef) {
    super();
  }

  run(model: Model, real: Real): void {
    const r = resolve(model, this.handle);
    const got = real.call("SetEndOfFile", [r.value]);
    const error = handleError(r, "write");
    if (error !== undefined) return expectFailure(model, "SetEndOfFile", error, got);
    expectSuccess(model, "SetEndOfFile", got);
    const h = r.target!;
    h.file.bytes.length = Math.min(h.file.bytes.length, h.position);
    while (h.file.bytes.length < h.position) h.file.bytes.push(0);
  }

  override toString(): string {
    return `SetEndOfFile(${refText(this.handle)})`;
  }
}

class CloseHandle extends AnyState {
  constructor(readonly handle: HandleRef) {
    super();
  }

  run(model: Model, real: Real): void {
    const r = resolve(model, this.handle);
    const got = real.call("CloseHandle", [r.value]);
    const error = handleError(r);
    if (error !== undefined) return expectFailure(model, "CloseHandle", error, got);
    expectSuccess(model, "CloseHandle", got);
    r.target!.open = false;
  }

  override toString(): string {
    return `CloseHandle(${refText(this.handle)})`;
  }
}

/** Windows 10 1903 and later delete with POSIX semantics: the name goes at once, open handles keep the data. */
class DeleteFile extends AnyState {
  constructor(readonly name: string) {
    super();
  }

  run(model: Model, real: Real): void {
    const got = real.call("DeleteFileW", [real.guest.wide(this.name)]);
    const file = model.files.get(fold(this.name));
    if (!file) return expectFailure(model, "DeleteFileW", missingError(this.name), got);
    if (!admits(model.openHandles(file), DELETING, SHARE_ALL)) {
      return expectFailure(model, "DeleteFileW", E.ERROR_SHARING_VIOLATION, got);
    }
    expectSuccess(model, "DeleteFileW", got);
    model.files.delete(fold(this.name));
  }

  override toString(): string {
    return `DeleteFileW(${JSON.stringify(this.name)})`;
  }
}

/** Open handles follow a renamed file; a rename that changes only case renames too. */
class MoveFile implements Cmd {
  constructor(readonly from: string, readonly to: string, readonly flags: number) {}

  /** MoveFileExW opens the source for DELETE first, then renames; the rename's errors come after the source's. */
  predict(model: Model): Outcome & { source?: FileState; replaced?: FileState } {
    const source = model.files.get(fold(this.from));
    if (!source) return { error: missingError(this.from) };
    if (!admits(model.openHandles(source), DELETING, SHARE_ALL)) return { error: E.ERROR_SHARING_VIOLATION };
    if (!parentExists(this.to)) return { error: E.ERROR_PATH_NOT_FOUND };
    const existing = model.files.get(fold(this.to));
    if (!existing || existing === source) return { source };
    if (!(this.flags & W.MOVEFILE_REPLACE_EXISTING)) return { error: E.ERROR_ALREADY_EXISTS };
    // NTFS refuses to replace a file anyone has open, whatever its share mode.
    if (model.openHandles(existing).length > 0) return { error: E.ERROR_ACCESS_DENIED };
    return { source, replaced: existing };
  }

  check(_model: Model): boolean {
    return true;
  }

  run(model: Model, real: Real): void {
    const got = real.call("MoveFileExW", [real.guest.wide(this.from), real.guest.wide(this.to), this.flags]);
    const expected = this.predict(model);
    if (expected.error !== undefined) return expectFailure(model, "MoveFileExW", expected.error, got);
    expectSuccess(model, "MoveFileExW", got);
    const source = expected.source!;
    if (expected.replaced) seen.add("MoveFileExW:replaced");
    model.files.delete(fold(this.from));
    model.files.set(fold(this.to), source);
    source.name = this.to;
  }

  toString(): string {
    return `MoveFileExW(${JSON.stringify(this.from)}, ${JSON.stringify(this.to)}, ${this.flags})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Generators

// Few names, so calls keep meeting each other: case variants, the bundle's files, a missing directory.
const NAMES = [
  "a.txt",
  "B.TXT",
  "b.txt",
  "c.txt",
  "seed.txt",
  "SEED.TXT",
  "dir\\x.txt",
  "dir\\A.txt",
  "missing\\y.txt",
];
const name = fc.constantFrom(...NAMES);
const ACCESS = [
  0,
  W.GENERIC_READ,
  W.GENERIC_WRITE,
  W.GENERIC_READ | W.GENERIC_WRITE,
  W.DELETE,
  W.GENERIC_READ | W.DELETE,
];

const commands = [
  fc.tuple(name, fc.constantFrom(...ACCESS), fc.integer({ min: 0, max: SHARE_ALL }), fc.integer({ min: 1, max: 5 }))
    .map(([n, access, share, disposition]) => new CreateFile(n, access, share, disposition)),
  fc.tuple(handleRef, fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 64 }))
    .map(([h, data]) => new WriteFile(h, data)),
  fc.tuple(handleRef, fc.integer({ min: 0, max: 128 })).map(([h, length]) => new ReadFile(h, length)),
  fc.tuple(handleRef, fc.integer({ min: -20, max: 100 }), fc.integer({ min: 0, max: 2 }))
    .map(([h, distance, method]) => new SetFilePointer(h, distance, method)),
  handleRef.map((h) => new GetFileSize(h)),
  handleRef.map((h) => new SetEndOfFile(h)),
  handleRef.map((h) => new CloseHandle(h)),
  name.map((n) => new DeleteFile(n)),
  fc.tuple(name, name, fc.constantFrom(0, W.MOVEFILE_REPLACE_EXISTING))
    .map(([from, to, flags]) => new MoveFile(from, to, flags)),
];

// ---------------------------------------------------------------------------------------------
// The drive as a whole, after the commands

interface Listed {
  name: string;
  attributes: number;
  size: number;
}

function list(real: Real, pattern: string): Listed[] {
  const { guest } = real;
  const found = guest.reserve(FIND_DATA_SIZE);
  const entry = (): Listed => {
    let name = "";
    for (let at = found + 44; guest.view.getUint16(at, true) !== 0; at += 2) {
      name += String.fromCharCode(guest.view.getUint16(at, true));
    }
    return { name, attributes: guest.u32(found), size: guest.u32(found + 28) * 2 ** 32 + guest.u32(found + 32) };
  };
  const first = real.call("FindFirstFileW", [guest.wide(pattern), found]);
  assert.notEqual(first.ret, INVALID_HANDLE_VALUE, `FindFirstFileW(${pattern}) failed with ${first.lastError}`);
  const entries = [entry()];
  while (real.call("FindNextFileW", [first.ret, found]).ret === 1n) entries.push(entry());
  assert.equal(real.thread.lastError, E.ERROR_NO_MORE_FILES);
  assert.equal(real.call("FindClose", [first.ret]).ret, 1n);
  return entries;
}

/** Every file the drive shows, with its content, must be the model's, and the bundle itself untouched. */
function compareDrive(model: Model, real: Real): void {
  for (const h of model.openHandles()) {
    assert.equal(real.call("CloseHandle", [h.real]).ret, 1n, `closing ${h.real} at the end`);
  }
  const listed = [
    ...list(real, "*").map((e) => ({ ...e, path: e.name })),
    ...list(real, "dir\\*").filter((e) => e.name !== "." && e.name !== "..").map((e) => ({
      ...e,
      path: `dir\\${e.name}`,
    })),
  ].sort((a, b) => a.path < b.path ? -1 : 1);
  const expected = [
    { name: "dir", path: "dir", attributes: W.FILE_ATTRIBUTE_DIRECTORY, size: 0 },
    ...[...model.files.values()].map((f) => ({
      name: f.name.slice(f.name.lastIndexOf("\\") + 1),
      path: f.name,
      attributes: W.FILE_ATTRIBUTE_ARCHIVE,
      size: f.bytes.length,
    })),
  ].sort((a, b) => a.path < b.path ? -1 : 1);
  assert.deepEqual(listed, expected, "the files FindFirstFileW lists");

  for (const file of model.files.values()) {
    const { guest } = real;
    const opened = real.call("CreateFileW", [
      guest.wide(file.name),
      W.GENERIC_READ,
      SHARE_ALL,
      0,
      W.OPEN_EXISTING,
      0,
      0,
    ]);
    assert.notEqual(opened.ret, INVALID_HANDLE_VALUE, `reopening ${file.name} failed with ${opened.lastError}`);
    const buffer = guest.reserve(file.bytes.length + 1);
    const count = guest.reserve(4);
    assert.equal(real.call("ReadFile", [opened.ret, buffer, file.bytes.length + 1, count, 0]).ret, 1n);
    assert.deepEqual(
      [...guest.bytes.subarray(buffer, buffer + guest.u32(count))],
      file.bytes,
      `content of ${file.name}`,
    );
    assert.equal(real.call("CloseHandle", [opened.ret]).ret, 1n);
  }

  for (const [path, bytes] of BUNDLE) {
    assert.deepEqual([...real.bundle.get(path.replaceAll("\\", "/"))!], bytes, `bundle file ${path} was written to`);
  }
}

// ---------------------------------------------------------------------------------------------

/** One sequence reaching the outcomes the coverage check asks for, whatever the run count. */
const guaranteed: Cmd[] = [
  new CreateFile("seed.txt", W.GENERIC_READ, W.FILE_SHARE_READ, W.OPEN_EXISTING),
  new CreateFile("SEED.TXT", W.GENERIC_WRITE, SHARE_ALL, W.OPEN_EXISTING), // 32: the reader denies writing
  new ReadFile({ open: 0 }, 8),
  new WriteFile({ open: 0 }, [1]), // 5
  new CreateFile("a.txt", W.GENERIC_READ | W.GENERIC_WRITE, 0, W.CREATE_NEW),
  new CreateFile("A.TXT", W.GENERIC_READ, SHARE_ALL, W.CREATE_NEW), // 80
  new WriteFile({ open: 1 }, [104, 105]),
  new SetFilePointer({ open: 1 }, -1, W.FILE_BEGIN), // 131
  new SetFilePointer({ open: 1 }, 6, W.FILE_END),
  new SetEndOfFile({ open: 1 }),
  new DeleteFile("a.txt"), // 32
  new CloseHandle({ open: 1 }),
  new CloseHandle({ any: 1 }), // 6
  new MoveFile("a.txt", "seed.txt", 0), // 183
  new MoveFile("seed.txt", "c.txt", 0), // 32
  new CreateFile("missing\\y.txt", W.GENERIC_READ, SHARE_ALL, W.OPEN_EXISTING), // 3
  new CreateFile("c.txt", W.GENERIC_READ, SHARE_ALL, W.OPEN_EXISTING), // 2
  new CreateFile("c.txt", W.GENERIC_READ, SHARE_ALL, W.TRUNCATE_EXISTING), // 87
  new CreateFile("dir\\x.txt", W.GENERIC_READ | W.GENERIC_WRITE, SHARE_ALL, W.OPEN_ALWAYS), // ok, 183
  new WriteFile({ open: 1 }, [7, 7, 7]),
  new CloseHandle({ open: 1 }),
  new MoveFile("a.txt", "dir\\x.txt", W.MOVEFILE_REPLACE_EXISTING),
  new DeleteFile("c.txt"), // 2
  new MoveFile("dir\\x.txt", "B.TXT", 0),
  new DeleteFile("b.txt"),
];

Deno.test("Win32 file calls through the dispatcher behave as Windows' rules predict", () => {
  const guest = new Guest();
  fc.assert(
    fc.property(fc.commands(commands, { maxCommands: 30, size: "max" }), (cmds) => {
      const real = new Real(guest);
      try {
        const model = new Model();
        fc.modelRun(() => ({ model, real }), cmds);
        compareDrive(model, real);
      } finally {
        real.dispose();
      }
    }),
    { numRuns: fuzzRuns, examples: [[guaranteed]] },
  );
  const required = [
    "CreateFileW:ok0",
    "CreateFileW:ok183",
    "CreateFileW:2",
    "CreateFileW:3",
    "CreateFileW:32",
    "CreateFileW:80",
    "CreateFileW:87",
    "ReadFile:data",
    "WriteFile:ok",
    "WriteFile:5",
    "SetFilePointerEx:131",
    "SetEndOfFile:ok",
    "CloseHandle:ok",
    "CloseHandle:6",
    "DeleteFileW:ok",
    "DeleteFileW:2",
    "DeleteFileW:32",
    "MoveFileExW:ok",
    "MoveFileExW:replaced",
    "MoveFileExW:32",
    "MoveFileExW:183",
  ];
  assert.deepEqual(required.filter((outcome) => !seen.has(outcome)), [], "outcomes the commands never reached");
});
