//! The Mux Video simulator: the REST endpoints our client (and the official
//! `@mux/mux-node` SDK) use, with Mux's response shapes, Basic auth, the
//! POST rate limit, and the live-stream state machine driven by encoder
//! connections arriving over the RTMP bus (see [`super::bus`]).
//!
//! Live stream, per research §4 "live-stream webhook sequence":
//! idle → connected (asset created, `active_asset_id` set; status still
//! idle) → recording (status still idle) → active (asset ready) →
//! disconnected (status stays active for the reconnect window) → idle (asset
//! final: not live, final `duration`). `complete` ends the recording now and
//! drops the encoder after a grace period; `disable` ends it and drops the
//! encoder at once; delete drops it and removes the stream.
//!
//! Timing is configurable ([`MuxSimConfig`]) so tests run in milliseconds;
//! recorded media time can be scaled so a 50 ms test broadcast yields a
//! multi-second asset that clips can be cut from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::bus::{IngestDropped, IngestRefused};
use super::common::{lock, lose, random_id};
use super::faults::{AssetFault, AssetKind, Faults, HoldOn, IngestFault, MuxOp, MuxRequestFault};
use super::outbox::{DeliveryPolicy, Dispatch, Outbox, SentWebhook};
use crate::mux::{AssetStatus, LiveStreamStatus};

/// Mux's documented POST limit: 1 request/s sustained, short bursts allowed.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub burst: u32,
    pub refill_every: Duration,
}

#[derive(Debug, Clone)]
pub struct MuxSimConfig {
    /// Basic-auth credentials every request must carry.
    pub token_id: String,
    pub token_secret: String,
    /// `None` turns the POST limit off.
    pub post_rate_limit: Option<RateLimit>,
    /// Encoder connected → `video.live_stream.recording`.
    pub connect_to_recording: Duration,
    /// Recording → `active` (and the live asset `ready`).
    pub recording_to_active: Duration,
    /// Replaces every stream's own `reconnect_window` (seconds) when set,
    /// so tests need not wait a minute after a disconnect.
    pub reconnect_window_override: Option<Duration>,
    /// How long Mux keeps the encoder after `complete` (60 s on Mux).
    pub complete_encoder_grace: Duration,
    /// Clip `preparing` → `ready`.
    pub clip_prepare_delay: Duration,
    /// Media seconds recorded per wall-clock second.
    pub media_time_scale: f64,
    /// Where Mux webhooks go (`None`: only recorded, see [`MuxSim::webhooks`]).
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
    pub webhook_delivery: DeliveryPolicy,
}

impl Default for MuxSimConfig {
    /// Real-world timings (seconds), rate limit on with a burst of 3.
    fn default() -> Self {
        Self {
            token_id: "dev-mux-token-id".into(),
            token_secret: "dev-mux-token-secret".into(),
            post_rate_limit: Some(RateLimit { burst: 3, refill_every: Duration::from_secs(1) }),
            connect_to_recording: Duration::from_secs(1),
            recording_to_active: Duration::from_secs(2),
            reconnect_window_override: None,
            complete_encoder_grace: Duration::from_secs(60),
            clip_prepare_delay: Duration::from_secs(5),
            media_time_scale: 1.0,
            webhook_url: None,
            webhook_secret: "whsec_sim".into(),
            webhook_delivery: DeliveryPolicy::default(),
        }
    }
}

impl MuxSimConfig {
    /// Millisecond timings, no rate limit, and 1 ms of broadcast recorded as
    /// 1 s of media: for tests.
    pub fn fast() -> Self {
        Self {
            post_rate_limit: None,
            connect_to_recording: Duration::from_millis(10),
            recording_to_active: Duration::from_millis(10),
            reconnect_window_override: Some(Duration::from_millis(50)),
            complete_encoder_grace: Duration::from_millis(100),
            clip_prepare_delay: Duration::from_millis(30),
            media_time_scale: 1000.0,
            webhook_delivery: DeliveryPolicy {
                attempts: 3,
                retry_delay: Duration::from_millis(20),
                timeout: Duration::from_secs(2),
            },
            ..Self::default()
        }
    }
}

/// Where a live stream is in the ingest state machine (more detail than
/// the public `status`, which stays `idle` while connected/recording).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestPhase {
    Idle,
    Connected,
    Recording,
    Active,
    /// Encoder gone, reconnect window running.
    Disconnected,
}

/// A live stream as the simulator holds it, for test assertions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveStreamSnapshot {
    pub id: String,
    pub stream_key: String,
    pub passthrough: Option<String>,
    pub status: LiveStreamStatus,
    pub phase: IngestPhase,
    /// An encoder is connected right now.
    pub encoder_connected: bool,
    pub active_asset_id: Option<String>,
    pub recent_asset_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetSnapshot {
    pub id: String,
    pub status: AssetStatus,
    pub is_live: bool,
    pub duration: Option<f64>,
    pub live_stream_id: Option<String>,
    pub source_asset_id: Option<String>,
    pub passthrough: Option<String>,
}

/// The Mux simulator. Cloning shares state.
#[derive(Clone)]
pub struct MuxSim {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    outbox: Outbox,
}

struct State {
    cfg: MuxSimConfig,
    faults: Faults,
    streams: Vec<Stream>,
    assets: Vec<AssetRec>,
    connections: HashMap<u64, Connection>,
    next_connection: u64,
    /// Connections cut by [`MuxSim::interrupt_ingest`] that will come back
    /// (unless the encoder hangs up meanwhile): connection → stream key.
    interrupted: HashMap<u64, (String, mpsc::UnboundedSender<IngestDropped>)>,
    /// Every live stream ever created, deleted ones included: what a crash
    /// test counts to prove no create was repeated.
    streams_created: u64,
    bucket: Option<Bucket>,
}

