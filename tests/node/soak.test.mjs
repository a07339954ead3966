// kill -9 soak (issue #22): the server is SIGKILLed again and again, on the
// same database, while real clients load it — ~100 partysocket sockets
// heartbeating, moderators entering and leaving the stage over HTTP, queue
// edits over y-websocket and HTTP, signed LiveKit webhooks (with
// redeliveries), and recording starts and stops against the simulators.
//
// After every kill the stored log is checked with the `eventuall replay`
// binary: `verify` says the log is sound, and `export --all` holds every
// acknowledged action exactly once, in order, in the right stream (nothing
// lost, nothing doubled, even for webhook redeliveries); stored heartbeats
// never exceed those sent. After every restart the snapshots and queues agree
// with the log, projections catch up, and an offline `replay rebuild` gives
// the same analytics as the live projections did.
//
// An action counts as acknowledged only when its answer arrived: an HTTP 2xx
// (stage, queue add, recording), a webhook 200, or — for a y-websocket edit,
// which has no reply — another client receiving it (the server relays a
// moderator's update only once it is durable). An action in flight at the
// kill may or may not be stored, but at most once. Heartbeats have no reply:
// they are counted as sent, never as acknowledged.
//
// Also checked: the server and the CLI log no ERROR (or panic) line at any
// point; the counts of everything are printed as one `SOAK {…}` JSON line per
// database.
//
// EVENTUALL_SOAK_CYCLES (default 5; CI long profile 50). The PostgreSQL
// variant needs postgres://postgres@127.0.0.1:5432 (EVENTUALL_SOAK_PG to
// change) and fails without it. Each test sets its own timeout (60 s + 20 s a
// cycle), but `--test-timeout` also bounds the whole file: the long profile
// needs about 10 minutes, so run it with --test-timeout=1800000.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WS from "ws";
import PartySocket from "partysocket";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { AccessToken } from "livekit-server-sdk";
import { BIN, startServer, sign } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const SIM_BIN = process.env.EVENTUALL_SIM_BIN ?? resolve(here, "../../target/debug/eventuall-sim");
const CYCLES = Number(process.env.EVENTUALL_SOAK_CYCLES ?? 5);
const PG_ADMIN = process.env.EVENTUALL_SOAK_PG ?? "postgres://postgres@127.0.0.1:5432";

const LK_KEY = "APIsoak";
const LK_SECRET = "soak-livekit-secret-long-enough-for-hs256";
const HOOK_KEY = "APIsoakhooks";
const HOOK_SECRET = "soak-webhook-secret-long-enough-for-hs256";
const MUX_ID = "soak-mux-id";
const MUX_SECRET = "soak-mux-secret";

const ROOMS = ["soak-a", "soak-b", "soak-c", "soak-d"];
const REC_ROOM = "soak-rec";
const SOCKETS_PER_ROOM = 25; // 100 partysocket sockets in all
const STAGE_LOOPS = 2; // per room, each with its own users
const STAGE_USERS = 3; // per loop
const TERMINAL = new Set(["RecordingCompleted", "RecordingFailed"]);
/** `state` of `GET /cloudcaster/{id}/status` when nothing records or is queued. */
const IDLE = new Set(["none", "completed", "failed"]);

const MOD = sign({ sub: "soak-mod", role: "moderator" });
const tokenFor = (claims) => sign(claims);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rand = (lo, hi) => lo + Math.random() * (hi - lo);
const pick = (list) => list[Math.floor(Math.random() * list.length)];

// ---------------------------------------------------------------- simulators

let sim;
let simUrls;
before(async () => {
  sim = spawn(
    SIM_BIN,
    ["--fast", "--livekit-api-key", LK_KEY, "--livekit-api-secret", LK_SECRET, "--mux-token-id", MUX_ID, "--mux-token-secret", MUX_SECRET],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  const lines = createInterface({ input: sim.stdout });
  simUrls = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("eventuall-sim printed nothing")), 15000);
    sim.once("error", reject);
    sim.once("exit", (code) => reject(new Error(`eventuall-sim exited with ${code}`)));
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  });
});
after(() => {
  sim?.kill();
});

function serverEnv(databaseUrl) {
  return {
    ...(databaseUrl ? { EVENTUALL_DATABASE_URL: databaseUrl } : {}),
    EVENTUALL_LIVEKIT_URL: simUrls.livekit_url,
    EVENTUALL_LIVEKIT_API_KEY: LK_KEY,
    EVENTUALL_LIVEKIT_API_SECRET: LK_SECRET,
    EVENTUALL_LIVEKIT_WEBHOOK_KEYS: `${HOOK_KEY}:${HOOK_SECRET}`,
    EVENTUALL_MUX_URL: simUrls.mux_url,
    EVENTUALL_MUX_TOKEN_ID: MUX_ID,
    EVENTUALL_MUX_TOKEN_SECRET: MUX_SECRET,
    EVENTUALL_COMPOSITE_URL: "http://127.0.0.1:9/composite",
    EVENTUALL_RECORDING_POLL_EVERY: "100ms",
    // The load is 5 heartbeats/s per socket; the default budget is ample,
    // but the soak is not about rate limits.
    EVENTUALL_MAX_FRAMES_PER_SECOND: "200",
  };
}

// ----------------------------------------------------------------- the CLI

