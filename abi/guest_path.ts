// The guest's path grammar: which names Windows allows, how a path resolves lexically against the
// current directory, and FindFirstFileW's wildcards. Nothing here touches the host.

import { fold, foldPath, guestPathString } from "./guest_names.ts";
import { win32Errors as E } from "./win32.ts";
import { FileViewError, quote } from "./drive_errors.ts";

const MAX_NAME_LENGTH = 255;
const MAX_PATH_LENGTH = 32767;
/** Win32 maps these to devices in every directory, whatever the extension; superscript digits count too. */
const DEVICE_NAMES = new Set([
  "con",
  "prn",
  "aux",
  "nul",
  "conin$",
  "conout$",
  ...["com", "lpt"].flatMap((port) => [..."123456789¹²³"].map((digit) => port + digit)),
]);

/** Guest strings can be 32K characters of control codes; messages show a readable, bounded form. */
function nameError(name: string, wildcards: boolean): FileViewError | undefined {
  for (const ch of name) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || '<>:"|'.includes(ch) || (!wildcards && (ch === "*" || ch === "?"))) {
      const code = `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
      return new FileViewError(E.ERROR_INVALID_NAME, `character ${code} is not allowed in the name ${quote(name)}`);
    }
  }
  if (name.length > MAX_NAME_LENGTH) {
    return new FileViewError(E.ERROR_FILENAME_EXCED_RANGE, `the name ${quote(name)} is longer than ${MAX_NAME_LENGTH}`);
  }
  if (DEVICE_NAMES.has(fold(name.split(".")[0].replace(/ +$/, "")))) {
    return new FileViewError(E.ERROR_ACCESS_DENIED, `${quote(name)} is a reserved device name`);
  }
  return undefined;
}

/** Host or bundle names a guest could not have typed back (Windows strips trailing dots and spaces) stay hidden. */
export function isGuestName(name: string): boolean {
  return name !== "" && !/[. ]$/.test(name) && nameError(name, false) === undefined;
}

/**
 * The components of the absolute guest path `input` names, resolved lexically against `cwd`.
 * With `pattern`, the last component may hold FindFirstFileW wildcards and is kept verbatim,
 * because a trailing dot is meaningful there ("*." means "no extension").
 */
export function parseGuestPath(input: string, cwd: readonly string[], pattern = false): string[] {
  const refuse = (code: number, why: string) => new FileViewError(code, `path ${quote(input)}: ${why}`);
  if (input === "") throw refuse(E.ERROR_PATH_NOT_FOUND, "the path is empty");
  if (input.length > MAX_PATH_LENGTH) throw refuse(E.ERROR_FILENAME_EXCED_RANGE, "longer than 32767 characters");
  let rest = input.replaceAll("/", "\\");
  if (rest.startsWith("\\\\")) {
    throw /^\\\\[.?](\\|$)/.test(rest)
      ? refuse(E.ERROR_ACCESS_DENIED, "device namespaces are not reachable")
      : refuse(E.ERROR_BAD_NETPATH, "network paths are not reachable");
  }
  const drive = /^([A-Za-z]):/.exec(rest);
  if (drive) {
    if (fold(drive[1]) !== "c") throw refuse(E.ERROR_PATH_NOT_FOUND, `there is no drive ${drive[1].toUpperCase()}:`);
    rest = rest.slice(2);
  }
  const names = rest.startsWith("\\") ? [] : [...cwd];
  const parts = rest.split("\\").filter((part) => part !== "");
  parts.forEach((part, i) => {
    if (part === ".") return;
    // As in Windows, ".." at the root stays there (C:\..\x is C:\x): the drive has no way up.
    if (part === "..") {
      names.pop();
      return;
    }
    const isPattern = pattern && i === parts.length - 1 && /[*?]/.test(part);
    const name = isPattern ? part : part.replace(/[. ]+$/, "");
    const problem = nameError(name, isPattern);
    if (problem) throw refuse(problem.code, problem.message);
    if (name !== "") names.push(name);
  });
  if (guestPathString(names).length > MAX_PATH_LENGTH) {
    throw refuse(E.ERROR_FILENAME_EXCED_RANGE, "the full path is longer than 32767 characters");
  }
  return names;
}

type WildcardToken = "*" | "dosStar" | "dosQm" | "dosDot" | { literal: string };

/**
 * FindFirstFileW's matching: kernel32 turns `?` into DOS_QM, a `*` before a dot into DOS_STAR
 * and a dot before a wildcard or at the end into DOS_DOT, which is why "*.*" also matches names
 * without a dot and "*." matches exactly those.
 */
export function wildcardMatcher(pattern: string): (name: string) => boolean {
  const chars = [...fold(pattern)];
  const tokens: WildcardToken[] = chars.map((ch, i) => {
    const next = chars[i + 1];
    if (ch === "?") return "dosQm";
    if (ch === "*") return next === "." ? "dosStar" : "*";
    if (ch === "." && (next === undefined || next === "*" || next === "?")) return "dosDot";
    return { literal: ch };
  });
  return (original) => {
    const name = [...fold(original)];
    const lastDot = name.lastIndexOf(".");
    const memo = new Map<number, boolean>();
    const match = (t: number, n: number): boolean => {
      const key = t * (name.length + 1) + n;
      const known = memo.get(key);
      if (known !== undefined) return known;
      const token = tokens[t];
      const ch = name[n]; // undefined at the end of the name
      let result: boolean;
      switch (token) {
        case undefined:
          result = ch === undefined;
          break;
        case "*":
          result = match(t + 1, n) || (ch !== undefined && match(t, n + 1));
          break;
        case "dosStar": // anything up to, but not including, the name's last dot
          result = match(t + 1, n) || (ch !== undefined && n !== lastDot && match(t, n + 1));
          break;
        case "dosQm": // one character, or nothing at a dot or the end (so "????.txt" fits "a.txt")
          result = ch === undefined || ch === "." ? match(t + 1, n) : match(t + 1, n + 1);
          break;
        case "dosDot": // a dot, or nothing at the end
          result = ch === undefined ? match(t + 1, n) : ch === "." && match(t + 1, n + 1);
          break;
        default:
          result = ch === token.literal && match(t + 1, n + 1);
      }
      memo.set(key, result);
      return result;
    };
    return match(0, 0);
  };
}

/** Whether guest path `names` is `dir` or inside it. */
export function isInside(names: readonly string[], dir: readonly string[]): boolean {
  return names.length >= dir.length && foldPath(names.slice(0, dir.length)) === foldPath(dir);
}
