// Debian packages pvx needs at one step or another, installed only when what
// they bring is missing, so a set-up machine pays nothing.

/** A command (or a shell test that passes once it is installed) and the packages that bring it. */
export interface Need {
  command?: string;
  test?: string;
  packages: string[];
}

/** Something pvx needs that is not installed and that it could not install. */
export class MissingPackages extends Error {}

async function passes(test: string): Promise<boolean> {
  const r = await new Deno.Command("sh", { args: ["-c", test], stdout: "null", stderr: "null" }).output();
  return r.success;
}

async function sh(args: string[]): Promise<void> {
  // apt's progress goes to stderr, beside pvx's own, never into a guest's stdout.
  const r = await new Deno.Command(args[0], { args: args.slice(1), stdout: "inherit", stderr: "inherit" }).output();
  if (!r.success) throw new MissingPackages(`${args.join(" ")} failed with exit code ${r.code}`);
}

/** Installs the packages of every need that is not met; `who` names the step in what it prints. */
export async function ensureInstalled(needs: Need[], who: string): Promise<void> {
  const missing = [];
  for (const n of needs) if (!(await passes(n.test ?? `command -v ${n.command}`))) missing.push(...n.packages);
  if (!missing.length) return;
  if (Deno.uid() !== 0) {
    throw new MissingPackages(
      `${who} needs ${missing.join(", ")}; as root: apt-get update && apt-get install -y ${missing.join(" ")}`,
    );
  }
  console.error(`pvx: ${who}: installing ${missing.join(", ")}`);
  await sh(["apt-get", "update", "-q"]);
  await sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", ...missing]);
}
