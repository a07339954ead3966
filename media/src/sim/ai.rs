//! A faithful simulator of an OpenAI-compatible AI API, for tests and for
//! running the service without a provider.
//!
//! It speaks the wire format of `shared/research/ai.md`:
//! `POST /v1/chat/completions` (streamed as server-sent events: a role
//! chunk, content chunks, a finish chunk, a usage chunk with `"choices":[]`
//! when `stream_options.include_usage`, then `data: [DONE]`; or one
//! `chat.completion` object), `POST /v1/audio/transcriptions` (multipart
//! `file` + `model`; `json`, `verbose_json` or `text`), `GET /v1/models`,
//! and OpenAI's error bodies `{"error":{"message","type","param","code"}}`
//! with `retry-after` and `x-ratelimit-*` headers on 429.
//!
//! Its answers are deterministic, so tests can assert on them:
//! - JSON mode (`response_format` `json_object`): `{"skills":[…]}`, the
//!   words of the last user message that are in [`SKILL_WORDS`] (matched
//!   case-insensitively, written as listed), at most 8, de-duplicated, in
//!   order of appearance; `["communication"]` if none. Known words only, not
//!   any capitalised word: a job title's "Senior Engineer" is not a skill.
//! - Text ([`reply_text`]): if a system message mentions "hint",
//!   `Hint: think about {topic} and give one concrete example from your own
//!   work.`; otherwise `Question {n}: tell me about a time {topic} mattered
//!   in a project of yours. What did you learn?`, `n` = assistant messages
//!   so far + 1. The topic is picked by a hash (FNV-1a) of every message, so
//!   the same request gets the same text. The text is split on word
//!   boundaries into [`AiSimConfig::chunks`] content chunks (a request may
//!   ask for another count with the non-standard header `x-sim-chunks: N`,
//!   for benchmarks); fewer if it has fewer words.
//!   `prompt_tokens` = whitespace words of all messages,
//!   `completion_tokens` = content chunks.
//! - Transcription: [`transcript_of`]: `Simulated transcript of {n} bytes of
//!   audio: I have worked with Rust and SQL for five years.`, `n` = the
//!   file's size, unless an [`AiFault::Transcript`] is armed.
//! - Pacing: [`AiSimConfig::first_token_delay`] after the headers, then
//!   [`AiSimConfig::chunk_delay`] between content chunks.
//!
//! Faults ([`AiFault`]) are armed in-process ([`AiSim::faults`]) or over
//! HTTP, for tests that drive the simulator from another process, and are
//! consumed by the requests they apply to, in arming order:
//! - `POST /_sim/faults` `{"fault":"rate_limited","retry_after_secs":1,
//!   "times":2}` (the [`AiFault`] variant in snake case with its fields;
//!   `times` defaults to 1) → 204;
//! - `DELETE /_sim/faults` → 204, all disarmed;
//! - `GET /_sim/requests` → [`AiRequests`] as JSON.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::common::{lock, random_id};

/// Words the simulator recognises as skills in JSON mode.
pub const SKILL_WORDS: [&str; 20] = [
    "Rust",
    "SQL",
    "PostgreSQL",
    "Kubernetes",
    "React",
    "TypeScript",
    "JavaScript",
    "Python",
    "Go",
    "Docker",
    "AWS",
    "Linux",
    "GraphQL",
    "Redis",
    "Kafka",
    "Java",
    "CSS",
    "HTML",
    "Terraform",
    "Node.js",
];

const TOPICS: [&str; 8] =
    ["ownership", "testing", "databases", "concurrency", "system design", "debugging", "code review", "teamwork"];

#[derive(Clone, Debug)]
pub struct AiSimConfig {
    /// When set, requests must carry `Authorization: Bearer {key}`.
    pub api_key: Option<String>,
    /// Content chunks per streamed reply (the header `x-sim-chunks`
    /// overrides it per request).
    pub chunks: usize,
    /// Between two content chunks: a small model's token rate, so a UI
    /// shows text growing.
    pub chunk_delay: Duration,
    /// Headers → first chunk of a stream (or the whole non-streamed answer):
    /// a provider's queueing and prompt processing.
    pub first_token_delay: Duration,
}

