// The ops console (GET /console) in headless Chromium, as an operator uses it:
// paste a moderator token, read the projections table, open a room's stream
// timeline, travel back in time, see errors, watch the page refresh itself,
// watch a room live over its socket, and retry a dead letter. Every
// assertion is on text the page shows; screenshots go to target/console-browser/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { startServer, sign } from "./server.mjs";
import { launchBrowser, until, tableRows, logIn } from "./browser.mjs";

const SHOTS = join(dirname(fileURLToPath(import.meta.url)), "../../target/console-browser");
mkdirSync(SHOTS, { recursive: true });

const EVENT = "launch";
const STREAM = `room-${EVENT}`;
const moderator = sign({ sub: "ops", role: "moderator" });

let server;
let browser;

async function stage(what, userId) {
  const response = await fetch(`${server.http}/event/${EVENT}/stage/${what}`, {
    method: "POST",
    headers: { authorization: `Bearer ${moderator}`, "content-type": "application/json" },
    body: JSON.stringify({ userId }),
  });
  assert.equal(response.status, 200, `stage ${what} ${userId}`);
}

/** The projections' checkpoints as the server reports them. */
async function projectionsNow() {
  const response = await fetch(`${server.http}/admin/projections`, { headers: { authorization: `Bearer ${moderator}` } });
  assert.equal(response.status, 200);
  return response.json();
}

/** Waits until every projection has caught up with the log head `head`. */
function caughtUp(head) {
  return until(projectionsNow, (rows) => rows.length > 0 && rows.every((p) => p.position === head && p.head === head), {
    ms: 5000,
    what: `projections at ${head}`,
  });
}

const text = (page, selector) => page.locator(selector).innerText();

/** The number on the tile labelled `label` in the Service panel. */
async function tile(page, label) {
  const tiles = await page.locator("#tiles .tile").evaluateAll((divs) =>
    divs.map((d) => [d.querySelector("span").textContent, d.querySelector("b").textContent]),
  );
  return Object.fromEntries(tiles)[label];
}

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  return { context, page };
}

before(async () => {
  server = await startServer();
  // A few stage changes through the HTTP API: alice, then bob, go on stage; alice leaves.
  await stage("enter", "alice");
  await stage("enter", "bob");
  await stage("exit", "alice");
  await caughtUp(3);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("a moderator's token shows the projections table with the real checkpoints", async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${server.http}/console`);
    assert.equal(await page.title(), "Eventuall console");
    await logIn(page, moderator);
    const rows = await until(() => tableRows(page, "#projections"), (r) => r.length >= 3, { what: "projection rows" });
    const byName = Object.fromEntries(rows.map(([name, ...rest]) => [name, rest]));
    for (const name of ["room_presence", "analytics", "interviews"]) {
      assert.deepEqual(byName[name], ["3", "3", "0"], `${name}: position, head, lag`);
    }
    assert.equal(await text(page, "#whoami"), "", "no error next to the token");
    assert.equal(await until(() => tile(page, "log head"), (v) => v === "3", { what: "the log head tile" }), "3");
    // The token is kept in the tab's session storage: a reload shows the same rows without typing it again.
    await page.reload();
    const again = await until(() => tableRows(page, "#projections"), (r) => r.length >= 3, { what: "rows after reload" });
    assert.deepEqual(again.find(([name]) => name === "room_presence"), ["room_presence", "3", "3", "0"]);
  } finally {
    await context.close();
  }
});

test("a room's stream timeline lists the stage changes made through the HTTP API", async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${server.http}/console`);
    await logIn(page, moderator);
    await page.locator("#stream").fill(STREAM);
    await page.locator("#load-stream").click();
    const rows = await until(() => tableRows(page, "#history"), (r) => r.length === 3, { what: "three history rows" });
    // columns: time, v, pos, event, actor, summary
    assert.deepEqual(rows.map((r) => r.slice(1)), [
      ["1", "1", "StageEntered", "ops", "user_id=alice"],
      ["2", "2", "StageEntered", "ops", "user_id=bob"],
      ["3", "3", "StageExited", "ops", "user_id=alice"],
    ]);
    for (const [time] of rows) assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
    // The newest entry is chosen and its state shown: bob alone on stage.
    const state = JSON.parse(await until(() => text(page, "#state"), (t) => t.includes('"version": 3'), { what: "state at v3" }));
    assert.deepEqual(state.state.stage.map((s) => s.userId), ["bob"]);
    assert.match(await text(page, "#at-label"), /^version 3 at /);
    // The Event panel, on another room: it joins the room over its socket,
    // which would add the console's own connection to this room's timeline.
    await page.locator("#event").fill(`${EVENT}-panel`);
    await page.locator("#load-event").click();
    const event = await until(() => text(page, "#event-out"), (t) => t.includes("recordingInRoom"), { what: "the event panel" });
    assert.match(event, /"pending": \[\]/);
  } finally {
    await context.close();
  }
});

