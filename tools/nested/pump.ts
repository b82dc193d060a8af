// Copies a byte stream into frames, a bounded piece at a time, so a fast
// writer waits for the link rather than filling memory.

import { MAX_PAYLOAD } from "./protocol.ts";

export async function pump(stream: ReadableStream<Uint8Array>, send: (chunk: Uint8Array) => Promise<void>) {
  for await (const chunk of stream) {
    for (let at = 0; at < chunk.length; at += MAX_PAYLOAD) await send(chunk.subarray(at, at + MAX_PAYLOAD));
  }
}
