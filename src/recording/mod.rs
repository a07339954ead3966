//! The recording saga: a process manager that drives each
//! [`RecordingSession`] through Mux and LiveKit from the event log, and the
//! durable command queue behind `POST /cloudcaster/{eventId}/start|stop`.
//!
//! # Layout
//!
//! - this file: [`Recording`], the cheap-to-clone handle (clients, settings,
//!   aggregate loading and appending, read models for the HTTP routes).
//! - `steps`: the process manager, one file per phase group (`start`:
//!   stream and egress up; `health`: while recording; `stop`: egress down,
//!   stream completed, asset ready; `clips`; `compensate`).
//!   [`Recording::try_step`] advances every due session by one step, on the
//!   session loaded once for it; polling Mux and LiveKit is the source of
//!   truth.
//! - `commands`: the command queue with retries, backoff and dead letters
//!   ([`Recording::commands_try_step`]).
//! - `db`: the two operational tables.
//! - `lease`: on PostgreSQL, one process at a time runs the two workers.
//!
//! Design and idempotency rules: `docs/adr/0005-recording-saga.md`. This
//! module depends on the store, timers, rooms and the media clients; it knows
//! nothing of HTTP.

mod commands;
pub mod db;
mod lease;
pub mod media;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use eventuall_domain::recording::{
    ClipStatus, Coordinator, CoordinatorCommand, CoordinatorEvent, RecordingSession, SessionCommand, SessionEvent,
};
use eventuall_media::livekit::Egress;
use eventuall_media::mux::MuxClient;
use serde::Serialize;
use tokio::sync::{Mutex, Notify, watch};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::rooms::Rooms;
use crate::store::aggregate::load;
use crate::store::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use crate::timers::{Timer, Timers};

pub use commands::EnqueueError;
pub use db::CommandKind;

/// What one step of a worker did. Production loops call it repeatedly;
/// tests call it deterministically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Progressed,
    Idle,
}

/// Tunables of the saga. [`RecordingSettings::default`] is production.
#[derive(Clone, Debug)]
pub struct RecordingSettings {
    /// The page the egress records; `?saga={sessionId}` is appended.
    pub composite_url: String,
    /// Real-time pause of the loops when there is nothing to do: how often
    /// waiting sessions poll Mux and LiveKit. Both APIs ask for at most about
    /// one poll per second per resource.
    pub poll_every: Duration,
    /// Health check cadence while recording (egress and stream alive?).
    pub health_every: Duration,
    /// A session with no new event for this long outside `Recording` is
    /// failed and cleaned up (a stuck stream, a lost egress, a crashed step).
    pub orphan_after: Duration,
    /// Attempts of one saga step (or one queued command) before giving up.
    pub max_attempts: i64,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Used when `EVENTUALL_COMPOSITE_URL` is not set.
pub const DEFAULT_COMPOSITE_URL: &str = "http://127.0.0.1:8787/composite";

impl Default for RecordingSettings {
    fn default() -> Self {
        Self {
            composite_url: DEFAULT_COMPOSITE_URL.into(),
            poll_every: Duration::from_secs(1),
            health_every: Duration::from_secs(30),
            orphan_after: Duration::from_secs(10 * 60),
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RecordingSettings {
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let exp = self.initial_backoff.saturating_mul(1u32 << attempts.clamp(0, 16) as u32);
        exp.min(self.max_backoff).as_millis() as i64
    }
}

/// Handle to the recording saga. Cheap to clone.
#[derive(Clone)]
pub struct Recording {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    timers: Arc<Timers>,
    clock: SharedClock,
    rooms: Rooms,
    mux: MuxClient,
    egress: Egress,
    settings: RecordingSettings,
    /// One saga step at a time in this process: a timer firing and a loop
    /// step never drive the same session concurrently (the log's expected
    /// versions guard across processes).
    step_lock: Mutex<()>,
    wake: Notify,
    lease: lease::Lease,
}

/// Fault injection for the crash tests (`tests/api/recording_crash.rs`):
/// when this environment variable names a [`stall_point`], the process stops
/// there for good, so that a test can SIGKILL it provably inside that step
/// even where no external call would let a simulator hold it. Only whoever
/// starts the process can set it: there is no flag and no route.
const STALL_ENV: &str = "EVENTUALL_RECORDING_STALL_AT";

/// Stalls forever if [`STALL_ENV`] names `point` (read once per process).
async fn stall_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT.get_or_init(|| std::env::var(STALL_ENV).ok()).as_deref() == Some(point) {
        tracing::error!(point, "{STALL_ENV} reached: stalling until the process is killed");
        std::future::pending::<()>().await;
    }
}

/// Timer owners of the saga: `recording-{sessionId}`.
pub const TIMER_PREFIX: &str = "recording-";

/// The durable timers of one recording session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaTimer {
    /// The health check every `health_every` while recording.
    Health,
    /// The 12 h maximum.
    Cap,
}

impl SagaTimer {
    pub const ALL: [SagaTimer; 2] = [SagaTimer::Health, SagaTimer::Cap];

