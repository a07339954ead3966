// Fidelity of the AI simulator, checked with the official `openai` npm
// package: if the SDK parses every answer (streamed chunks and the usage
// chunk, completions, JSON mode, transcriptions, models, and each error as
// its own error class with status and headers), any OpenAI-compatible client
// will, and our Rust client is tested against the same wire format.
//
// Spawns `eventuall-sim` (EVENTUALL_SIM_BIN, default
// ../../target/debug/eventuall-sim) with --fast --ai and an AI API key, and reads
// `ai_url` from its JSON line. Faults are armed over the simulator's control
// API (`POST /_sim/faults`), as another process would.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import OpenAI, { toFile } from 'openai';

const here = path.dirname(fileURLToPath(import.meta.url));
const SIM_BIN =
  process.env.EVENTUALL_SIM_BIN ?? path.resolve(here, '../../target/debug/eventuall-sim');

const KEY = 'sk-node-test';
const CHAT_MODEL = '@cf/meta/llama-3.1-8b-instruct';
const WHISPER = '@cf/openai/whisper-tiny-en';
// The simulator's documented transcript (media/src/sim/ai.rs).
const transcriptOf = (bytes) =>
  `Simulated transcript of ${bytes} bytes of audio: I have worked with Rust and SQL for five years.`;

let sim;
let aiUrl;
let simRoot;

before(async () => {
  sim = spawn(SIM_BIN, ['--fast', '--ai', '--ai-api-key', KEY], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: sim.stdout });
  const urls = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('eventuall-sim printed nothing')), 15000);
    sim.once('error', reject);
    sim.once('exit', (code) => reject(new Error(`eventuall-sim exited with ${code}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  });
  aiUrl = urls.ai_url;
  simRoot = aiUrl.replace(/\/v1$/, '');
});

after(() => {
  sim?.kill();
});

beforeEach(async () => {
  await fetch(`${simRoot}/_sim/faults`, { method: 'DELETE' });
});

const ai = (apiKey = KEY) => new OpenAI({ baseURL: aiUrl, apiKey, maxRetries: 0 });

async function arm(fault, times = 1) {
  const response = await fetch(`${simRoot}/_sim/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...fault, times }),
  });
  assert.equal(response.status, 204, await response.text());
}

const interview = [
  { role: 'system', content: 'You interview candidates for a backend role.' },
  { role: 'user', content: 'I am ready.' },
];

/** A short valid WAV: espeak-ng speech if it is installed, else 0.2 s of silence. */
function wav() {
  const dir = mkdtempSync(path.join(tmpdir(), 'eventuall-ai-'));
  try {
    const file = path.join(dir, 'answer.wav');
    const spoken = spawnSync('espeak-ng', ['-w', file, 'I have worked with Rust.'], { stdio: 'ignore' });
    if (spoken.status === 0) return readFileSync(file);
  } catch {
    // No espeak-ng: fall through to the synthetic file.
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rate = 16000;
  const samples = rate / 5;
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + samples * 2, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16); // PCM chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36);
  header.writeUInt32LE(samples * 2, 40);
  return Buffer.concat([header, Buffer.alloc(samples * 2)]);
}