impl Default for AiSimConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            chunks: 12,
            chunk_delay: Duration::from_millis(15),
            first_token_delay: Duration::from_millis(50),
        }
    }
}

impl AiSimConfig {
    /// No delays: for tests.
    pub fn fast() -> Self {
        Self { chunk_delay: Duration::ZERO, first_token_delay: Duration::ZERO, ..Self::default() }
    }
}

/// A failure to inject into the next matching request. Over HTTP it is
/// `{"fault": "<variant in snake case>", …fields}`, durations in
/// milliseconds (`stall_ms`, `delay_ms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum AiFault {
    /// 429 with `retry-after` (any endpoint).
    RateLimited { retry_after_secs: u64 },
    /// 500 with an error body (any endpoint).
    ServerError,
    /// A stream that sends `chunks` content chunks, then resets.
    CutAfter { chunks: usize },
    /// A stream that goes silent for `stall` after `chunks` content chunks,
    /// then goes on.
    StallAfter {
        chunks: usize,
        #[serde(rename = "stall_ms", with = "millis")]
        stall: Duration,
    },
    /// The first chunk of a stream (or a whole non-streamed answer or
    /// transcription) comes `delay` late.
    SlowFirstToken {
        #[serde(rename = "delay_ms", with = "millis")]
        delay: Duration,
    },
    /// A `data: {"error":…}` event after the first content chunk.
    ErrorEvent,
    /// The next transcription returns this text.
    Transcript { text: String },
}

/// A [`Duration`] as whole milliseconds: what a shell or a Node test writes.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

impl AiFault {
    fn applies_to(&self, endpoint: Endpoint) -> bool {
        match self {
            AiFault::RateLimited { .. } | AiFault::ServerError | AiFault::SlowFirstToken { .. } => true,
            AiFault::CutAfter { .. } | AiFault::StallAfter { .. } | AiFault::ErrorEvent => endpoint == Endpoint::Stream,
            AiFault::Transcript { .. } => endpoint == Endpoint::Transcription,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Stream,
    Completion,
    Transcription,
}

/// Armed faults, shared by clones.
#[derive(Clone, Default)]
pub struct AiFaults {
    armed: Arc<std::sync::Mutex<VecDeque<(AiFault, u32)>>>,
}

impl AiFaults {
    /// Arms `fault` for the next `times` matching requests.
    pub fn arm(&self, fault: AiFault, times: u32) {
        if times > 0 {
            lock(&self.armed).push_back((fault, times));
        }
    }

    pub fn clear(&self) {
        lock(&self.armed).clear();
    }

    fn take(&self, endpoint: Endpoint) -> Option<AiFault> {
        let mut armed = lock(&self.armed);
        let index = armed.iter().position(|(fault, _)| fault.applies_to(endpoint))?;
        let (fault, left) = &mut armed[index];
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            armed.remove(index);
        }
        Some(fault)
    }
}

/// Requests served, by kind (also `GET /_sim/requests`). A request counts
/// once it is answered: the answered kinds are disjoint, and a request an
/// armed 429/500 refused counts in `faulted` only, so `faulted` + the rest
/// is the number of attempts a client made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AiRequests {
    /// Streamed text replies (cut, stalled and error-event streams too).
    pub chat_streams: u64,
    /// Non-streamed text replies.
    pub chat_completions: u64,
    /// Replies in JSON mode (`response_format` `json_object`), streamed or not.
    pub json_completions: u64,
    pub transcriptions: u64,
    /// Requests answered with an injected 429 or 500.
    pub faulted: u64,
}

#[derive(Default)]
struct Counters {
    chat_streams: AtomicU64,
    chat_completions: AtomicU64,
    json_completions: AtomicU64,
    transcriptions: AtomicU64,
    faulted: AtomicU64,
}

