// The typed TypeScript client (clients/ts, compiled to clients/ts/dist by
// scripts/test.sh) against the real binary: HTTP routes through
// openapi-fetch with a bearer token, error bodies, and the socket helpers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WS from "ws";
import { createClient, socketUrl, parseServerMessage, clientMessage } from "../../clients/ts/dist/index.js";
import { startServer, sign, waitFor } from "./server.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const moderator = (user = "mod") => sign({ sub: user, role: "moderator" });
const participant = (user) => sign({ sub: user });

test("the document the client was generated from is served without a token", async () => {
  const client = createClient({ baseUrl: server.http });
  const { data, response } = await client.GET("/openapi.json");
  assert.equal(response.status, 200);
  assert.match(data.openapi, /^3\.1/);
  assert.ok(data.paths["/event/{event_id}/snapshot"]);
});

test("room snapshot and stage through the typed client; errors carry their codes", async () => {
  const mod = createClient({ baseUrl: server.http, token: moderator() });
  const empty = await mod.GET("/event/{event_id}/snapshot", { params: { path: { event_id: "typed-room" } } });
  assert.equal(empty.response.status, 200);
  assert.equal(empty.data.version, 0);
  assert.deepEqual(empty.data.presence, []);

  const entered = await mod.POST("/event/{event_id}/stage/enter", {
    params: { path: { event_id: "typed-room" } },
    body: { userId: "alice" },
  });
  assert.equal(entered.response.status, 200);
  assert.deepEqual(entered.data.stage.map((s) => s.userId), ["alice"]);
  assert.ok(entered.data.version > 0);

  const bob = createClient({ baseUrl: server.http, token: () => participant("bob") });
  const refused = await bob.POST("/event/{event_id}/stage/exit", {
    params: { path: { event_id: "typed-room" } },
    body: { userId: "alice" },
  });
  assert.equal(refused.response.status, 403);
  assert.equal(refused.data, undefined);
  assert.equal(refused.error.error.code, "forbidden");

  const anonymous = createClient({ baseUrl: server.http });
  const unauthorized = await anonymous.GET("/event/{event_id}/snapshot", { params: { path: { event_id: "typed-room" } } });
  assert.equal(unauthorized.response.status, 401);
  assert.equal(unauthorized.error.error.code, "unauthorized");

  const badId = await mod.GET("/event/{event_id}/snapshot", { params: { path: { event_id: "no spaces" } } });
  assert.equal(badId.response.status, 400);
  assert.equal(badId.error.error.code, "invalid_request");
});

test("queue commands answer the queue", async () => {
  const mod = createClient({ baseUrl: server.http, token: moderator() });
  const path = { event_id: "typed-queue" };
  const added = await mod.POST("/event/{event_id}/queue/add", { params: { path }, body: { userId: "carol", name: "Carol" } });
  assert.equal(added.response.status, 200);
  assert.deepEqual(added.data.pending, [{ userId: "carol", name: "Carol" }]);
  const promoted = await mod.POST("/event/{event_id}/queue/promote", { params: { path }, body: { userId: "carol" } });
  assert.deepEqual(promoted.data.live, [{ userId: "carol", name: "Carol" }]);
  const missing = await mod.POST("/event/{event_id}/queue/remove", { params: { path }, body: { userId: "nobody" } });
  assert.equal(missing.response.status, 404);
  assert.equal(missing.error.error.code, "not_found");
  const view = await mod.GET("/event/{event_id}/queue", { params: { path } });
  assert.deepEqual(view.data, { pending: [], live: [{ userId: "carol", name: "Carol" }] });
});

