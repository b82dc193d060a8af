// A fault on the path between two daemons, for tests/migration_test.ts: an
// HTTP proxy that forwards every request to TARGET, but flips one byte of the
// AFTER-th chunk PUT's body.
//
//   deno run -A fault_proxy.ts PORT TARGET AFTER
// It prints "proxy: listening" once it listens on 127.0.0.1:PORT.

const [port, target, after] = Deno.args;
let puts = 0;

Deno.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  onListen: () => console.log("proxy: listening"),
}, async (request) => {
  const url = new URL(request.url);
  const body = request.body ? new Uint8Array(await request.arrayBuffer()) : undefined;
  if (request.method === "PUT" && url.pathname.startsWith("/chunks/") && ++puts === Number(after)) {
    body![body!.length >> 1] ^= 0x40;
  }
  const headers = new Headers(request.headers);
  headers.delete("host");
  const answer = await fetch(`${target}${url.pathname}${url.search}`, { method: request.method, headers, body });
  return new Response(await answer.arrayBuffer(), { status: answer.status, headers: answer.headers });
});