struct Connection {
    stream_id: String,
    notify: mpsc::UnboundedSender<IngestDropped>,
}

struct Stream {
    id: String,
    stream_key: String,
    passthrough: Option<String>,
    playback_ids: Vec<(String, String)>,
    new_asset_settings: Option<Value>,
    asset_policies: Vec<String>,
    reconnect_window: f64,
    latency_mode: String,
    max_continuous_duration: u64,
    test: bool,
    created_at: u64,
    enabled: bool,
    phase: IngestPhase,
    /// Public status reads `active` from `active` until idle again.
    shown_active: bool,
    active_asset_id: Option<String>,
    recent_asset_ids: Vec<String>,
    connection: Option<u64>,
    /// Bumped on every phase change; a timer armed under an older epoch is stale.
    epoch: u64,
}

enum Origin {
    Live { stream_id: String },
    Clip { source: String, start: f64, end: f64 },
}

struct AssetRec {
    id: String,
    created_at: u64,
    status: AssetStatus,
    playback_ids: Vec<(String, String)>,
    passthrough: Option<String>,
    origin: Origin,
    is_live: bool,
    /// Closed recording segments: (wall-clock start, wall-clock length).
    segments: Vec<(SystemTime, Duration)>,
    open_segment: Option<(SystemTime, Instant)>,
    fault: Option<AssetFault>,
    errors: Option<(String, Vec<String>)>,
}

type Timer = Box<dyn FnOnce(&mut State, &mut Effects) + Send>;

/// Work decided under the state lock and carried out after releasing it:
/// timers to arm, encoder drops to report to the egress side, webhooks.
#[derive(Default)]
struct Effects {
    timers: Vec<(Duration, Timer)>,
    drops: Vec<(mpsc::UnboundedSender<IngestDropped>, IngestDropped)>,
    events: Vec<(String, &'static str, String, Value)>,
}

impl Effects {
    fn later(&mut self, after: Duration, f: impl FnOnce(&mut State, &mut Effects) + Send + 'static) {
        self.timers.push((after, Box::new(f)));
    }

    fn event(&mut self, kind: &str, object_type: &'static str, id: &str, data: Value) {
        self.events.push((kind.to_owned(), object_type, id.to_owned(), data));
    }
}

struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// `None` if a token was taken, else how long until one is available.
    fn take(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let per_sec = 1.0 / self.limit.refill_every.as_secs_f64().max(1e-6);
        let cap = f64::from(self.limit.burst.max(1));
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * per_sec).min(cap);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }
}

impl MuxSim {
    /// Must be called inside a tokio runtime (webhook delivery task).
    pub fn new(cfg: MuxSimConfig, faults: Faults) -> Self {
        let outbox = Outbox::spawn(cfg.webhook_url.clone(), cfg.webhook_delivery);
        let bucket =
            cfg.post_rate_limit.map(|limit| Bucket { limit, tokens: f64::from(limit.burst), at: Instant::now() });
        let state = State {
            cfg,
            faults,
            streams: Vec::new(),
            assets: Vec::new(),
            connections: HashMap::new(),
            next_connection: 0,
            interrupted: HashMap::new(),
            streams_created: 0,
            bucket,
        };
        Self { inner: Arc::new(Inner { state: Mutex::new(state), outbox }) }
    }

