//! The LiveKit Egress simulator: Twirp `livekit.Egress/{StartWebEgress,
//! ListEgress, StopEgress, UpdateStream}` in both encodings, Bearer-JWT auth
//! with `video.roomRecord`, the egress state machine, and webhooks sent the
//! way the real server sends them.
//!
//! Egress (research §3): STARTING → ACTIVE (after the start delay; stream
//! outputs connect over the RTMP bus) → ENDING (StopEgress) → COMPLETE.
//! Side exits: STARTING → ABORTED (stop before start, or no start signal),
//! → FAILED (every stream refused or dropped, or a pipeline fault),
//! ACTIVE → LIMIT_REACHED. Webhooks: `egress_started` at create,
//! `egress_updated` on ACTIVE and ENDING, `egress_ended` on any terminal.
//!
//! Locking: this simulator's lock is never held while calling the Mux
//! simulator; Mux reports drops through a channel. So neither can deadlock
//! the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use livekit_api::access_token::TokenVerifier;
use livekit_protocol as proto;
use proto::EgressStatus;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::bus::{IngestDropped, mux_stream_key, redact_stream_url};
use super::common::{lock, lose, random_id};
use super::faults::{EgressFault, Faults, HoldOn, TwirpFault, TwirpMethod, WebhookFault};
use super::hooks::{SignedWebhook, sign_webhook};
use super::mux::MuxSim;
use super::outbox::{DeliveryOutcome, DeliveryPolicy, Dispatch, Outbox, SentWebhook};
use super::twirp::{self, Encoding, Shape, TwirpError};
use crate::time::{now_nanos, now_secs};

#[derive(Debug, Clone)]
pub struct LiveKitSimConfig {
    pub api_key: String,
    pub api_secret: String,
    /// STARTING → ACTIVE (the real one: a few seconds, the page has to load).
    pub egress_start_delay: Duration,
    /// ENDING → COMPLETE after StopEgress.
    pub egress_end_delay: Duration,
    /// Where webhooks go (`None`: only recorded, see [`LiveKitSim::webhooks`]).
    pub webhook_url: Option<String>,
    pub webhook_delivery: DeliveryPolicy,
}

impl Default for LiveKitSimConfig {
    /// `livekit-server --dev` credentials and real-world timings.
    fn default() -> Self {
        Self {
            api_key: "devkey".into(),
            api_secret: "secret".into(),
            egress_start_delay: Duration::from_secs(3),
            egress_end_delay: Duration::from_secs(2),
            webhook_url: None,
            webhook_delivery: DeliveryPolicy::default(),
        }
    }
}

impl LiveKitSimConfig {
    /// Millisecond timings for tests.
    pub fn fast() -> Self {
        Self {
            egress_start_delay: Duration::from_millis(20),
            egress_end_delay: Duration::from_millis(20),
            webhook_delivery: DeliveryPolicy {
                attempts: 3,
                retry_delay: Duration::from_millis(20),
                timeout: Duration::from_secs(2),
            },
            ..Self::default()
        }
    }
}

/// An egress as the simulator holds it, for test assertions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgressSnapshot {
    pub egress_id: String,
    pub status: EgressStatus,
    /// The recorded page.
    pub web_url: Option<String>,
    /// Output URLs unredacted, in output order.
    pub stream_urls: Vec<String>,
    /// Outputs with a live encoder connection on the RTMP bus.
    pub connected_streams: usize,
    pub error: String,
    pub error_code: i32,
    /// What the API returns (stream keys redacted).
    pub info: proto::EgressInfo,
}

impl EgressSnapshot {
    /// STARTING, ACTIVE or ENDING: still holding an egress worker.
    pub fn is_active(&self) -> bool {
        is_running(self.status)
    }
}

fn is_running(status: EgressStatus) -> bool {
    matches!(status, EgressStatus::EgressStarting | EgressStatus::EgressActive | EgressStatus::EgressEnding)
}

/// The LiveKit simulator. Cloning shares state.
#[derive(Clone)]
pub struct LiveKitSim {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: LiveKitSimConfig,
    faults: Faults,
    mux: Option<MuxSim>,
    outbox: Outbox,
    drops: mpsc::UnboundedSender<IngestDropped>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    egresses: Vec<EgressRec>,
    rooms: HashMap<String, RoomRec>,
}

