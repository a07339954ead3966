// The reference server of queue-bench.mjs in a process of its own, for
// `eventuall-bench queue --target reference` (bench/queue-compare.sh): the
// unmodified @y/websocket-server, in memory, set up exactly as
// queue-bench.mjs `startReference` does, so that its CPU can be measured
// apart from the clients'.
//
//   node bench/queue-reference-server.mjs [--port 0]     # or PORT=…
//
// Listens on 127.0.0.1 only and prints one line, `listening 127.0.0.1:<port>`,
// once it accepts connections; exits on SIGTERM or SIGINT.
import http from "node:http";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({ options: { port: { type: "string", default: process.env.PORT ?? "0" } } });
const port = Number(opts.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0 to 65535, got ${opts.port}`);

// @y/websocket-server reads these when it is imported: with them set it
// would persist documents to LevelDB or call a URL on every change, which
// queue-bench.mjs's reference does not do.
delete process.env.YPERSISTENCE;
delete process.env.CALLBACK_URL;
const { WebSocketServer } = await import("ws");
const { setupWSConnection } = await import("@y/websocket-server/utils");

const wss = new WebSocketServer({ noServer: true });
wss.on("connection", setupWSConnection);
const server = http.createServer((_q, r) => r.end("okay"));
server.on("upgrade", (request, socket, head) => wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request)));
await new Promise((r) => server.listen(port, "127.0.0.1", r));
console.log(`listening 127.0.0.1:${server.address().port}`);

const stop = () => {
  for (const c of wss.clients) c.terminate();
  server.close(() => process.exit(0));
  // Bounded: a connection that does not go away does not hold the exit.
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
