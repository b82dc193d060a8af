// An instance's control API (hv/control_api.ts) when the instance runs in the
// helper VM. The VM sees the host's directories through 9p, where a Unix
// socket cannot be bound, so the instance serves its API on the VM's own
// /dev/shm, and the socket the user named is served here, on the host: each
// request made on it is relayed as one `pvx api` job in the VM.

import { NOT_SERVING, serveOnSocket } from "../../hv/control_api.ts";
import { denoJob, runDenoNested } from "../accel.ts";
import type { JobRunner } from "./jobs.ts";

const pvx = new URL("../pvx.ts", import.meta.url).pathname;

/** A socket path inside the helper VM, private to one instance. */
export function guestApiSocket(): string {
  return `/dev/shm/pvx-api-${crypto.randomUUID()}.sock`;
}

const errorBody = (status: number, message: string) =>
  Response.json({ error: { message } }, { status, headers: { "content-type": "application/json" } });

/** Serves `hostPath` on the host, relaying every request to the instance's API socket `guestPath` in the VM. */
export function relayControlApi(runner: JobRunner, hostPath: string, guestPath: string) {
  return serveOnSocket({
    fetch: async (request: Request) => {
      const route = new URL(request.url).pathname;
      const out: Uint8Array[] = [], err: Uint8Array[] = [];
      const job = await runner.start(denoJob(["run", "-A", pvx, "api", guestPath, request.method, route]), {
        stdout: (b) => Promise.resolve(void out.push(b)),
        stderr: (b) => Promise.resolve(void err.push(b)),
      });
      const body = new Uint8Array(await request.arrayBuffer());
      if (body.length) await job.stdin(body);
      await job.endStdin();
      const { code } = await job.done;
      const text = (parts: Uint8Array[]) => new TextDecoder().decode(new Uint8Array(parts.flatMap((p) => [...p])));
      if (code !== 0) {
        const why = text(err).trim();
        // The instance binds its socket once its guest is about to run.
        if (why.includes(NOT_SERVING)) return errorBody(503, NOT_SERVING);
        return errorBody(502, `relaying to the instance in the helper VM failed: ${why}`);
      }
      const answer = text(out);
      const newline = answer.indexOf("\n");
      return new Response(answer.slice(newline + 1), {
        status: Number(answer.slice(0, newline)),
        headers: { "content-type": "application/json" },
      });
    },
  }, hostPath);
}

/**
 * Runs `pvx <command> <argv>` in the helper VM, on its KVM (a later --accel
 * overrides an earlier one); an --api socket is served on the host by relay.
 */
export async function runPvxNested(command: string, argv: string[]): Promise<number> {
  const end = argv.includes("--") ? argv.indexOf("--") : argv.length;
  const options = [...argv.slice(0, end)];
  let hostApi: string | undefined;
  const guestApi = guestApiSocket();
  options.forEach((arg, i) => {
    if (arg === "--api" && i + 1 < options.length) [hostApi, options[i + 1]] = [options[i + 1], guestApi];
    else if (arg.startsWith("--api=")) [hostApi, options[i]] = [arg.slice(6), `--api=${guestApi}`];
  });
  return await runDenoNested(
    ["run", "-A", pvx, command, ...options, "--accel", "kvm", ...argv.slice(end)],
    hostApi === undefined ? undefined : (runner) => relayControlApi(runner, hostApi!, guestApi),
  );
}
