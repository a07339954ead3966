// Starts the real `eventuall` binary for a test file and signs tokens.
import { spawn, execFileSync } from "node:child_process";
import { createServer, connect } from "node:net";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.EVENTUALL_BIN ?? join(here, "../../target/debug/eventuall");
export const SECRET = "node-test-secret";

/**
 * Starts `eventuall serve` on a free port with a fresh SQLite file, or on the
 * database directory `dir` of an earlier server (to test restarts).
 * `onLog`, when given, receives the server's log (stderr, colours stripped)
 * line by line for as long as it runs.
 */
export async function startServer(extraEnv = {}, options = {}) {
  return CLUSTER_NODES > 1 ? startCluster(extraEnv, options) : startNode(extraEnv, options);
}

/**
 * `EVENTUALL_TEST_CLUSTER=3`: every `startServer` starts that many nodes on
 * one fresh PostgreSQL database (`EVENTUALL_TEST_POSTGRES_URL`) behind a
 * round-robin TCP balancer, so that a suite's clients are spread over the
 * nodes without knowing it (issue #20: clients cannot tell nodes apart).
 */
const CLUSTER_NODES = Number(process.env.EVENTUALL_TEST_CLUSTER ?? "1");
const POSTGRES_URL = process.env.EVENTUALL_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function startCluster(extraEnv, { dir, onLog } = {}) {
  // `dir` names the database in cluster mode, so a restart on the same
  // `dir` reopens the same log.
  dir ??= `eventuall_test_node_${process.pid}_${Date.now()}`;
  if (!dir.startsWith("eventuall_test_node_")) throw new Error(`not a cluster database: ${dir}`);
  const base = POSTGRES_URL.slice(0, POSTGRES_URL.lastIndexOf("/"));
  const exists = execFileSync("psql", [POSTGRES_URL, "-Atqc", `select 1 from pg_database where datname = '${dir}'`]);
  const url = `${base}/${dir}`;
  if (!exists.toString().trim()) {
    execFileSync("psql", [POSTGRES_URL, "-qc", `create database ${dir}`]);
  } else {
    // A restart after kill -9: the dead nodes' leases hold their scopes
    // until they expire (ADR 0020), and the suites expect a restarted
    // server to answer at once, so wait those few seconds out here, as a
    // client's retries would.
    const live = `select count(*) from cluster_leases where expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint`;
    for (let i = 0; i < 100; i += 1) {
      const left = execFileSync("psql", [url, "-Atqc", live]).toString().trim();
      if (left === "0" || left === "") break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const nodes = [];
  for (let n = 1; n <= CLUSTER_NODES; n += 1) {
    nodes.push(
      await startNode(
        { EVENTUALL_NODE_ID: `n${n}`, EVENTUALL_LEASE_TTL: "2s", ...extraEnv },
        { dir, databaseUrl: url, onLog },
      ),
    );
  }
  let next = 0;
  const sockets = new Set();
  const balancer = createServer((client) => {
    const node = nodes[next++ % nodes.length];
    const [host, port] = node.host.split(":");
    const upstream = connect(Number(port), host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise((r) => balancer.listen(0, "127.0.0.1", r));
  const host = `127.0.0.1:${balancer.address().port}`;
  return {
    host,
    dir,
    pid: nodes[0].pid,
    http: `http://${host}`,
    nodes,
    async stop({ keep = false, signal = "SIGTERM" } = {}) {
      await Promise.all(nodes.map((node) => node.stop({ keep: true, signal })));
      for (const s of sockets) s.destroy();
      await new Promise((r) => balancer.close(r));
      if (!keep) execFileSync("psql", [POSTGRES_URL, "-qc", `drop database if exists ${dir} with (force)`]);
    },
  };
}

async function startNode(extraEnv = {}, { dir, onLog, databaseUrl } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), "eventuall-node-"));
  const child = spawn(BIN, ["serve"], {
    env: {
      ...process.env,
      EVENTUALL_LISTEN: "127.0.0.1:0",
      EVENTUALL_DATABASE_URL: databaseUrl ?? `sqlite://${join(dir, "events.db")}`,
      EVENTUALL_JWT_SECRET: SECRET,
      EVENTUALL_AWAY_AFTER: "600ms",
      EVENTUALL_SWEEP_EVERY: "100ms",
      EVENTUALL_LOG: "info",
      ...extraEnv,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  if (onLog) {
    let partial = "";
    child.stderr.on("data", (chunk) => {
      const lines = (partial + chunk.toString().replace(/\x1b\[[0-9;]*m/g, "")).split("\n");
      partial = lines.pop();
      for (const line of lines) onLog(line);
    });
  }
  const host = await new Promise((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 30000);
    child.stderr.on("data", (chunk) => {
      log += chunk.toString().replace(/\x1b\[[0-9;]*m/g, "");
      const match = log.match(/addr=(127\.0\.0\.1:\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
  child.stderr.resume();
  return {
    host,
    dir,
    /** The server's process id (for /proc/<pid>/status). */
    pid: child.pid,
    http: `http://${host}`,
    /** Stops the server; keeps its database when `keep` is set. */
    async stop({ keep = false, signal = "SIGTERM" } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await new Promise((r) => child.once("exit", r));
      }
      if (!keep && !databaseUrl) rmSync(dir, { recursive: true, force: true });
    },
  };
}

const b64url = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** An HS256 JWT as the webapp would mint it. */
export function sign(claims, secret = SECRET) {
  const body = { exp: Math.floor(Date.now() / 1000) + 3600, ...claims };
  const unsigned = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(body)}`;
  const signature = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/** Resolves when `predicate(value)` holds for a value pushed to `next`. */
export function waitFor(subscribe, predicate, ms = 10000, what = "condition") {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    subscribe((value) => {
      if (predicate(value)) {
        clearTimeout(timer);
        resolve(value);
      }
    });
  });
}