/** Runs `eventuall replay ARGS --database-url URL`; bounded to 120 s. */
function replay(url, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ["replay", ...args, "--database-url", url], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`replay ${args.join(" ")} took over 120 s`));
    }, 120000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr: stderr.replace(/\x1b\[[0-9;]*m/g, "") });
    });
  });
}

/**
 * `replay export --all --json`, streamed: calls `onEvent` per line; returns
 * the number of lines. Bounded to 120 s.
 */
function exportAll(url, onEvent, extra = ["--all"]) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ["replay", "export", ...extra, "--json", "--database-url", url], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let lines = 0;
    let failure = null;
    child.stderr.on("data", (d) => (stderr += d));
    const reader = createInterface({ input: child.stdout });
    reader.on("line", (line) => {
      if (!line.trim() || failure) return;
      lines++;
      try {
        onEvent(JSON.parse(line));
      } catch (e) {
        failure = e;
      }
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("replay export took over 120 s"));
    }, 120000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (failure) reject(failure);
      else if (code !== 0) reject(new Error(`replay export exited ${code}: ${stderr}`));
      else resolve(lines);
    });
  });
}

// ------------------------------------------------------------------- HTTP

async function http(server, method, path, body, token = MOD) {
  const response = await fetch(`${server.http}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, json, text };
}

async function until(check, what, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  for (let i = 0; i < 10000; i++) {
    last = await check();
    if (last?.ok ?? last) return last;
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  throw new Error(`timed out (${ms} ms): ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)}`);
}

// ---------------------------------------------------------------- webhooks

async function signedWebhook(body) {
  const token = new AccessToken(HOOK_KEY, HOOK_SECRET, { ttl: "5m" });
  token.sha256 = createHash("sha256").update(body).digest("base64");
  return token.toJwt();
}

function webhookBody(delivery) {
  return JSON.stringify({
    event: delivery.kind,
    id: delivery.id,
    createdAt: String(Math.floor(Date.now() / 1000)),
    room: { sid: `RM_${delivery.room}`, name: delivery.room },
    participant: {
      sid: delivery.sid,
      identity: delivery.identity,
      name: `${delivery.identity} (LiveKit)`,
      state: delivery.kind === "participant_joined" ? "ACTIVE" : "DISCONNECTED",
    },
  });
}

// ------------------------------------------------------------------ the model

/**
 * Everything the clients were told, across all cycles of one database.
 * Stage: per room and user the ordered list of acknowledged (or, once the log
 * settles it, in-flight-and-stored) changes. Queue: acknowledged adds.
 * Webhooks: every delivery id, acknowledged or not. Heartbeats: sent.
 */
function newModel() {
  return {
    stageState: new Map(), // `${room}|${user}` -> on stage (as last known)
    stageSeq: new Map(), // `${room}|${user}` -> [{type, acked, cycle, loop, order}]
    stageLoopOrder: new Map(), // loop id -> [op] in acknowledgement order
    queueAcked: new Map(), // userId -> {room, source, cycle, order}
    queueUnacked: new Set(), // userIds sent but not acknowledged
    queueOrder: new Map(), // `${room}|${source}` -> [userId] in ack order
    deliveries: new Map(), // id -> {id, room, kind, sid, identity, body, acked, attempts, statuses}
    livekitJoined: new Map(), // room -> Map(sid -> identity), joins acknowledged and no leave sent
    hbSent: new Map(), // `${room}|${user}` -> count
    recStarts: [], // {sessionId, cycle}
    recStops: [], // {commandId, target, cycle}
    recConflicts: 0,
    recUnknown: 0,
    analyticsBefore: null, // room -> analytics JSON (live projections, before an offline rebuild)
    counters: {
      stageAcked: 0,
      stageInflight: 0,
      stageInflightStored: 0,
      queueHttpAcked: 0,
      queueYAcked: 0,
      queueSent: 0,
      webhooksAcked: 0,
      webhookRedeliveries: 0,
      webhookRedeliveriesAcked: 0,
      webhookStatuses: {},
      webhookUnknown: 0,
      heartbeatsSent: 0,
      non2xx: [],
    },
  };
}

// --------------------------------------------------------------------- load

/** Opens the mixed load on `server`; `end()` closes it after the kill. */
function startLoad(server, model, cycle, variant) {
  const state = { stopping: false };
  const c = model.counters;
  const failures = [];
  const tasks = {
    list: [],
    // A failed check inside a loop is kept and thrown by end().
    push(promise) {
      this.list.push(promise.catch((e) => failures.push(e)));
    },
  };
  const sockets = [];
  const providers = [];
  const timers = new Set();
  const deadline = Date.now() + 20000; // no loop outlives this, whatever happens

  const running = () => !state.stopping && Date.now() < deadline;

  // Heartbeating partysocket clients.
  for (const room of ROOMS) {
    for (let i = 0; i < SOCKETS_PER_ROOM; i++) {
      const user = `s-${room}-${i}`;
      const socket = new PartySocket({
        host: server.host,
        party: "event",
        room,
        id: `${user}-tab`,
        query: { token: tokenFor({ sub: user }) },
        WebSocket: WS,
        maxRetries: 0,
      });
      socket.addEventListener("error", () => {});
      sockets.push(socket);
      const key = `${room}|${user}`;
      const beat = () => {
        if (!running()) return;
        if (socket.readyState === 1) {
          socket.send(JSON.stringify({ type: "heartbeat" }));
          model.hbSent.set(key, (model.hbSent.get(key) ?? 0) + 1);
          c.heartbeatsSent++;
        }
        const t = setTimeout(beat, rand(150, 250));
        timers.add(t);
      };
      const t = setTimeout(beat, rand(0, 200));
      timers.add(t);
    }
  }

  // Stage moderators: sequential per loop, each toggling its own users.
  for (const room of ROOMS) {
    for (let l = 0; l < STAGE_LOOPS; l++) {
      const loopId = `${room}#${l}`;
      const users = Array.from({ length: STAGE_USERS }, (_, k) => `st-${room}-${l}-${k}`);
      tasks.push(
        (async () => {
          for (let n = 0; n < 5000 && running(); n++) {
            const user = pick(users);
            const key = `${room}|${user}`;
            const on = model.stageState.get(key) ?? false;
            const type = on ? "StageExited" : "StageEntered";
            const op = { type, user, room, cycle, loop: loopId, acked: false };
            let answer;
            try {
              answer = await http(server, "POST", `/event/${room}/stage/${on ? "exit" : "enter"}`, { userId: user });
            } catch {
              op.inflight = true;
              c.stageInflight++;
              model.pendingStage.push(op);
              return;
            }
            if (answer.status !== 200) {
              c.non2xx.push({ cycle, what: `stage ${type} ${key}`, status: answer.status, body: answer.text.slice(0, 300) });
              op.inflight = true;
              c.stageInflight++;
              model.pendingStage.push(op);
              return;
            }
            const listed = (answer.json?.stage ?? []).some((s) => s.userId === user);
            assert.equal(listed, !on, `cycle ${cycle}: the 200 answer to ${type} ${key} shows the stage ${JSON.stringify(answer.json?.stage)}`);
            op.acked = true;
            c.stageAcked++;
            model.stageState.set(key, !on);
            if (!model.stageSeq.has(key)) model.stageSeq.set(key, []);
            model.stageSeq.get(key).push(op);
            if (!model.stageLoopOrder.has(loopId)) model.stageLoopOrder.set(loopId, []);
            model.stageLoopOrder.get(loopId).push(op);
            await sleep(rand(5, 35));
          }
        })(),
      );
    }
  }

  // Queue adds over HTTP, one sequential moderator per room.
  for (const room of ROOMS) {
    tasks.push(
      (async () => {
        for (let n = 0; n < 5000 && running(); n++) {
          const userId = `qh-${room}-${cycle}-${n}`;
          c.queueSent++;
          let answer;
          try {
            answer = await http(server, "POST", `/event/${room}/queue/add`, { userId, name: `H ${n}` });
          } catch {
            model.queueUnacked.add(userId);
            return;
          }
          if (answer.status !== 200) {
            c.non2xx.push({ cycle, what: `queue/add ${room} ${userId}`, status: answer.status, body: answer.text.slice(0, 300) });
            model.queueUnacked.add(userId);
            return;
          }
          assert.ok(
            (answer.json?.pending ?? []).some((e) => e.userId === userId),
            `cycle ${cycle}: the 200 answer to queue/add ${userId} lacks it`,
          );
          ack(room, "http", userId);
          await sleep(rand(60, 160));
        }
      })(),
    );
  }

  function ack(room, source, userId) {
    if (model.queueAcked.has(userId)) return;
    model.queueUnacked.delete(userId);
    model.queueAcked.set(userId, { room, source, cycle });
    const k = `${room}|${source}`;
    if (!model.queueOrder.has(k)) model.queueOrder.set(k, []);
    model.queueOrder.get(k).push(userId);
    if (source === "http") c.queueHttpAcked++;
    else c.queueYAcked++;
  }

  // Queue edits over y-websocket: a moderator pushes, a participant observes.
  const yjs = (room, token) => {
    const doc = new Y.Doc();
    const provider = new WebsocketProvider(`ws://${server.host}/parties/queue`, room, doc, {
      params: { token },
      WebSocketPolyfill: WS,
      disableBc: true,
      maxBackoffTime: 60000,
    });
    providers.push({ doc, provider });
    const synced = new Promise((resolve) => {
      if (provider.synced) resolve(true);
      provider.on("sync", (s) => s && resolve(true));
    });
    return { doc, provider, synced, pending: doc.getArray("pending") };
  };
  for (const room of ROOMS) {
    const mod = yjs(room, tokenFor({ sub: `ymod-${room}`, role: "moderator" }));
    const watcher = yjs(room, tokenFor({ sub: `ywatch-${room}` }));
    const sent = new Set();
    const seen = () => {
      for (const entry of watcher.pending.toArray()) {
        const id = entry?.userId;
        if (typeof id === "string" && sent.has(id)) {
          sent.delete(id);
          ack(room, "yjs", id);
        }
      }
    };
    watcher.pending.observe(seen);
    tasks.push(
      (async () => {
        const ready = await Promise.race([Promise.all([mod.synced, watcher.synced]), sleep(5000).then(() => false)]);
        if (!ready) return;
        for (let n = 0; n < 5000 && running() && mod.provider.wsconnected; n++) {
          const userId = `qy-${room}-${cycle}-${n}`;
          sent.add(userId);
          model.queueUnacked.add(userId);
          c.queueSent++;
          mod.pending.push([{ userId, name: `Y ${n}` }]);
          await sleep(rand(80, 200));
        }
      })(),
    );
  }

  // Signed LiveKit webhooks: joins, leaves and redeliveries, per room.
  for (const room of ROOMS) {
    if (!model.livekitJoined.has(room)) model.livekitJoined.set(room, new Map());
    const joined = model.livekitJoined.get(room);
    tasks.push(
      (async () => {
        for (let n = 0; n < 5000 && running(); n++) {
          let delivery;
          const previous = [...model.deliveries.values()].filter((d) => d.room === room);
          const roll = Math.random();
          if (roll < 0.12 && previous.length > 0) {
            delivery = pick(previous);
            c.webhookRedeliveries++;
            delivery.redelivered = true;
          } else if (roll < 0.6 || joined.size === 0) {
            const id = `EV_${variant}_${room}_${cycle}_${n}`;
            delivery = { id, room, kind: "participant_joined", sid: `PA_${room}_${cycle}_${n}`, identity: `lk-${room}-${cycle}-${n}`, acked: false, attempts: 0, statuses: [] };
            delivery.body = webhookBody(delivery);
            model.deliveries.set(id, delivery);
          } else {
            const [sid, identity] = pick([...joined.entries()]);
            joined.delete(sid);
            const id = `EV_${variant}_${room}_${cycle}_${n}`;
            delivery = { id, room, kind: "participant_left", sid, identity, acked: false, attempts: 0, statuses: [] };
            delivery.body = webhookBody(delivery);
            model.deliveries.set(id, delivery);
          }
          delivery.attempts++;
          let response;
          try {
            response = await fetch(`${server.http}/webhooks/livekit`, {
              method: "POST",
              headers: { "content-type": "application/webhook+json", authorization: await signedWebhook(delivery.body) },
              body: delivery.body,
              signal: AbortSignal.timeout(5000),
            });
          } catch {
            c.webhookUnknown++;
            return;
          }
          const text = await response.text().catch(() => null);
          if (response.status !== 200 || text === null) {
            c.non2xx.push({ cycle, what: `webhook ${delivery.id}`, status: response.status, body: String(text).slice(0, 300) });
            return;
          }
          const status = JSON.parse(text).status;
          delivery.statuses.push(status);
          c.webhookStatuses[status] = (c.webhookStatuses[status] ?? 0) + 1;
          if (delivery.attempts > 1) c.webhookRedeliveriesAcked++;
          const first = !delivery.acked;
          delivery.acked = true;
          if (first) c.webhooksAcked++;
          // A participant can be left once its join is answered (and only once).
          if (first && delivery.kind === "participant_joined") joined.set(delivery.sid, delivery.identity);
          await sleep(rand(15, 50));
        }
      })(),
    );
  }

  // One recording action per cycle, at a random moment of the load.
  tasks.push(
    (async () => {
      await sleep(rand(100, 900));
      if (!running()) return;
      const status = await http(server, "GET", `/cloudcaster/${REC_ROOM}/status`).catch(() => null);
      if (!status) return;
      const active = status.status === 200 && status.json && !IDLE.has(status.json.state);
      let answer;
      try {
        answer = await http(server, "POST", `/cloudcaster/${REC_ROOM}/${active ? "stop" : "start"}`);
      } catch {
        model.recUnknown++;
        return;
      }
      if (answer.status === 202) {
        if (active) model.recStops.push({ commandId: answer.json.commandId, target: status.json.sessionId, cycle });
        else model.recStarts.push({ sessionId: answer.json.sessionId, cycle });
      } else if (answer.status === 409) {
        model.recConflicts++;
      } else {
        c.non2xx.push({ cycle, what: `recording ${active ? "stop" : "start"}`, status: answer.status, body: answer.text.slice(0, 300) });
      }
    })(),
  );

  return {
    /** Ends the load after the server is gone; every wait bounded. */
    async end() {
      state.stopping = true;
      for (const t of timers) clearTimeout(t);
      const settled = await Promise.race([Promise.all(tasks.list).then(() => true), sleep(10000).then(() => false)]);
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.close();
      for (const { doc, provider } of providers) {
        provider.destroy();
        provider.awareness.destroy();
        doc.destroy();
      }
      if (failures.length) throw failures[0];
      assert.ok(settled, `cycle ${cycle}: the load's loops did not end within 10 s of the kill`);
    },
  };
}

