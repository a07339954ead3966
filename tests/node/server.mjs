// Starts the real `eventuall` binary for a test file and signs tokens.
import { spawn } from "node:child_process";
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
export async function startServer(extraEnv = {}, { dir, onLog } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), "eventuall-node-"));
  const child = spawn(BIN, ["serve"], {
    env: {
      ...process.env,
      EVENTUALL_LISTEN: "127.0.0.1:0",
      EVENTUALL_DATABASE_URL: `sqlite://${join(dir, "events.db")}`,
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
      if (!keep) rmSync(dir, { recursive: true, force: true });
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