test("time travel (state?at=) shows the room as it was at an earlier entry", async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${server.http}/console`);
    await logIn(page, moderator);
    await page.locator("#stream").fill(STREAM);
    await page.locator("#load-stream").click();
    await until(() => text(page, "#state"), (t) => t.includes('"version": 3'), { what: "state at v3" });

    // Click the first entry: only alice was on stage then.
    await page.locator("#history tbody tr").first().click();
    const first = JSON.parse(await until(() => text(page, "#state"), (t) => t.includes('"version": 1,'), { what: "state at v1" }));
    assert.equal(first.globalPosition, 1);
    assert.deepEqual(first.state.stage.map((s) => s.userId), ["alice"]);
    assert.match(await text(page, "#at-label"), /^version 1 at /);
    assert.equal(await page.locator("#history tbody tr.chosen td:nth-child(2)").innerText(), "1");

    // Drag the slider to the middle entry: both were on stage.
    await page.locator("#at").fill("1");
    const second = JSON.parse(await until(() => text(page, "#state"), (t) => t.includes('"version": 2,'), { what: "state at v2" }));
    assert.deepEqual(second.state.stage.map((s) => s.userId).sort(), ["alice", "bob"]);
    assert.match(await text(page, "#at-label"), /^version 2 at /);
  } finally {
    await context.close();
  }
});

test("a bad or too weak token is shown to the operator, and the page stays whole", async () => {
  const { context, page } = await newPage();
  try {
    await page.goto(`${server.http}/console`);
    await logIn(page, "not-a-jwt");
    const whoami = await until(() => text(page, "#whoami"), (t) => t.startsWith("401"), { what: "the 401 next to the token" });
    assert.match(whoami, /^401: \S/);
    assert.equal((await tableRows(page, "#projections")).length, 0, "no rows for a bad token");
    // Not a blank page: the panels are there with their headings.
    for (const heading of ["Service", "Projections", "Event", "Recording dead letters", "Stream timeline and time travel"]) {
      assert.ok(await page.getByRole("heading", { name: heading, exact: true }).isVisible(), heading);
    }
    // The stream and event panels say why they show nothing.
    await page.locator("#stream").fill(STREAM);
    await page.locator("#load-stream").click();
    assert.match(await until(() => text(page, "#state"), (t) => t.startsWith("401"), { what: "401 in the state panel" }), /^401: /);
    await page.locator("#event").fill(EVENT);
    await page.locator("#load-event").click();
    assert.match(await until(() => text(page, "#event-out .error"), (t) => t.startsWith("401"), { what: "401 in the event panel" }), /^401: /);

    // A moderator's token fills the tables; a participant's token then is
    // refused with 403, and the rows read under the old token are gone.
    await logIn(page, moderator);
    await until(() => tableRows(page, "#projections"), (r) => r.length >= 3, { what: "rows for the moderator" });
    // (The dead-letter table still shows the 401 until its own request answers.)
    const none = await until(() => tableRows(page, "#dead"), (r) => r[0]?.[0] === "none", { what: "no dead letters" });
    assert.deepEqual(none, [["none"]]);
    await logIn(page, sign({ sub: "someone", role: "participant" }));
    assert.match(await until(() => text(page, "#whoami"), (t) => t.startsWith("403"), { what: "the 403" }), /^403: \S/);
    assert.deepEqual(await tableRows(page, "#projections"), [], "no stale projection rows under a refused token");
    const dead = await until(() => tableRows(page, "#dead"), (r) => r[0]?.[0]?.startsWith("403"), { what: "the 403 in dead letters" });
    assert.equal(dead.length, 1);
  } finally {
    await context.close();
  }
});

test("the page shows new events at its next poll, without a reload, and not before", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await context.newPage();
    // The page polls every 5 s with setInterval; a paused fake clock lets the
    // test say exactly when its next tick comes.
    const start = Date.now();
    await page.clock.install({ time: start });
    await page.clock.pauseAt(start + 1000);
    await page.goto(`${server.http}/console`);
    await logIn(page, moderator);
    const [before] = await projectionsNow();
    const head = before.head;
    const row = () => tableRows(page, "#projections").then((rows) => rows.find(([name]) => name === "room_presence"));
    await until(row, (r) => r?.[2] === String(head), { what: `the table at head ${head}` });
    await until(() => tile(page, "log head"), (v) => v === String(head), { what: "the log head tile" });

    // A marker in the page's window: it would be gone after a reload.
    await page.evaluate(() => { window.sameDocument = true; });
    await stage("enter", "carol");
    await stage("enter", "dave");
    await caughtUp(head + 2);
    // Just short of the interval nothing is fetched: the page still shows the old head.
    await page.clock.runFor(4900);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await row(), ["room_presence", String(head), String(head), "0"], "not updated before the poll");
    assert.equal(await tile(page, "log head"), String(head));

    // The poll comes due: the new head shows without a reload, within a bounded wait.
    await page.clock.runFor(100);
    const updated = await until(row, (r) => r?.[2] === String(head + 2), { ms: 3000, what: "the table after the poll" });
    assert.deepEqual(updated, ["room_presence", String(head + 2), String(head + 2), "0"]);
    assert.equal(await until(() => tile(page, "log head"), (v) => v === String(head + 2), { ms: 3000, what: "the tile after the poll" }), String(head + 2));
    assert.equal(await page.evaluate(() => window.sameDocument), true, "the page was not reloaded");
  } finally {
    await context.close();
  }
});

/**
 * Opens a room socket as `sub` (a plain `ws` client), waits for its first
 * snapshot and heartbeats every 200 ms, so that `sub` stays online (the test
 * server says away after 600 ms without one).
 */
async function joinRoom(event, sub, name) {
  const token = sign({ sub, name, events: [event] });
  const socket = new WebSocket(`ws://${server.host}/parties/event/${event}?token=${token}&_pk=${sub}-tab`);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${sub}: no snapshot`)), 5000);
    socket.once("message", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("error", reject);
  });
  const beat = setInterval(() => socket.send(JSON.stringify({ type: "heartbeat" })), 200);
  socket.once("close", () => clearInterval(beat));
  return socket;
}

