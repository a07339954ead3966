// Hostile-clients benchmark (issue #22): what idle sockets and a very large
// room cost the server, in resident memory and in fanout time.
//
//   node bench/idle-connections.mjs [--connections 10000] [--per-room 100]
//                                   [--large-room 5000] [--joins 10]
//
// 1. Idle connections: N event-room sockets (`--per-room` to a room) to one
//    server; its VmRSS (/proc/<pid>/status) with none, with all N open and
//    quiet, and after they closed. Per connection = (open - none) / N.
// 2. A very large room: M sockets in one room, then `--joins` newcomers one
//    after another; each time, from the newcomer's connect until the last
//    of the M has a snapshot that lists it (a substring test on the raw
//    frame, so the client does not parse M × 500 KB of JSON per join), and
//    the server's VmRSS with the room full.
//
// Each phase has its own fresh server (SQLite in a temporary folder) on
// 127.0.0.1. Presence timeouts are set to an hour so that idle means idle
// (no away/offline broadcasts mid-measurement); the sockets still answer the
// server's protocol pings (the `ws` package does), so its 60 s silence limit
// does not close them. Every loop is bounded by count and by time.
//
// Open files: each socket is a descriptor in this process and in the
// server. If `ulimit -n` is too low the script re-runs itself under
// `sh -c 'ulimit -n …'` (raising the soft limit up to the hard one).
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import WS from "ws";
import { startServer, sign } from "../server.mjs";

const { values: opts } = parseArgs({
  options: {
    connections: { type: "string", default: "10000" },
    "per-room": { type: "string", default: "100" },
    "large-room": { type: "string", default: "5000" },
    joins: { type: "string", default: "10" },
    phase: { type: "string", default: "all" },
  },
});
const CONNECTIONS = Number(opts.connections);
const PER_ROOM = Number(opts["per-room"]);
const LARGE_ROOM = Number(opts["large-room"]);
const JOINS = Number(opts.joins);
/** Sockets opened at once while filling a server. */
const OPENING_AT_ONCE = 100;
/** Longest a phase may take before the run is abandoned. */
const PHASE_LIMIT_MS = 600_000;

const needed = Math.max(CONNECTIONS, LARGE_ROOM + JOINS) + 256;
const softLimit = Number(execFileSync("sh", ["-c", "ulimit -n"]).toString().trim());
if (softLimit < needed) {
  if (process.env.IDLE_BENCH_RAISED) {
    console.error(`ulimit -n is ${softLimit}, ${needed} needed; raise the hard limit or lower --connections`);
    process.exit(2);
  }
  const rerun = spawnSync("sh", ["-c", `ulimit -n ${needed} && exec "$0" "$@"`, process.execPath, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, IDLE_BENCH_RAISED: "1" },
  });
  process.exit(rerun.status ?? 1);
}

const SERVER_ENV = {
  EVENTUALL_AWAY_AFTER: "1h",
  EVENTUALL_SWEEP_EVERY: "1h",
  EVENTUALL_MAX_CONNECTIONS: String(needed),
  EVENTUALL_LOG: "info",
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mib = (kib) => (kib / 1024).toFixed(1);

function rssKiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(line.split(/\s+/)[1]);
}

/** RSS once it has stopped moving (two reads 500 ms apart within 1 %), at most 10 s. */
async function settledRss(pid) {
  let last = rssKiB(pid);
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    const now = rssKiB(pid);
    if (Math.abs(now - last) <= last * 0.01) return now;
    last = now;
  }
  return last;
}