struct EgressRec {
    info: proto::EgressInfo,
    outputs: Vec<Output>,
    fault: Option<EgressFault>,
    /// Bumped on every status change; a timer armed under an older epoch is stale.
    epoch: u64,
}

struct Output {
    url: String,
    connection: Option<u64>,
}

struct RoomRec {
    sid: String,
    created_ms: i64,
    participants: HashMap<String, (String, i64)>,
}

impl EgressRec {
    fn status(&self) -> EgressStatus {
        EgressStatus::try_from(self.info.status).unwrap_or(EgressStatus::EgressStarting)
    }

    fn set_status(&mut self, status: EgressStatus) {
        self.info.status = status as i32;
        self.info.updated_at = now_nanos();
        self.epoch += 1;
    }

    /// Moves to a terminal state; returns the encoder connections to hang up.
    fn finish(&mut self, status: EgressStatus, error: &str, error_code: i32, details: &str) -> Vec<u64> {
        let now = now_nanos();
        self.set_status(status);
        self.info.error = error.into();
        self.info.error_code = error_code;
        self.info.details = details.into();
        self.info.ended_at = now;
        let stream_status = if status == EgressStatus::EgressFailed {
            proto::stream_info::Status::Failed
        } else {
            proto::stream_info::Status::Finished
        };
        for result in &mut self.info.stream_results {
            if result.status == proto::stream_info::Status::Active as i32 {
                result.status = stream_status as i32;
                end_stream(result, now);
                if status == EgressStatus::EgressFailed {
                    result.error = error.into();
                }
            }
        }
        self.outputs.iter_mut().filter_map(|o| o.connection.take()).collect()
    }

    fn active_streams(&self) -> usize {
        self.info.stream_results.iter().filter(|r| r.status == proto::stream_info::Status::Active as i32).count()
    }
}

fn end_stream(result: &mut proto::StreamInfo, now: i64) {
    result.ended_at = now;
    if result.started_at > 0 {
        result.duration = now - result.started_at;
    }
}

const ALL_STREAMS_STOPPED: &str = "All streams stopped";

