// Installs the Debian packages the tests and benchmarks build guests with.
// On a host without a usable /dev/kvm it also builds the nested accelerator's
// boot image (tools/nested/image.ts), so a missing piece is named here.

import { kvmAccess } from "../hv/kvm_access.ts";
import { MissingPiece, nestedImage, nestedNeeds } from "./nested/image.ts";
import { ensureInstalled, MissingPackages } from "./packages.ts";
import { ACCEL_ENV } from "./accel.ts";

try {
  await ensureInstalled([
    { command: "gcc", packages: ["gcc"] },
    { command: "objdump", packages: ["binutils"] },
    { command: "x86_64-w64-mingw32-gcc", packages: ["gcc-mingw-w64-x86-64"] },
    // The C++ test programs are built the default way, with mingw's g++.
    { command: "x86_64-w64-mingw32-g++", packages: ["g++-mingw-w64-x86-64"] },
    { command: "musl-gcc", packages: ["musl-tools"] },
    // The differential tests run the same Windows programs under Wine.
    { command: "wine", packages: ["wine", "wine64"] },
    // The migration tests join two network namespaces with a veth pair.
    { command: "ip", packages: ["iproute2"] },
    // `deno task test:nested` may use the nested accelerator on any host.
    ...nestedNeeds,
  ], "setup");
  if (!kvmAccess().ok || Deno.env.get(ACCEL_ENV) === "nested") await nestedImage();
} catch (e) {
  if (!(e instanceof MissingPiece || e instanceof MissingPackages)) throw e;
  console.error(`pvx setup: ${e.message}`);
  Deno.exit(1);
}
