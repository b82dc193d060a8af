// How a client of `pvx serve` reaches it: by --host or PVX_HOST, a Unix socket's path (by default the one in
// pvx's state directory), or http://HOST:PORT with the bearer token in --token-file or PVX_TOKEN_FILE; and how
// it reads the daemon's answers, refusals and event streams.

import { join } from "../abi/host_path.ts";
import { UsageError } from "./run_options.ts";

/** `$XDG_STATE_HOME/pvx`, or `~/.local/state/pvx`: instance records and daemon-made overlays survive a reboot. */
export function defaultStateDir(): string {
  const home = Deno.env.get("HOME") ?? "/tmp";
  return join(Deno.env.get("XDG_STATE_HOME") ?? join(home, ".local", "state"), "pvx");
}

/** Where `pvx serve` listens, and clients look, when neither is told. */
const defaultSocket = () => join(defaultStateDir(), "serve.sock");

export async function readToken(file: string): Promise<string> {
  const token = (await Deno.readTextFile(file)).trim();
  if (!token) throw new UsageError(`--token-file ${file}: is empty`);
  return token;
}

/** The daemon refused a request or could not be reached. */
export class DaemonError extends Error {
  override name = "DaemonError";
}

/** The daemon's error body (`{error: {field?, message}}`) as a DaemonError: the field it names, then why. */
function refusal(answer: { error?: { field?: string; message?: string } } | null, status: number): DaemonError {
  const e = answer?.error;
  return new DaemonError(`${e?.field ? `${e.field}: ` : ""}${e?.message ?? `status ${status}`}`);
}

export interface Daemon {
  fetch(route: string, init?: RequestInit): Promise<Response>;
  /** Reached on a Unix socket, so on this machine: it can read a path this client names. */
  local: boolean;
}

export async function connect(values: { host?: string; "token-file"?: string }): Promise<Daemon> {
  const host = values.host ?? Deno.env.get("PVX_HOST") ?? defaultSocket();
  const reach = async (url: string, init: RequestInit & { client?: Deno.HttpClient }) => {
    try {
      return await fetch(url, init);
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      throw new DaemonError(`${host}: cannot reach the daemon: ${(e.cause as Error)?.message ?? e.message}`);
    }
  };
  if (/^https?:\/\//.test(host)) {
    const tokenFile = values["token-file"] ?? Deno.env.get("PVX_TOKEN_FILE");
    const token = tokenFile ? await readToken(tokenFile) : undefined;
    return {
      local: false,
      fetch: (route, init = {}) =>
        reach(`${host.replace(/\/$/, "")}${route}`, {
          ...init,
          headers: {
            ...init.headers as Record<string, string>,
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
        }),
    };
  }
  return {
    local: true,
    fetch: async (route, init = {}) => {
      // One client per request: it holds the connection, and a long `logs -f` must not be shared.
      const client = Deno.createHttpClient({ proxy: { transport: "unix", path: host } });
      const response = await reach(`http://pvx${route}`, { ...init, client }).catch((e) => {
        client.close();
        throw e;
      });
      // The client is closed once the body has been read to its end.
      const body = response.body?.pipeThrough(new TransformStream({ flush: () => client.close() }));
      return new Response(body, response);
    },
  };
}

/** One request (with a JSON `body` or raw `bytes`): its JSON answer, or a DaemonError with the daemon's message. */
export async function call(
  daemon: Daemon,
  method: string,
  route: string,
  body?: unknown,
  bytes?: Uint8Array<ArrayBuffer>,
) {
  const response = await daemon.fetch(route, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    ...(bytes === undefined ? {} : { body: bytes }),
  });
  const text = await response.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new DaemonError(`the daemon answered ${response.status} with a body that is not JSON: ${text}`);
  }
  if (response.status >= 400) throw refusal(answer, response.status);
  return answer;
}

/** The events of a server-sent event stream the daemon answered, each with its data parsed; a refusal throws. */
export async function* serverEvents(response: Response): AsyncGenerator<{ event: string; data: unknown }> {
  if (response.status >= 400) throw refusal(await response.json(), response.status);
  let pending = "";
  for await (const text of response.body!.pipeThrough(new TextDecoderStream())) {
    pending += text;
    for (let end; (end = pending.indexOf("\n\n")) >= 0; pending = pending.slice(end + 2)) {
      const fields = Object.fromEntries(
        pending.slice(0, end).split("\n").map((
          line,
        ) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)]),
      );
      yield { event: fields.event, data: JSON.parse(fields.data) };
    }
  }
}
