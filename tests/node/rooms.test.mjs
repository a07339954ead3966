// Event rooms driven by the unmodified `partysocket` client (and raw `ws`
// where partysocket hides what we must check).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WS from "ws";
import PartySocket from "partysocket";
import { startServer, sign, waitFor } from "./server.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** A PartySocket for `user` with every snapshot it receives recorded. */
function join(room, user, options = {}) {
  const token = sign({ sub: user, name: `${user} name`, ...(options.claims ?? {}) });
  const socket = new PartySocket({
    host: server.host,
    party: "event",
    room,
    id: options.id,
    query: { token },
    WebSocket: WS,
  });
  const frames = [];
  const listeners = new Set();
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    frames.push(frame);
    for (const listener of listeners) listener(frame);
  });
  const until = (predicate, what) =>
    waitFor((cb) => {
      for (const f of frames) cb(f);
      listeners.add(cb);
    }, predicate, 15000, what);
  return { socket, frames, until };
}

const presenceOf = (snapshot, user) => snapshot.presence?.find((p) => p.userId === user);

test("a partysocket client gets a snapshot showing itself online as its first frame", async () => {
  const alice = join("first-frame", "alice");
  const first = await alice.until(() => true, "first frame");
  assert.equal(first.type, "snapshot");
  assert.equal(first.eventId, "first-frame");
  assert.equal(presenceOf(first, "alice").status, "online");
  assert.equal(presenceOf(first, "alice").name, "alice name");
  alice.socket.close();
});

test("three tabs of one user are one presence entry with three connections", async () => {
  const watcher = join("tabs", "watcher");
  const tabs = [join("tabs", "bob"), join("tabs", "bob"), join("tabs", "bob")];
  // Tabs heartbeat as the webapp does, so a slow machine cannot turn bob
  // away (600 ms here) before the connection counts are checked.
  const beating = setInterval(() => {
    for (const tab of tabs) if (tab.socket.readyState === 1) tab.socket.send(JSON.stringify({ type: "heartbeat" }));
  }, 100);
  beating.unref();
  await watcher.until((s) => presenceOf(s, "bob")?.connections === 3, "3 connections");
  tabs[0].socket.close();
  tabs[1].socket.close();
  const one = await watcher.until((s) => presenceOf(s, "bob")?.connections === 1, "1 connection");
  assert.equal(presenceOf(one, "bob").status, "online");
  tabs[2].socket.close();
  const gone = await watcher.until((s) => presenceOf(s, "bob")?.status === "offline", "offline");
  clearInterval(beating);
  assert.equal(presenceOf(gone, "bob").connections, 0);
  watcher.socket.close();
});

test("silence makes a user away, a heartbeat brings them back", async () => {
  const carol = join("away", "carol");
  await carol.until((s) => presenceOf(s, "carol")?.status === "away", "away");
  carol.socket.send(JSON.stringify({ type: "heartbeat" }));
  await carol.until((s) => s.type === "snapshot" && presenceOf(s, "carol")?.status === "online" && s.version > 2, "online again");
  carol.socket.close();
});

test("a reconnect with the same _pk gets a fresh snapshot first and counts once", async () => {
  const watcher = join("reconnect", "watcher");
  const dave = join("reconnect", "dave", { id: "dave-tab-1" });
  await dave.until((s) => s.type === "snapshot", "first snapshot");
  const before = dave.frames.length;
  dave.socket.reconnect();
  const afterReconnect = await waitFor((cb) => dave.socket.addEventListener("message", (e) => cb(JSON.parse(e.data))), () => true, 15000, "frame after reconnect");
  assert.equal(afterReconnect.type, "snapshot");
  assert.ok(dave.frames.length > before);
  await watcher.until((s) => presenceOf(s, "dave")?.connections === 1 && presenceOf(s, "dave")?.status === "online", "dave counted once");
  dave.socket.close();
  watcher.socket.close();
});

test("bad frames are answered with error frames and the socket stays open", async () => {
  const token = sign({ sub: "erin" });
  const ws = new WS(`ws://${server.host}/parties/event/frames?token=${token}`);
  const frames = [];
  const listeners = new Set();
  ws.on("message", (data, isBinary) => {
    const frame = JSON.parse(data.toString());
    frames.push(frame);
    for (const l of listeners) l(frame);
  });
  const until = (p, what) => waitFor((cb) => { for (const f of frames) cb(f); listeners.add(cb); }, p, 10000, what);
  await until((f) => f.type === "snapshot", "snapshot");
  ws.send("{nope");
  await until((f) => f.code === "invalid_json", "invalid_json");
  ws.send(JSON.stringify({ type: "teleport" }));
  await until((f) => f.code === "unknown_message_type", "unknown_message_type");
  ws.send(Buffer.from([1, 2, 3]));
  await until((f) => f.code === "unsupported_frame", "unsupported_frame");
  assert.equal(ws.readyState, WS.OPEN);
  const closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
  ws.send(JSON.stringify({ type: "heartbeat", pad: "x".repeat(70 * 1024) }));
  assert.equal(await closed, 1009);
});

test("tokens are checked before the upgrade", async () => {
  const statusOf = (path) =>
    new Promise((resolve) => {
      const ws = new WS(`ws://${server.host}${path}`);
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
      ws.on("open", () => resolve("open"));
      ws.on("error", () => {});
    });
  assert.equal(await statusOf("/parties/event/locked"), 401);
  assert.equal(await statusOf("/parties/event/locked?token=bad"), 401);
  assert.equal(await statusOf(`/parties/event/locked?token=${sign({ sub: "x", exp: 1 })}`), 401);
  assert.equal(await statusOf(`/parties/event/locked?token=${sign({ sub: "x" }, "wrong-secret")}`), 401);
  assert.equal(await statusOf(`/parties/event/locked?token=${sign({ sub: "x", events: ["other"] })}`), 403);
});

test("200 clients in one room converge on a snapshot that lists all of them", async () => {
  const clients = [];
  const count = 200;
  for (let i = 0; i < count; i++) {
    const token = sign({ sub: `user-${i}` });
    const ws = new WS(`ws://${server.host}/parties/event/crowd?token=${token}&_pk=c${i}`);
    const state = { latest: null };
    ws.on("message", (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === "snapshot") state.latest = frame;
    });
    ws.on("error", () => {});
    clients.push({ ws, state });
  }
  const deadline = Date.now() + 60000;
  // Silent clients turn away after 600 ms here, so convergence means: every
  // client's latest snapshot lists all 200 users, each with one connection,
  // and all clients hold the same version.
  const converged = () =>
    clients.every(
      (c) =>
        c.state.latest &&
        c.state.latest.presence.length === count &&
        c.state.latest.presence.every((p) => p.connections === 1),
    ) && new Set(clients.map((c) => c.state.latest.version)).size === 1;
  while (!converged()) {
    assert.ok(Date.now() < deadline, "200 clients did not converge within 60 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const c of clients) c.ws.close();
});
