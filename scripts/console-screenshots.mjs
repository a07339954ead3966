#!/usr/bin/env node
// Writes the ops console's screenshots (docs/img/console-*.png, 1280×800)
// from a freshly started, seeded service, in Debian's headless chromium:
//
//   EVENTUALL_BIN=target/debug/eventuall node scripts/console-screenshots.mjs [--out DIR]
//
// Needs the Node test packages (cd tests/node && npm ci) and chromium
// (scripts/test.sh installs both). The service listens on 127.0.0.1 only and
// uses a throwaway SQLite database.
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "../tests/node/server.mjs";
import { launchBrowser, until, tableRows, logIn } from "../tests/node/browser.mjs";
import { seedConsole, SEED_EVENT } from "../tests/node/console-seed.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outFlag = process.argv.indexOf("--out");
const out = outFlag > 0 ? resolve(process.argv[outFlag + 1]) : join(root, "docs/img");
mkdirSync(out, { recursive: true });

// Production-like presence timings: the seeded people stay online.
const server = await startServer({ EVENTUALL_AWAY_AFTER: "90s", EVENTUALL_SWEEP_EVERY: "30s" });
let browser;
let sockets = [];
try {
  const seeded = await seedConsole(server);
  sockets = seeded.sockets;
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  // A fake clock, so that the append-rate chart gets a few 5 s samples at once.
  const start = Date.now();
  await page.clock.install({ time: start });
  await page.clock.pauseAt(start + 1000);
  await page.goto(`${server.http}/console`);
  await logIn(page, seeded.moderator);
  for (const [what, userId] of [["exit", "bob"], ["enter", "dave"], ["exit", "carol"], ["enter", "bob"], ["exit", "dave"]]) {
    await seeded.post(`/event/${SEED_EVENT}/stage/${what}`, { userId });
    await new Promise((r) => setTimeout(r, 200));
    await page.clock.runFor(5000);
  }
  await page.clock.runFor(5000);
  await until(() => tableRows(page, "#projections"), (rows) => rows.length >= 3 && rows.every((r) => r[3] === "0"), {
    ms: 10000,
    what: "projections caught up",
  });

  await page.locator("#event").fill(SEED_EVENT);
  await page.locator("#load-event").click();
  await until(() => page.locator("#event-out table tr").count(), (n) => n >= 5, { what: "the event's presence" });
  await page.screenshot({ path: join(out, "console-overview.png") });

  await page.locator("#stream").fill(`room-${SEED_EVENT}`);
  await page.locator("#load-stream").click();
  await until(() => page.locator("#history tbody tr").count(), (n) => n >= 8, { what: "the room's timeline" });
  // Travel back to the first StageEntered of bob.
  const rows = await tableRows(page, "#history");
  const pick = rows.findIndex((r) => r[3] === "StageEntered" && r[5].includes("bob"));
  await page.locator("#history tbody tr").nth(pick).click();
  await page.mouse.move(1, 1); // no hover highlight over the chosen row
  await until(() => page.locator("#at-label").innerText(), (t) => t.startsWith(`version ${rows[pick][1]} `), { what: "time travel" });
  await page.locator("#history").scrollIntoViewIfNeeded();
  await page.evaluate(() => document.querySelector("#history").closest("section").scrollIntoView({ block: "start" }));
  await page.screenshot({ path: join(out, "console-timeline.png") });

  // What an operator sees with an expired token.
  await logIn(page, "expired-or-mistyped-token");
  await until(() => page.locator("#whoami").innerText(), (t) => t.startsWith("401"), { what: "the 401" });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(out, "console-bad-token.png") });
  console.log(`wrote console-overview.png, console-timeline.png, console-bad-token.png to ${out}`);
} finally {
  for (const s of sockets) s.close();
  await browser?.close();
  await server.stop();
}