// ---------------------------------------------------------- checking the log

const payloadOf = (event) => Object.values(event.payload ?? {})[0] ?? {};
const roomOf = (stream) => (stream.startsWith("room-") ? stream.slice(5) : null);

/** Reads the whole log once and checks it against the model. */
async function checkLog(url, model, cycle) {
  const verified = await replay(url, ["verify", "--json"]);
  assert.equal(verified.code, 0, `cycle ${cycle}: replay verify exited ${verified.code}: ${verified.stdout} ${verified.stderr}`);
  const report = JSON.parse(verified.stdout);
  assert.equal(report.problemCount, 0, `cycle ${cycle}: replay verify found problems: ${JSON.stringify(report.problems).slice(0, 2000)}`);

  const stage = new Map(); // `${room}|${user}` -> [{type, version}]
  const queued = new Map(); // userId -> [{stream, version, by}]
  const applied = new Map(); // delivery id -> [{stream, version, prev}]
  const heartbeats = new Map(); // `${room}|${user}` -> count
  const connections = new Map(); // room -> Map(connection id -> {user, kind})
  const lastVersion = new Map(); // stream -> version
  const previous = new Map(); // stream -> previous event
  const sessions = new Map(); // session id -> [eventType]
  let heartbeatsStored = 0;
  let lastPosition = 0;
  let events = 0;

  const lines = await exportAll(url, (e) => {
    events++;
    assert.ok(e.globalPosition > lastPosition, `cycle ${cycle}: export positions not increasing at ${e.globalPosition}`);
    lastPosition = e.globalPosition;
    const before = lastVersion.get(e.streamId) ?? 0;
    assert.equal(e.streamVersion, before + 1, `cycle ${cycle}: ${e.streamId} jumps from version ${before} to ${e.streamVersion}`);
    lastVersion.set(e.streamId, e.streamVersion);
    const p = payloadOf(e);
    const room = roomOf(e.streamId);
    switch (e.eventType) {
      case "HeartbeatReceived": {
        const key = `${room}|${p.user_id}`;
        heartbeats.set(key, (heartbeats.get(key) ?? 0) + 1);
        heartbeatsStored++;
        break;
      }
      case "StageEntered":
      case "StageExited": {
        const key = `${room}|${p.user_id}`;
        if (!stage.has(key)) stage.set(key, []);
        stage.get(key).push({ type: e.eventType, version: e.streamVersion });
        break;
      }
      case "ParticipantQueued": {
        if (!queued.has(p.user_id)) queued.set(p.user_id, []);
        queued.get(p.user_id).push({ stream: e.streamId, version: e.streamVersion, by: p.by, position: e.globalPosition });
        break;
      }
      case "LiveKitDeliveryApplied": {
        if (!applied.has(p.delivery_id)) applied.set(p.delivery_id, []);
        applied.get(p.delivery_id).push({ stream: e.streamId, version: e.streamVersion, prev: previous.get(e.streamId) });
        break;
      }
      case "ConnectionOpened": {
        if (!connections.has(room)) connections.set(room, new Map());
        connections.get(room).set(p.connection_id, { user: p.user_id, kind: String(p.kind) });
        break;
      }
      case "ConnectionClosed":
        connections.get(room)?.delete(p.connection_id);
        break;
      default:
        if (e.streamId.startsWith("recording-")) {
          const id = e.streamId.slice("recording-".length);
          if (!sessions.has(id)) sessions.set(id, []);
          sessions.get(id).push(e.eventType);
        }
    }
    previous.set(e.streamId, { type: e.eventType, payload: p, version: e.streamVersion });
  });
  assert.equal(report.events, lines, `cycle ${cycle}: verify counted ${report.events} events, export gave ${lines}`);

  // Stage: settle the changes in flight at the kill from the log, then the
  // stored sequence of every (room, user) is exactly the acknowledged one.
  for (const op of model.pendingStage) {
    const key = `${op.room}|${op.user}`;
    const expected = model.stageSeq.get(key) ?? [];
    const stored = stage.get(key) ?? [];
    if (stored.length === expected.length + 1 && stored.at(-1).type === op.type) {
      model.counters.stageInflightStored++;
      if (!model.stageSeq.has(key)) model.stageSeq.set(key, []);
      model.stageSeq.get(key).push(op);
      model.stageState.set(key, op.type === "StageEntered");
    }
  }
  model.pendingStage = [];
  for (const key of new Set([...stage.keys(), ...model.stageSeq.keys()])) {
    const expected = (model.stageSeq.get(key) ?? []).map((op) => op.type);
    const stored = (stage.get(key) ?? []).map((s) => s.type);
    assert.deepEqual(
      stored,
      expected,
      `cycle ${cycle}: stage events of ${key}: the log has ${stored.length}, the clients were answered ${expected.length} (first difference at index ${Array.from({ length: Math.max(stored.length, expected.length) }, (_, i) => i).find((i) => stored[i] !== expected[i])}; answered: ${JSON.stringify((model.stageSeq.get(key) ?? []).map((o) => [o.cycle, o.type, o.acked ? "answered" : "in flight"]))})`,
    );
    const ops = model.stageSeq.get(key) ?? [];
    ops.forEach((op, i) => (op.version = stage.get(key)[i].version));
  }
  // Each moderator's acknowledged changes are in the room stream in the order
  // they were answered (a later one was sent only after the earlier answer).
  for (const [loop, ops] of model.stageLoopOrder) {
    for (let i = 1; i < ops.length; i++) {
      assert.ok(
        ops[i].version > ops[i - 1].version,
        `cycle ${cycle}: moderator ${loop}: ${ops[i - 1].type} ${ops[i - 1].user} (answered first) is at version ${ops[i - 1].version}, ${ops[i].type} ${ops[i].user} at ${ops[i].version}`,
      );
    }
  }

  // Queue: every acknowledged add exactly once, in its room's stream, by its
  // moderator; nothing queued twice; each source's adds in answer order.
  for (const [userId, list] of queued) {
    assert.equal(list.length, 1, `cycle ${cycle}: ${userId} queued ${list.length} times: ${JSON.stringify(list)}`);
  }
  for (const [userId, info] of model.queueAcked) {
    const list = queued.get(userId) ?? [];
    assert.equal(list.length, 1, `cycle ${cycle}: acknowledged queue add ${userId} (${info.source}, cycle ${info.cycle}) has ${list.length} ParticipantQueued events`);
    assert.equal(list[0].stream, `queue-${info.room}`, `cycle ${cycle}: ${userId} queued in ${list[0].stream}`);
    assert.equal(list[0].by, info.source === "http" ? "soak-mod" : `ymod-${info.room}`, `cycle ${cycle}: ${userId} queued by ${list[0].by}`);
  }
  for (const [k, order] of model.queueOrder) {
    const versions = order.map((u) => queued.get(u)[0].version);
    for (let i = 1; i < versions.length; i++) {
      assert.ok(versions[i] > versions[i - 1], `cycle ${cycle}: queue ${k}: ${order[i - 1]} answered before ${order[i]} but stored after it`);
    }
  }

  // Webhooks: every acknowledged delivery id applied exactly once in its room
  // stream, with its effect in the same append; no delivery applied twice.
  for (const [id, list] of applied) {
    assert.equal(list.length, 1, `cycle ${cycle}: delivery ${id} applied ${list.length} times: ${JSON.stringify(list)}`);
  }
  for (const d of model.deliveries.values()) {
    const list = applied.get(d.id) ?? [];
    if (!d.acked) continue;
    assert.equal(list.length, 1, `cycle ${cycle}: acknowledged delivery ${d.id} (${d.kind}, ${d.attempts} attempts, answers ${d.statuses}) has ${list.length} LiveKitDeliveryApplied events`);
    assert.equal(list[0].stream, `room-${d.room}`, `cycle ${cycle}: delivery ${d.id} applied in ${list[0].stream}`);
    const prev = list[0].prev;
    if (d.kind === "participant_joined") {
      assert.ok(
        prev?.type === "ConnectionOpened" && prev.payload.user_id === d.identity && prev.version === list[0].version - 1,
        `cycle ${cycle}: delivery ${d.id} (join of ${d.identity}) is not preceded by its ConnectionOpened: ${JSON.stringify(prev)}`,
      );
    } else {
      assert.ok(
        prev?.type === "ConnectionClosed" && prev.payload.user_id === d.identity && prev.version === list[0].version - 1,
        `cycle ${cycle}: delivery ${d.id} (leave of ${d.identity}) is not preceded by its ConnectionClosed: ${JSON.stringify(prev)}`,
      );
    }
  }

  // Heartbeats: never more stored than sent, per user.
  for (const [key, count] of heartbeats) {
    const sent = model.hbSent.get(key) ?? 0;
    assert.ok(count <= sent, `cycle ${cycle}: ${key}: ${count} HeartbeatReceived stored, ${sent} sent`);
  }

  // Recording: every acknowledged start opened its session; every
  // acknowledged stop reached its session (checked once the log has had the
  // chance: commands queued before a kill run after the restart).
  return { heartbeatsStored, events, connections, lastVersion, sessions, queued, applied, stage };
}