    /// The timer's name in the `timers` table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Cap => "cap",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|timer| timer.name() == name)
    }
}

/// The timer owner of `session_id`.
pub fn timer_owner(session_id: &str) -> String {
    format!("{TIMER_PREFIX}{session_id}")
}

/// A session as one step loaded it: the state it decides on and the
/// version it appends at, brought up to date by every event it records.
pub(crate) struct LoadedSession {
    pub id: String,
    pub state: RecordingSession,
    pub version: u64,
}

/// What the saga works with: the log, its timers and clock, the rooms whose
/// snapshots show a recording, and the two media services.
pub struct RecordingDeps {
    pub store: EventStore,
    pub timers: Arc<Timers>,
    pub clock: SharedClock,
    pub rooms: Rooms,
    pub mux: MuxClient,
    pub egress: Egress,
}
const SCHEMA_TAG: &str = "v1";
const ACTOR: &str = "system:recording";

pub fn session_stream(session_id: &str) -> StreamId {
    StreamId::of("recording", session_id)
}

pub fn coordinator_stream(event_id: &str) -> StreamId {
    StreamId::of("coordinator", event_id)
}

/// `GET /cloudcaster/{eventId}/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RecordingStatusView)]
pub struct StatusView {
    pub event_id: String,
    pub session_id: Option<String>,
    /// `none`, or the session's phase (`recording`, `completed`, `failed`, …).
    pub state: String,
    pub recording: bool,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub failure_reason: Option<String>,
    pub stream_id: Option<String>,
    pub egress_id: Option<String>,
    pub asset_id: Option<String>,
    pub steps: Vec<StepView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RecordingStep)]
pub struct StepView {
    pub step: String,
    pub at: i64,
}

/// One entry of `GET /cloudcaster/{eventId}/clips`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Clip)]
pub struct ClipView {
    pub clip_id: String,
    pub session_id: String,
    pub participant: String,
    pub start: f64,
    pub end: f64,
    #[schema(value_type = crate::http::openapi::ClipStatus)]
    pub status: ClipStatus,
    pub asset_id: Option<String>,
    pub playback_id: Option<String>,
    pub error: Option<String>,
}

impl Recording {
    pub fn new(deps: RecordingDeps, settings: RecordingSettings) -> Self {
        let RecordingDeps { store, timers, clock, rooms, mux, egress } = deps;
        let lease = lease::Lease::for_store(&store, settings.poll_every);
        let inner = Inner {
            lease,
            store,
            timers,
            clock,
            rooms,
            mux,
            egress,
            settings,
            step_lock: Mutex::new(()),
            wake: Notify::new(),
        };
        Self { inner: Arc::new(inner) }
    }

