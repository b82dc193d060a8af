// A fault on the path between two daemons, for tests/migration_test.ts: an
// HTTP proxy that forwards every request to TARGET, with one fault:
//
//   deno run -A fault_proxy.ts PORT TARGET FAULT...
//     corrupt N        flips one byte of the N-th chunk PUT's body
//     cut N DEV        takes the link DEV down before it forwards the N-th chunk PUT
//     kill N PID       kills the target daemon (PID) at the N-th chunk PUT, then dies itself, as its host would
//     lose-commit      forwards the commit, but breaks off its answer: the target has the instance, the source
//                      does not know
//     kill-start PID   forwards the commit, but kills the target daemon instead of forwarding the start, and dies
//
// It prints "proxy: listening" once it listens on 127.0.0.1:PORT, and "proxy: fault" when the fault happens.

const [port, target, fault, ...faultArgs] = Deno.args;
let puts = 0;
/** The link is down: what was on its way, and everything after, is never answered, as packets are dropped. */
let cut = false;
/** The target daemon is being killed: a forward that fails now fails as the target's host goes down. */
let killed = false;
const never = () => new Promise<never>(() => {});
/** Written at once, unbuffered: the process may end right after. */
const say = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(`${line}\n`));

/** The connection to the source goes the way the target's would if its host died: abruptly, and for good. */
function dieLikeTheHost(): never {
  Deno.exit(1);
}

async function killTarget(pid: number) {
  Deno.kill(pid, "SIGKILL");
  while (await Deno.stat(`/proc/${pid}`).then(() => true, () => false)) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function forward(request: Request, url: URL, body: Uint8Array | undefined) {
  const headers = new Headers(request.headers);
  headers.delete("host");
  return await fetch(`${target}${url.pathname}${url.search}`, {
    method: request.method,
    headers,
    body: body as Uint8Array<ArrayBuffer> | undefined,
  });
}

Deno.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  onListen: () => say("proxy: listening"),
}, async (request) => {
  const url = new URL(request.url);
  const body = request.body ? new Uint8Array(await request.arrayBuffer()) : undefined;
  const chunk = request.method === "PUT" && url.pathname.startsWith("/chunks/") ? ++puts : 0;
  const commit = request.method === "POST" && /^\/migrations\/[^/]+$/.test(url.pathname);
  const start = request.method === "POST" && /^\/migrations\/[^/]+\/start$/.test(url.pathname);
  const at = chunk > 0 && chunk === Number(faultArgs[0]);
  if (fault === "corrupt" && at) {
    say("proxy: fault");
    body![body!.length >> 1] ^= 0x40;
  }
  if (fault === "cut" && at) {
    cut = true;
    const down = await new Deno.Command("ip", { args: ["link", "set", faultArgs[1], "down"] }).output();
    if (!down.success) throw new Error(`ip link set ${faultArgs[1]} down failed`);
    say("proxy: fault");
  }
  if (cut) return await never();
  if ((fault === "kill" && at) || (fault === "kill-start" && start)) {
    // Said first: a forward in flight fails as the target dies, and then this process dies too.
    say("proxy: fault");
    killed = true;
    await killTarget(Number(faultArgs.at(-1)));
    dieLikeTheHost();
  }
  // One forwarded just before the fault fails fast: after a cut (no route) the source would have heard nothing, and
  // after a kill it would have lost the connection.
  const answer = await forward(request, url, body).catch((e) =>
    cut ? never() : killed ? dieLikeTheHost() : Promise.reject(e)
  );
  if (fault === "lose-commit" && commit) {
    await answer.arrayBuffer();
    say("proxy: fault");
    // The status line goes out, then the body breaks off: the answer is lost on the way.
    const broken = new ReadableStream({ pull: (c) => c.error(new Error("lost on the way")) });
    return new Response(broken, { status: answer.status });
  }
  return new Response(await answer.arrayBuffer(), { status: answer.status, headers: answer.headers });
});
