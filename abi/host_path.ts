// POSIX paths on the host, as node:path has them. pvx does not import node:path because the
// first node: module a process loads costs it Deno's Node layer: a tenth of a second natively,
// seconds under the nested accelerator's emulation, in every pvx process and vCPU thread.

/** `path` with `.` and empty names dropped and each `..` taking the name before it, as node's normalize. */
function normalized(path: string): string {
  const absolute = path.startsWith("/");
  const names: string[] = [];
  for (const name of path.split("/")) {
    if (name === "" || name === ".") continue;
    if (name !== "..") names.push(name);
    else if (names.length && names[names.length - 1] !== "..") names.pop();
    else if (!absolute) names.push("..");
  }
  const joined = names.join("/");
  if (absolute) return `/${joined}`;
  return joined || ".";
}

export function isAbsolute(path: string): boolean {
  return path.startsWith("/");
}

export function join(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  if (!joined) return ".";
  const out = normalized(joined);
  return joined.endsWith("/") && out !== "/" ? `${out}/` : out;
}

/** The absolute path that `parts`, taken from the working directory, lead to; no trailing slash. */
export function resolve(...parts: string[]): string {
  let path = "";
  for (let i = parts.length - 1; i >= 0 && !path.startsWith("/"); i--) {
    if (parts[i]) path = path ? `${parts[i]}/${path}` : parts[i];
  }
  if (!path.startsWith("/")) path = path ? `${Deno.cwd()}/${path}` : Deno.cwd();
  return normalized(path);
}

/** What comes before `path`'s last name, as node has it: "//a" gives "//", "/a//b" gives "/a/". */
export function dirname(path: string): string {
  if (path === "") return ".";
  let end = -1;
  for (let i = path.length - 1, inName = false; i >= 1; i--) {
    if (path[i] !== "/") inName = true;
    else if (inName) {
      end = i;
      break;
    }
  }
  if (end === -1) return path.startsWith("/") ? "/" : ".";
  return path.startsWith("/") && end === 1 ? "//" : path.slice(0, end);
}

/** `path`'s last name, trailing slashes aside; "" for the root. */
export function basename(path: string): string {
  let start = 0, end = -1;
  for (let i = path.length - 1; i >= 0; i--) {
    if (path[i] !== "/") {
      if (end === -1) end = i + 1;
    } else if (end !== -1) {
      start = i + 1;
      break;
    }
  }
  return end === -1 ? "" : path.slice(start, end);
}
