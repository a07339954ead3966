// PostgreSQL restarted under load (issue #22): while the database is gone
// the service answers 503 `unavailable` (never a 500, never a dropped
// connection or a crash), it reconnects by itself once PostgreSQL is back,
// and every command it acknowledged is in the log. The Node suites run one
// file at a time, after the Rust suites, so restarting the machine's
// PostgreSQL here disturbs no other test.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { BIN, startServer, sign } from "./server.mjs";

const ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const database = `eventuall_test_pgrestart_${process.pid}`;
const url = `postgres://postgres@127.0.0.1:5432/${database}`;
const moderator = sign({ sub: "mod", role: "moderator" });
let server;

const psql = (sql) => execFileSync("psql", [ADMIN_URL, "-Atqc", sql], { encoding: "utf8" });
const pgIsReady = () => {
  try {
    execFileSync("pg_isready", ["-h", "127.0.0.1", "-p", "5432", "-q"]);
    return true;
  } catch {
    return false;
  }
};

function restartPostgres() {
  const version = readdirSync("/etc/postgresql")[0];
  return new Promise((resolve, reject) => {
    const child = spawn("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"], {
      stdio: "ignore",
    });
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`pg_ctlcluster exited ${code}`))));
  });
}

before(async () => {
  psql(`drop database if exists ${database} with (force)`);
  psql(`create database ${database}`);
  server = await startServer({ EVENTUALL_DATABASE_URL: url });
});

after(async () => {
  await server?.stop();
  for (let i = 0; i < 50 && !pgIsReady(); i++) await new Promise((r) => setTimeout(r, 200));
  psql(`drop database if exists ${database} with (force)`);
});

async function enter(userId) {
  try {
    const response = await fetch(`${server.http}/event/pgload/stage/enter`, {
      method: "POST",
      headers: { authorization: `Bearer ${moderator}`, "content-type": "application/json" },
      body: JSON.stringify({ userId }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = await response.json();
    return { status: response.status, code: body?.error?.code };
  } catch (error) {
    return { status: 0, code: String(error) };
  }
}

test("PostgreSQL restarted under load: 503 meanwhile, nothing acknowledged lost, service recovers", async (t) => {
  const answers = [];
  let stop = false;
  // One moderator putting users on stage as fast as the service answers.
  const load = (async () => {
    for (let i = 0; i < 5_000 && !stop; i++) {
      const userId = `u${i}`;
      answers.push({ userId, ...(await enter(userId)) });
    }
  })();
  await new Promise((r) => setTimeout(r, 500));
  await restartPostgres();
  // Until PostgreSQL answers again, and then a little longer: the service
  // must find its way back on its own.
  const deadline = Date.now() + 20_000;
  while (!pgIsReady() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1_500));
  stop = true;
  await load;

  const statuses = new Map();
  for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
  t.diagnostic(`answers by status: ${JSON.stringify([...statuses])}`);
  const unexpected = answers.filter((a) => a.status !== 200 && !(a.status === 503 && a.code === "unavailable"));
  assert.deepEqual(unexpected.slice(0, 5), [], `only 200 or 503 unavailable: ${JSON.stringify([...statuses])}`);
  assert.ok((statuses.get(200) ?? 0) > 10, `served before and after: ${JSON.stringify([...statuses])}`);

  // Recovered: a command now succeeds within a few seconds.
  let recovered = false;
  for (let i = 0; i < 50 && !recovered; i++) {
    recovered = (await enter(`after${i}`)).status === 200;
    if (!recovered) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(recovered, "the service answers 200 again once PostgreSQL is back");

  // Every acknowledged entry is in the log, once.
  const exported = execFileSync(BIN, ["replay", "export", "--stream", "room-pgload", "--database-url", url], {
    encoding: "utf8",
    env: { ...process.env, EVENTUALL_LOG: "warn" },
    maxBuffer: 64 * 1024 * 1024,
  });
  const entered = new Map();
  for (const line of exported.split("\n").filter(Boolean)) {
    const event = JSON.parse(line);
    if (event.eventType !== "StageEntered") continue;
    const payload = typeof event.payload === "string" ? JSON.parse(event.payload) : event.payload;
    const userId = payload.StageEntered?.user_id;
    entered.set(userId, (entered.get(userId) ?? 0) + 1);
  }
  const acked = answers.filter((a) => a.status === 200).map((a) => a.userId);
  const missing = acked.filter((u) => !entered.has(u));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged entries missing`);
  const doubled = [...entered].filter(([, n]) => n > 1);
  assert.deepEqual(doubled, [], "no entry stored twice");
});