    /// The REST API under `/video/v1`, plus `GET /_sim/mux/state` (no auth)
    /// for out-of-process inspection. No fallback, so it can be merged into
    /// or nested under another app's router; unknown `/video/…` paths get
    /// Mux's JSON 404.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/video/v1/live-streams", get(list_streams).post(create_stream))
            .route("/video/v1/live-streams/{id}", get(get_stream).delete(delete_stream))
            .route("/video/v1/live-streams/{id}/complete", put(complete_stream))
            .route("/video/v1/live-streams/{id}/disable", put(disable_stream))
            .route("/video/v1/live-streams/{id}/enable", put(enable_stream))
            .route("/video/v1/assets", get(list_assets).post(create_asset))
            .route("/video/v1/assets/{id}", get(get_asset).delete(delete_asset))
            .route("/video/{*rest}", any(|| async { not_found() }))
            .route("/_sim/mux/state", get(sim_state))
            .with_state(self.clone())
    }

    pub fn live_streams(&self) -> Vec<LiveStreamSnapshot> {
        let st = lock(&self.inner.state);
        st.streams
            .iter()
            .map(|s| LiveStreamSnapshot {
                id: s.id.clone(),
                stream_key: s.stream_key.clone(),
                passthrough: s.passthrough.clone(),
                status: s.status(),
                phase: s.phase,
                encoder_connected: s.connection.is_some(),
                active_asset_id: s.active_asset_id.clone(),
                recent_asset_ids: s.recent_asset_ids.clone(),
            })
            .collect()
    }

    pub fn assets(&self) -> Vec<AssetSnapshot> {
        let st = lock(&self.inner.state);
        st.assets
            .iter()
            .map(|a| AssetSnapshot {
                id: a.id.clone(),
                status: a.status,
                is_live: a.is_live,
                duration: a.duration(st.cfg.media_time_scale),
                live_stream_id: match &a.origin {
                    Origin::Live { stream_id } => Some(stream_id.clone()),
                    Origin::Clip { .. } => None,
                },
                source_asset_id: match &a.origin {
                    Origin::Clip { source, .. } => Some(source.clone()),
                    Origin::Live { .. } => None,
                },
                passthrough: a.passthrough.clone(),
            })
            .collect()
    }

    /// How many live streams were ever created (deleted ones included).
    pub fn live_streams_created(&self) -> u64 {
        lock(&self.inner.state).streams_created
    }

    /// A network blip between the encoder and Mux on `stream_id`: Mux sees
    /// the encoder disconnect (the stream stays `active` for its reconnect
    /// window), and the same encoder reconnects after `outage`, or never if
    /// `None`. Inside the window the recording continues on the same asset;
    /// past it the stream went `idle` and a reconnection starts a new asset,
    /// as on Mux. False if the stream has no encoder connected.
    pub fn interrupt_ingest(&self, stream_id: &str, outage: Option<Duration>) -> bool {
        self.mutate(|st, fx| {
            let Some(i) = st.stream_idx(stream_id) else { return false };
            let Some(conn) = st.streams[i].connection else { return false };
            let Some(notify) = st.connections.get(&conn).map(|c| c.notify.clone()) else { return false };
            let key = st.streams[i].stream_key.clone();
            st.disconnect(conn, fx);
            if let Some(outage) = outage {
                st.interrupted.insert(conn, (key, notify));
                fx.later(outage, move |st, fx| st.resume(conn, fx));
            }
            true
        })
    }

    /// Mux webhooks produced so far (signed with `webhook_secret`).
    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.inner.outbox.log()
    }

    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.outbox.set_target(url);
    }

    /// An encoder connects with `stream_key` (the RTMP bus).
    pub(crate) fn rtmp_connect(
        &self,
        stream_key: &str,
        notify: mpsc::UnboundedSender<IngestDropped>,
    ) -> Result<u64, IngestRefused> {
        self.mutate(|st, fx| st.connect(stream_key, notify, fx))
    }

    /// The encoder on `connection` hangs up (also ends a pending
    /// [`MuxSim::interrupt_ingest`] reconnection).
    pub(crate) fn rtmp_disconnect(&self, connection: u64) {
        self.mutate(|st, fx| st.disconnect(connection, fx));
    }

    fn mutate<R>(&self, f: impl FnOnce(&mut State, &mut Effects) -> R) -> R {
        let mut fx = Effects::default();
        let (out, secret) = {
            let mut st = lock(&self.inner.state);
            let out = f(&mut st, &mut fx);
            (out, st.cfg.webhook_secret.clone())
        };
        self.apply(fx, &secret);
        out
    }

    fn apply(&self, fx: Effects, secret: &str) {
        for (after, timer) in fx.timers {
            let sim = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                sim.mutate(timer);
            });
        }
        for (tx, dropped) in fx.drops {
            // The egress side may be gone (simulator shut down); nothing to tell.
            let _ = tx.send(dropped);
        }
        for (kind, object_type, object_id, data) in fx.events {
            let id = uuid::Uuid::new_v4().to_string();
            let body = json!({
                "type": kind,
                "object": {"type": object_type, "id": object_id},
                "id": id,
                "environment": {"name": "Simulator", "id": "sim"},
                "data": data,
                "created_at": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
                "attempts": [],
            })
            .to_string();
            let signature = crate::mux::sign_webhook(secret, body.as_bytes(), SystemTime::now());
            let headers = vec![("content-type", "application/json".to_owned()), ("mux-signature", signature.clone())];
            let entry =
                SentWebhook { event: kind, id, body, signature, outcome: super::outbox::DeliveryOutcome::Pending };
            self.inner.outbox.push(entry, headers, Dispatch::Deliver);
        }
    }

    /// Auth, injected faults and the POST limit around one operation.
    async fn gate(
        &self,
        op: MuxOp,
        method: Method,
        headers: &HeaderMap,
        work: impl FnOnce(&MuxSim) -> Response,
    ) -> Response {
        let (expected, faults) = {
            let st = lock(&self.inner.state);
            (format!("{}:{}", st.cfg.token_id, st.cfg.token_secret), st.faults.clone())
        };
        if !basic_auth_matches(headers, &expected) {
            return mux_error(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized request");
        }
        let fault = faults.take_mux_request(op);
        match fault {
            Some(MuxRequestFault::RateLimited { retry_after }) => return rate_limited(retry_after),
            Some(MuxRequestFault::ServerError { status }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return mux_error(status, "internal_error", "An internal server error occurred");
            }
            Some(MuxRequestFault::BadGatewayHtml) => return bad_gateway_html(),
            _ => {}
        }
        if method == Method::POST {
            let wait = lock(&self.inner.state).bucket.as_mut().and_then(Bucket::take);
            if let Some(wait) = wait {
                return rate_limited(wait);
            }
        }
        let resp = work(self);
        if let Some(hold) = faults.take_hold(HoldOn::Mux(op)) {
            hold.stall().await;
        }
        match fault {
            Some(MuxRequestFault::CommitThenLose(loss)) => {
                let internal =
                    mux_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "An internal server error occurred");
                lose(resp, loss, internal).await
            }
            _ => resp,
        }
    }
}

const NOT_FOUND_MSG: &str = "The requested resource either doesn't exist or you don't have access to it.";

fn mux_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"type": kind, "messages": [message]}}))).into_response()
}

/// What a load balancer in front of Mux answers when the API is
/// unreachable: an HTML page, not Mux's JSON envelope.
fn bad_gateway_html() -> Response {
    let html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>\
                <hr><center>nginx</center></body></html>";
    let mut resp = (StatusCode::BAD_GATEWAY, html).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

fn invalid(message: impl Into<String>) -> Response {
    mux_error(StatusCode::BAD_REQUEST, "invalid_parameters", &message.into())
}

fn not_found() -> Response {
    mux_error(StatusCode::NOT_FOUND, "not_found", NOT_FOUND_MSG)
}

fn rate_limited(wait: Duration) -> Response {
    let mut resp = mux_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "Rate limit exceeded");
    let secs = wait.as_secs_f64().ceil().max(0.0);
    if let Ok(v) = HeaderValue::from_str(&format!("{secs:.0}")) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn data(status: StatusCode, value: Value) -> Response {
    (status, Json(json!({ "data": value }))).into_response()
}

fn basic_auth_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|creds| creds == expected)
}