/** The Event panel's presence rows: user, status, connections, on stage since. */
const presenceRows = (page) => tableRows(page, "#presence");
const rowOf = (rows, user) => rows.find(([name]) => name === user);

test("a room's presence and stage change live over its socket, with no reload and no poll", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const event = "live-room";
  const sockets = [];
  try {
    const page = await context.newPage();
    // A paused fake clock: the page's 5 s setInterval never fires, so any
    // change the panel shows came over the socket.
    const start = Date.now();
    await page.clock.install({ time: start });
    await page.clock.pauseAt(start + 1000);
    const snapshotReads = [];
    page.on("request", (request) => {
      if (request.url().includes("/snapshot")) snapshotReads.push(request.url());
    });
    await page.goto(`${server.http}/console`);
    await logIn(page, moderator);
    await page.locator("#event").fill(event);
    await page.locator("#load-event").click();
    await until(() => text(page, "#room-live"), (t) => t === "live", { what: "the room socket open" });
    // The console's own connection is its token's user (no observer mode).
    const first = await until(() => presenceRows(page), (rows) => rowOf(rows, "ops"), { what: "the console in the room" });
    assert.equal(first.length, 1, "nobody else yet");
    await page.evaluate(() => { window.sameDocument = true; });

    sockets.push(await joinRoom(event, "zoe", "Zoe Quinn"));
    const joined = await until(() => presenceRows(page), (rows) => rowOf(rows, "Zoe Quinn"), { what: "zoe in the panel" });
    assert.deepEqual(rowOf(joined, "Zoe Quinn"), ["Zoe Quinn", "online", "1", ""]);
    await page.screenshot({ path: join(SHOTS, "console-live-room.png") });

    // A second tab of zoe, then stage: still live.
    sockets.push(await joinRoom(event, "zoe", "Zoe Quinn"));
    await until(() => presenceRows(page), (rows) => rowOf(rows, "Zoe Quinn")?.[2] === "2", { what: "zoe's second connection" });
    const response = await fetch(`${server.http}/event/${event}/stage/enter`, {
      method: "POST",
      headers: { authorization: `Bearer ${moderator}`, "content-type": "application/json" },
      body: JSON.stringify({ userId: "zoe" }),
    });
    assert.equal(response.status, 200);
    const staged = await until(() => presenceRows(page), (rows) => rowOf(rows, "Zoe Quinn")?.[3] !== "", { what: "zoe on stage" });
    assert.match(rowOf(staged, "Zoe Quinn")[3], /\d/);

    // Both tabs close: zoe goes offline in the panel.
    for (const socket of sockets.splice(0)) socket.close();
    const left = await until(() => presenceRows(page), (rows) => rowOf(rows, "Zoe Quinn")?.[1] === "offline", { what: "zoe offline" });
    assert.equal(rowOf(left, "Zoe Quinn")[2], "0");

    assert.equal(await page.evaluate(() => window.sameDocument), true, "the page was not reloaded");
    assert.deepEqual(snapshotReads, [], "the panel never read the snapshot over HTTP");
    assert.match(await text(page, "#room-version"), /^room version \d+, live over its socket$/);
  } finally {
    for (const socket of sockets) socket.close();
    await context.close();
  }
});

