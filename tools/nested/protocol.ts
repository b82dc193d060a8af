// The nested accelerator's wire format: jobs multiplexed as frames over one
// byte stream (the agent's virtio port, or a client's Unix socket to the
// host that owns the VM). A frame is a 9-byte header, then its payload:
//   u32 LE payload length, u32 LE job id, u8 kind.

export enum Kind {
  // host -> agent
  Start = 1, // JSON JobSpec
  Stdin = 2,
  StdinEnd = 3,
  Signal = 4, // the signal's name, e.g. "SIGINT"
  Shutdown = 5,
  Ping = 6, // answered at once with a Pong: the agent is alive
  // agent -> host
  Ready = 16,
  Stdout = 17,
  Stderr = 18,
  Exit = 19, // JSON ExitStatus
  Failed = 20, // why the job could not start, as text
  Pong = 21,
}

export interface JobSpec {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
}

export interface ExitStatus {
  code: number;
  signal: string | null;
}

export interface Frame {
  job: number;
  kind: Kind;
  payload: Uint8Array;
}

const HEADER = 9;
/** Larger frames are a broken peer, not data: nothing here sends more than a pipe read at once. */
export const MAX_PAYLOAD = 1 << 20;

export class ProtocolError extends Error {}

interface Reader {
  read(p: Uint8Array): Promise<number | null>;
}
interface Writer {
  write(p: Uint8Array): Promise<number>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export const text = (s: string) => enc.encode(s);
export const json = (v: unknown) => enc.encode(JSON.stringify(v));
export const parseJson = <T>(p: Uint8Array): T => JSON.parse(dec.decode(p)) as T;
export const decodeText = (p: Uint8Array) => dec.decode(p);

/** Frames in arrival order; ends when the stream does, and throws on a truncated or oversized frame. */
export async function* readFrames(stream: Reader, from: string): AsyncGenerator<Frame> {
  let buf = new Uint8Array(64 * 1024);
  let have = 0;
  let offset = 0; // bytes of the stream consumed before buf[0], for error messages
  for (;;) {
    while (have >= HEADER) {
      const view = new DataView(buf.buffer, 0, have);
      const length = view.getUint32(0, true);
      if (length > MAX_PAYLOAD) {
        throw new ProtocolError(`${from}: frame at byte ${offset} claims ${length} bytes (at most ${MAX_PAYLOAD})`);
      }
      const kind = buf[8];
      if (!(kind in Kind)) throw new ProtocolError(`${from}: frame at byte ${offset} has unknown kind ${kind}`);
      if (have < HEADER + length) break;
      yield { job: view.getUint32(4, true), kind, payload: buf.slice(HEADER, HEADER + length) };
      buf.copyWithin(0, HEADER + length, have);
      have -= HEADER + length;
      offset += HEADER + length;
    }
    if (have === buf.length) {
      const bigger = new Uint8Array(buf.length * 2);
      bigger.set(buf);
      buf = bigger;
    }
    const n = await stream.read(buf.subarray(have));
    if (n === null) {
      if (have) throw new ProtocolError(`${from}: stream ended inside a frame at byte ${offset}`);
      return;
    }
    have += n;
  }
}

/** Writes whole frames, one at a time, however many jobs send at once. */
export class FrameWriter {
  #tail: Promise<void> = Promise.resolve();

  constructor(private readonly stream: Writer) {}

  send(job: number, kind: Kind, payload: Uint8Array = new Uint8Array()): Promise<void> {
    const frame = new Uint8Array(HEADER + payload.length);
    const view = new DataView(frame.buffer);
    view.setUint32(0, payload.length, true);
    view.setUint32(4, job, true);
    frame[8] = kind;
    frame.set(payload, HEADER);
    const sent = this.#tail.then(async () => {
      for (let at = 0; at < frame.length;) at += await this.stream.write(frame.subarray(at));
    });
    this.#tail = sent.catch(() => {});
    return sent;
  }
}