/// Mux accepts a list, a single string, and the deprecated singular name.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// The playback policies of a request, or the `invalid_parameters` message.
fn policies(plural: Option<OneOrMany>, singular: Option<OneOrMany>) -> Result<Vec<String>, String> {
    let list = plural.or(singular).map(OneOrMany::into_vec).unwrap_or_default();
    match list.iter().find(|p| !matches!(p.as_str(), "public" | "signed" | "drm")) {
        Some(bad) => Err(format!("Invalid playback policy: {bad}")),
        None => Ok(list),
    }
}

fn playback_ids(policies: &[String]) -> Vec<(String, String)> {
    policies.iter().map(|p| (random_id(36), p.clone())).collect()
}

fn playback_ids_json(ids: &[(String, String)]) -> Value {
    ids.iter().map(|(id, policy)| json!({"policy": policy, "id": id})).collect()
}

#[derive(Deserialize)]
struct CreateStreamBody {
    #[serde(default)]
    playback_policies: Option<OneOrMany>,
    #[serde(default)]
    playback_policy: Option<OneOrMany>,
    #[serde(default)]
    new_asset_settings: Option<Value>,
    #[serde(default)]
    reconnect_window: Option<f64>,
    #[serde(default)]
    latency_mode: Option<String>,
    #[serde(default)]
    passthrough: Option<String>,
    #[serde(default)]
    test: Option<bool>,
    #[serde(default)]
    max_continuous_duration: Option<u64>,
}

#[derive(Deserialize)]
struct Paging {
    limit: Option<usize>,
    page: Option<usize>,
    live_stream_id: Option<String>,
}

impl Paging {
    fn apply<T>(&self, items: Vec<T>) -> Vec<T> {
        let limit = self.limit.unwrap_or(25).clamp(1, 100);
        let page = self.page.unwrap_or(1).max(1);
        items.into_iter().skip((page - 1) * limit).take(limit).collect()
    }
}

async fn create_stream(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, body: Bytes) -> Response {
    sim.gate(MuxOp::CreateLiveStream, Method::POST, &headers, |sim| {
        let req: CreateStreamBody = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return invalid(format!("Invalid request body: {e}")),
        };
        let stream_policies = match policies(req.playback_policies, req.playback_policy) {
            Ok(p) => p,
            Err(msg) => return invalid(msg),
        };
        let asset_policies = match &req.new_asset_settings {
            Some(settings) => {
                let get = |k: &str| settings.get(k).cloned().and_then(|v| serde_json::from_value::<OneOrMany>(v).ok());
                match policies(get("playback_policies"), get("playback_policy")) {
                    Ok(p) => p,
                    Err(msg) => return invalid(msg),
                }
            }
            None => Vec::new(),
        };
        let latency_mode = req.latency_mode.unwrap_or_else(|| "standard".into());
        if !matches!(latency_mode.as_str(), "standard" | "reduced" | "low") {
            return invalid(format!("Invalid latency_mode: {latency_mode}"));
        }
        let default_window = if latency_mode == "standard" { 60.0 } else { 0.0 };
        let reconnect_window = req.reconnect_window.unwrap_or(default_window);
        if !(0.0..=1800.0).contains(&reconnect_window) {
            return invalid("reconnect_window must be between 0 and 1800");
        }
        if req.passthrough.as_ref().is_some_and(|p| p.len() > 255) {
            return invalid("passthrough must be at most 255 characters");
        }
        let max_continuous_duration = req.max_continuous_duration.unwrap_or(43_200);
        if !(60..=43_200).contains(&max_continuous_duration) {
            return invalid("max_continuous_duration must be between 60 and 43200");
        }
        let stream = Stream {
            id: random_id(32),
            stream_key: uuid::Uuid::new_v4().to_string(),
            passthrough: req.passthrough,
            playback_ids: playback_ids(&stream_policies),
            new_asset_settings: req.new_asset_settings,
            asset_policies,
            reconnect_window,
            latency_mode,
            max_continuous_duration,
            test: req.test.unwrap_or(false),
            created_at: crate::time::now_secs(),
            enabled: true,
            phase: IngestPhase::Idle,
            shown_active: false,
            active_asset_id: None,
            recent_asset_ids: Vec::new(),
            connection: None,
            epoch: 0,
        };
        let json = stream.json();
        sim.mutate(|st, _| {
            st.streams.push(stream);
            st.streams_created += 1;
        });
        data(StatusCode::CREATED, json)
    })
    .await
}

async fn list_streams(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Query(paging): Query<Paging>) -> Response {
    sim.gate(MuxOp::ListLiveStreams, Method::GET, &headers, |sim| {
        let st = lock(&sim.inner.state);
        // Newest first, as Mux lists.
        let all: Vec<Value> = st.streams.iter().rev().map(Stream::json).collect();
        data(StatusCode::OK, Value::Array(paging.apply(all)))
    })
    .await
}

async fn get_stream(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    sim.gate(MuxOp::GetLiveStream, Method::GET, &headers, |sim| {
        let st = lock(&sim.inner.state);
        match st.streams.iter().find(|s| s.id == id) {
            Some(s) => data(StatusCode::OK, s.json()),
            None => not_found(),
        }
    })
    .await
}

async fn complete_stream(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    sim.gate(MuxOp::CompleteLiveStream, Method::PUT, &headers, |sim| {
        sim.mutate(|st, fx| match st.stream_idx(&id) {
            Some(i) => {
                st.complete(i, fx);
                data(StatusCode::OK, json!({}))
            }
            None => not_found(),
        })
    })
    .await
}

async fn disable_stream(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    sim.gate(MuxOp::DisableLiveStream, Method::PUT, &headers, |sim| {
        sim.mutate(|st, fx| match st.stream_idx(&id) {
            Some(i) => {
                st.disable(i, fx);
                data(StatusCode::OK, json!({}))
            }
            None => not_found(),
        })
    })
    .await
}