    pub fn settings(&self) -> &RecordingSettings {
        &self.inner.settings
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    /// Wakes the loops (a command was queued).
    pub fn poke(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Runs the process manager and the command worker until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let commands = self.commands_try_step().await;
            let sessions = self.try_step().await;
            let progressed = matches!(commands, Ok(Step::Progressed)) || matches!(sessions, Ok(Step::Progressed));
            if let Err(error) = &commands {
                tracing::error!(error = %format!("{error:#}"), "recording command worker step failed");
            }
            if let Err(error) = &sessions {
                tracing::error!(error = %format!("{error:#}"), "recording process manager step failed");
            }
            if progressed {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.settings.poll_every) => {}
                _ = self.inner.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        self.release_lease().await;
    }

    /// True if this process runs the saga now (holds the worker lease, or
    /// needs none): recording timers fire only where the saga runs.
    pub async fn runs_saga(&self) -> bool {
        self.inner.lease.hold().await
    }

    /// Gives up the worker lease (PostgreSQL) so that another process runs
    /// the saga from its next try; this process takes it again on a later
    /// step if it is still free. `run` calls it on shutdown.
    pub async fn release_lease(&self) {
        self.inner.lease.release().await;
    }

    pub async fn session(&self, session_id: &str) -> Result<(RecordingSession, u64), StoreError> {
        let loaded = load::<RecordingSession>(&self.inner.store, &session_stream(session_id), SCHEMA_TAG).await?;
        Ok((loaded.state, loaded.version))
    }

    pub async fn coordinator(&self, event_id: &str) -> Result<(Coordinator, u64), StoreError> {
        let loaded = load::<Coordinator>(&self.inner.store, &coordinator_stream(event_id), SCHEMA_TAG).await?;
        Ok((loaded.state, loaded.version))
    }

    fn metadata(session_id: &str, command: &str) -> Metadata {
        let metadata = Metadata::by(ACTOR).command(command);
        match Uuid::parse_str(session_id) {
            Ok(id) => metadata.correlated(id),
            Err(_) => metadata,
        }
    }

    /// Loads a session for one step, which decides on it and appends to it
    /// without loading it again.
    pub(crate) async fn load_session(&self, session_id: &str) -> Result<LoadedSession, StoreError> {
        let (state, version) = self.session(session_id).await?;
        Ok(LoadedSession { id: session_id.to_owned(), state, version })
    }

    /// Decides `command` on the session and appends the result (expected
    /// version checked). Returns the events appended (empty: nothing to do).
    async fn execute_session(
        &self,
        session: &mut LoadedSession,
        command: SessionCommand,
        name: &str,
    ) -> anyhow::Result<Vec<SessionEvent>> {
        self.execute_session_all(session, vec![command], name).await
    }

    /// Decides `commands` in order, each on the state the previous ones
    /// left, and appends all their events at once: all or nothing. The
    /// session takes the events only once they are stored; a failed append
    /// reloads it, so the rest of the step sees what the log says (a second
    /// writer, an unknown outcome), not what this one believed.
    async fn execute_session_all(
        &self,
        session: &mut LoadedSession,
        commands: Vec<SessionCommand>,
        name: &str,
    ) -> anyhow::Result<Vec<SessionEvent>> {
        use cqrs_es::Aggregate;
        let mut next = session.state.clone();
        let mut events = vec![];
        for command in commands {
            for event in next.decide(command)? {
                next.apply(event.clone());
                events.push(event);
            }
        }
        if events.is_empty() {
            return Ok(events);
        }
        let batch = events
            .iter()
            .map(|e| {
                use cqrs_es::DomainEvent;
                NewEvent::json(e.event_type(), e.event_version(), e, Self::metadata(&session.id, name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let count = batch.len() as u64;
        let stream = session_stream(&session.id);
        if let Err(error) = self.inner.store.append(&stream, ExpectedVersion::Exact(session.version), batch).await {
            if let Ok(fresh) = self.load_session(&session.id).await {
                *session = fresh;
            }
            return Err(error.into());
        }
        session.state = next;
        session.version += count;
        Ok(events)
    }

    async fn record(&self, session: &mut LoadedSession, event: SessionEvent) -> anyhow::Result<()> {
        use cqrs_es::DomainEvent;
        let name = event.event_type();
        self.execute_session(session, SessionCommand::Record(event), &name).await?;
        Ok(())
    }

    async fn execute_coordinator(
        &self,
        event_id: &str,
        command: CoordinatorCommand,
        session_id: &str,
    ) -> anyhow::Result<Result<Vec<CoordinatorEvent>, eventuall_domain::recording::CoordinatorError>> {
        let (coordinator, version) = self.coordinator(event_id).await?;
        let events = match coordinator.decide(command) {
            Ok(events) => events,
            Err(refused) => return Ok(Err(refused)),
        };
        if !events.is_empty() {
            let batch = events
                .iter()
                .map(|e| {
                    use cqrs_es::DomainEvent;
                    NewEvent::json(e.event_type(), e.event_version(), e, Self::metadata(session_id, "Coordinate"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.inner.store.append(&coordinator_stream(event_id), ExpectedVersion::Exact(version), batch).await?;
        }
        Ok(Ok(events))
    }

    /// The latest session of `event_id` as `GET …/status` shows it.
    pub async fn status(&self, event_id: &str) -> Result<StatusView, StoreError> {
        let (coordinator, _) = self.coordinator(event_id).await?;
        let mut view = StatusView {
            event_id: event_id.to_owned(),
            session_id: None,
            state: "none".into(),
            recording: false,
            started_at: None,
            stopped_at: None,
            failure_reason: None,
            stream_id: None,
            egress_id: None,
            asset_id: None,
            steps: vec![],
        };
        let Some(session_id) = coordinator.last_session else { return Ok(view) };
        let (session, _) = self.session(&session_id).await?;
        let events = self.inner.store.read_stream(&session_stream(&session_id), 1, 10_000).await?;
        view.steps = events
            .iter()
            .map(|e| StepView {
                step: e.event_type.clone(),
                at: e.decode::<SessionEvent>().map(|s| s.at()).unwrap_or(0),
            })
            .collect();
        view.state =
            serde_json::to_value(session.phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        view.recording = session.phase == eventuall_domain::recording::Phase::Recording;
        view.session_id = Some(session_id);
        view.started_at = session.started_at;
        view.stopped_at = session.stopped_at;
        view.failure_reason = session.failure;
        view.stream_id = session.stream_id;
        view.egress_id = session.egress_id;
        view.asset_id = session.asset_id;
        Ok(view)
    }

    /// Clips of the latest session of `event_id`.
    pub async fn clips(&self, event_id: &str) -> Result<Vec<ClipView>, StoreError> {
        let (coordinator, _) = self.coordinator(event_id).await?;
        let Some(session_id) = coordinator.last_session else { return Ok(vec![]) };
        let (session, _) = self.session(&session_id).await?;
        Ok(session
            .clips
            .into_values()
            .map(|c| ClipView {
                clip_id: c.plan.clip_id,
                session_id: session_id.clone(),
                participant: c.plan.user_id,
                start: c.plan.start,
                end: c.plan.end,
                status: c.status,
                asset_id: c.asset_id,
                playback_id: c.playback_id,
                error: c.error,
            })
            .collect())
    }

    /// Handles a fired timer of the saga (health check, 12 h cap).
    pub async fn fire(&self, timer: Timer) {
        let Some(session_id) = timer.owner.strip_prefix(TIMER_PREFIX) else { return };
        let Some(which) = SagaTimer::parse(&timer.name) else {
            tracing::warn!(session_id, name = %timer.name, "unknown recording timer");
            return;
        };
        if let Err(error) = self.on_timer(session_id, which).await {
            tracing::error!(session_id, timer = %timer.name, error = %format!("{error:#}"), "recording timer failed");
        }
        self.poke();
    }
}
