// The one way pvx builds a C guest: freestanding, static, non-PIE, UTF-16
// wide strings, against abi/pvx.h.

const abiDir = new URL("../abi/", import.meta.url).pathname;
/** pvx's <windows.h>, so Win32 sources build unchanged as pvx guests. */
const windowsIncludeDir = new URL("../abi/include/", import.meta.url).pathname;

export const guestCflags = [
  "-static",
  "-nostdlib",
  "-ffreestanding",
  "-fno-pie",
  "-no-pie",
  "-fshort-wchar",
  "-fno-stack-protector",
  "-fcf-protection=none",
  "-O2",
  "-g",
  "-Wall",
  "-Werror",
  "-I",
  abiDir,
  "-I",
  windowsIncludeDir,
];

export async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed (exit ${out.code}):\n${new TextDecoder().decode(out.stderr)}${text}`,
    );
  }
  return text;
}

/** Compiles one C source into a pvx ELF guest. */
export async function compileGuest(source: string, output: string, extraFlags: string[] = []): Promise<void> {
  await run("gcc", [...guestCflags, ...extraFlags, "-o", output, source]);
}