async fn enable_stream(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    sim.gate(MuxOp::EnableLiveStream, Method::PUT, &headers, |sim| {
        sim.mutate(|st, fx| match st.stream_idx(&id) {
            Some(i) => {
                let s = &mut st.streams[i];
                if !s.enabled {
                    s.enabled = true;
                    fx.event("video.live_stream.enabled", "live_stream", &s.id, s.hook_json());
                }
                data(StatusCode::OK, json!({}))
            }
            None => not_found(),
        })
    })
    .await
}

async fn delete_stream(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    sim.gate(MuxOp::DeleteLiveStream, Method::DELETE, &headers, |sim| {
        sim.mutate(|st, fx| match st.stream_idx(&id) {
            Some(i) => {
                st.delete(i, fx);
                StatusCode::NO_CONTENT.into_response()
            }
            None => not_found(),
        })
    })
    .await
}

async fn list_assets(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Query(paging): Query<Paging>) -> Response {
    sim.gate(MuxOp::ListAssets, Method::GET, &headers, |sim| {
        let st = lock(&sim.inner.state);
        let all: Vec<Value> = st
            .assets
            .iter()
            .rev()
            .filter(|a| match (&paging.live_stream_id, &a.origin) {
                (None, _) => true,
                (Some(want), Origin::Live { stream_id }) => want == stream_id,
                (Some(_), Origin::Clip { .. }) => false,
            })
            .map(|a| a.json(st.cfg.media_time_scale))
            .collect();
        data(StatusCode::OK, Value::Array(paging.apply(all)))
    })
    .await
}

async fn get_asset(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    sim.gate(MuxOp::GetAsset, Method::GET, &headers, |sim| {
        let st = lock(&sim.inner.state);
        match st.assets.iter().find(|a| a.id == id) {
            Some(a) => data(StatusCode::OK, a.json(st.cfg.media_time_scale)),
            None => not_found(),
        }
    })
    .await
}

async fn delete_asset(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    sim.gate(MuxOp::DeleteAsset, Method::DELETE, &headers, |sim| {
        sim.mutate(|st, fx| match st.assets.iter().position(|a| a.id == id) {
            Some(i) => {
                let a = st.assets.remove(i);
                fx.event("video.asset.deleted", "asset", &a.id, json!({"id": a.id}));
                StatusCode::NO_CONTENT.into_response()
            }
            None => not_found(),
        })
    })
    .await
}

#[derive(Deserialize)]
struct ClipInputBody {
    url: String,
    #[serde(default)]
    start_time: Option<f64>,
    #[serde(default)]
    end_time: Option<f64>,
}

#[derive(Deserialize)]
struct CreateAssetRequest {
    #[serde(default)]
    inputs: Option<Vec<ClipInputBody>>,
    /// Deprecated name for `inputs`.
    #[serde(default)]
    input: Option<Vec<ClipInputBody>>,
    #[serde(default)]
    playback_policies: Option<OneOrMany>,
    #[serde(default)]
    playback_policy: Option<OneOrMany>,
    #[serde(default)]
    passthrough: Option<String>,
}

async fn create_asset(AxumState(sim): AxumState<MuxSim>, headers: HeaderMap, body: Bytes) -> Response {
    sim.gate(MuxOp::CreateAsset, Method::POST, &headers, |sim| {
        let req: CreateAssetRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return invalid(format!("Invalid request body: {e}")),
        };
        let policies = match policies(req.playback_policies, req.playback_policy) {
            Ok(p) => p,
            Err(msg) => return invalid(msg),
        };
        let Some(input) = req.inputs.or(req.input).and_then(|v| v.into_iter().next()) else {
            return invalid("inputs is required");
        };
        let Some(source) = input.url.strip_prefix("mux://assets/").map(str::to_owned) else {
            return invalid("the simulator only creates clips: inputs[0].url must be mux://assets/{id}");
        };
        sim.mutate(|st, fx| {
            let scale = st.cfg.media_time_scale;
            let Some(src) = st.assets.iter().find(|a| a.id == source) else {
                return invalid(format!("Source asset {source} not found"));
            };
            if src.status == AssetStatus::Errored {
                return invalid("Source asset is errored");
            }
            let Some(duration) = src.duration(scale) else {
                return invalid("Source asset has no media yet");
            };
            let start = input.start_time.unwrap_or(0.0);
            let end = input.end_time.unwrap_or(duration);
            if start < 0.0 || start + 0.5 >= end || end > duration {
                return invalid(format!(
                    "Clip must satisfy start_time + 0.5 < end_time <= duration \
                     (start_time {start}, end_time {end}, duration {duration:.3})"
                ));
            }
            let fault = st.faults.take_asset(AssetKind::Clip);
            let clip = AssetRec {
                id: random_id(32),
                created_at: crate::time::now_secs(),
                status: AssetStatus::Preparing,
                playback_ids: playback_ids(&policies),
                passthrough: req.passthrough,
                origin: Origin::Clip { source, start, end },
                is_live: false,
                segments: Vec::new(),
                open_segment: None,
                fault,
                errors: None,
            };
            let id = clip.id.clone();
            let json = clip.json(scale);
            fx.event("video.asset.created", "asset", &id, clip.hook_json(scale));
            st.assets.push(clip);
            if fault != Some(AssetFault::StuckPreparing) {
                fx.later(st.cfg.clip_prepare_delay, move |st, fx| {
                    let scale = st.cfg.media_time_scale;
                    let Some(clip) = st.assets.iter_mut().find(|a| a.id == id) else {
                        return;
                    };
                    if clip.fault == Some(AssetFault::Errored) {
                        clip.error("invalid_input", "The clip could not be prepared");
                        fx.event("video.asset.errored", "asset", &id, clip.hook_json(scale));
                    } else {
                        clip.status = AssetStatus::Ready;
                        fx.event("video.asset.ready", "asset", &id, clip.hook_json(scale));
                    }
                });
            }
            data(StatusCode::CREATED, json)
        })
    })
    .await
}