/** The stage of `room` as the log's stage events leave it. */
function stageFromLog(log, room) {
  const on = [];
  for (const [key, list] of log.stage) {
    const [r, user] = key.split("|");
    if (r === room && list.at(-1).type === "StageEntered") on.push(user);
  }
  return on.sort();
}

/** After a restart: snapshots and queues agree with the log and the answers. */
async function checkRestarted(server, model, log, cycle) {
  for (const room of ROOMS) {
    const snap = await http(server, "GET", `/event/${room}/snapshot`);
    assert.equal(snap.status, 200, `cycle ${cycle}: snapshot of ${room} answered ${snap.status} ${snap.text}`);
    const onStage = snap.json.stage.map((s) => s.userId).sort();
    const acked = [...model.stageState].filter(([k, on]) => on && k.startsWith(`${room}|`)).map(([k]) => k.split("|")[1]).sort();
    assert.deepEqual(onStage, stageFromLog(log, room), `cycle ${cycle}: ${room}'s stage after restart differs from its log`);
    assert.deepEqual(onStage, acked, `cycle ${cycle}: ${room}'s stage after restart differs from the last answered state`);
    // The restarted room closed the sockets the log showed open: a user's
    // connections are exactly their LiveKit connections left open in the log.
    const open = new Map();
    let sockets = 0;
    for (const conn of (log.connections.get(room) ?? new Map()).values()) {
      if (/^live_?kit$/i.test(conn.kind)) open.set(conn.user, (open.get(conn.user) ?? 0) + 1);
      else sockets++;
    }
    for (const p of snap.json.presence) {
      assert.equal(p.connections, open.get(p.userId) ?? 0, `cycle ${cycle}: ${room}: ${p.userId} has ${p.connections} connections after restart, the log ${open.get(p.userId) ?? 0}`);
    }
    for (const [user, n] of open) {
      assert.ok(snap.json.presence.some((p) => p.userId === user && p.connections === n), `cycle ${cycle}: ${room}: LiveKit user ${user} missing after restart`);
    }
    assert.equal(
      snap.json.version,
      (log.lastVersion.get(`room-${room}`) ?? 0) + sockets,
      `cycle ${cycle}: ${room}: version after restart is ${snap.json.version}; the log had ${log.lastVersion.get(`room-${room}`)} and ${sockets} sockets to close`,
    );

    const queue = await http(server, "GET", `/event/${room}/queue`);
    assert.equal(queue.status, 200, `cycle ${cycle}: queue of ${room} answered ${queue.status}`);
    const listed = [...queue.json.pending, ...queue.json.live].map((e) => e.userId);
    assert.equal(new Set(listed).size, listed.length, `cycle ${cycle}: ${room}'s queue lists someone twice`);
    const inLog = [...log.queued].filter(([, l]) => l[0].stream === `queue-${room}`).map(([u]) => u);
    assert.deepEqual([...listed].sort(), inLog.sort(), `cycle ${cycle}: ${room}'s queue after restart differs from the users its log queued`);
    const index = new Map(queue.json.pending.map((e, i) => [e.userId, i]));
    for (const source of ["http", "yjs"]) {
      const order = model.queueOrder.get(`${room}|${source}`) ?? [];
      for (let i = 0; i < order.length; i++) {
        assert.ok(index.has(order[i]), `cycle ${cycle}: acknowledged ${order[i]} missing from ${room}'s pending list after restart`);
        if (i > 0) assert.ok(index.get(order[i]) > index.get(order[i - 1]), `cycle ${cycle}: ${room}: ${order[i - 1]} and ${order[i]} swapped in pending`);
      }
    }
  }
}