impl Counters {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The simulator's state; cloning shares it.
#[derive(Clone)]
pub struct AiSim {
    config: Arc<AiSimConfig>,
    faults: AiFaults,
    counters: Arc<Counters>,
}

impl AiSim {
    pub fn new(config: AiSimConfig, faults: AiFaults) -> Self {
        Self { config: Arc::new(config), faults, counters: Arc::default() }
    }

    pub fn faults(&self) -> &AiFaults {
        &self.faults
    }

    pub fn requests(&self) -> AiRequests {
        AiRequests {
            chat_streams: self.counters.chat_streams.load(Ordering::Relaxed),
            chat_completions: self.counters.chat_completions.load(Ordering::Relaxed),
            json_completions: self.counters.json_completions.load(Ordering::Relaxed),
            transcriptions: self.counters.transcriptions.load(Ordering::Relaxed),
            faulted: self.counters.faulted.load(Ordering::Relaxed),
        }
    }

    /// Mount at the root: the API is under `/v1`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/audio/transcriptions", post(transcription))
            .route("/v1/models", get(models))
            .route("/_sim/faults", post(arm_fault).delete(clear_faults))
            .route("/_sim/requests", get(served))
            .fallback(|| async {
                error(StatusCode::NOT_FOUND, "invalid_request_error", "unknown_url", "Unknown request URL")
            })
            .with_state(self.clone())
    }

    /// The 401 answer to a request without the configured key, if any.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let key = self.config.api_key.as_ref()?;
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if presented == Some(key.as_str()) {
            None
        } else {
            Some(error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "invalid_api_key",
                "Incorrect API key provided.",
            ))
        }
    }
}

/// OpenAI's error body.
fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

/// OpenAI's answer to a request without a required parameter.
fn missing(param: &str) -> Response {
    let message = format!("Missing required parameter: '{param}'.");
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": "missing_required_parameter"}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn rate_limited(retry_after_secs: u64) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    headers.insert("x-ratelimit-limit-requests", HeaderValue::from_static("60"));
    headers.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
    if let Ok(reset) = HeaderValue::from_str(&format!("{retry_after_secs}s")) {
        headers.insert("x-ratelimit-reset-requests", reset);
    }
    response
}

fn server_error() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "internal_error",
        "The server had an error while processing your request.",
    )
}

impl AiSim {
    /// The response a fault replaces the answer with, if it does.
    fn failed(&self, fault: &Option<AiFault>) -> Option<Response> {
        let response = match fault {
            Some(AiFault::RateLimited { retry_after_secs }) => rate_limited(*retry_after_secs),
            Some(AiFault::ServerError) => server_error(),
            _ => return None,
        };
        Counters::count(&self.counters.faulted);
        Some(response)
    }
}