async fn sim_state(AxumState(sim): AxumState<MuxSim>) -> Response {
    Json(json!({"live_streams": sim.live_streams(), "assets": sim.assets()})).into_response()
}

impl Stream {
    fn status(&self) -> LiveStreamStatus {
        if !self.enabled {
            LiveStreamStatus::Disabled
        } else if self.shown_active {
            LiveStreamStatus::Active
        } else {
            LiveStreamStatus::Idle
        }
    }

    fn json(&self) -> Value {
        let status = match self.status() {
            LiveStreamStatus::Active => "active",
            LiveStreamStatus::Disabled => "disabled",
            _ => "idle",
        };
        let mut v = json!({
            "id": self.id,
            "stream_key": self.stream_key,
            "status": status,
            "playback_ids": playback_ids_json(&self.playback_ids),
            "reconnect_window": self.reconnect_window,
            "latency_mode": self.latency_mode,
            "max_continuous_duration": self.max_continuous_duration,
            "created_at": self.created_at.to_string(),
        });
        let obj = v.as_object_mut().expect("object literal");
        if let Some(settings) = &self.new_asset_settings {
            obj.insert("new_asset_settings".into(), settings.clone());
        }
        if let Some(p) = &self.passthrough {
            obj.insert("passthrough".into(), json!(p));
        }
        if self.test {
            obj.insert("test".into(), json!(true));
        }
        if let Some(a) = &self.active_asset_id {
            obj.insert("active_asset_id".into(), json!(a));
        }
        if !self.recent_asset_ids.is_empty() {
            obj.insert("recent_asset_ids".into(), json!(self.recent_asset_ids));
        }
        if self.connection.is_some() {
            obj.insert("active_ingest_protocol".into(), json!("rtmp"));
        }
        v
    }

    /// Webhook `data`: the REST shape with `created_at` as a number, plus
    /// the undocumented `connected`/`recording` flags (mux-go#39).
    fn hook_json(&self) -> Value {
        let mut v = self.json();
        v["created_at"] = json!(self.created_at);
        v["connected"] = json!(self.connection.is_some());
        v["recording"] = json!(matches!(self.phase, IngestPhase::Recording | IngestPhase::Active));
        v
    }
}

impl AssetRec {
    fn recorded(&self) -> Duration {
        let closed: Duration = self.segments.iter().map(|(_, d)| *d).sum();
        closed + self.open_segment.map(|(_, at)| at.elapsed()).unwrap_or_default()
    }

    /// Media seconds, once there are any.
    fn duration(&self, scale: f64) -> Option<f64> {
        match &self.origin {
            Origin::Clip { start, end, .. } => (self.status == AssetStatus::Ready).then_some(end - start),
            Origin::Live { .. } => {
                let recorded = self.recorded();
                (self.status == AssetStatus::Ready && !recorded.is_zero())
                    .then(|| (recorded.as_secs_f64() * scale * 1000.0).round() / 1000.0)
            }
        }
    }

    fn close_segment(&mut self) {
        if let Some((wall, at)) = self.open_segment.take() {
            self.segments.push((wall, at.elapsed()));
        }
    }

    fn error(&mut self, kind: &str, message: &str) {
        self.status = AssetStatus::Errored;
        self.errors = Some((kind.into(), vec![message.into()]));
    }

    fn json(&self, scale: f64) -> Value {
        let status = match self.status {
            AssetStatus::Ready => "ready",
            AssetStatus::Errored => "errored",
            _ => "preparing",
        };
        let progress = match (self.status, self.is_live) {
            (AssetStatus::Errored, _) => json!({"state": "errored", "progress": -1}),
            (_, true) => json!({"state": "live", "progress": -1}),
            (AssetStatus::Ready, false) => json!({"state": "completed", "progress": 100}),
            _ => json!({"state": "transcoding", "progress": 0}),
        };
        let mut v = json!({
            "id": self.id,
            "created_at": self.created_at.to_string(),
            "status": status,
            "playback_ids": playback_ids_json(&self.playback_ids),
            "progress": progress,
            "master_access": "none",
            "mp4_support": "none",
            "max_resolution_tier": "1080p",
            "encoding_tier": "smart",
            "video_quality": "plus",
        });
        let obj = v.as_object_mut().expect("object literal");
        if let Some(d) = self.duration(scale) {
            obj.insert("duration".into(), json!(d));
        }
        if let Some(p) = &self.passthrough {
            obj.insert("passthrough".into(), json!(p));
        }
        match &self.origin {
            Origin::Live { stream_id } => {
                obj.insert("is_live".into(), json!(self.is_live));
                obj.insert("live_stream_id".into(), json!(stream_id));
                obj.insert("ingest_type".into(), json!("live_rtmp"));
                let mut times: Vec<Value> =
                    self.segments.iter().map(|(wall, d)| recording_time(*wall, d.as_secs_f64() * scale)).collect();
                if let Some((wall, at)) = self.open_segment {
                    times.push(recording_time(wall, at.elapsed().as_secs_f64() * scale));
                }
                obj.insert("recording_times".into(), Value::Array(times));
            }
            Origin::Clip { source, .. } => {
                obj.insert("ingest_type".into(), json!("on_demand_clip"));
                obj.insert("source_asset_id".into(), json!(source));
            }
        }
        if let Some((kind, messages)) = &self.errors {
            obj.insert("errors".into(), json!({"type": kind, "messages": messages}));
        }
        v
    }

