// Hex as pvx's messages and files spell it.

/** `0x1f`: an address, an offset or a code in a message. */
export const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** Two lowercase digits per byte: how SHA-256 sums and key ids are written. */
export const hexBytes = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
