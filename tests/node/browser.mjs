// Headless Chromium for the console tests and the screenshot script: Debian's
// `chromium` (scripts/test.sh installs it) driven by playwright-core, which
// never downloads a browser of its own.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

/** The Chromium binary: `$CHROMIUM_BIN`, else `which chromium`. */
export function chromiumPath() {
  const explicit = process.env.CHROMIUM_BIN;
  if (explicit) return explicit;
  let found = "";
  try {
    found = execFileSync("which", ["chromium"], { encoding: "utf8" }).trim();
  } catch {}
  if (!found || !existsSync(found)) {
    throw new Error("chromium is not installed: run scripts/test.sh (it installs Debian's chromium) or set CHROMIUM_BIN");
  }
  return found;
}

/** Launches headless Chromium with no background traffic (the machine has no network). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    // A loaded 2-core machine can take tens of seconds to start chromium.
    timeout: 90000,
    args: [
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

/** Polls `probe` (async, returns a value or throws) until `accept(value)`; fails after `ms`. */
export async function until(probe, accept, { ms = 5000, every = 50, what = "condition" } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (accept(last)) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}; last seen: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

/** The visible text of every row of a table's body, one array of cell texts per row. */
export function tableRows(page, selector) {
  return page.locator(`${selector} tbody tr`).evaluateAll((rows) =>
    rows.map((row) => [...row.cells].map((c) => c.innerText.trim())),
  );
}

/** Types the token into the console's header field and commits it, as an operator does (Enter). */
export async function logIn(page, token) {
  await page.locator("#token").fill(token);
  await page.locator("#token").press("Enter");
}
