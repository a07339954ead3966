//! The process manager: one step per due session per call, decided from the
//! session's events and the external services' current state.
//!
//! Every external call is preceded by its request event (or by a state that
//! implies it) and followed by its result event, so after a crash, a lost
//! response or a timeout the next step first reconciles (Mux `passthrough` =
//! session id, egress page URL `…?saga={sessionId}`) and only creates when
//! nothing exists. Failures past retries compensate: stop the egress, delete
//! the stream, release the lock, then `Failed`.
//!
//! # Layout
//!
//! - this file: [`Recording::try_step`], which loads each due session once
//!   and hands it to the step of its phase; retries, failure, and the room
//!   and lock helpers every phase uses.
//! - `start`: `Requested` → `Recording`: the live stream, then the egress.
//! - `health`: `Recording`: the timers (health check, 12 h cap).
//! - `stop`: `Stopping` → `AssetReady`: the egress stopped, the stream
//!   completed, the asset ready.
//! - `clips`: `AssetReady` → `Completed`: one clip per stay on stage.
//! - `compensate`: `Compensating` → `Failed`.

mod clips;
mod compensate;
mod health;
mod start;
mod stop;

use eventuall_domain::recording::{CoordinatorCommand, Phase, RecordingSession, SessionEvent};
use eventuall_domain::room::{RecordingInfo, RecordingStatus, RoomCommand};
use eventuall_media::livekit::{EgressError, proto, status};
use eventuall_media::mux::MuxError;

use super::{LoadedSession, Recording, SagaTimer, Step, db, timer_owner};

/// Why a step did not complete.
#[derive(Debug)]
pub(super) enum StepError {
    /// Worth retrying later (429, 5xx, timeouts, "no egress worker").
    Transient(String),
    /// Retrying cannot help: fail the session now.
    Fatal(String),
    /// Our own database; retried like a transient error.
    Internal(anyhow::Error),
}

impl From<MuxError> for StepError {
    fn from(e: MuxError) -> Self {
        if e.is_transient() { Self::Transient(e.to_string()) } else { Self::Fatal(e.to_string()) }
    }
}

impl From<EgressError> for StepError {
    fn from(e: EgressError) -> Self {
        match e {
            EgressError::Unavailable(_)
            | EgressError::ResourceExhausted(_)
            | EgressError::Timeout
            | EgressError::Transport(_)
            | EgressError::Decode(_)
            | EgressError::Internal(_) => Self::Transient(e.to_string()),
            _ => Self::Fatal(e.to_string()),
        }
    }
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

impl From<crate::store::StoreError> for StepError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// What a step achieved.
enum Advance {
    /// An event was recorded.
    Progressed,
    /// Waiting on an external service; poll again later.
    Waiting,
    /// The session is terminal; stop driving it.
    Finished,
}

type StepResult = Result<Advance, StepError>;

/// One due session as its step sees it: loaded once, passed down to the
/// phase's step, updated by every event the step records.
struct Due {
    session: LoadedSession,
    /// Failed attempts of this step so far.
    attempts: i64,
    now: i64,
    /// No new event for longer than `orphan_after`.
    orphaned: bool,
}

impl Due {
    fn state(&self) -> &RecordingSession {
        &self.session.state
    }

    fn id(&self) -> &str {
        &self.session.id
    }
}

impl Recording {
    /// Advances every due session by one step. `Progressed` if any session
    /// recorded an event or finished.
    pub async fn try_step(&self) -> anyhow::Result<Step> {
        let _guard = self.inner.step_lock.lock().await;
        if !self.inner.lease.hold().await {
            return Ok(Step::Idle);
        }
        let store = &self.inner.store;
        let due = db::due_sessions(store, self.now()).await?;
        let mut progressed = false;
        for (session_id, attempts) in due {
            let session = self.load_session(&session_id).await?;
            let now = self.now();
            let orphaned = now - session.state.last_progress_at > self.inner.settings.orphan_after.as_millis() as i64;
            let mut due = Due { session, attempts, now, orphaned };
            let outcome = self.advance(&mut due).await;
            let label = match &outcome {
                Ok(Advance::Progressed) => "progressed",
                Ok(Advance::Waiting) => "waiting",
                Ok(Advance::Finished) => "finished",
                Err(StepError::Fatal(_)) => "failed",
                Err(StepError::Transient(_) | StepError::Internal(_)) => "retried",
            };
            metrics::counter!(crate::metrics::SAGA_STEPS, "outcome" => label).increment(1);
            let now = self.now();
            let mut session = due.session;
            match outcome {
                Ok(Advance::Progressed) => {
                    progressed = true;
                    db::set_session_retry(store, &session_id, 0, now, None).await?;
                }
                Ok(Advance::Waiting) => {}
                Ok(Advance::Finished) => {
                    progressed = true;
                    db::deactivate_session(store, &session_id).await?;
                    for timer in SagaTimer::ALL {
                        self.inner.timers.cancel(&timer_owner(&session_id), timer.name()).await?;
                    }
                }
                Err(StepError::Fatal(reason)) => {
                    tracing::warn!(%session_id, %reason, "recording step failed; compensating");
                    self.fail(&mut session, reason).await?;
                    progressed = true;
                }
                Err(StepError::Transient(message)) => {
                    self.retry_later(&mut session, attempts, &message).await?;
                }
                Err(StepError::Internal(error)) => {
                    self.retry_later(&mut session, attempts, &format!("{error:#}")).await?;
                }
            }
        }
        Ok(if progressed { Step::Progressed } else { Step::Idle })
    }