fn hash(text: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (unlike the std hasher).
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn messages_text(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            (m["role"].as_str().unwrap_or_default().to_owned(), m["content"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// The deterministic reply to `messages`.
pub fn reply_text(messages: &[(String, String)]) -> String {
    let all: String = messages.iter().map(|(r, c)| format!("{r}:{c}\n")).collect();
    let topic = TOPICS[(hash(&all) % TOPICS.len() as u64) as usize];
    let turn = messages.iter().filter(|(r, _)| r == "assistant").count() + 1;
    let wants_hint = messages.iter().any(|(r, c)| r == "system" && c.to_lowercase().contains("hint"));
    if wants_hint {
        format!("Hint: think about {topic} and give one concrete example from your own work.")
    } else {
        format!("Question {turn}: tell me about a time {topic} mattered in a project of yours. What did you learn?")
    }
}

/// The skills the simulator finds in `text` (JSON mode).
pub fn skills_in(text: &str) -> Vec<String> {
    let mut skills: Vec<String> = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '/')) {
        let word = raw.trim_end_matches(['.', ':', '!', '?']);
        let known = SKILL_WORDS.iter().find(|s| s.eq_ignore_ascii_case(word));
        if let Some(skill) = known
            && !skills.iter().any(|s| s == skill)
        {
            skills.push((*skill).to_owned());
        }
        if skills.len() == 8 {
            break;
        }
    }
    if skills.is_empty() {
        skills.push("communication".into());
    }
    skills
}

/// The simulator's fixed transcription of `bytes` bytes of audio.
pub fn transcript_of(bytes: usize) -> String {
    format!("Simulated transcript of {bytes} bytes of audio: I have worked with Rust and SQL for five years.")
}

/// `text` in `n` pieces of whole words (fewer if it has fewer words), as
/// even as whole words allow.
fn split_chunks(text: &str, n: usize) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let n = n.clamp(1, words.len().max(1));
    let (base, extra) = (words.len() / n, words.len() % n);
    let mut pieces = Vec::with_capacity(n);
    let mut rest = words.as_slice();
    for i in 0..n {
        let take = base + usize::from(i < extra);
        let (piece, tail) = rest.split_at(take.min(rest.len()));
        pieces.push(piece.concat());
        rest = tail;
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

fn word_count(messages: &[(String, String)]) -> u64 {
    messages.iter().map(|(_, c)| c.split_whitespace().count() as u64).sum()
}

async fn chat(State(sim): State<AiSim>, headers: HeaderMap, request: Request) -> Response {
    if let Some(refused) = sim.refusal(&headers) {
        return refused;
    }
    let body = match axum::Json::<Value>::from_request(request, &()).await {
        Ok(axum::Json(body)) => body,
        Err(rejection) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_json", &rejection.body_text());
        }
    };
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return missing("messages");
    };
    let Some(model) = body["model"].as_str().map(str::to_owned) else {
        return missing("model");
    };
    let messages = messages_text(messages);
    let stream = body["stream"].as_bool().unwrap_or(false);
    let json_mode = body["response_format"]["type"] == "json_object";
    let endpoint = if stream { Endpoint::Stream } else { Endpoint::Completion };
    let fault = sim.faults.take(endpoint);
    if let Some(response) = sim.failed(&fault) {
        return response;
    }
    // Providers answer with headers at once and think before the first
    // token, so a streamed reply waits inside its body (the client's
    // first-chunk timer sees it); a non-streamed one waits for all of it.
    let first_token_delay = match &fault {
        Some(AiFault::SlowFirstToken { delay }) => *delay,
        _ => sim.config.first_token_delay,
    };
    let content = if json_mode {
        let last_user = messages.iter().rev().find(|(r, _)| r == "user").map(|(_, c)| c.as_str()).unwrap_or_default();
        json!({"skills": skills_in(last_user)}).to_string()
    } else {
        reply_text(&messages)
    };
    let chunks = headers
        .get("x-sim-chunks")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(sim.config.chunks);
    let pieces = split_chunks(&content, chunks);
    let usage = json!({
        "prompt_tokens": word_count(&messages),
        "completion_tokens": pieces.len(),
        "total_tokens": word_count(&messages) + pieces.len() as u64,
    });
    let id = format!("chatcmpl-{}", random_id(24));
    let created = crate::time::now_secs();
    Counters::count(match (json_mode, stream) {
        (true, _) => &sim.counters.json_completions,
        (false, true) => &sim.counters.chat_streams,
        (false, false) => &sim.counters.chat_completions,
    });
    if !stream {
        tokio::time::sleep(first_token_delay).await;
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        });
        return axum::Json(body).into_response();
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let plan = StreamPlan {
        id,
        created,
        model,
        pieces,
        usage: include_usage.then_some(usage),
        fault,
        first_token_delay,
        delay: sim.config.chunk_delay,
    };
    let mut response = Response::new(Body::from_stream(plan.into_stream()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What a streamed reply sends, in order.
struct StreamPlan {
    id: String,
    created: u64,
    model: String,
    pieces: Vec<String>,
    usage: Option<Value>,
    fault: Option<AiFault>,
    first_token_delay: Duration,
    delay: Duration,
}

enum Frame {
    Data(Value),
    Done,
    Pause(Duration),
    Reset,
}

impl StreamPlan {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn frames(&self) -> Vec<Frame> {
        let mut frames = vec![
            Frame::Pause(self.first_token_delay),
            Frame::Data(self.chunk(json!({"role": "assistant", "content": ""}), None)),
        ];
        for (sent, piece) in self.pieces.iter().enumerate() {
            match &self.fault {
                Some(AiFault::CutAfter { chunks }) if sent == *chunks => {
                    // Let the chunks already sent reach the client first: a
                    // reset before anything was written is a failed request
                    // (retried), not a stream cut mid-way.
                    frames.push(Frame::Pause(Duration::from_millis(30)));
                    frames.push(Frame::Reset);
                    return frames;
                }
                Some(AiFault::StallAfter { chunks, stall }) if sent == *chunks => {
                    frames.push(Frame::Pause(*stall));
                }
                Some(AiFault::ErrorEvent) if sent == 1 => {
                    frames.push(Frame::Data(json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}})));
                    return frames;
                }
                _ => {}
            }
            if sent > 0 && !self.delay.is_zero() {
                frames.push(Frame::Pause(self.delay));
            }
            frames.push(Frame::Data(self.chunk(json!({"content": piece}), None)));
        }
        frames.push(Frame::Data(self.chunk(json!({}), Some("stop"))));
        if let Some(usage) = &self.usage {
            frames.push(Frame::Data(json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage,
            })));
        }
        frames.push(Frame::Done);
        frames
    }

    fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
        let frames: VecDeque<Frame> = self.frames().into();
        futures::stream::unfold(frames, |mut frames| async move {
            loop {
                match frames.pop_front()? {
                    Frame::Pause(wait) if wait.is_zero() => {}
                    Frame::Pause(wait) => tokio::time::sleep(wait).await,
                    Frame::Data(value) => return Some((Ok(Bytes::from(format!("data: {value}\n\n"))), frames)),
                    Frame::Done => return Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), frames)),
                    Frame::Reset => {
                        frames.clear();
                        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated stream cut");
                        return Some((Err(reset), frames));
                    }
                }
            }
        })
    }
}