/** Opens one event-room socket and resolves on its first frame (the snapshot). */
function open(host, room, user, onMessage) {
  return new Promise((resolve, reject) => {
    const token = sign({ sub: user, name: user });
    const ws = new WS(`ws://${host}/parties/event/${room}?token=${token}&_pk=${user}`);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${user}: no snapshot within 120 s`));
    }, 120_000);
    ws.once("message", () => {
      clearTimeout(timer);
      resolve(ws);
    });
    if (onMessage) ws.on("message", onMessage);
    ws.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Opens `count` sockets, `OPENING_AT_ONCE` at a time; `target(i)` is `[host, room]`. */
async function openMany(count, target, userOf, onMessageOf = () => undefined) {
  const sockets = new Array(count);
  let next = 0;
  const started = Date.now();
  async function worker() {
    while (next < count) {
      if (Date.now() - started > PHASE_LIMIT_MS) throw new Error("opening took too long");
      const i = next++;
      const [host, room] = target(i);
      sockets[i] = await open(host, room, userOf(i), onMessageOf(i));
    }
  }
  await Promise.all(Array.from({ length: Math.min(OPENING_AT_ONCE, count) }, worker));
  return { sockets, ms: Date.now() - started };
}

async function closeAll(sockets) {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise((resolve) => {
          if (!ws || ws.readyState === WS.CLOSED) return resolve();
          const timer = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 5_000);
          ws.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
          ws.close();
        }),
    ),
  );
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function idlePhase() {
  const server = await startServer(SERVER_ENV);
  try {
    const before = await settledRss(server.pid);
    const rooms = Math.ceil(CONNECTIONS / PER_ROOM);
    const { sockets, ms } = await openMany(
      CONNECTIONS,
      (i) => [server.host, `idle-${i % rooms}`],
      (i) => `idle-user-${i}`,
    );
    const withAll = await settledRss(server.pid);
    await closeAll(sockets);
    const closed = await settledRss(server.pid);
    const perConnection = ((withAll - before) * 1024) / CONNECTIONS;
    console.log(
      JSON.stringify({
        phase: "idle",
        connections: CONNECTIONS,
        rooms,
        openedInMs: ms,
        rssBeforeMiB: Number(mib(before)),
        rssOpenMiB: Number(mib(withAll)),
        rssAfterCloseMiB: Number(mib(closed)),
        bytesPerConnection: Math.round(perConnection),
        kibPerConnection: Number((perConnection / 1024).toFixed(1)),
      }),
    );
  } finally {
    await server.stop();
  }
}

async function largeRoomPhase() {
  const server = await startServer(SERVER_ENV);
  try {
    const before = await settledRss(server.pid);
    // The newcomer being looked for, and how many members have seen it.
    let marker = null;
    let seen = 0;
    let allSeen = null;
    let snapshotBytes = 0;
    // Each member counts a newcomer once: the handler is per socket.
    const memberHandler = () => {
      let counted = null;
      return (data) => {
        if (marker && counted !== marker && data.includes(marker)) {
          counted = marker;
          snapshotBytes = data.length;
          seen++;
          if (seen === LARGE_ROOM && allSeen) allSeen();
        }
      };
    };
    const { sockets, ms: filledMs } = await openMany(
      LARGE_ROOM,
      () => [server.host, "large"],
      (i) => `member-${i}`,
      memberHandler,
    );
    const full = await settledRss(server.pid);
    const own = [];
    const all = [];
    for (let k = 0; k < JOINS; k++) {
      const user = `newcomer-${k}`;
      seen = 0;
      marker = `"userId":"${user}"`;
      const everyone = new Promise((resolve, reject) => {
        allSeen = resolve;
        setTimeout(() => reject(new Error(`${user}: only ${seen} of ${LARGE_ROOM} saw the join in 120 s`)), 120_000);
      });
      const t0 = performance.now();
      const newcomer = await open(server.host, "large", user);
      own.push(performance.now() - t0);
      await everyone;
      all.push(performance.now() - t0);
      marker = null;
      await closeAll([newcomer]);
      await sleep(1_000);
    }
    const after = await settledRss(server.pid);
    await closeAll(sockets);
    own.sort((a, b) => a - b);
    all.sort((a, b) => a - b);
    const round = (v) => Math.round(v * 10) / 10;
    console.log(
      JSON.stringify({
        phase: "large-room",
        members: LARGE_ROOM,
        joins: JOINS,
        filledInMs: filledMs,
        snapshotBytes,
        ownSnapshotMs: { p50: round(percentile(own, 50)), p99: round(percentile(own, 99)), max: round(own.at(-1)) },
        lastMemberMs: { p50: round(percentile(all, 50)), p99: round(percentile(all, 99)), max: round(all.at(-1)) },
        rssBeforeMiB: Number(mib(before)),
        rssFullMiB: Number(mib(full)),
        rssAfterJoinsMiB: Number(mib(after)),
        kibPerMember: Number(((after - before) / LARGE_ROOM).toFixed(1)),
      }),
    );
  } finally {
    await server.stop();
  }
}

console.log(JSON.stringify({ ulimit: softLimit, node: process.version, date: new Date().toISOString() }));
if (opts.phase === "all" || opts.phase === "idle") await idlePhase();
if (opts.phase === "all" || opts.phase === "large-room") await largeRoomPhase();
