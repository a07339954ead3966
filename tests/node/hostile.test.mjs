// Hostile clients, the short CI variant of bench/idle-connections.mjs: idle
// sockets cost the server a bounded amount of memory each. 500 event-room
// sockets (100 to a room) against the real binary; the server's VmRSS
// growth per socket must stay under IDLE_SOCKET_BOUND. The bound is about
// twice what was measured (docs/BENCHMARKS.md, "Hostile clients"), so a
// regression of the kind fixed before (a 128 KiB read buffer per socket made
// it 155 KiB) fails, and allocator noise does not. A memory figure, not a
// timing: nothing here depends on the machine's speed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import WS from "ws";
import { startServer, sign } from "./server.mjs";

const SOCKETS = 500;
const PER_ROOM = 100;
/** Server memory one idle event-room socket may cost, in KiB. */
const IDLE_SOCKET_BOUND_KIB = 64;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssKiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(line.split(/\s+/)[1]);
}

/** RSS once two reads 300 ms apart agree within 1 % (at most 6 s). */
async function settledRss(pid) {
  let last = rssKiB(pid);
  for (let i = 0; i < 20; i++) {
    await sleep(300);
    const now = rssKiB(pid);
    if (Math.abs(now - last) <= last * 0.01) return now;
    last = now;
  }
  return last;
}

function open(host, room, user) {
  return new Promise((resolve, reject) => {
    const ws = new WS(`ws://${host}/parties/event/${room}?token=${sign({ sub: user })}&_pk=${user}`);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${user}: no snapshot within 15 s`));
    }, 15_000);
    ws.once("message", () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

test("500 idle event-room sockets cost the server under 64 KiB each", async () => {
  // Presence timeouts of an hour: idle means idle, no broadcasts meanwhile.
  const server = await startServer({ EVENTUALL_AWAY_AFTER: "1h", EVENTUALL_SWEEP_EVERY: "1h" });
  const sockets = [];
  try {
    // One socket first, so one-off costs (the first room, pools, the first
    // snapshot's buffers) are in the baseline, not in the per-socket figure.
    sockets.push(await open(server.host, "warmup", "warmup"));
    const before = await settledRss(server.pid);
    for (let batch = 0; batch < SOCKETS / 50; batch++) {
      const opening = [];
      for (let j = 0; j < 50; j++) {
        const i = batch * 50 + j;
        opening.push(open(server.host, `idle-${Math.floor(i / PER_ROOM)}`, `user-${i}`));
      }
      sockets.push(...(await Promise.all(opening)));
    }
    const after = await settledRss(server.pid);
    const perSocketKiB = (after - before) / SOCKETS;
    console.log(`server RSS ${before} KiB -> ${after} KiB: ${perSocketKiB.toFixed(1)} KiB per idle socket`);
    assert.ok(after > before, "the sockets are measured at all");
    assert.ok(perSocketKiB < IDLE_SOCKET_BOUND_KIB, `${perSocketKiB.toFixed(1)} KiB per idle socket`);
  } finally {
    for (const ws of sockets) ws.terminate();
    await server.stop();
  }
});
