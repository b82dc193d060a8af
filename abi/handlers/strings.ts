// Copying host strings into guest buffers with the Win32 size contract.

/**
 * Writes `text` and a NUL as UTF-16 when it fits and returns its length;
 * otherwise writes nothing and returns the size needed including the NUL,
 * which is how GetCurrentDirectoryW and GetEnvironmentVariableW report it.
 */
export function copyOutWide(out: Uint8Array, text: string): number {
  if (out.length / 2 < text.length + 1) return text.length + 1;
  writeWide(out, 0, text);
  return text.length;
}

/** UTF-16LE with a NUL terminator at byte offset `at`; the caller ensures it fits. */
export function writeWide(out: Uint8Array, at: number, text: string): void {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < text.length; i++) dv.setUint16(at + 2 * i, text.charCodeAt(i), true);
  dv.setUint16(at + 2 * text.length, 0, true);
}

export function encodeWide(text: string): Uint8Array {
  const out = new Uint8Array(2 * text.length + 2);
  writeWide(out, 0, text);
  return out;
}
