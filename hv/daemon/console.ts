// An instance's console as the daemon keeps it: what it wrote to stdout and
// stderr, the last of each in a bounded ring so a late reader gets a replay
// without the daemon's memory growing with the instance's output, and live
// readers that are sent every chunk as it arrives.

export type Stream = "stdout" | "stderr";

export interface Chunk {
  stream: Stream;
  /** Order across both streams, so a replay interleaves them as they were written. */
  seq: number;
  text: string;
  bytes: number;
}

/** How much of each stream is kept for replay. */
export const RING_BYTES = 256 * 1024;

class Ring {
  readonly chunks: Chunk[] = [];
  private bytes = 0;

  constructor(private readonly capacity: number) {}

  push(chunk: Chunk) {
    this.chunks.push(chunk);
    this.bytes += chunk.bytes;
    while (this.bytes > this.capacity && this.chunks.length > 1) this.bytes -= this.chunks.shift()!.bytes;
  }

  /** The newest chunks that together hold at most `limit` bytes (whole chunks, but at least the newest one's tail). */
  tail(limit: number): Chunk[] {
    const out: Chunk[] = [];
    let total = 0;
    for (let i = this.chunks.length - 1; i >= 0 && total < limit; i--) {
      const c = this.chunks[i];
      if (total + c.bytes <= limit) out.unshift(c);
      else if (!out.length) out.unshift(lastBytes(c, limit));
      total += c.bytes;
    }
    return out;
  }
}

/** The end of `c` that fits in `limit` bytes, cut at a character so it stays valid text. */
function lastBytes(c: Chunk, limit: number): Chunk {
  const encoded = new TextEncoder().encode(c.text);
  const text = new TextDecoder().decode(encoded.subarray(encoded.length - limit)).replace(/^\uFFFD+/, "");
  return { ...c, text, bytes: new TextEncoder().encode(text).length };
}

export class ConsoleLog {
  private readonly rings = { stdout: new Ring(RING_BYTES), stderr: new Ring(RING_BYTES) };
  // One per stream: a character split across two reads is decoded whole.
  private readonly decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  private readonly readers = new Set<(chunk: Chunk | null) => void>();
  private seq = 0;
  private ended = false;

  append(stream: Stream, bytes: Uint8Array) {
    const chunk = {
      stream,
      seq: this.seq++,
      text: this.decoders[stream].decode(bytes, { stream: true }),
      bytes: bytes.length,
    };
    this.rings[stream].push(chunk);
    for (const reader of this.readers) reader(chunk);
  }

  /** Both streams are closed: live readers are told with a null chunk. */
  end() {
    this.ended = true;
    for (const reader of this.readers) reader(null);
    this.readers.clear();
  }

  /** The last `limitBytes` of each stream, interleaved in the order they were written. */
  replay(limitBytes: number): Chunk[] {
    return [...this.rings.stdout.tail(limitBytes), ...this.rings.stderr.tail(limitBytes)].sort((a, b) => a.seq - b.seq);
  }

  /**
   * The replay, then (with `follow`) every chunk as it is written, until the
   * console ends or `signal` aborts: one atomic step, so nothing falls between them.
   */
  async *read(limitBytes: number, follow: boolean, signal: AbortSignal): AsyncGenerator<Chunk> {
    const queue: (Chunk | null)[] = [...this.replay(limitBytes)];
    if (!follow || this.ended) return yield* queue as Chunk[];
    let wake = () => {};
    const reader = (chunk: Chunk | null) => {
      queue.push(chunk);
      wake();
    };
    const aborted = () => reader(null);
    this.readers.add(reader);
    signal.addEventListener("abort", aborted);
    try {
      for (;;) {
        while (queue.length) {
          const chunk = queue.shift()!;
          if (chunk === null) return;
          yield chunk;
        }
        await new Promise<void>((resolve) => wake = resolve);
      }
    } finally {
      this.readers.delete(reader);
      signal.removeEventListener("abort", aborted);
    }
  }
}
