// The collaborative queue driven by the unmodified `y-websocket` provider
// (disableBc: true, or providers in one process sync through Node's
// BroadcastChannel and tests pass against a broken server).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WS from "ws";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { startServer, sign } from "./server.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const moderator = (user) => sign({ sub: user, role: "moderator" });
const participant = (user) => sign({ sub: user });

function connect(room, token) {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://${server.host}/parties/queue`, room, doc, {
    params: { token },
    WebSocketPolyfill: WS,
    disableBc: true,
  });
  const synced = new Promise((resolve) => {
    if (provider.synced) resolve();
    provider.on("sync", (isSynced) => isSynced && resolve());
  });
  return { doc, provider, synced, pending: doc.getArray("pending"), live: doc.getArray("live") };
}

/** Destroys a client fully: the awareness check timer keeps Node alive otherwise. */
function close(c) {
  c.provider.destroy();
  c.provider.awareness.destroy();
  c.doc.destroy();
}

const view = (c) => ({ pending: c.pending.toJSON(), live: c.live.toJSON() });

async function httpQueue(room, token = participant("reader")) {
  const response = await fetch(`${server.http}/event/${room}/queue`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  return response.json();
}

async function until(check, what, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ids = (list) => list.map((e) => e.userId);
const noDuplicates = (v) => {
  const all = [...ids(v.pending), ...ids(v.live)];
  return new Set(all).size === all.length;
};

test("a moderator's edits reach another client and the HTTP view", async () => {
  const a = connect("basic", moderator("mod-a"));
  const b = connect("basic", moderator("mod-b"));
  await Promise.all([a.synced, b.synced]);
  a.pending.push([{ userId: "alice", name: "Alice" }, { userId: "bob", name: "Bob" }]);
  await until(() => ids(b.pending.toJSON()).join() === "alice,bob", "b sees the entries");
  const http = await until(async () => {
    const v = await httpQueue("basic");
    return v.pending.length === 2 ? v : null;
  }, "HTTP view");
  assert.deepEqual(http, { pending: [{ userId: "alice", name: "Alice" }, { userId: "bob", name: "Bob" }], live: [] });
  close(a);
  close(b);
});

test("three moderators editing concurrently converge with each other and the server", async () => {
  const mods = ["m1", "m2", "m3"].map((m) => connect("busy", moderator(m)));
  await Promise.all(mods.map((m) => m.synced));
  mods[0].pending.push(Array.from({ length: 12 }, (_, i) => ({ userId: `u${i}`, name: `User ${i}` })));
  await until(() => mods.every((m) => m.pending.length === 12), "initial entries everywhere");
  // 40 rounds of concurrent edits: each moderator moves a random entry
  // (delete + insert, possibly across lists) in the same tick.
  let seed = 7;
  const random = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 40; round++) {
    for (const m of mods) {
      m.doc.transact(() => {
        const from = random(2) === 0 ? m.pending : m.live;
        const to = random(2) === 0 ? m.pending : m.live;
        if (from.length === 0) return;
        const i = random(from.length);
        const entry = from.get(i);
        from.delete(i, 1);
        to.insert(random(to.length + 1), [entry]);
      });
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  let last;
  const converged = await until(async () => {
    const views = mods.map(view);
    const http = await httpQueue("busy");
    last = { views, http, connected: mods.map((m) => m.provider.wsconnected) };
    const same = views.every((v) => JSON.stringify(v) === JSON.stringify(http));
    return same ? http : null;
  }, "all three moderators and the server agree").catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(last)}`);
  });
  assert.ok(noDuplicates(converged), "the server repaired any duplicate");
  assert.equal(converged.pending.length + converged.live.length, 12, "no one lost");
  for (const m of mods) close(m);
});

test("concurrent moves of the same participant are repaired to one entry", async () => {
  const a = connect("race", moderator("mod-a"));
  const b = connect("race", moderator("mod-b"));
  await Promise.all([a.synced, b.synced]);
  a.pending.push([{ userId: "x", name: "X" }, { userId: "y", name: "Y" }]);
  await until(() => b.pending.length === 2, "b has both");
  // Both move x to live in the same tick: neither has seen the other's move.
  a.doc.transact(() => {
    a.pending.delete(0, 1);
    a.live.push([{ userId: "x", name: "X" }]);
  });
  b.doc.transact(() => {
    b.pending.delete(0, 1);
    b.live.insert(0, [{ userId: "x", name: "X" }]);
  });
  const settled = await until(async () => {
    const http = await httpQueue("race");
    const agree = JSON.stringify(view(a)) === JSON.stringify(http) && JSON.stringify(view(b)) === JSON.stringify(http);
    return agree && ids(http.live).filter((u) => u === "x").length === 1 ? http : null;
  }, "one x in live everywhere");
  assert.deepEqual(ids(settled.pending), ["y"]);
  close(a);
  close(b);
});

test("a late joiner gets the whole document", async () => {
  const a = connect("late", moderator("mod-a"));
  await a.synced;
  a.pending.push([{ userId: "p1", name: "P1" }]);
  a.live.push([{ userId: "l1", name: "L1" }]);
  await until(async () => (await httpQueue("late")).live.length === 1, "stored");
  const late = connect("late", participant("viewer"));
  await late.synced;
  assert.deepEqual(view(late), view(a));
  close(a);
  close(late);
});

test("a participant's writes are ignored and it keeps receiving updates", async () => {
  const mod = connect("readonly", moderator("mod"));
  const viewer = connect("readonly", participant("viewer"));
  await Promise.all([mod.synced, viewer.synced]);
  viewer.pending.push([{ userId: "sneaky", name: "Sneaky" }]);
  mod.pending.push([{ userId: "real", name: "Real" }]);
  await until(() => ids(viewer.pending.toJSON()).includes("real"), "viewer receives the moderator's edit");
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(ids(mod.pending.toJSON()), ["real"], "the moderator never sees the participant's write");
  assert.deepEqual(ids((await httpQueue("readonly")).pending), ["real"]);
  close(mod);
  close(viewer);
});

test("awareness is relayed and disappears when a connection closes", async () => {
  const a = connect("aware", moderator("mod-a"));
  const b = connect("aware", moderator("mod-b"));
  await Promise.all([a.synced, b.synced]);
  a.provider.awareness.setLocalStateField("user", { name: "A" });
  const aId = a.doc.clientID;
  await until(() => b.provider.awareness.getStates().get(aId)?.user?.name === "A", "b sees a's presence");
  close(a);
  await until(() => !b.provider.awareness.getStates().has(aId), "a's presence removed", 5000);
  close(b);
});

test("the server removes the awareness of a connection that drops without a goodbye", async () => {
  const a = connect("dropped", moderator("mod-a"));
  const b = connect("dropped", moderator("mod-b"));
  await Promise.all([a.synced, b.synced]);
  a.provider.awareness.setLocalStateField("user", { name: "A" });
  const aId = a.doc.clientID;
  await until(() => b.provider.awareness.getStates().get(aId)?.user?.name === "A", "b sees a's presence");
  // No awareness removal from the client: the socket just dies.
  a.provider.shouldConnect = false;
  a.provider.ws.terminate();
  await until(() => !b.provider.awareness.getStates().has(aId), "the server removed a's presence", 5000);
  close(a);
  close(b);
});

test("the document survives a server restart", async () => {
  const a = connect("durable", moderator("mod-a"));
  await a.synced;
  a.pending.push(Array.from({ length: 5 }, (_, i) => ({ userId: `d${i}`, name: `D${i}` })));
  a.doc.transact(() => {
    a.pending.delete(0, 1);
    a.live.push([{ userId: "d0", name: "D0" }]);
  });
  const before = await until(async () => {
    const v = await httpQueue("durable");
    return v.live.length === 1 && v.pending.length === 4 ? v : null;
  }, "stored before restart");
  close(a);
  // kill -9: no graceful flush, no snapshot on shutdown.
  await server.stop({ keep: true, signal: "SIGKILL" });
  server = await startServer({}, { dir: server.dir });
  assert.deepEqual(await httpQueue("durable"), before);
  const again = connect("durable", participant("viewer"));
  await again.synced;
  assert.deepEqual(view(again), before);
  close(again);
});