/** Acknowledged recording commands take effect once the server runs again. */
async function checkRecording(server, url, model, cycle) {
  for (const start of model.recStarts.filter((s) => s.cycle === cycle)) {
    await until(async () => {
      let types = [];
      await exportAll(url, (e) => types.push(e.eventType), ["--stream", `recording-${start.sessionId}`]);
      return { ok: types[0] === "RecordingRequested", types };
    }, `cycle ${cycle}: the acknowledged recording start ${start.sessionId} opens its session`);
  }
  for (const stop of model.recStops.filter((s) => s.cycle === cycle)) {
    await until(async () => {
      let types = [];
      await exportAll(url, (e) => types.push(e.eventType), ["--stream", `recording-${stop.target}`]);
      return { ok: ["StopRequested", "RecordingFailureDetected", "RecordingFailed"].some((x) => types.includes(x)), types };
    }, `cycle ${cycle}: the acknowledged recording stop ${stop.commandId} reaches session ${stop.target}`);
  }
}

async function analytics(server) {
  const out = {};
  for (const room of ROOMS) {
    const a = await http(server, "GET", `/analytics/events/${room}`);
    assert.equal(a.status, 200, `analytics of ${room}: ${a.status} ${a.text}`);
    const { position, ...figures } = a.json;
    out[room] = figures;
  }
  return out;
}

