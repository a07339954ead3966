// LiveKit webhooks signed the way a LiveKit server signs them, by the
// official `livekit-server-sdk` (AccessToken with a `sha256` claim of the
// raw body), accepted by our receiver.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { AccessToken } from "livekit-server-sdk";
import { startServer, sign } from "./server.mjs";

const KEY = "APInodetest";
const SECRET = "a-node-test-secret-of-reasonable-length";

let server;
before(async () => {
  server = await startServer({ EVENTUALL_LIVEKIT_WEBHOOK_KEYS: `${KEY}:${SECRET}` });
});
after(async () => {
  await server?.stop();
});

async function signed(body, secret = SECRET) {
  const token = new AccessToken(KEY, secret, { ttl: "5m" });
  token.sha256 = createHash("sha256").update(body).digest("base64");
  return token.toJwt();
}

async function deliver(body, authorization) {
  return fetch(`${server.http}/webhooks/livekit`, {
    method: "POST",
    headers: { "content-type": "application/webhook+json", authorization },
    body,
  });
}

const joined = (id) =>
  JSON.stringify({
    event: "participant_joined",
    id,
    createdAt: String(Math.floor(Date.now() / 1000)),
    room: { sid: "RM_node", name: "sdk-signed" },
    participant: { sid: "PA_dana", identity: "dana", name: "Dana", state: "ACTIVE" },
  });

test("a webhook signed by livekit-server-sdk is accepted and reaches the room", async () => {
  const body = joined("EV_node_1");
  const response = await deliver(body, await signed(body));
  assert.equal(response.status, 200);
  assert.equal((await response.json()).status, "applied");
  const snapshot = await (
    await fetch(`${server.http}/event/sdk-signed/snapshot`, { headers: { authorization: `Bearer ${sign({ sub: "r" })}` } })
  ).json();
  const dana = snapshot.presence.find((p) => p.userId === "dana");
  assert.equal(dana.connections, 1);
  assert.equal(dana.name, "Dana");
});

test("the same body with a wrong secret or a changed body is refused", async () => {
  const body = joined("EV_node_2");
  assert.equal((await deliver(body, await signed(body, "not-the-secret-at-all-nope"))).status, 401);
  assert.equal((await deliver(body.replace("Dana", "Eve"), await signed(body))).status, 401);
});