    fn hook_json(&self, scale: f64) -> Value {
        let mut v = self.json(scale);
        v["created_at"] = json!(self.created_at);
        v
    }
}

fn recording_time(started: SystemTime, duration: f64) -> Value {
    json!({
        "started_at": humantime::format_rfc3339_seconds(started).to_string(),
        "duration": (duration * 1000.0).round() / 1000.0,
        "type": "content",
    })
}

impl State {
    fn stream_idx(&self, id: &str) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    fn asset_mut(&mut self, id: Option<&String>) -> Option<&mut AssetRec> {
        let id = id?;
        self.assets.iter_mut().find(|a| &a.id == id)
    }

    fn stream_event(&self, i: usize, kind: &str, fx: &mut Effects) {
        let s = &self.streams[i];
        fx.event(kind, "live_stream", &s.id, s.hook_json());
    }

    fn asset_event(&self, id: Option<&String>, kind: &str, fx: &mut Effects) {
        if let Some(a) = id.and_then(|id| self.assets.iter().find(|a| &a.id == id)) {
            fx.event(kind, "asset", &a.id, a.hook_json(self.cfg.media_time_scale));
        }
    }

    fn connect(
        &mut self,
        key: &str,
        notify: mpsc::UnboundedSender<IngestDropped>,
        fx: &mut Effects,
    ) -> Result<u64, IngestRefused> {
        let i = self.streams.iter().position(|s| s.stream_key == key).ok_or(IngestRefused::UnknownKey)?;
        if !self.streams[i].enabled {
            return Err(IngestRefused::Disabled);
        }
        if self.streams[i].connection.is_some() {
            return Err(IngestRefused::AlreadyConnected);
        }
        self.next_connection += 1;
        let conn = self.next_connection;
        self.attach(i, conn, notify, fx);
        Ok(conn)
    }

    /// The encoder of an interrupted connection comes back, unless it hung
    /// up meanwhile; refused like a new connection would be (the egress side
    /// hears of it as a dropped stream).
    fn resume(&mut self, conn: u64, fx: &mut Effects) {
        let Some((key, notify)) = self.interrupted.remove(&conn) else { return };
        let usable = self
            .streams
            .iter()
            .position(|s| s.stream_key == key)
            .filter(|&i| self.streams[i].enabled && self.streams[i].connection.is_none());
        match usable {
            Some(i) => self.attach(i, conn, notify, fx),
            None => fx.drops.push((notify, IngestDropped { connection: conn })),
        }
    }