async function projectionsCaughtUp(server, what) {
  return until(async () => {
    const s = await http(server, "GET", "/admin/projections");
    return { ok: s.status === 200 && s.json.every((p) => p.lag === 0), body: s.json };
  }, what);
}

// --------------------------------------------------------------------- soak

async function soak(t, variant, databaseUrl) {
  const started = Date.now();
  const model = newModel();
  model.pendingStage = [];
  const env = serverEnv(databaseUrl);
  // Warnings and errors the server and the CLI log, by phase: reported, and
  // errors (other than during a kill) fail the soak once everything else has
  // been checked.
  const logged = [];
  let phase = "cycle 1 load";
  const onLog = (line) => {
    if (/\b(ERROR|WARN)\b|panicked/.test(line)) logged.push({ phase, line });
  };
  const collect = (what, stderr) => {
    for (const line of stderr.split("\n")) if (/\b(ERROR|WARN)\b|panicked/.test(line)) logged.push({ phase: what, line });
  };
  let server = await startServer(env, { onLog });
  // server.mjs's stop() waits for an exit that already happened when called
  // twice after a kill: stop each server once, and clean up a dead one here.
  const dir = server.dir;
  let alive = true;
  const stop = async (options) => {
    alive = false;
    await server.stop({ keep: true, ...options });
  };
  const restart = async () => {
    server = await startServer(env, { dir, onLog });
    alive = true;
  };
  const url = databaseUrl ?? `sqlite://${join(dir, "events.db")}`;
  let last;
  try {
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      // 1. Load through real clients for 1–3 s, then kill -9 mid-load.
      phase = `cycle ${cycle} load`;
      if (model.analyticsBefore) {
        assert.deepEqual(await analytics(server), model.analyticsBefore, `cycle ${cycle}: analytics after the offline rebuild differ from the live projections`);
      }
      const load = startLoad(server, model, cycle, variant);
      await sleep(rand(1000, 3000));
      await stop({ signal: "SIGKILL" });
      await load.end();

      // 2–3. The stored log, read by the binary.
      last = await checkLog(url, model, cycle);

      // 4. Restart: snapshots and queues agree; commands resume; projections
      // catch up; an offline rebuild reaches the head.
      phase = `cycle ${cycle} restart`;
      await restart();
      await checkRestarted(server, model, last, cycle);
      await checkRecording(server, url, model, cycle);
      await projectionsCaughtUp(server, `cycle ${cycle}: projections catch up after the restart`);
      model.analyticsBefore = await analytics(server);
      await stop();
      const rebuilt = await replay(url, ["rebuild", "--json"]);
      assert.equal(rebuilt.code, 0, `cycle ${cycle}: replay rebuild exited ${rebuilt.code}: ${rebuilt.stderr}`);
      collect(`cycle ${cycle} replay rebuild`, rebuilt.stderr);
      const status = await replay(url, ["status", "--json"]);
      assert.equal(status.code, 0, `cycle ${cycle}: replay status exited ${status.code}: ${status.stderr}`);
      for (const p of JSON.parse(status.stdout)) {
        assert.equal(p.lag, 0, `cycle ${cycle}: projection ${p.name} lags ${p.lag} after rebuild (${status.stdout})`);
      }
      phase = `cycle ${cycle + 1} load`;
      await restart();
    }
    phase = "final";

    // The rebuilt projections serve the same figures as the live ones did.
    assert.deepEqual(await analytics(server), model.analyticsBefore, "analytics after the last offline rebuild differ from the live projections");
    // Every recording session, interrupted or not, ends (completed or failed).
    const st = await http(server, "GET", `/cloudcaster/${REC_ROOM}/status`);
    if (st.status === 200 && st.json && !IDLE.has(st.json.state)) {
      await until(async () => {
        const s = await http(server, "POST", `/cloudcaster/${REC_ROOM}/stop`);
        const now = await http(server, "GET", `/cloudcaster/${REC_ROOM}/status`);
        return { ok: s.status === 202 || IDLE.has(now.json?.state), stop: s.status, state: now.json?.state };
      }, "the final recording stop is accepted");
    }
    const sessions = await until(async () => {
      const all = new Map();
      await exportAll(url, (e) => {
        if (!e.streamId.startsWith("recording-")) return;
        const id = e.streamId.slice("recording-".length);
        all.set(id, e.eventType);
      }, ["--category", "recording"]);
      const open = [...all].filter(([, type]) => !TERMINAL.has(type));
      return { ok: open.length === 0, open, total: all.size, outcomes: [...all.values()] };
    }, "every recording session ends", 30000);
    await stop();
    const final = await replay(url, ["verify", "--json"]);
    assert.equal(final.code, 0, `final replay verify exited ${final.code}: ${final.stdout}`);

    const c = model.counters;
    const acked = [...model.deliveries.values()].filter((d) => d.acked).length;
    const summary = {
      variant,
      cycles: CYCLES,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      events: JSON.parse(final.stdout).events,
      stage: { acked: c.stageAcked, stored: [...model.stageSeq.values()].reduce((n, l) => n + l.length, 0), inflightAtKill: c.stageInflight, inflightStored: c.stageInflightStored },
      queue: {
        acked: c.queueHttpAcked + c.queueYAcked,
        ackedHttp: c.queueHttpAcked,
        ackedYjs: c.queueYAcked,
        sent: c.queueSent,
        stored: last.queued.size,
        ackedStored: [...model.queueAcked.keys()].filter((u) => last.queued.has(u)).length,
      },
      webhooks: {
        ids: model.deliveries.size,
        ackedIds: acked,
        ackedIdsApplied: [...model.deliveries.values()].filter((d) => d.acked && last.applied.get(d.id)?.length === 1).length,
        applied: last.applied.size,
        redeliveries: c.webhookRedeliveries,
        redeliveriesAnswered: c.webhookRedeliveriesAcked,
        answers: c.webhookStatuses,
        unansweredAtKill: c.webhookUnknown,
      },
      heartbeats: { sent: c.heartbeatsSent, stored: last.heartbeatsStored },
      recording: { startsAcked: model.recStarts.length, stopsAcked: model.recStops.length, conflicts: model.recConflicts, unanswered: model.recUnknown, sessions: sessions.total, outcomes: countBy(sessions.outcomes) },
      non2xx: c.non2xx,
      logs: groupLogs(logged),
    };
    t.diagnostic(JSON.stringify(summary));
    console.log(`SOAK ${JSON.stringify(summary)}`);
    assert.deepEqual(c.non2xx, [], "every answer before the kill was a success");
    const errors = logged.filter((l) => /\bERROR\b|panicked/.test(l.line));
    assert.deepEqual(
      groupLogs(errors),
      {},
      `the server and the CLI logged errors (first: ${errors[0]?.phase}: ${errors[0]?.line.slice(0, 600)})`,
    );
    assert.ok(c.stageAcked > 0 && c.queueHttpAcked > 0 && c.queueYAcked > 0 && acked > 0 && c.heartbeatsSent > 0, "the load did something of every kind");
  } finally {
    if (alive) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Log lines by level, target and message (without fields and times). */
function groupLogs(lines) {
  const out = {};
  for (const { phase, line } of lines) {
    const m = line.match(/\b(ERROR|WARN)\s+([\w:]+): (.*?)(?:\s+\w+=|$)/);
    const key = m ? `${m[1]} ${m[2]}: ${m[3]}` : line.slice(0, 200);
    out[key] ??= { count: 0, first: phase, example: line.slice(0, 400) };
    out[key].count++;
  }
  return out;
}

function countBy(list) {
  const out = {};
  for (const x of list) out[x] = (out[x] ?? 0) + 1;
  return out;
}

const budget = 60000 + CYCLES * 20000;

test(`kill -9 soak on SQLite (${CYCLES} cycles)`, { timeout: budget }, async (t) => {
  await soak(t, "sqlite");
});

test(`kill -9 soak on PostgreSQL (${CYCLES} cycles)`, { timeout: budget }, async (t) => {
  const name = `eventuall_soak_${process.pid}_${Date.now()}`;
  const psql = (sql) => execFileSync("psql", [`${PG_ADMIN}/postgres`, "-v", "ON_ERROR_STOP=1", "-qc", sql], { stdio: ["ignore", "pipe", "pipe"], timeout: 30000 });
  psql(`create database ${name}`);
  try {
    await soak(t, "postgres", `${PG_ADMIN}/${name}`);
  } finally {
    psql(`drop database if exists ${name} with (force)`);
  }
});
