// Names of events, mutexes and semaphores. They share one namespace, as in a Windows session's
// BaseNamedObjects: a name is case-sensitive, `Local\x` is the bare name `x`, `Global\x` is a name of its
// own, and any other backslash names a directory that does not exist. A name stays taken while its object
// has a handle open. With no other process in the VM, a name only lets the app's own threads and modules
// find an object without passing its handle around.
//
// Only the host-services thread creates and closes objects, so the table lives there; a name whose object
// has since been freed (its slot's generation moved on) is dropped when it is next looked at.

import { Win32Error } from "./call_errors.ts";
import { PlainState } from "./plain_state.ts";
import { MAX_SYNC_OBJECTS, type SyncKind, type SyncObjects, type SyncRef } from "./sync_objects.ts";
import { win32Errors as E } from "./win32.ts";

/** What a snapshot keeps: [name as filed (without `Local\`), slot, generation] of each name in use. */
export interface ObjectNamesState {
  names: [string, number, number][];
}

/** A create's answer: the handle, and whether it opened an object the name already had. */
export interface Created {
  handle: number;
  existed: boolean;
}

export class ObjectNames {
  readonly #sync: SyncObjects;
  readonly #names = new Map<string, SyncRef>();

  constructor(sync: SyncObjects) {
    this.#sync = sync;
  }

  /**
   * CreateEvent, CreateMutex and CreateSemaphore with `name`: a handle to the object of `kind` the name already
   * has, else to the one `make` returns, filed under it. An empty name or none makes an unnamed object.
   */
  create(name: string | null, kind: SyncKind, make: () => number): Created {
    if (!name) return { handle: make(), existed: false };
    const key = filed(name);
    const found = this.#find(key);
    if (found) return { handle: this.#open(found, kind), existed: true };
    const handle = make();
    this.#names.set(key, this.#sync.resolve(handle)!);
    this.#sweepIfFull();
    return { handle, existed: false };
  }

  /** OpenEvent, OpenMutex and OpenSemaphore: a new handle to the object of `kind` that `name` names. */
  open(name: string | null, kind: SyncKind): number {
    if (name === null) throw new Win32Error(E.ERROR_INVALID_PARAMETER, "no name to open");
    // The empty name is the namespace's directory itself, which is not an object of any of these kinds.
    if (name === "") throw new Win32Error(E.ERROR_INVALID_HANDLE, "the empty name is the namespace itself");
    const found = this.#find(filed(name));
    if (!found) throw new Win32Error(E.ERROR_FILE_NOT_FOUND, `no object is named ${name}`);
    return this.#open(found, kind);
  }

  save(): ObjectNamesState {
    const names: [string, number, number][] = [];
    for (const [key, ref] of this.#names) {
      if (this.#sync.kindOf(ref) !== undefined) names.push([key, ref.slot, ref.gen]);
    }
    return { names };
  }

  /**
   * The names of a snapshot's objects; `where` names it in errors. `sync` may not hold the objects yet (another
   * thread restores them), so a name is checked against its object only when it is looked up, like any other.
   */
  static restore(sync: SyncObjects, saved: ObjectNamesState, where: string): ObjectNames {
    const state = new PlainState(`${where}: object names`);
    const table = new ObjectNames(sync);
    state.list(state.record(saved, "").names, "names").forEach((entry, i) => {
      const [name, slot, gen] = state.list(entry, `names[${i}]`, 3);
      const key = state.text(name, `names[${i}] name`);
      if (key === "" || table.#names.has(key)) state.fail(`names[${i}] name`, "is empty or named twice");
      const ref = {
        slot: state.integer(slot, `names[${i}] slot`, 0, MAX_SYNC_OBJECTS - 1),
        gen: state.integer(gen, `names[${i}] generation`, -(2 ** 31), 2 ** 31 - 1),
      };
      table.#names.set(key, ref);
    });
    return table;
  }

  #find(key: string): SyncRef | undefined {
    const ref = this.#names.get(key);
    if (ref && this.#sync.kindOf(ref) === undefined) this.#names.delete(key);
    return this.#names.get(key);
  }

  #open(ref: SyncRef, kind: SyncKind): number {
    if (this.#sync.kindOf(ref) !== kind) throw new Win32Error(E.ERROR_INVALID_HANDLE, "the name is another kind's");
    const opened = this.#sync.open(ref);
    if (opened?.handle === undefined) {
      throw new Win32Error(E.ERROR_NOT_ENOUGH_MEMORY, "the object has all the handles it may have");
    }
    return opened.handle;
  }

  /** Names of freed objects are dropped as they are met; an app that names many short-lived objects meets few. */
  #sweepIfFull(): void {
    if (this.#names.size < MAX_SYNC_OBJECTS) return;
    for (const key of [...this.#names.keys()]) this.#find(key);
  }
}

/** The key a name is filed under, or the error Windows gives for a directory that is not there. */
function filed(name: string): string {
  if (name.startsWith("Local\\")) name = name.slice("Local\\".length);
  const rest = name.startsWith("Global\\") ? name.slice("Global\\".length) : name;
  if (rest.includes("\\")) throw new Win32Error(E.ERROR_PATH_NOT_FOUND, `${name} names a directory pvx does not have`);
  return name;
}