/**
 * Writes a dead letter the way the command worker leaves one (status
 * `dead` after its attempts, with the last error): a stop whose session is
 * not recording. Making one through the worker takes its full backoff
 * (about 30 s, `tests/api/recording.rs` drives it with a manual clock);
 * this test is about the console's button. python3's sqlite3, as the
 * schemathesis run already needs python3.
 */
function plantDeadLetter(commandId, event) {
  const now = Date.now();
  const sql = "insert into recording_commands (command_id, event_id, kind, requested_by, status, attempts, " +
    "next_attempt_at, last_error, created_at, updated_at, target_session_id) values (?, ?, 'stop', 'ops', 'dead', 5, ?, " +
    "'the start of session s-1 is still queued', ?, ?, 's-1')";
  sqlite(sql, [commandId, event, now, now, now]);
}

function sqlite(sql, params = []) {
  const script = "import json, sqlite3, sys\n" +
    "db = sqlite3.connect(sys.argv[1], timeout=10)\n" +
    "rows = db.execute(sys.argv[2], json.loads(sys.argv[3])).fetchall()\n" +
    "db.commit()\n" +
    "print(json.dumps(rows))";
  const out = execFileSync("python3", ["-c", script, join(server.dir, "events.db"), sql, JSON.stringify(params)], { encoding: "utf8" });
  return JSON.parse(out);
}

test("a dead letter is retried with its button, and leaves the list", async () => {
  const commandId = "0193a0f0-0000-7000-8000-00000000dead";
  plantDeadLetter(commandId, "retry-room");
  const { context, page } = await newPage();
  try {
    await page.goto(`${server.http}/console`);
    await logIn(page, moderator);
    const rows = await until(() => tableRows(page, "#dead"), (r) => r.some(([id]) => id === commandId), { what: "the dead letter" });
    const [row] = rows.filter(([id]) => id === commandId);
    // columns: command, event, kind, attempts, last error, (button)
    assert.deepEqual(row, [commandId, "retry-room", "stop", "5", "the start of session s-1 is still queued", "Retry"]);
    await page.screenshot({ path: join(SHOTS, "console-dead-letter.png"), fullPage: true });

    await page.locator("#dead tbody tr", { hasText: commandId }).getByRole("button", { name: "Retry" }).click();
    const none = await until(() => tableRows(page, "#dead"), (r) => r[0]?.[0] === "none", { what: "the list emptied" });
    assert.deepEqual(none, [["none"]]);
    const listed = await (await fetch(`${server.http}/cloudcaster/dead-letters`, { headers: { authorization: `Bearer ${moderator}` } })).json();
    assert.deepEqual(listed.deadLetters, []);
    // The retry reached the worker: it ran the stop once more, and refused it
    // (nothing is recording), so it will not come back as a dead letter.
    const [[status, attempts]] = await until(
      () => sqlite("select status, attempts from recording_commands where command_id = ?", [commandId]),
      (r) => r[0]?.[0] !== "pending",
      { ms: 10000, what: "the worker to run the retried stop" },
    );
    assert.deepEqual([status, attempts], ["refused", 1]);
    await page.screenshot({ path: join(SHOTS, "console-dead-letter-retried.png"), fullPage: true });
  } finally {
    await context.close();
  }
});