async fn transcription(State(sim): State<AiSim>, headers: HeaderMap, request: Request) -> Response {
    if let Some(refused) = sim.refusal(&headers) {
        return refused;
    }
    let mut form = match Multipart::from_request(request, &()).await {
        Ok(form) => form,
        Err(rejection) => {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_form", &rejection.body_text());
        }
    };
    let (mut audio, mut model, mut format) = (None::<Bytes>, None::<String>, "json".to_owned());
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let is_file = field.file_name().is_some();
                let Ok(data) = field.bytes().await else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "invalid_form",
                        "unreadable form field",
                    );
                };
                match name.as_str() {
                    "file" if is_file => audio = Some(data),
                    "model" => model = Some(String::from_utf8_lossy(&data).into_owned()),
                    "response_format" => format = String::from_utf8_lossy(&data).into_owned(),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_form", &e.body_text()),
        }
    }
    let Some(audio) = audio else {
        return missing("file");
    };
    if model.is_none() {
        return missing("model");
    }
    let fault = sim.faults.take(Endpoint::Transcription);
    if let Some(response) = sim.failed(&fault) {
        return response;
    }
    if let Some(AiFault::SlowFirstToken { delay }) = &fault {
        tokio::time::sleep(*delay).await;
    }
    Counters::count(&sim.counters.transcriptions);
    let text = match fault {
        Some(AiFault::Transcript { text }) => text,
        _ => transcript_of(audio.len()),
    };
    match format.as_str() {
        "text" => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response(),
        "verbose_json" => {
            // 16 kHz mono 16-bit PCM as a stand-in for the real duration.
            let duration = audio.len() as f64 / 32_000.0;
            axum::Json(json!({
                "task": "transcribe", "language": "english", "duration": duration, "text": text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text, "tokens": [],
                              "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01}],
            }))
            .into_response()
        }
        "json" => axum::Json(json!({"text": text})).into_response(),
        other => error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_response_format",
            &format!("unsupported response_format {other:?}"),
        ),
    }
}

