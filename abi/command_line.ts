// The process command line, which GetCommandLineW hands the guest as one string.

/** Quotes argv the way Windows' CommandLineToArgvW reads it back. */
export function windowsCommandLine(argv: readonly string[]): string {
  return argv.map((arg) => {
    if (arg !== "" && !/[ \t"]/.test(arg)) return arg;
    let out = '"';
    let slashes = 0;
    for (const ch of arg) {
      if (ch === "\\") {
        slashes++;
        continue;
      }
      out += "\\".repeat(ch === '"' ? 2 * slashes + 1 : slashes) + ch;
      slashes = 0;
    }
    return out + "\\".repeat(2 * slashes) + '"';
  }).join(" ");
}