test('the printed ai_url is a loopback /v1 base', () => {
  assert.match(aiUrl, /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
});

test('a streamed chat completion parses chunk by chunk, with its usage chunk', async () => {
  const stream = await ai().chat.completions.create({
    model: CHAT_MODEL,
    messages: interview,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let roles = 0;
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.match(chunk.id, /^chatcmpl-/);
    assert.equal(chunk.model, CHAT_MODEL);
    assert.equal(typeof chunk.created, 'number');
    if (chunk.usage) {
      assert.deepEqual(chunk.choices, [], 'the usage chunk has no choices');
      usage = chunk.usage;
      continue;
    }
    const [choice] = chunk.choices;
    if (choice.delta.role) roles += 1;
    text += choice.delta.content ?? '';
    finish = choice.finish_reason ?? finish;
  }
  assert.equal(roles, 1);
  assert.equal(finish, 'stop');
  assert.match(text, /^Question 1: .*\?$/);
  // Role chunk, 12 content chunks, the finish chunk, the usage chunk.
  assert.equal(chunks, 15);
  assert.equal(usage.completion_tokens, 12);
  assert.equal(usage.prompt_tokens, 10, 'whitespace words of all messages');
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);

  const again = await ai().chat.completions.create({ model: CHAT_MODEL, messages: interview });
  assert.equal(again.choices[0].message.content, text, 'the same request gets the same text');
});

test('a non-streamed completion and a hint', async () => {
  const completion = await ai().chat.completions.create({
    model: CHAT_MODEL,
    messages: [{ role: 'system', content: 'Give the candidate a hint.' }, ...interview.slice(1)],
  });
  assert.equal(completion.object, 'chat.completion');
  assert.equal(completion.model, CHAT_MODEL);
  const [choice] = completion.choices;
  assert.equal(choice.message.role, 'assistant');
  assert.equal(choice.finish_reason, 'stop');
  assert.match(choice.message.content, /^Hint: /);
  assert.ok(completion.usage.total_tokens > 0);
});

test('JSON mode answers a JSON object of skills', async () => {
  const completion = await ai().chat.completions.create({
    model: CHAT_MODEL,
    response_format: { type: 'json_object' },
    messages: [
      { role: 'system', content: 'Extract the skills as JSON {"skills":[…]}.' },
      { role: 'user', content: 'Backend engineer: Rust, PostgreSQL, Kubernetes; some React and rust.' },
    ],
  });
  assert.deepEqual(JSON.parse(completion.choices[0].message.content), {
    skills: ['Rust', 'PostgreSQL', 'Kubernetes', 'React'],
  });
});

test('a WAV file is transcribed as json, verbose_json and text', async () => {
  const audio = wav();
  const file = () => toFile(audio, 'answer.wav', { type: 'audio/wav' });
  const json = await ai().audio.transcriptions.create({ file: await file(), model: WHISPER });
  assert.equal(json.text, transcriptOf(audio.length));
  const verbose = await ai().audio.transcriptions.create({
    file: await file(),
    model: WHISPER,
    response_format: 'verbose_json',
  });
  assert.equal(verbose.text, transcriptOf(audio.length));
  assert.equal(typeof verbose.duration, 'number');
  assert.equal(verbose.segments.length, 1);
  const text = await ai().audio.transcriptions.create({
    file: await file(),
    model: WHISPER,
    response_format: 'text',
  });
  assert.equal(String(text).trim(), transcriptOf(audio.length));

  await arm({ fault: 'transcript', text: 'An armed transcript.' });
  const armed = await ai().audio.transcriptions.create({ file: await file(), model: WHISPER });
  assert.equal(armed.text, 'An armed transcript.');
});

test('a rate limit is a RateLimitError with its headers', async () => {
  await arm({ fault: 'rate_limited', retry_after_secs: 2 });
  const error = await ai()
    .chat.completions.create({ model: CHAT_MODEL, messages: interview })
    .then(() => assert.fail('expected a 429'), (e) => e);
  assert.ok(error instanceof OpenAI.RateLimitError, `${error}`);
  assert.equal(error.status, 429);
  assert.equal(error.headers.get('retry-after'), '2');
  assert.equal(error.headers.get('x-ratelimit-remaining-requests'), '0');
  assert.ok(error.headers.get('x-ratelimit-limit-requests'));
  assert.ok(error.headers.get('x-ratelimit-reset-requests'));
  assert.equal(error.code, 'rate_limit_exceeded');
});

test('a server error is an InternalServerError, on a stream request too', async () => {
  await arm({ fault: 'server_error' });
  const error = await ai()
    .chat.completions.create({ model: CHAT_MODEL, messages: interview, stream: true })
    .then(() => assert.fail('expected a 500'), (e) => e);
  assert.ok(error instanceof OpenAI.InternalServerError, `${error}`);
  assert.equal(error.status, 500);
  assert.equal(error.type, 'server_error');
});

test('a wrong or missing key is an AuthenticationError', async () => {
  const error = await ai('sk-wrong')
    .models.list()
    .then(() => assert.fail('expected a 401'), (e) => e);
  assert.ok(error instanceof OpenAI.AuthenticationError, `${error}`);
  assert.equal(error.status, 401);
  assert.equal(error.code, 'invalid_api_key');
});

test('a request without messages is a BadRequestError naming the parameter', async () => {
  const error = await ai()
    .chat.completions.create({ model: CHAT_MODEL })
    .then(() => assert.fail('expected a 400'), (e) => e);
  assert.ok(error instanceof OpenAI.BadRequestError, `${error}`);
  assert.equal(error.param, 'messages');
  assert.equal(error.type, 'invalid_request_error');
});

test('a stream cut mid-way throws in the SDK', async () => {
  await arm({ fault: 'cut_after', chunks: 3 });
  const stream = await ai().chat.completions.create({ model: CHAT_MODEL, messages: interview, stream: true });
  let text = '';
  let finish = null;
  const outcome = await (async () => {
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    return 'ended';
  })().catch((e) => e);
  assert.equal(text, 'Question 1: tell me about a ', 'the three chunks before the cut arrived');
  assert.equal(finish, null);
  // undici reports the reset ("terminated"), and the SDK lets it through.
  assert.ok(outcome instanceof Error, `the SDK throws on a reset, got ${outcome}`);
});

test('an error event mid-stream is an APIError', async () => {
  await arm({ fault: 'error_event' });
  const stream = await ai().chat.completions.create({ model: CHAT_MODEL, messages: interview, stream: true });
  const error = await (async () => {
    for await (const _ of stream);
  })().then(() => assert.fail('expected the error event to throw'), (e) => e);
  assert.ok(error instanceof OpenAI.APIError, `${error}`);
  assert.match(error.message, /server had an error/);
});

test('the models list names the default models', async () => {
  const models = [];
  for await (const model of ai().models.list()) models.push(model.id);
  assert.deepEqual(models.sort(), [WHISPER, CHAT_MODEL].sort());
});

test('the control API counts what was served', async () => {
  const served = await (await fetch(`${simRoot}/_sim/requests`)).json();
  for (const key of ['chat_streams', 'chat_completions', 'json_completions', 'transcriptions', 'faulted']) {
    assert.equal(typeof served[key], 'number', key);
  }
  assert.ok(served.chat_streams >= 3 && served.transcriptions >= 4 && served.faulted >= 2, JSON.stringify(served));
});