    /// The step of the session's phase.
    async fn advance(&self, due: &mut Due) -> StepResult {
        let session = due.state();
        if session.phase.is_terminal() || session.phase == Phase::New {
            return Ok(Advance::Finished);
        }
        if due.orphaned && !matches!(session.phase, Phase::Recording | Phase::Compensating | Phase::Clipping) {
            return Err(StepError::Fatal(format!("no progress since {:?} for too long", session.phase)));
        }
        if session.stop_requested.is_some() && session.phase.before_recording() {
            return Err(StepError::Fatal("stopped before the recording started".into()));
        }
        match session.phase {
            Phase::New | Phase::Completed | Phase::Failed => Ok(Advance::Finished),
            Phase::Requested => self.request_stream(due).await,
            Phase::CreatingStream => self.create_stream(due).await,
            Phase::StreamCreated => self.check_stream(due).await,
            Phase::StreamReady => self.request_egress(due).await,
            Phase::StartingEgress => self.start_egress(due).await,
            Phase::EgressStarted => self.await_egress(due).await,
            Phase::EgressActive => self.await_stream_live(due).await,
            Phase::Recording => self.watch_recording(due).await,
            Phase::Stopping => self.stop_egress(due).await,
            Phase::EgressStopped => self.complete_stream(due).await,
            Phase::StreamCompleted if !session.lock_released => self.release_after_stream(due).await,
            Phase::StreamCompleted => self.await_asset(due).await,
            Phase::AssetReady => self.request_clips(due).await,
            Phase::Clipping => self.advance_clips(due).await,
            Phase::Compensating => self.compensate(due).await,
        }
    }

    /// Records `event` on the step's session: `Progressed`.
    async fn progress(&self, due: &mut Due, event: SessionEvent) -> StepResult {
        self.record(&mut due.session, event).await.map(|_| Advance::Progressed).map_err(StepError::Internal)
    }

    async fn retry_later(&self, session: &mut LoadedSession, attempts: i64, message: &str) -> anyhow::Result<()> {
        let settings = &self.inner.settings;
        let attempts = attempts + 1;
        if attempts >= settings.max_attempts && session.state.phase != Phase::Compensating {
            let reason = format!("gave up after {attempts} attempts: {message}");
            tracing::warn!(session_id = session.id, %reason, "recording step exhausted its retries; compensating");
            self.fail(session, reason).await?;
            return Ok(());
        }
        let due = self.now() + settings.backoff_ms(attempts);
        tracing::info!(session_id = session.id, attempts, message, "recording step will be retried");
        db::set_session_retry(&self.inner.store, &session.id, attempts, due, Some(message)).await?;
        Ok(())
    }

    /// Records a failure; the next steps compensate.
    pub(super) async fn fail(&self, session: &mut LoadedSession, reason: String) -> anyhow::Result<()> {
        let at = self.now();
        // Refused when already compensating or terminal: nothing to do then.
        let _ = self.record(session, SessionEvent::FailureDetected { reason, at }).await;
        db::set_session_retry(&self.inner.store, &session.id, 0, at, None).await?;
        Ok(())
    }

    fn page_url(&self, session_id: &str) -> String {
        let base = &self.inner.settings.composite_url;
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}saga={session_id}")
    }

    /// Frees the room for the next recording and clears its snapshot.
    async fn release(&self, session: &RecordingSession, reason: &str, now: i64) -> anyhow::Result<()> {
        let command =
            CoordinatorCommand::Release { session_id: session.session_id.clone(), reason: reason.into(), at: now };
        let _ = self.execute_coordinator(&session.event_id, command, &session.session_id).await?;
        self.set_room(session, None, now).await;
        Ok(())
    }

    /// Shows the session in its room's snapshot as `(status, startedAt)`, or
    /// no recording (`None`). The room ignores a repeat of what it shows, so
    /// a retried step appends nothing new.
    async fn set_room(&self, session: &RecordingSession, shown: Option<(RecordingStatus, i64)>, now: i64) {
        let recording = shown.map(|(status, started_at)| RecordingInfo {
            session_id: session.session_id.clone(),
            status,
            started_at,
        });
        let metadata = Self::metadata(&session.session_id, "SetRecording");
        if let Err(error) = self
            .inner
            .rooms
            .command(&session.event_id, RoomCommand::SetRecording { recording, at: now }, metadata)
            .await
        {
            tracing::warn!(session_id = %session.session_id, %error, "could not update the room's recording status");
        }
    }
}

fn egress_ended(info: &proto::EgressInfo) -> String {
    let status = status(info).as_str_name();
    if info.error.is_empty() {
        format!("egress ended {status}")
    } else {
        format!("egress ended {status}: {}", info.error)
    }
}