async fn models(State(sim): State<AiSim>, headers: HeaderMap) -> Response {
    if let Some(refused) = sim.refusal(&headers) {
        return refused;
    }
    let model = |id: &str| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "eventuall-sim"});
    axum::Json(json!({
        "object": "list",
        "data": [model("@cf/meta/llama-3.1-8b-instruct"), model("@cf/openai/whisper-tiny-en")],
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ArmRequest {
    #[serde(flatten)]
    fault: AiFault,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

async fn arm_fault(State(sim): State<AiSim>, request: Request) -> Response {
    match axum::Json::<ArmRequest>::from_request(request, &()).await {
        Ok(axum::Json(armed)) => {
            sim.faults.arm(armed.fault, armed.times);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(rejection) => {
            error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_fault", &rejection.body_text())
        }
    }
}

async fn clear_faults(State(sim): State<AiSim>) -> StatusCode {
    sim.faults.clear();
    StatusCode::NO_CONTENT
}

async fn served(State(sim): State<AiSim>) -> axum::Json<AiRequests> {
    axum::Json(sim.requests())
}

/// The simulator served over HTTP on 127.0.0.1. Dropping it stops it.
pub struct AiSimulator {
    /// Base URL for `AiConfig::base_url` (ends in `/v1`).
    pub url: String,
    pub handle: AiSim,
    server: JoinHandle<()>,
}

impl AiSimulator {
    pub async fn spawn(config: AiSimConfig) -> std::io::Result<Self> {
        Self::spawn_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn spawn_on(config: AiSimConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let handle = AiSim::new(config, AiFaults::default());
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let router: Router = handle.router();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, %local, "AI simulator stopped");
            }
        });
        Ok(Self { url: format!("http://{local}/v1"), handle, server })
    }

    pub fn faults(&self) -> &AiFaults {
        self.handle.faults()
    }
}

impl Drop for AiSimulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_deterministic_and_follow_the_rules() {
        let ask = vec![("system".to_owned(), "You interview.".to_owned()), ("user".to_owned(), "Go".to_owned())];
        assert_eq!(reply_text(&ask), reply_text(&ask));
        assert!(reply_text(&ask).starts_with("Question 1:") && reply_text(&ask).ends_with('?'));
        let hint = vec![("system".to_owned(), "Give a hint.".to_owned())];
        assert!(reply_text(&hint).starts_with("Hint:"));
        assert_eq!(skills_in("We use Rust, PostgreSQL and rust."), vec!["Rust", "PostgreSQL"]);
        assert_eq!(skills_in("nothing here"), vec!["communication"]);
        assert_eq!(split_chunks("a b c d e", 2).concat(), "a b c d e");
        assert_eq!(split_chunks("a b c", 12).len(), 3);
        assert_eq!(split_chunks(&"w ".repeat(18), 12).len(), 12);
    }

    #[test]
    fn faults_read_over_http_name_their_variant_and_milliseconds() {
        let stall: ArmRequest = serde_json::from_str(r#"{"fault":"stall_after","chunks":2,"stall_ms":150}"#).unwrap();
        assert_eq!(stall.fault, AiFault::StallAfter { chunks: 2, stall: Duration::from_millis(150) });
        assert_eq!(stall.times, 1);
        let slow: ArmRequest = serde_json::from_str(r#"{"fault":"slow_first_token","delay_ms":5,"times":3}"#).unwrap();
        assert_eq!((slow.fault, slow.times), (AiFault::SlowFirstToken { delay: Duration::from_millis(5) }, 3));
        let text = serde_json::to_value(AiFault::Transcript { text: "hi".into() }).unwrap();
        assert_eq!(text, json!({"fault": "transcript", "text": "hi"}));
    }

    #[test]
    fn faults_are_consumed_in_order_by_the_requests_they_apply_to() {
        let faults = AiFaults::default();
        faults.arm(AiFault::CutAfter { chunks: 2 }, 1);
        faults.arm(AiFault::ServerError, 2);
        assert_eq!(faults.take(Endpoint::Transcription), Some(AiFault::ServerError));
        assert_eq!(faults.take(Endpoint::Stream), Some(AiFault::CutAfter { chunks: 2 }));
        assert_eq!(faults.take(Endpoint::Stream), Some(AiFault::ServerError));
        assert_eq!(faults.take(Endpoint::Stream), None);
    }
}