    fn attach(&mut self, i: usize, conn: u64, notify: mpsc::UnboundedSender<IngestDropped>, fx: &mut Effects) {
        self.connections.insert(conn, Connection { stream_id: self.streams[i].id.clone(), notify });
        let ingest_fault = self.faults.take_ingest();
        self.streams[i].connection = Some(conn);
        match self.streams[i].phase {
            IngestPhase::Disconnected if self.streams[i].shown_active => {
                // Back inside the reconnect window: same asset, straight back to active.
                let s = &mut self.streams[i];
                s.phase = IngestPhase::Active;
                s.epoch += 1;
                let asset = s.active_asset_id.clone();
                if let Some(a) = self.asset_mut(asset.as_ref()) {
                    a.open_segment = Some((SystemTime::now(), Instant::now()));
                }
                self.stream_event(i, "video.live_stream.connected", fx);
                self.stream_event(i, "video.live_stream.active", fx);
            }
            IngestPhase::Disconnected => {
                let s = &mut self.streams[i];
                s.phase = IngestPhase::Connected;
                s.epoch += 1;
                self.stream_event(i, "video.live_stream.connected", fx);
                self.schedule_recording(i, fx);
            }
            _ if ingest_fault == Some(IngestFault::StuckIdle) => {}
            _ => {
                let asset_fault = self.faults.take_asset(AssetKind::LiveRecording);
                let s = &mut self.streams[i];
                let asset = AssetRec {
                    id: random_id(32),
                    created_at: crate::time::now_secs(),
                    status: AssetStatus::Preparing,
                    playback_ids: playback_ids(&s.asset_policies),
                    passthrough: s
                        .new_asset_settings
                        .as_ref()
                        .and_then(|n| n.get("passthrough"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    origin: Origin::Live { stream_id: s.id.clone() },
                    is_live: true,
                    segments: Vec::new(),
                    open_segment: None,
                    fault: asset_fault,
                    errors: None,
                };
                s.active_asset_id = Some(asset.id.clone());
                s.recent_asset_ids.push(asset.id.clone());
                // Mux keeps the ten most recent.
                let excess = s.recent_asset_ids.len().saturating_sub(10);
                s.recent_asset_ids.drain(..excess);
                s.phase = IngestPhase::Connected;
                s.epoch += 1;
                let asset_id = asset.id.clone();
                self.assets.push(asset);
                self.stream_event(i, "video.live_stream.connected", fx);
                self.asset_event(Some(&asset_id), "video.asset.created", fx);
                if ingest_fault != Some(IngestFault::OnlyConnected) {
                    self.schedule_recording(i, fx);
                }
            }
        }
    }

    /// connected → recording → active, each step guarded by the epoch.
    fn schedule_recording(&self, i: usize, fx: &mut Effects) {
        let (stream_id, epoch) = (self.streams[i].id.clone(), self.streams[i].epoch);
        fx.later(self.cfg.connect_to_recording, move |st, fx| {
            let Some(i) = st.stream_idx(&stream_id) else {
                return;
            };
            let s = &mut st.streams[i];
            if s.epoch != epoch || s.phase != IngestPhase::Connected {
                return;
            }
            s.phase = IngestPhase::Recording;
            s.epoch += 1;
            let epoch = s.epoch;
            let asset = s.active_asset_id.clone();
            if let Some(a) = st.asset_mut(asset.as_ref()) {
                a.open_segment = Some((SystemTime::now(), Instant::now()));
            }
            st.stream_event(i, "video.live_stream.recording", fx);
            fx.later(st.cfg.recording_to_active, move |st, fx| {
                let Some(i) = st.stream_idx(&stream_id) else {
                    return;
                };
                let s = &mut st.streams[i];
                if s.epoch != epoch || s.phase != IngestPhase::Recording {
                    return;
                }
                s.phase = IngestPhase::Active;
                s.shown_active = true;
                s.epoch += 1;
                let asset = s.active_asset_id.clone();
                st.stream_event(i, "video.live_stream.active", fx);
                let became = match st.asset_mut(asset.as_ref()) {
                    Some(a) => match a.fault {
                        None => {
                            a.status = AssetStatus::Ready;
                            Some("video.asset.ready")
                        }
                        Some(AssetFault::Errored) => {
                            a.error("invalid_input", "The live recording could not be processed");
                            Some("video.asset.errored")
                        }
                        Some(AssetFault::StuckPreparing) => None,
                    },
                    None => None,
                };
                if let Some(kind) = became {
                    st.asset_event(asset.as_ref(), kind, fx);
                }
            });
        });
    }

    fn disconnect(&mut self, conn: u64, fx: &mut Effects) {
        self.interrupted.remove(&conn);
        let Some(c) = self.connections.remove(&conn) else {
            return;
        };
        let Some(i) = self.stream_idx(&c.stream_id) else {
            return;
        };
        self.streams[i].connection = None;
        if matches!(self.streams[i].phase, IngestPhase::Idle | IngestPhase::Disconnected) {
            return;
        }
        let s = &mut self.streams[i];
        s.phase = IngestPhase::Disconnected;
        s.epoch += 1;
        let (stream_id, epoch) = (s.id.clone(), s.epoch);
        let window = self.cfg.reconnect_window_override.unwrap_or_else(|| Duration::from_secs_f64(s.reconnect_window));
        let asset = s.active_asset_id.clone();
        if let Some(a) = self.asset_mut(asset.as_ref()) {
            a.close_segment();
        }
        self.stream_event(i, "video.live_stream.disconnected", fx);
        if window.is_zero() {
            self.go_idle(i, fx);
            return;
        }
        fx.later(window, move |st, fx| {
            let Some(i) = st.stream_idx(&stream_id) else {
                return;
            };
            if st.streams[i].epoch == epoch && st.streams[i].phase == IngestPhase::Disconnected {
                st.go_idle(i, fx);
            }
        });
    }

    /// The recording ends: the stream is idle and its asset final.
    fn go_idle(&mut self, i: usize, fx: &mut Effects) {
        let s = &mut self.streams[i];
        let was_idle = s.phase == IngestPhase::Idle;
        s.phase = IngestPhase::Idle;
        s.shown_active = false;
        s.epoch += 1;
        let asset = s.active_asset_id.take();
        if was_idle {
            return;
        }
        if let Some(a) = self.asset_mut(asset.as_ref()) {
            a.close_segment();
            a.is_live = false;
            if a.status == AssetStatus::Preparing && a.fault.is_none() {
                a.status = AssetStatus::Ready;
            }
        }
        self.stream_event(i, "video.live_stream.idle", fx);
        self.asset_event(asset.as_ref(), "video.asset.live_stream_completed", fx);
    }

    /// Mux hangs up on the encoder and tells the egress side.
    fn drop_connection(&mut self, conn: u64, fx: &mut Effects) {
        let Some(c) = self.connections.remove(&conn) else {
            return;
        };
        if let Some(i) = self.stream_idx(&c.stream_id) {
            self.streams[i].connection = None;
        }
        fx.drops.push((c.notify, IngestDropped { connection: conn }));
    }

    fn complete(&mut self, i: usize, fx: &mut Effects) {
        if self.streams[i].phase != IngestPhase::Idle {
            self.go_idle(i, fx);
        }
        if let Some(conn) = self.streams[i].connection {
            fx.later(self.cfg.complete_encoder_grace, move |st, fx| st.drop_connection(conn, fx));
        }
    }

    fn disable(&mut self, i: usize, fx: &mut Effects) {
        if let Some(conn) = self.streams[i].connection {
            self.drop_connection(conn, fx);
        }
        if self.streams[i].phase != IngestPhase::Idle {
            self.go_idle(i, fx);
        }
        if self.streams[i].enabled {
            self.streams[i].enabled = false;
            self.stream_event(i, "video.live_stream.disabled", fx);
        }
    }

    fn delete(&mut self, i: usize, fx: &mut Effects) {
        if let Some(conn) = self.streams[i].connection {
            self.drop_connection(conn, fx);
        }
        if self.streams[i].phase != IngestPhase::Idle {
            self.go_idle(i, fx);
        }
        self.stream_event(i, "video.live_stream.deleted", fx);
        self.streams.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_bucket_allows_a_burst_then_refills() {
        let limit = RateLimit { burst: 2, refill_every: Duration::from_millis(50) };
        let mut bucket = Bucket { limit, tokens: 2.0, at: Instant::now() };
        assert_eq!(bucket.take(), None);
        assert_eq!(bucket.take(), None);
        let wait = bucket.take().expect("third call is limited");
        assert!(wait <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(bucket.take(), None);
    }

    #[test]
    fn basic_auth_is_checked_exactly() {
        let mut h = HeaderMap::new();
        let good = base64::engine::general_purpose::STANDARD.encode("id:secret");
        h.insert(header::AUTHORIZATION, format!("Basic {good}").parse().unwrap());
        assert!(basic_auth_matches(&h, "id:secret"));
        assert!(!basic_auth_matches(&h, "id:other"));
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(!basic_auth_matches(&h, "id:secret"));
    }
}
