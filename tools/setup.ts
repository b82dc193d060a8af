// Installs the Debian packages the tests and benchmarks build guests with,
// only those whose commands are missing, so a set-up machine pays nothing.

const needed: { command: string; packages: string[] }[] = [
  { command: "gcc", packages: ["gcc"] },
  { command: "objdump", packages: ["binutils"] },
  { command: "x86_64-w64-mingw32-gcc", packages: ["gcc-mingw-w64-x86-64"] },
  { command: "musl-gcc", packages: ["musl-tools"] },
  // The differential tests run the same Windows programs under Wine.
  { command: "wine", packages: ["wine", "wine64"] },
];

async function have(command: string): Promise<boolean> {
  const r = await new Deno.Command("sh", { args: ["-c", `command -v ${command}`], stdout: "null", stderr: "null" })
    .output();
  return r.success;
}

async function sh(args: string[]): Promise<void> {
  const r = await new Deno.Command(args[0], { args: args.slice(1), stdout: "inherit", stderr: "inherit" }).output();
  if (!r.success) throw new Error(`${args.join(" ")} failed with exit code ${r.code}`);
}

const missing = [];
for (const n of needed) if (!(await have(n.command))) missing.push(...n.packages);
if (missing.length) {
  if (Deno.uid() !== 0) {
    console.error(
      `pvx setup: missing ${missing.join(", ")}; run as root: apt-get update && apt-get install -y ${
        missing.join(" ")
      }`,
    );
    Deno.exit(1);
  }
  console.error(`pvx setup: installing ${missing.join(", ")}`);
  await sh(["apt-get", "update", "-q"]);
  await sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...missing]);
}