impl LiveKitSim {
    /// Must be called inside a tokio runtime. `mux` links the RTMP bus;
    /// without it every stream output is accepted as an external endpoint.
    pub fn new(cfg: LiveKitSimConfig, faults: Faults, mux: Option<MuxSim>) -> Self {
        let (drops, mut drop_rx) = mpsc::unbounded_channel::<IngestDropped>();
        let outbox = Outbox::spawn(cfg.webhook_url.clone(), cfg.webhook_delivery);
        let inner = Arc::new(Inner { cfg, faults, mux, outbox, drops, state: Mutex::default() });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(dropped) = drop_rx.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                LiveKitSim { inner }.on_ingest_dropped(dropped.connection);
            }
        });
        Self { inner }
    }

    /// `POST /twirp/livekit.Egress/*`, plus test helpers under
    /// `/_sim/livekit/`. Mount at the root: LiveKit SDKs replace the URL path
    /// with `/twirp/…`. No fallback, so it merges into another app's router.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/twirp/livekit.Egress/{method}", post(twirp_call))
            .route(
                "/twirp/{*rest}",
                any(|| async { twirp::error(StatusCode::NOT_FOUND, "bad_route", "no handler for this path") }),
            )
            .route("/_sim/livekit/state", get(sim_state))
            .route("/_sim/livekit/webhook-sample", get(webhook_sample))
            .route("/_sim/livekit/participants", post(participant_event))
            .with_state(self.clone())
    }

    pub fn egresses(&self) -> Vec<EgressSnapshot> {
        let st = lock(&self.inner.state);
        st.egresses
            .iter()
            .map(|e| EgressSnapshot {
                egress_id: e.info.egress_id.clone(),
                status: e.status(),
                web_url: crate::livekit::web_url(&e.info).map(str::to_owned),
                stream_urls: e.outputs.iter().map(|o| o.url.clone()).collect(),
                connected_streams: e.outputs.iter().filter(|o| o.connection.is_some()).count(),
                error: e.info.error.clone(),
                error_code: e.info.error_code,
                info: e.info.clone(),
            })
            .collect()
    }

    /// Egresses still STARTING, ACTIVE or ENDING.
    pub fn active_egresses(&self) -> Vec<EgressSnapshot> {
        self.egresses().into_iter().filter(EgressSnapshot::is_active).collect()
    }

    /// Every webhook produced so far, in order, with its delivery outcome.
    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.inner.outbox.log()
    }

    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.outbox.set_target(url);
    }

    /// Sends `participant_joined` for `identity` in `room` (the room is
    /// created on first use).
    pub fn participant_joined(&self, room: &str, identity: &str, name: &str) {
        self.participant_event(ParticipantChange::Joined, room, identity, name);
    }

    /// Sends `participant_left`.
    pub fn participant_left(&self, room: &str, identity: &str, name: &str) {
        self.participant_event(ParticipantChange::Left, room, identity, name);
    }

    fn participant_event(&self, change: ParticipantChange, room: &str, identity: &str, name: &str) {
        let mut st = lock(&self.inner.state);
        let now_ms = now_nanos() / 1_000_000;
        let rec = st.rooms.entry(room.to_owned()).or_insert_with(|| RoomRec {
            sid: format!("RM_{}", random_id(12)),
            created_ms: now_ms,
            participants: HashMap::new(),
        });
        let (sid, joined_ms) = match change {
            ParticipantChange::Joined => {
                let entry = (format!("PA_{}", random_id(12)), now_ms);
                rec.participants.insert(identity.to_owned(), entry.clone());
                entry
            }
            ParticipantChange::Left => {
                rec.participants.remove(identity).unwrap_or_else(|| (format!("PA_{}", random_id(12)), now_ms))
            }
        };
        let event = participant_webhook(change, room, rec, &sid, joined_ms, identity, name);
        self.emit(event);
    }

    /// Signs and queues one webhook, applying any armed webhook fault.
    fn emit(&self, mut event: proto::WebhookEvent) {
        event.id = format!("EV_{}", random_id(12));
        event.created_at = i64::try_from(now_secs()).unwrap_or(i64::MAX);
        let body = match serde_json::to_string(&event) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "could not serialise a simulated webhook");
                return;
            }
        };
        let fault = self.inner.faults.take_webhook();
        let SignedWebhook { body, authorization } =
            sign_webhook(&self.inner.cfg.api_key, &self.inner.cfg.api_secret, body, fault);
        let entry = SentWebhook {
            event: event.event.clone(),
            id: event.id.clone(),
            body,
            signature: authorization.clone(),
            outcome: DeliveryOutcome::Pending,
        };
        let headers = vec![
            ("content-type", "application/webhook+json".to_owned()),
            ("user-agent", "LiveKit".to_owned()),
            ("authorization", authorization),
        ];
        let copies = if fault == Some(WebhookFault::Duplicate) { 2 } else { 1 };
        let dispatch = if fault == Some(WebhookFault::Drop) { Dispatch::Drop } else { Dispatch::Deliver };
        for _ in 0..copies {
            self.inner.outbox.push(entry.clone(), headers.clone(), dispatch);
        }
    }

    fn egress_hook(&self, event: &str, info: &proto::EgressInfo) {
        self.emit(proto::WebhookEvent { event: event.into(), egress_info: Some(info.clone()), ..Default::default() });
    }

    fn later(&self, after: Duration, f: impl FnOnce(&LiveKitSim) + Send + 'static) {
        let sim = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            f(&sim);
        });
    }

    fn hang_up(&self, connections: Vec<u64>) {
        if let Some(mux) = &self.inner.mux {
            for c in connections {
                mux.rtmp_disconnect(c);
            }
        }
    }

    /// Connects one output over the bus: `Ok(Some(conn))` on a Mux stream,
    /// `Ok(None)` for an endpoint outside the simulation, `Err` if refused.
    fn dial(&self, url: &str) -> Result<Option<u64>, String> {
        match (&self.inner.mux, mux_stream_key(url)) {
            (Some(mux), Some(key)) => {
                mux.rtmp_connect(key, self.inner.drops.clone()).map(Some).map_err(|e| e.to_string())
            }
            _ => Ok(None),
        }
    }

    fn start_web_egress(&self, req: proto::WebEgressRequest) -> Result<proto::EgressInfo, TwirpError> {
        if req.url.is_empty() {
            return Err(TwirpError::new(StatusCode::BAD_REQUEST, "invalid_argument", "url is required"));
        }
        let mut urls: Vec<String> = req.stream_outputs.iter().flat_map(|o| o.urls.iter().cloned()).collect();
        if urls.is_empty() {
            urls = legacy_stream_urls(&req.output);
        }
        let has_output = !urls.is_empty()
            || !req.file_outputs.is_empty()
            || !req.segment_outputs.is_empty()
            || !req.image_outputs.is_empty()
            || req.output.is_some();
        if !has_output {
            return Err(TwirpError::new(StatusCode::BAD_REQUEST, "invalid_argument", "no outputs provided"));
        }
        let mut shown = req;
        for output in &mut shown.stream_outputs {
            output.urls = output.urls.iter().map(|u| redact_stream_url(u)).collect();
        }
        redact_legacy_stream(&mut shown.output);
        let info = proto::EgressInfo {
            egress_id: format!("EG_{}", random_id(12)),
            source_type: proto::EgressSourceType::Web as i32,
            status: EgressStatus::EgressStarting as i32,
            updated_at: now_nanos(),
            request: Some(proto::egress_info::Request::Web(shown)),
            ..Default::default()
        };
        let fault = self.inner.faults.take_egress();
        let rec = EgressRec {
            info: info.clone(),
            outputs: urls.into_iter().map(|url| Output { url, connection: None }).collect(),
            fault,
            epoch: 0,
        };
        {
            let mut st = lock(&self.inner.state);
            st.egresses.push(rec);
            self.egress_hook("egress_started", &info);
        }
        if fault != Some(EgressFault::StuckStarting) {
            let id = info.egress_id.clone();
            self.later(self.inner.cfg.egress_start_delay, move |sim| sim.activate(&id, 0));
        }
        Ok(info)
    }

    /// STARTING → ACTIVE: dial every output (outside the lock), then record
    /// the outcome, unless the egress moved on in the meantime.
    fn activate(&self, id: &str, epoch: u64) {
        let urls = {
            let mut st = lock(&self.inner.state);
            let Some(rec) = st.egresses.iter_mut().find(|e| e.info.egress_id == id) else {
                return;
            };
            if rec.epoch != epoch || rec.status() != EgressStatus::EgressStarting {
                return;
            }
            if rec.fault == Some(EgressFault::AbortStartSignal) {
                rec.finish(EgressStatus::EgressAborted, "Start signal not received", 412, "");
                let info = rec.info.clone();
                self.egress_hook("egress_ended", &info);
                return;
            }
            rec.outputs.iter().map(|o| o.url.clone()).collect::<Vec<_>>()
        };
        let dialled: Vec<Result<Option<u64>, String>> = urls.iter().map(|u| self.dial(u)).collect();
        let mut orphaned = Vec::new();
        let mut follow_up = None;
        {
            let mut st = lock(&self.inner.state);
            let Some(rec) = st.egresses.iter_mut().find(|e| e.info.egress_id == id) else {
                return;
            };
            if rec.epoch != epoch || rec.status() != EgressStatus::EgressStarting {
                orphaned.extend(dialled.iter().filter_map(|r| r.clone().ok().flatten()));
            } else {
                let now = now_nanos();
                for (i, result) in dialled.into_iter().enumerate() {
                    let mut info =
                        proto::StreamInfo { url: redact_stream_url(&rec.outputs[i].url), ..Default::default() };
                    match result {
                        Ok(conn) => {
                            rec.outputs[i].connection = conn;
                            info.started_at = now;
                            info.status = proto::stream_info::Status::Active as i32;
                        }
                        Err(e) => {
                            info.status = proto::stream_info::Status::Failed as i32;
                            info.error = e;
                        }
                    }
                    rec.info.stream_results.push(info);
                }
                if !rec.outputs.is_empty() && rec.active_streams() == 0 {
                    rec.finish(
                        EgressStatus::EgressFailed,
                        ALL_STREAMS_STOPPED,
                        500,
                        &format!("End reason: {ALL_STREAMS_STOPPED}"),
                    );
                    let info = rec.info.clone();
                    self.egress_hook("egress_ended", &info);
                } else {
                    rec.set_status(EgressStatus::EgressActive);
                    rec.info.started_at = now;
                    let info = rec.info.clone();
                    self.egress_hook("egress_updated", &info);
                    follow_up = rec.fault.map(|f| (f, rec.epoch));
                }
            }
        }
        self.hang_up(orphaned);
        let id = id.to_owned();
        match follow_up {
            Some((EgressFault::FailMidStream { after }, epoch)) => self.later(after, move |sim| {
                sim.end_if_active(&id, epoch, EgressStatus::EgressFailed, "pipeline frozen", 500, "")
            }),
            Some((EgressFault::LimitReached { after }, epoch)) => self.later(after, move |sim| {
                sim.end_if_active(
                    &id,
                    epoch,
                    EgressStatus::EgressLimitReached,
                    "Session limit reached",
                    413,
                    "End reason: Limit reached",
                )
            }),
            _ => {}
        }
    }

    fn end_if_active(&self, id: &str, epoch: u64, status: EgressStatus, error: &str, code: i32, details: &str) {
        let conns = {
            let mut st = lock(&self.inner.state);
            let Some(rec) = st.egresses.iter_mut().find(|e| e.info.egress_id == id) else {
                return;
            };
            if rec.epoch != epoch || rec.status() != EgressStatus::EgressActive {
                return;
            }
            let conns = rec.finish(status, error, code, details);
            let info = rec.info.clone();
            self.egress_hook("egress_ended", &info);
            conns
        };
        self.hang_up(conns);
    }

    fn stop_egress(&self, id: &str) -> Result<proto::EgressInfo, TwirpError> {
        let (info, conns) = {
            let mut st = lock(&self.inner.state);
            let Some(rec) = st.egresses.iter_mut().find(|e| e.info.egress_id == id) else {
                return Err(not_found());
            };
            match rec.status() {
                EgressStatus::EgressStarting => {
                    let conns = rec.finish(
                        EgressStatus::EgressAborted,
                        "Stop called before pipeline could start",
                        412,
                        "End reason: StopEgress API",
                    );
                    let info = rec.info.clone();
                    self.egress_hook("egress_ended", &info);
                    (info, conns)
                }
                EgressStatus::EgressActive => {
                    rec.set_status(EgressStatus::EgressEnding);
                    let conns: Vec<u64> = rec.outputs.iter_mut().filter_map(|o| o.connection.take()).collect();
                    let info = rec.info.clone();
                    self.egress_hook("egress_updated", &info);
                    let epoch = rec.epoch;
                    let id = id.to_owned();
                    self.later(self.inner.cfg.egress_end_delay, move |sim| sim.complete(&id, epoch));
                    (info, conns)
                }
                other => {
                    return Err(TwirpError::new(
                        StatusCode::PRECONDITION_FAILED,
                        "failed_precondition",
                        format!("egress with status {} cannot be stopped", other.as_str_name()),
                    ));
                }
            }
        };
        self.hang_up(conns);
        Ok(info)
    }

    /// ENDING → COMPLETE.
    fn complete(&self, id: &str, epoch: u64) {
        let mut st = lock(&self.inner.state);
        let Some(rec) = st.egresses.iter_mut().find(|e| e.info.egress_id == id) else {
            return;
        };
        if rec.epoch != epoch || rec.status() != EgressStatus::EgressEnding {
            return;
        }
        rec.finish(EgressStatus::EgressComplete, "", 0, "End reason: StopEgress API");
        let info = rec.info.clone();
        self.egress_hook("egress_ended", &info);
    }

    fn list_egress(&self, req: &proto::ListEgressRequest) -> Result<proto::ListEgressResponse, TwirpError> {
        let st = lock(&self.inner.state);
        if !req.egress_id.is_empty() && !st.egresses.iter().any(|e| e.info.egress_id == req.egress_id) {
            return Err(not_found());
        }
        let items = st
            .egresses
            .iter()
            .filter(|e| req.egress_id.is_empty() || e.info.egress_id == req.egress_id)
            .filter(|e| req.room_name.is_empty() || e.info.room_name == req.room_name)
            .filter(|e| !req.active || is_running(e.status()))
            .map(|e| e.info.clone())
            .collect();
        Ok(proto::ListEgressResponse { items, next_page_token: None })
    }

    fn update_stream(&self, req: proto::UpdateStreamRequest) -> Result<proto::EgressInfo, TwirpError> {
        let removed = {
            let mut st = lock(&self.inner.state);
            let Some(rec) = st.egresses.iter_mut().find(|e| e.info.egress_id == req.egress_id) else {
                return Err(not_found());
            };
            if rec.status() != EgressStatus::EgressActive {
                return Err(TwirpError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "failed_precondition",
                    format!("egress with status {} cannot be updated", rec.status().as_str_name()),
                ));
            }
            let now = now_nanos();
            let mut removed = Vec::new();
            for url in &req.remove_output_urls {
                let found = rec.outputs.iter().position(|o| &o.url == url || &redact_stream_url(&o.url) == url);
                let Some(i) = found else { continue };
                if let Some(result) = rec.info.stream_results.get_mut(i)
                    && result.status == proto::stream_info::Status::Active as i32
                {
                    result.status = proto::stream_info::Status::Finished as i32;
                    end_stream(result, now);
                }
                removed.extend(rec.outputs[i].connection.take());
            }
            removed
        };
        self.hang_up(removed);
        let dialled: Vec<(String, Result<Option<u64>, String>)> =
            req.add_output_urls.iter().map(|u| (u.clone(), self.dial(u))).collect();
        let (info, orphaned) = {
            let mut st = lock(&self.inner.state);
            let Some(rec) = st.egresses.iter_mut().find(|e| e.info.egress_id == req.egress_id) else {
                return Err(not_found());
            };
            if rec.status() != EgressStatus::EgressActive {
                let orphaned = dialled.into_iter().filter_map(|(_, r)| r.ok().flatten()).collect();
                (rec.info.clone(), orphaned)
            } else {
                let now = now_nanos();
                for (url, result) in dialled {
                    let mut info = proto::StreamInfo { url: redact_stream_url(&url), ..Default::default() };
                    let connection = match result {
                        Ok(conn) => {
                            info.started_at = now;
                            info.status = proto::stream_info::Status::Active as i32;
                            conn
                        }
                        Err(e) => {
                            info.status = proto::stream_info::Status::Failed as i32;
                            info.error = e;
                            None
                        }
                    };
                    rec.outputs.push(Output { url, connection });
                    rec.info.stream_results.push(info);
                }
                if let Some(proto::egress_info::Request::Web(web)) = &mut rec.info.request {
                    let urls = rec.outputs.iter().map(|o| redact_stream_url(&o.url)).collect();
                    match web.stream_outputs.first_mut() {
                        Some(out) => out.urls = urls,
                        None => web
                            .stream_outputs
                            .push(proto::StreamOutput { protocol: proto::StreamProtocol::Rtmp as i32, urls }),
                    }
                }
                rec.info.updated_at = now;
                if rec.active_streams() == 0 {
                    // Removing the last stream ends the egress normally.
                    let orphaned =
                        rec.finish(EgressStatus::EgressComplete, "", 0, &format!("End reason: {ALL_STREAMS_STOPPED}"));
                    let info = rec.info.clone();
                    self.egress_hook("egress_ended", &info);
                    (info, orphaned)
                } else {
                    (rec.info.clone(), Vec::new())
                }
            }
        };
        self.hang_up(orphaned);
        Ok(info)
    }

    /// Mux hung up on one of our outputs.
    fn on_ingest_dropped(&self, connection: u64) {
        let mut st = lock(&self.inner.state);
        let found = st.egresses.iter_mut().find_map(|rec| {
            let i = rec.outputs.iter().position(|o| o.connection == Some(connection))?;
            Some((rec, i))
        });
        let Some((rec, i)) = found else { return };
        rec.outputs[i].connection = None;
        let now = now_nanos();
        if let Some(result) = rec.info.stream_results.get_mut(i) {
            result.status = proto::stream_info::Status::Failed as i32;
            result.error = "rtmp connection closed by the server".into();
            end_stream(result, now);
        }
        rec.info.updated_at = now;
        if rec.status() == EgressStatus::EgressActive && rec.active_streams() == 0 {
            rec.finish(
                EgressStatus::EgressFailed,
                ALL_STREAMS_STOPPED,
                500,
                &format!("End reason: {ALL_STREAMS_STOPPED}"),
            );
            let info = rec.info.clone();
            self.egress_hook("egress_ended", &info);
        }
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), TwirpError> {
        let unauthenticated = |msg: &str| TwirpError::new(StatusCode::UNAUTHORIZED, "unauthenticated", msg);
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthenticated("authorization header not set"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthenticated("invalid authorization header. Must start with Bearer "))?;
        let claims = TokenVerifier::with_api_key(&self.inner.cfg.api_key, &self.inner.cfg.api_secret)
            .verify(token.trim())
            .map_err(|_| unauthenticated("invalid token"))?;
        if !claims.video.room_record {
            return Err(unauthenticated("permissions denied"));
        }
        Ok(())
    }
}

