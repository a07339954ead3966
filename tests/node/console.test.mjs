// The ops console page as a browser gets it: served by the binary, its
// script parses, and every route it calls answers a moderator's token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import vm from "node:vm";
import { startServer, sign } from "./server.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});

test("the console's script parses and the routes it reads answer", async () => {
  const page = await (await fetch(`${server.http}/console`)).text();
  const script = page.match(/<script>([\s\S]*)<\/script>/)?.[1];
  assert.ok(script, "the page has its script inline");
  new vm.Script(script, { filename: "console.js" }); // throws on a syntax error
  const moderator = sign({ sub: "ops", role: "moderator" });
  const headers = { authorization: `Bearer ${moderator}` };
  for (const path of ["/admin/projections", "/cloudcaster/dead-letters", "/event/demo/snapshot", "/event/demo/queue",
    "/cloudcaster/demo/status", "/cloudcaster/demo/clips"]) {
    const response = await fetch(`${server.http}${path}`, { headers });
    assert.equal(response.status, 200, path);
    JSON.parse(await response.text());
  }
  const metrics = await (await fetch(`${server.http}/metrics`)).text();
  assert.match(metrics, /^eventuall_timers_due 0$/m);
  assert.match(metrics, /^eventuall_live_actors\{kind="room"\} 1$/m);
});
