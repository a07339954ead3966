//! The process manager: one step per due session per call, decided from the
//! session's events and the external services' current state.
//!
//! Every external call is preceded by its request event (or by a state that
//! implies it) and followed by its result event, so after a crash, a lost
//! response or a timeout the next step first reconciles (Mux `passthrough` =
//! session id, egress page URL `…?saga={sessionId}`) and only creates when
//! nothing exists. Failures past retries compensate: stop the egress, delete
//! the stream, release the lock, then `Failed`.

use std::collections::BTreeMap;

use eventuall_domain::recording::{
    ClipPlan, ClipStatus, CoordinatorCommand, MAX_RECORDING_MS, Phase, RecordingSession, SessionCommand, SessionEvent,
};
use eventuall_domain::room::{RecordingInfo, RecordingStatus, RoomCommand, RoomEvent};
use eventuall_media::livekit::{EgressError, StartSignal, is_terminal, proto, status};
use eventuall_media::mux::{
    AssetStatus, CreateClip, CreateLiveStream, LiveStreamStatus, MuxError, NewAssetSettings, PlaybackPolicy,
};

use super::{Recording, SagaTimer, Step, db, timer_owner};
use crate::store::StreamId;

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

/// The RTMP ingest Mux documents; the simulator accepts it too.
const MUX_RTMP: &str = "rtmps://global-live.mux.com:443/app/";

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
            let outcome = self.advance(&session_id, attempts).await;
            let label = match &outcome {
                Ok(Advance::Progressed) => "progressed",
                Ok(Advance::Waiting) => "waiting",
                Ok(Advance::Finished) => "finished",
                Err(StepError::Fatal(_)) => "failed",
                Err(StepError::Transient(_) | StepError::Internal(_)) => "retried",
            };
            metrics::counter!(crate::metrics::SAGA_STEPS, "outcome" => label).increment(1);
            let now = self.now();
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
                    self.fail(&session_id, reason).await?;
                    progressed = true;
                }
                Err(StepError::Transient(message)) => {
                    self.retry_later(&session_id, attempts, &message).await?;
                }
                Err(StepError::Internal(error)) => {
                    self.retry_later(&session_id, attempts, &format!("{error:#}")).await?;
                }
            }
        }
        Ok(if progressed { Step::Progressed } else { Step::Idle })
    }

    async fn retry_later(&self, session_id: &str, attempts: i64, message: &str) -> anyhow::Result<()> {
        let settings = &self.inner.settings;
        let attempts = attempts + 1;
        let (session, _) = self.session(session_id).await?;
        if attempts >= settings.max_attempts && session.phase != Phase::Compensating {
            let reason = format!("gave up after {attempts} attempts: {message}");
            tracing::warn!(session_id, %reason, "recording step exhausted its retries; compensating");
            self.fail(session_id, reason).await?;
            return Ok(());
        }
        let due = self.now() + settings.backoff_ms(attempts);
        tracing::info!(session_id, attempts, message, "recording step will be retried");
        db::set_session_retry(&self.inner.store, session_id, attempts, due, Some(message)).await?;
        Ok(())
    }

    /// Records a failure; the next steps compensate.
    pub(super) async fn fail(&self, session_id: &str, reason: String) -> anyhow::Result<()> {
        let at = self.now();
        // Refused when already compensating or terminal: nothing to do then.
        let _ = self.record(session_id, SessionEvent::FailureDetected { reason, at }).await;
        db::set_session_retry(&self.inner.store, session_id, 0, at, None).await?;
        Ok(())
    }

    fn page_url(&self, session_id: &str) -> String {
        let base = &self.inner.settings.composite_url;
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}saga={session_id}")
    }

    async fn advance(&self, session_id: &str, attempts: i64) -> StepResult {
        let (session, _) = self.session(session_id).await?;
        let now = self.now();
        if session.phase.is_terminal() || session.phase == Phase::New {
            return Ok(Advance::Finished);
        }
        let orphaned = now - session.last_progress_at > self.inner.settings.orphan_after.as_millis() as i64;
        if orphaned && !matches!(session.phase, Phase::Recording | Phase::Compensating | Phase::Clipping) {
            return Err(StepError::Fatal(format!("no progress since {:?} for too long", session.phase)));
        }
        if session.stop_requested.is_some() && session.phase.before_recording() {
            return Err(StepError::Fatal("stopped before the recording started".into()));
        }
        let mux = &self.inner.mux;
        let egress = &self.inner.egress;
        let record = |event: SessionEvent| async move {
            self.record(session_id, event).await.map(|_| Advance::Progressed).map_err(StepError::Internal)
        };
        match session.phase {
            Phase::New | Phase::Completed | Phase::Failed => Ok(Advance::Finished),
            Phase::Requested => {
                self.set_room(&session, Some((RecordingStatus::Starting, session.requested_at)), now).await;
                record(SessionEvent::StreamCreateRequested { at: now }).await
            }
            Phase::CreatingStream => {
                // Reconcile first: a create whose response was lost (or a
                // crash after the call) left a stream with our passthrough.
                let stream = match mux.find_live_stream_by_passthrough(session_id).await? {
                    Some(stream) => stream,
                    None => {
                        let request = CreateLiveStream {
                            passthrough: Some(session_id.to_owned()),
                            playback_policies: vec![PlaybackPolicy::Public],
                            new_asset_settings: Some(NewAssetSettings {
                                playback_policies: vec![PlaybackPolicy::Public],
                                passthrough: Some(session_id.to_owned()),
                            }),
                            ..CreateLiveStream::default()
                        };
                        mux.create_live_stream(&request).await?
                    }
                };
                record(SessionEvent::StreamCreated {
                    stream_id: stream.id,
                    stream_key: stream.stream_key,
                    playback_id: stream.playback_ids.first().map(|p| p.id.clone()),
                    at: now,
                })
                .await
            }
            Phase::StreamCreated => {
                let stream = mux.get_live_stream(session.stream_id.as_deref().unwrap_or_default()).await?;
                match stream.status {
                    LiveStreamStatus::Disabled => Err(StepError::Fatal("the live stream is disabled".into())),
                    _ => record(SessionEvent::StreamReady { at: now }).await,
                }
            }
            Phase::StreamReady => {
                record(SessionEvent::EgressStartRequested { page_url: self.page_url(session_id), at: now }).await
            }
            Phase::StartingEgress => {
                let page_url = session.page_url.clone().unwrap_or_else(|| self.page_url(session_id));
                let info = match egress.find_active_egress_by_url(&page_url).await? {
                    Some(info) => info,
                    None => {
                        let key = session.stream_key.clone().unwrap_or_default();
                        egress
                            .start_web_egress(&page_url, &[format!("{MUX_RTMP}{key}")], StartSignal::Immediate)
                            .await?
                    }
                };
                record(SessionEvent::EgressStarted { egress_id: info.egress_id, at: now }).await
            }
            Phase::EgressStarted => {
                let egress_id = session.egress_id.clone().unwrap_or_default();
                match egress.get_egress(&egress_id).await? {
                    None => Err(StepError::Fatal(format!("egress {egress_id} vanished"))),
                    Some(info) if is_terminal(&info) => Err(StepError::Fatal(egress_ended(&info))),
                    Some(info) if status(&info) == proto::EgressStatus::EgressActive => {
                        record(SessionEvent::EgressActive { at: now }).await
                    }
                    Some(_) => Ok(Advance::Waiting),
                }
            }
            Phase::EgressActive => {
                let stream = mux.get_live_stream(session.stream_id.as_deref().unwrap_or_default()).await?;
                if stream.status != LiveStreamStatus::Active {
                    // The egress may have died while we wait.
                    let egress_id = session.egress_id.clone().unwrap_or_default();
                    if let Some(info) = egress.get_egress(&egress_id).await?
                        && is_terminal(&info)
                    {
                        return Err(StepError::Fatal(egress_ended(&info)));
                    }
                    return Ok(Advance::Waiting);
                }
                let asset_id = stream.active_asset_id.clone().or_else(|| stream.recent_asset_ids.last().cloned());
                self.record(session_id, SessionEvent::RecordingStarted { asset_id, at: now }).await?;
                let owner = timer_owner(session_id);
                let health = now + self.inner.settings.health_every.as_millis() as i64;
                self.inner.timers.arm(&owner, SagaTimer::Health.name(), health, "").await?;
                self.inner.timers.arm(&owner, SagaTimer::Cap.name(), now + MAX_RECORDING_MS, "").await?;
                self.set_room(&session, Some((RecordingStatus::Recording, now)), now).await;
                Ok(Advance::Progressed)
            }
            // Long-lived: the health timer watches it, a stop moves it on.
            // A crash between `RecordingStarted` and arming the timers would
            // leave it unwatched, so a missing cap timer is re-armed here.
            Phase::Recording => {
                let owner = timer_owner(session_id);
                if self.inner.timers.get(&owner, SagaTimer::Cap.name()).await?.is_none() {
                    let started = session.started_at.unwrap_or(now);
                    let health = now + self.inner.settings.health_every.as_millis() as i64;
                    self.inner.timers.arm(&owner, SagaTimer::Health.name(), health, "").await?;
                    self.inner.timers.arm(&owner, SagaTimer::Cap.name(), started + MAX_RECORDING_MS, "").await?;
                    self.set_room(&session, Some((RecordingStatus::Recording, started)), now).await;
                }
                Ok(Advance::Waiting)
            }
            Phase::Stopping => {
                let started = session.started_at.unwrap_or(session.requested_at);
                self.set_room(&session, Some((RecordingStatus::Stopping, started)), now).await;
                let egress_id = session.egress_id.clone().unwrap_or_default();
                egress.stop_egress(&egress_id).await?;
                record(SessionEvent::EgressStopped { egress_id: Some(egress_id), error: None, at: now }).await
            }
            Phase::EgressStopped => {
                let stream_id = session.stream_id.as_deref().unwrap_or_default();
                // Ends the recording now rather than after the reconnect
                // window (60 s on Mux), so the room is free sooner. `complete`
                // is idempotent: after a crash it is simply sent again.
                match mux.complete_live_stream(stream_id).await {
                    Ok(()) => {}
                    Err(MuxError::NotFound) => {
                        return Err(StepError::Fatal(format!("live stream {stream_id} vanished before completing")));
                    }
                    Err(e) => return Err(e.into()),
                }
                let stream = mux.get_live_stream(stream_id).await?;
                if stream.status == LiveStreamStatus::Active {
                    // Mux has not applied the completion yet; look again.
                    return Ok(Advance::Waiting);
                }
                let asset_id = session.asset_id.clone().or_else(|| stream.recent_asset_ids.last().cloned());
                match asset_id {
                    Some(asset_id) => record(SessionEvent::StreamCompleted { asset_id, at: now }).await,
                    None => Err(StepError::Fatal("the live stream recorded no asset".into())),
                }
            }
            // The lock goes as soon as the stream is complete: nothing of
            // this session uses the room any more, and cutting clips can take
            // minutes (ADR 0005, amendment of 2026-11-23).
            Phase::StreamCompleted if !session.lock_released => {
                self.release(&session, "stream completed", now).await?;
                record(SessionEvent::LockReleased { at: now }).await
            }
            Phase::StreamCompleted => {
                let asset_id = session.asset_id.clone().unwrap_or_default();
                let asset = mux.get_asset(&asset_id).await?;
                match asset.status {
                    AssetStatus::Ready => {
                        let duration = asset.duration.unwrap_or(0.0);
                        record(SessionEvent::AssetReady { asset_id, duration, at: now }).await
                    }
                    AssetStatus::Errored => Err(StepError::Fatal(format!("recording asset {asset_id} errored"))),
                    _ => Ok(Advance::Waiting),
                }
            }
            Phase::AssetReady => {
                let clips = self.plan_clips(&session).await?;
                record(SessionEvent::ClipsRequested { clips, at: now }).await
            }
            Phase::Clipping => self.advance_clips(&session, attempts, orphaned, now).await,
            Phase::Compensating => self.compensate(&session, attempts, now).await,
        }
    }

    async fn advance_clips(&self, session: &RecordingSession, attempts: i64, orphaned: bool, now: i64) -> StepResult {
        let session_id = session.session_id.as_str();
        let mux = &self.inner.mux;
        if session.all_clips_settled() {
            // Sessions recorded before the lock was released at stream
            // completion still hold it here.
            if !session.lock_released {
                self.release(session, "completed", now).await?;
            }
            self.record(session_id, SessionEvent::Completed { at: now }).await?;
            return Ok(Advance::Progressed);
        }
        for clip in session.clips.values() {
            let clip_id = clip.plan.clip_id.clone();
            match clip.status {
                ClipStatus::Requested => {
                    let passthrough = format!("{session_id}/{clip_id}");
                    let created = match mux.find_asset_by_passthrough(&passthrough).await {
                        Ok(Some(asset)) => Ok(asset),
                        Ok(None) => {
                            let request = CreateClip {
                                source_asset_id: session.asset_id.clone().unwrap_or_default(),
                                start_time: Some(clip.plan.start),
                                end_time: Some(clip.plan.end),
                                passthrough: Some(passthrough),
                                playback_policies: vec![PlaybackPolicy::Public],
                            };
                            mux.create_clip(&request).await
                        }
                        Err(e) => Err(e),
                    };
                    let event = match created {
                        Ok(asset) => SessionEvent::ClipCreated {
                            clip_id,
                            asset_id: asset.id,
                            playback_id: asset.playback_ids.first().map(|p| p.id.clone()),
                            at: now,
                        },
                        // A clip that cannot be made does not fail the recording.
                        Err(e) if !e.is_transient() || attempts + 1 >= self.inner.settings.max_attempts => {
                            SessionEvent::ClipErrored { clip_id, reason: e.to_string(), at: now }
                        }
                        Err(e) => return Err(StepError::Transient(e.to_string())),
                    };
                    self.record(session_id, event).await?;
                    return Ok(Advance::Progressed);
                }
                ClipStatus::Preparing => {
                    let asset_id = clip.asset_id.clone().unwrap_or_default();
                    let asset = mux.get_asset(&asset_id).await?;
                    let event = match asset.status {
                        AssetStatus::Ready => SessionEvent::ClipReady { clip_id, at: now },
                        AssetStatus::Errored => {
                            let reason = asset
                                .errors
                                .map(|e| e.messages.join("; "))
                                .filter(|m| !m.is_empty())
                                .unwrap_or_else(|| "clip errored".into());
                            SessionEvent::ClipErrored { clip_id, reason, at: now }
                        }
                        _ if orphaned => {
                            SessionEvent::ClipErrored { clip_id, reason: "clip never became ready".into(), at: now }
                        }
                        _ => continue,
                    };
                    self.record(session_id, event).await?;
                    return Ok(Advance::Progressed);
                }
                ClipStatus::Ready | ClipStatus::Errored => {}
            }
        }
        Ok(Advance::Waiting)
    }

    /// One compensation step: stop the egress, delete the stream, release the
    /// lock, then `Failed`. A step that keeps failing is recorded as
    /// abandoned (with its error) so that compensation always ends.
    async fn compensate(&self, session: &RecordingSession, attempts: i64, now: i64) -> StepResult {
        let session_id = session.session_id.as_str();
        let give_up = attempts + 1 >= self.inner.settings.max_attempts;
        let mux = &self.inner.mux;
        let egress = &self.inner.egress;
        if !session.egress_stopped {
            let egress_id = match &session.egress_id {
                Some(id) => Some(id.clone()),
                // A start whose response was lost may have created one.
                None if session.page_url.is_some() => {
                    match egress.find_active_egress_by_url(session.page_url.as_deref().unwrap_or_default()).await {
                        Ok(found) => found.map(|info| info.egress_id),
                        Err(e) if give_up => return self.abandon_egress(session_id, None, e.to_string(), now).await,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => None,
            };
            if let Some(id) = &egress_id {
                match egress.stop_egress(id).await {
                    Ok(_) | Err(EgressError::NotFound(_)) => {}
                    Err(e) if give_up => return self.abandon_egress(session_id, egress_id, e.to_string(), now).await,
                    Err(e) => return Err(e.into()),
                }
            }
            self.record(session_id, SessionEvent::EgressStopped { egress_id, error: None, at: now }).await?;
            return Ok(Advance::Progressed);
        }
        if !session.stream_deleted {
            let stream_id = match &session.stream_id {
                Some(id) => Some(id.clone()),
                None if session.phase != Phase::Requested => {
                    match mux.find_live_stream_by_passthrough(session_id).await {
                        Ok(found) => found.map(|s| s.id),
                        Err(e) if give_up => return self.abandon_stream(session_id, None, e.to_string(), now).await,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => None,
            };
            if let Some(id) = &stream_id {
                match mux.delete_live_stream(id).await {
                    Ok(()) | Err(MuxError::NotFound) => {}
                    Err(e) if give_up => return self.abandon_stream(session_id, stream_id, e.to_string(), now).await,
                    Err(e) => return Err(e.into()),
                }
            }
            self.record(session_id, SessionEvent::StreamDeleted { stream_id, error: None, at: now }).await?;
            return Ok(Advance::Progressed);
        }
        if !session.lock_released {
            self.release(session, "failed", now).await?;
            self.record(session_id, SessionEvent::LockReleased { at: now }).await?;
            return Ok(Advance::Progressed);
        }
        let reason = session.failure.clone().unwrap_or_else(|| "failed".into());
        self.record(session_id, SessionEvent::Failed { reason, at: now }).await?;
        Ok(Advance::Progressed)
    }

    async fn abandon_egress(&self, session_id: &str, egress_id: Option<String>, error: String, now: i64) -> StepResult {
        tracing::error!(session_id, ?egress_id, %error, "could not stop the egress; giving up on it");
        self.record(session_id, SessionEvent::EgressStopped { egress_id, error: Some(error), at: now }).await?;
        Ok(Advance::Progressed)
    }

    async fn abandon_stream(&self, session_id: &str, stream_id: Option<String>, error: String, now: i64) -> StepResult {
        tracing::error!(session_id, ?stream_id, %error, "could not delete the live stream; giving up on it");
        self.record(session_id, SessionEvent::StreamDeleted { stream_id, error: Some(error), at: now }).await?;
        Ok(Advance::Progressed)
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

    /// One clip per stay on stage that overlaps the recording, in seconds
    /// from the recording's start, clamped to the asset's duration. Stays
    /// shorter than Mux's minimum (0.5 s) are skipped.
    async fn plan_clips(&self, session: &RecordingSession) -> anyhow::Result<Vec<ClipPlan>> {
        let (Some(started), Some(stopped)) = (session.started_at, session.stopped_at) else { return Ok(vec![]) };
        let duration = session.duration.unwrap_or(f64::MAX);
        let stream = StreamId::of("room", &session.event_id);
        let mut open: BTreeMap<String, i64> = BTreeMap::new();
        let mut intervals: Vec<(String, i64, i64)> = vec![];
        let mut from = 1;
        loop {
            let page = self.inner.store.read_stream(&stream, from, 2_000).await?;
            let done = page.len() < 2_000;
            for recorded in &page {
                from = recorded.stream_version + 1;
                if recorded.event_type != "StageEntered" && recorded.event_type != "StageExited" {
                    continue;
                }
                match recorded.decode::<RoomEvent>()? {
                    RoomEvent::StageEntered { user_id, at } => {
                        open.entry(user_id).or_insert(at);
                    }
                    RoomEvent::StageExited { user_id, at } => {
                        if let Some(entered) = open.remove(&user_id) {
                            intervals.push((user_id, entered, at));
                        }
                    }
                    _ => {}
                }
            }
            if done {
                break;
            }
        }
        intervals.extend(open.into_iter().map(|(user, entered)| (user, entered, stopped)));
        intervals.sort_by_key(|(user, entered, _)| (*entered, user.clone()));
        let mut clips = vec![];
        for (user_id, entered, exited) in intervals {
            let start = (entered.max(started) - started) as f64 / 1000.0;
            let end = ((exited.min(stopped) - started) as f64 / 1000.0).min(duration);
            if end - start > 0.5 {
                clips.push(ClipPlan { clip_id: format!("clip-{}", clips.len() + 1), user_id, start, end });
            }
        }
        Ok(clips)
    }

    pub(super) async fn on_timer(&self, session_id: &str, timer: SagaTimer) -> anyhow::Result<()> {
        let _guard = self.inner.step_lock.lock().await;
        let (session, _) = self.session(session_id).await?;
        if session.phase != Phase::Recording {
            return Ok(());
        }
        let now = self.now();
        match timer {
            SagaTimer::Cap => {
                let command = SessionCommand::RequestStop { reason: "12 h maximum reached".into(), at: now };
                self.execute_session(session_id, command, "RequestStop").await?;
            }
            SagaTimer::Health => {
                match self.health(&session).await {
                    Ok(()) => {}
                    Err(StepError::Fatal(reason)) => {
                        tracing::warn!(session_id, %reason, "recording health check failed; compensating");
                        self.fail(session_id, reason).await?;
                        return Ok(());
                    }
                    // Cannot tell right now; look again at the next check.
                    Err(e) => tracing::warn!(session_id, error = ?e, "recording health check inconclusive"),
                }
                let due = now + self.inner.settings.health_every.as_millis() as i64;
                self.inner.timers.arm(&timer_owner(session_id), SagaTimer::Health.name(), due, "").await?;
            }
        }
        Ok(())
    }

    async fn health(&self, session: &RecordingSession) -> Result<(), StepError> {
        let egress_id = session.egress_id.clone().unwrap_or_default();
        match self.inner.egress.get_egress(&egress_id).await? {
            None => return Err(StepError::Fatal(format!("egress {egress_id} vanished"))),
            Some(info) if status(&info) != proto::EgressStatus::EgressActive => {
                return Err(StepError::Fatal(egress_ended(&info)));
            }
            Some(_) => {}
        }
        let stream = self.inner.mux.get_live_stream(session.stream_id.as_deref().unwrap_or_default()).await?;
        // A stream whose encoder dropped stays `active` for its reconnect
        // window, and a reconnection inside it continues the same asset:
        // that is no failure. Past the window the stream goes `idle`, and a
        // later reconnection starts a new asset: the recording was cut.
        if stream.status != LiveStreamStatus::Active {
            return Err(StepError::Fatal(format!("live stream is {:?} while recording", stream.status)));
        }
        if let (Some(recording), Some(live)) = (&session.asset_id, &stream.active_asset_id)
            && recording != live
        {
            return Err(StepError::Fatal(format!(
                "the live stream was interrupted past its reconnect window: asset {recording} ended, {live} began"
            )));
        }
        Ok(())
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