/// The URLs of the deprecated single `stream` output of a web egress
/// request. Old clients send only it; the JS SDK sends it alongside
/// `stream_outputs`, so it counts only when `stream_outputs` is empty.
#[allow(deprecated)] // reading the legacy field is the point
fn legacy_stream_urls(output: &Option<proto::web_egress_request::Output>) -> Vec<String> {
    match output {
        Some(proto::web_egress_request::Output::Stream(legacy)) => legacy.urls.clone(),
        _ => Vec::new(),
    }
}

#[allow(deprecated)] // the legacy field is echoed back, so it is redacted too
fn redact_legacy_stream(output: &mut Option<proto::web_egress_request::Output>) {
    if let Some(proto::web_egress_request::Output::Stream(legacy)) = output {
        legacy.urls = legacy.urls.iter().map(|u| redact_stream_url(u)).collect();
    }
}

fn not_found() -> TwirpError {
    TwirpError::new(StatusCode::NOT_FOUND, "not_found", "egress does not exist")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParticipantChange {
    Joined,
    Left,
}

fn participant_webhook(
    change: ParticipantChange,
    room: &str,
    rec: &RoomRec,
    sid: &str,
    joined_ms: i64,
    identity: &str,
    name: &str,
) -> proto::WebhookEvent {
    let (event, state, reason) = match change {
        ParticipantChange::Joined => {
            ("participant_joined", proto::participant_info::State::Active, proto::DisconnectReason::UnknownReason)
        }
        ParticipantChange::Left => {
            ("participant_left", proto::participant_info::State::Disconnected, proto::DisconnectReason::ClientInitiated)
        }
    };
    proto::WebhookEvent {
        event: event.into(),
        room: Some(proto::Room {
            sid: rec.sid.clone(),
            name: room.into(),
            empty_timeout: 300,
            departure_timeout: 20,
            creation_time: rec.created_ms / 1000,
            creation_time_ms: rec.created_ms,
            num_participants: u32::try_from(rec.participants.len()).unwrap_or(u32::MAX),
            ..Default::default()
        }),
        participant: Some(proto::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            name: name.into(),
            state: state as i32,
            joined_at: joined_ms / 1000,
            joined_at_ms: joined_ms,
            disconnect_reason: reason as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn twirp_call(
    AxumState(sim): AxumState<LiveKitSim>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(rpc) = TwirpMethod::from_name(&method) else {
        return twirp::error(
            StatusCode::NOT_FOUND,
            "bad_route",
            format!("no handler for path \"/twirp/livekit.Egress/{method}\""),
        );
    };
    let Some(encoding) = Encoding::of(&headers) else {
        return twirp::error(StatusCode::NOT_FOUND, "bad_route", "unexpected Content-Type");
    };
    if let Err(e) = sim.authenticate(&headers) {
        return e.into_response();
    }
    let fault = sim.inner.faults.take_twirp(rpc);
    match fault {
        Some(TwirpFault::SlowThenUnavailable { delay }) => {
            tokio::time::sleep(delay).await;
            return twirp::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "no response from servers");
        }
        Some(TwirpFault::ResourceExhausted) => {
            return twirp::error(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", "resource exhausted");
        }
        Some(TwirpFault::BadGatewayHtml) => {
            let html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>";
            let mut resp = (StatusCode::BAD_GATEWAY, html).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html"));
            return resp;
        }
        _ => {}
    }
    let result = match rpc {
        TwirpMethod::StartWebEgress => twirp::decode::<proto::WebEgressRequest>(encoding, &body)
            .and_then(|req| sim.start_web_egress(req))
            .map(|info| twirp::encode(encoding, &info, Shape::EgressInfo)),
        TwirpMethod::ListEgress => twirp::decode::<proto::ListEgressRequest>(encoding, &body)
            .and_then(|req| sim.list_egress(&req))
            .map(|list| twirp::encode(encoding, &list, Shape::ListEgressResponse)),
        TwirpMethod::StopEgress => twirp::decode::<proto::StopEgressRequest>(encoding, &body)
            .and_then(|req| sim.stop_egress(&req.egress_id))
            .map(|info| twirp::encode(encoding, &info, Shape::EgressInfo)),
        TwirpMethod::UpdateStream => twirp::decode::<proto::UpdateStreamRequest>(encoding, &body)
            .and_then(|req| sim.update_stream(req))
            .map(|info| twirp::encode(encoding, &info, Shape::EgressInfo)),
    };
    let resp = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(hold) = sim.inner.faults.take_hold(HoldOn::LiveKit(rpc)) {
        hold.stall().await;
    }
    match fault {
        Some(TwirpFault::CommitThenLose(loss)) => {
            let internal = twirp::error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
            lose(resp, loss, internal).await
        }
        _ => resp,
    }
}

async fn sim_state(AxumState(sim): AxumState<LiveKitSim>) -> Response {
    Json(json!({"egresses": sim.egresses(), "webhooks": sim.webhooks()})).into_response()
}

#[derive(Deserialize)]
struct ParticipantQuery {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl ParticipantQuery {
    fn change(&self) -> Result<ParticipantChange, String> {
        match self.event.as_deref().unwrap_or("participant_joined") {
            "participant_joined" => Ok(ParticipantChange::Joined),
            "participant_left" => Ok(ParticipantChange::Left),
            other => Err(format!("unsupported event {other}")),
        }
    }
}

/// Test-only: a freshly signed sample webhook (`body` and the
/// `authorization` header value), without sending it anywhere and without
/// touching simulator state or faults.
async fn webhook_sample(AxumState(sim): AxumState<LiveKitSim>, Query(q): Query<ParticipantQuery>) -> Response {
    let change = match q.change() {
        Ok(c) => c,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    let now_ms = now_nanos() / 1_000_000;
    let room = q.room.as_deref().unwrap_or("sample-room");
    let rec = RoomRec { sid: format!("RM_{}", random_id(12)), created_ms: now_ms, participants: HashMap::new() };
    let identity = q.identity.as_deref().unwrap_or("alice");
    let name = q.name.as_deref().unwrap_or("Alice");
    let sid = format!("PA_{}", random_id(12));
    let mut event = participant_webhook(change, room, &rec, &sid, now_ms, identity, name);
    event.id = format!("EV_{}", random_id(12));
    event.created_at = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let Ok(body) = serde_json::to_string(&event) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let signed = sign_webhook(&sim.inner.cfg.api_key, &sim.inner.cfg.api_secret, body, None);
    Json(json!({"body": signed.body, "authorization": signed.authorization})).into_response()
}

/// Test-only: `POST /_sim/livekit/participants {"event","room","identity","name"}`
/// sends a participant webhook through the normal (fault-injectable) path.
async fn participant_event(AxumState(sim): AxumState<LiveKitSim>, Json(q): Json<ParticipantQuery>) -> Response {
    let change = match q.change() {
        Ok(c) => c,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    let (Some(room), Some(identity)) = (q.room.as_deref(), q.identity.as_deref()) else {
        return (StatusCode::BAD_REQUEST, "room and identity are required").into_response();
    };
    sim.participant_event(change, room, identity, q.name.as_deref().unwrap_or(""));
    StatusCode::NO_CONTENT.into_response()
}
