// The JSON manifest that bundles (hv/bundle.ts) and snapshot files (hv/snapshot_file.ts) both carry
// after their header.

/** The JSON value of a manifest's bytes; `refuse` reports what is wrong with them. */
export function manifestJson(bytes: Uint8Array, refuse: (reason: string) => never): unknown {
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text, where JSON.parse refuses it: the writers never emit one.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return refuse("manifest is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    return refuse(`manifest is not valid JSON: ${(e as Error).message}`);
  }
}
