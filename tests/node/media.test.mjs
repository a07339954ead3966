// Fidelity of the Mux and LiveKit simulators, checked with the official npm
// clients: @mux/mux-node (REST, Basic auth, {"data":…} envelope) and
// livekit-server-sdk (Twirp JSON, JWT auth, WebhookReceiver).
//
// Spawns the `eventuall-sim` binary (EVENTUALL_SIM_BIN, default
// ../../target/debug/eventuall-sim relative to this file) with --fast and
// reads its one JSON line {"mux_url","livekit_url"}.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import Mux from '@mux/mux-node';
import {
  EgressClient,
  EgressStatus,
  StreamOutput,
  StreamProtocol,
  WebhookReceiver,
} from 'livekit-server-sdk';

const here = path.dirname(fileURLToPath(import.meta.url));
const SIM_BIN =
  process.env.EVENTUALL_SIM_BIN ?? path.resolve(here, '../../target/debug/eventuall-sim');

const LK_KEY = 'node-test-key';
const LK_SECRET = 'node-test-secret-that-is-long-enough';
const MUX_ID = 'node-token-id';
const MUX_SECRET = 'node-token-secret';

let sim;
let urls;

before(async () => {
  sim = spawn(
    SIM_BIN,
    [
      '--fast',
      '--livekit-api-key', LK_KEY,
      '--livekit-api-secret', LK_SECRET,
      '--mux-token-id', MUX_ID,
      '--mux-token-secret', MUX_SECRET,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: sim.stdout });
  urls = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('eventuall-sim printed nothing')), 15000);
    sim.once('error', reject);
    sim.once('exit', (code) => reject(new Error(`eventuall-sim exited with ${code}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  });
});

after(() => {
  sim?.kill();
});

const mux = () =>
  new Mux({ tokenId: MUX_ID, tokenSecret: MUX_SECRET, baseURL: urls.mux_url, maxRetries: 0 });
const egress = () => new EgressClient(urls.livekit_url, LK_KEY, LK_SECRET);

async function eventually(what, probe) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('printed urls are loopback http', () => {
  assert.match(urls.mux_url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.match(urls.livekit_url, /^http:\/\/127\.0\.0\.1:\d+$/);
});

test('@mux/mux-node: create, retrieve, complete and delete a live stream', async () => {
  const client = mux();
  const stream = await client.video.liveStreams.create({
    playback_policies: ['public'],
    new_asset_settings: { playback_policies: ['public'] },
    passthrough: 'node-saga-1',
    reconnect_window: 60,
    latency_mode: 'standard',
  });
  assert.equal(stream.status, 'idle');
  assert.equal(stream.passthrough, 'node-saga-1');
  assert.equal(typeof stream.stream_key, 'string');
  assert.equal(typeof stream.created_at, 'string');
  assert.equal(stream.playback_ids[0].policy, 'public');

  const fetched = await client.video.liveStreams.retrieve(stream.id);
  assert.equal(fetched.id, stream.id);
  assert.equal(fetched.stream_key, stream.stream_key);

  await client.video.liveStreams.complete(stream.id);
  await client.video.liveStreams.delete(stream.id);
  await assert.rejects(client.video.liveStreams.retrieve(stream.id), (err) => {
    assert.equal(err.status, 404);
    assert.equal(err.constructor.name, 'NotFoundError');
    assert.equal(err.error.error.type, 'not_found');
    return true;
  });
});

test('@mux/mux-node: wrong credentials are a 401', async () => {
  const client = new Mux({ tokenId: MUX_ID, tokenSecret: 'wrong', baseURL: urls.mux_url, maxRetries: 0 });
  await assert.rejects(client.video.liveStreams.list(), (err) => err.status === 401);
});

test('livekit-server-sdk EgressClient: start, list, stop over Twirp JSON', async () => {
  const client = egress();
  const page = 'https://app.example.com/composite?saga=node';
  const output = new StreamOutput({
    protocol: StreamProtocol.RTMP,
    urls: ['rtmp://example.net/live2/some-external-key'],
  });
  const info = await client.startWebEgress(page, { stream: output }, { awaitStartSignal: true });
  assert.match(info.egressId, /^EG_/);
  assert.equal(info.status, EgressStatus.EGRESS_STARTING);
  assert.equal(info.request.case, 'web');
  assert.equal(info.request.value.url, page);
  assert.equal(info.request.value.awaitStartSignal, true);
  assert.ok(!info.request.value.streamOutputs[0].urls[0].includes('some-external-key'), 'stream key redacted');
  assert.ok(info.updatedAt > 1_700_000_000_000_000_000n, 'nanosecond bigint timestamps');

  const listed = await client.listEgress({ egressId: info.egressId });
  assert.equal(listed.length, 1);
  assert.equal(listed[0].egressId, info.egressId);

  await eventually('active', async () => {
    const [e] = await client.listEgress({ egressId: info.egressId });
    return e.status === EgressStatus.EGRESS_ACTIVE;
  });
  const active = await client.listEgress({ active: true });
  assert.ok(active.some((e) => e.egressId === info.egressId));

  const stopping = await client.stopEgress(info.egressId);
  assert.equal(stopping.status, EgressStatus.EGRESS_ENDING);
  await eventually('complete', async () => {
    const [e] = await client.listEgress({ egressId: info.egressId });
    return e.status === EgressStatus.EGRESS_COMPLETE;
  });
  await assert.rejects(client.stopEgress(info.egressId), (err) => {
    assert.equal(err.status, 412);
    assert.equal(err.code, 'failed_precondition');
    return true;
  });
  await assert.rejects(client.listEgress({ egressId: 'EG_missing' }), (err) => {
    assert.equal(err.status, 404);
    assert.equal(err.code, 'not_found');
    return true;
  });
});

test('both SDKs across the RTMP bus: an egress to a Mux key records an asset', async () => {
  const muxClient = mux();
  const lk = egress();
  const stream = await muxClient.video.liveStreams.create({
    playback_policies: ['public'],
    new_asset_settings: { playback_policies: ['public'] },
  });
  const output = new StreamOutput({
    protocol: StreamProtocol.RTMP,
    urls: [`rtmps://global-live.mux.com:443/app/${stream.stream_key}`],
  });
  const info = await lk.startWebEgress('https://app.example.com/composite?saga=bus', { stream: output });
  const live = await eventually('mux stream active', async () => {
    const s = await muxClient.video.liveStreams.retrieve(stream.id);
    return s.status === 'active' ? s : undefined;
  });
  const asset = await muxClient.video.assets.retrieve(live.active_asset_id);
  assert.equal(asset.live_stream_id, stream.id);
  assert.equal(asset.ingest_type, 'live_rtmp');
  assert.equal(asset.status, 'ready');
  assert.equal(asset.is_live, true);

  await lk.stopEgress(info.egressId);
  const done = await eventually('recording final', async () => {
    const a = await muxClient.video.assets.retrieve(live.active_asset_id);
    return a.is_live === false ? a : undefined;
  });
  assert.equal(typeof done.duration, 'number');
  await muxClient.video.liveStreams.delete(stream.id);
});

test('livekit-server-sdk WebhookReceiver accepts a webhook the simulator signs', async () => {
  const res = await fetch(
    `${urls.livekit_url}/_sim/livekit/webhook-sample?event=participant_joined&room=show-42&identity=alice&name=Alice`,
  );
  assert.equal(res.status, 200);
  const { body, authorization } = await res.json();
  const receiver = new WebhookReceiver(LK_KEY, LK_SECRET);
  const event = await receiver.receive(body, authorization);
  assert.equal(event.event, 'participant_joined');
  assert.equal(event.room.name, 'show-42');
  assert.equal(event.participant.identity, 'alice');
  assert.equal(event.participant.name, 'Alice');
  assert.match(event.id, /^EV_/);

  await assert.rejects(receiver.receive(body.replace('alice', 'mallory'), authorization));
  await assert.rejects(new WebhookReceiver(LK_KEY, 'another-secret-entirely').receive(body, authorization));
});
