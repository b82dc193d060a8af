// `pvx serve` daemons that a part of the bench starts on this machine, and what it
// waits for of them: that one listens, that an instance printed, that the warm
// processes are waiting for their jobs.

import { connect, type Daemon, serverEvents } from "../daemon_client.ts";

export interface Host {
  daemon: Daemon;
  /** Where it listens over TCP, when it does. */
  url?: string;
  child: Deno.ChildProcess;
}

/** A daemon with its state in `dir`, on a socket there, and on 127.0.0.1:`port` with the token in `tokenFile`. */
export async function serve(pvx: string[], dir: string, tcp?: { port: number; tokenFile: string }): Promise<Host> {
  const socket = `${dir}/serve.sock`;
  const listen = tcp ? ["--listen", `127.0.0.1:${tcp.port}`, "--token-file", tcp.tokenFile] : [];
  const child = new Deno.Command(pvx[0], {
    args: [...pvx.slice(1), "serve", "--socket", socket, ...listen, "--state-dir", `${dir}/state`],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const url = tcp && `http://127.0.0.1:${tcp.port}`;
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  for (let said = ""; !said.includes(`listening on ${url ?? socket}`);) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`pvx serve in ${dir} ended before it listened`);
    said += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { daemon: await connect({ host: socket }), url, child };
}

export async function stop(hosts: Host[]) {
  for (const host of hosts) {
    host.child.kill("SIGTERM");
    await host.child.status;
  }
}

/** Resolves once instance `id`'s console has printed `text`. */
export async function printed(host: Host, id: string, text: string) {
  const response = await host.daemon.fetch(`/instances/${id}/logs?follow=true`);
  let output = "";
  for await (const { event, data } of serverEvents(response)) {
    if (event === "stdout") output += data;
    // Leaving the loop cancels the stream, which would otherwise follow the app for as long as it runs.
    if (output.includes(text)) return;
  }
  throw new Error(`instance ${id} ended before it printed ${JSON.stringify(text)}: ${output}`);
}

/** The processes `pid` started as `pvx warm`, waiting or given a job (an instance's process keeps that name). */
export function warmChildren(pid: number): number[] {
  const children = [...Deno.readDirSync(`/proc/${pid}/task`)].flatMap((task) =>
    Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim().split(" ").filter(Boolean).map(Number)
  );
  return children.filter((child) => {
    try {
      return Deno.readTextFileSync(`/proc/${child}/cmdline`).split("\0").includes("warm");
    } catch {
      return false; // it has just ended
    }
  });
}

/**
 * Resolves once `count` of the daemon's `pvx warm` processes wait for a job, their main thread in a
 * read(2) of stdin: the state a create finds on a daemon that has been idle a while.
 */
export async function warmWaiting(host: Host, count: number) {
  const inReadOfStdin = (child: number) => {
    try {
      return /^0 0x0 /.test(Deno.readTextFileSync(`/proc/${child}/syscall`));
    } catch {
      return false;
    }
  };
  while (warmChildren(host.child.pid).filter(inReadOfStdin).length < count) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