test("short tokens, recording commands and dead letters", async () => {
  const mod = createClient({ baseUrl: server.http, token: moderator() });
  for (const method of ["GET", "POST"]) {
    const { data, response } = await mod[method]("/auth/token");
    assert.equal(response.status, 200);
    assert.equal(typeof data.token, "string");
    assert.ok(data.expiresAt > Date.now());
  }
  const path = { event_id: "typed-recording" };
  const started = await mod.POST("/cloudcaster/{event_id}/start", { params: { path } });
  assert.equal(started.response.status, 202);
  assert.equal(started.data.status, "queued");
  assert.equal(started.data.sessionId, started.data.commandId);
  const again = await mod.POST("/cloudcaster/{event_id}/start", { params: { path } });
  assert.equal(again.response.status, 409);
  assert.equal(again.error.error.code, "conflict");
  const status = await mod.GET("/cloudcaster/{event_id}/status", { params: { path } });
  assert.equal(status.response.status, 200);
  assert.equal(status.data.eventId, "typed-recording");
  const clips = await mod.GET("/cloudcaster/{event_id}/clips", { params: { path } });
  assert.ok(Array.isArray(clips.data.clips));
  const letters = await mod.GET("/cloudcaster/dead-letters");
  assert.ok(Array.isArray(letters.data.deadLetters));
  const retry = await mod.POST("/cloudcaster/dead-letters/{command_id}/retry", { params: { path: { command_id: "nope" } } });
  assert.equal(retry.response.status, 404);
});

test("interviews: create, list, rename, delete, and the interview socket's typed frames", async () => {
  const token = participant("dana");
  const dana = createClient({ baseUrl: server.http, token });
  const created = await dana.POST("/api/interviews", { body: { title: "Typed", skills: ["rust"] } });
  assert.equal(created.response.status, 201);
  assert.equal(created.data.success, true);
  const id = created.data.interview.id;
  assert.equal(created.data.interview.title, "Typed");

  const listed = await dana.GET("/api/interviews");
  assert.deepEqual(listed.data.interviews.map((i) => i.id), [id]);
  const renamed = await dana.PATCH("/api/interviews/{id}", { params: { path: { id } }, body: { title: "Renamed" } });
  assert.equal(renamed.data.interview.title, "Renamed");
  const details = await dana.GET("/api/interviews/{id}", { params: { path: { id } } });
  assert.equal(details.data.interview.id, id);
  assert.ok(Array.isArray(details.data.messages));

  const other = createClient({ baseUrl: server.http, token: participant("eve") });
  const forbidden = await other.GET("/api/interviews/{id}", { params: { path: { id } } });
  assert.equal(forbidden.response.status, 403);
  assert.equal(forbidden.error.error.code, "forbidden");

  const url = socketUrl(server.http, "/parties/interview/{id}", { id }, token);
  assert.match(url, /^ws:\/\//);
  const socket = new WS(url);
  const frames = [];
  const listeners = new Set();
  socket.on("message", (data) => {
    const frame = parseServerMessage("/parties/interview/{id}", data.toString());
    frames.push(frame);
    for (const listener of listeners) listener(frame);
  });
  const until = (predicate, what) =>
    waitFor((cb) => {
      for (const f of frames) cb(f);
      listeners.add(cb);
    }, predicate, 15000, what);
  const first = await until(() => true, "first frame");
  assert.equal(first.type, "INTERVIEW_STATE");
  socket.send(clientMessage("/parties/interview/{id}", { type: "GET_ALL_MESSAGES" }));
  socket.send("{not json");
  const error = await until((f) => f.type === "error", "error frame");
  assert.equal(error.code, "invalid_json");
  socket.close();

  const removed = await dana.DELETE("/api/interviews/{id}", { params: { path: { id } } });
  assert.equal(removed.response.status, 204);
  const gone = await dana.GET("/api/interviews");
  assert.deepEqual(gone.data.interviews, []);
});

test("the event room socket URL from the client connects and the first frame is a snapshot", async () => {
  const url = socketUrl(server.http, "/parties/event/{event_id}", { event_id: "typed-socket" }, participant("fred"), {
    _pk: "tab-1",
  });
  const socket = new WS(url);
  const first = await new Promise((resolve, reject) => {
    socket.once("message", (data) => resolve(parseServerMessage("/parties/event/{event_id}", data.toString())));
    socket.once("error", reject);
  });
  assert.equal(first.type, "snapshot");
  assert.equal(first.eventId, "typed-socket");
  assert.equal(first.presence[0].userId, "fred");
  socket.send(clientMessage("/parties/event/{event_id}", { type: "heartbeat" }));
  socket.close();
});
