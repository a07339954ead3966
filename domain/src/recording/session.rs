//! One recording session (stream `recording-{sessionId}`): the saga's log.
//!
//! Happy path: `Requested` → `StreamCreateRequested` → `StreamCreated` →
//! `StreamReady` → `EgressStartRequested` → `EgressStarted` → `EgressActive`
//! → `RecordingStarted` → `StopRequested` → `EgressStopped` →
//! `StreamCompleted` → `LockReleased` → `AssetReady` → `ClipsRequested` → `ClipCreated` /
//! `ClipReady` / `ClipErrored` per clip → `Completed`.
//!
//! Failure: `FailureDetected` (from any live phase) moves to `Compensating`,
//! where the clean-up steps are recorded (`EgressStopped`, `StreamDeleted`,
//! `LockReleased`) before the terminal `Failed`.

use std::collections::BTreeMap;

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No `Requested` yet.
    #[default]
    New,
    Requested,
    CreatingStream,
    StreamCreated,
    StreamReady,
    StartingEgress,
    EgressStarted,
    EgressActive,
    Recording,
    Stopping,
    EgressStopped,
    StreamCompleted,
    AssetReady,
    Clipping,
    Completed,
    Compensating,
    Failed,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    /// Before the recording started: a stop cancels the session.
    pub fn before_recording(self) -> bool {
        matches!(
            self,
            Self::Requested
                | Self::CreatingStream
                | Self::StreamCreated
                | Self::StreamReady
                | Self::StartingEgress
                | Self::EgressStarted
                | Self::EgressActive
        )
    }
}

/// A clip to cut: one participant's stay on stage, in seconds relative to
/// the recording's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipPlan {
    pub clip_id: String,
    pub user_id: String,
    pub start: f64,
    pub end: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    Requested,
    Preparing,
    Ready,
    Errored,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipState {
    pub plan: ClipPlan,
    pub status: ClipStatus,
    pub asset_id: Option<String>,
    pub playback_id: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    Requested {
        session_id: String,
        event_id: String,
        requested_by: String,
        at: i64,
    },
    StreamCreateRequested {
        at: i64,
    },
    StreamCreated {
        stream_id: String,
        stream_key: String,
        playback_id: Option<String>,
        at: i64,
    },
    StreamReady {
        at: i64,
    },
    EgressStartRequested {
        page_url: String,
        at: i64,
    },
    EgressStarted {
        egress_id: String,
        at: i64,
    },
    EgressActive {
        at: i64,
    },
    RecordingStarted {
        asset_id: Option<String>,
        at: i64,
    },
    StopRequested {
        reason: String,
        at: i64,
    },
    /// `egress_id: None` in compensation: there was no egress to stop.
    /// `error`: the stop kept failing and was abandoned.
    EgressStopped {
        egress_id: Option<String>,
        error: Option<String>,
        at: i64,
    },
    StreamCompleted {
        asset_id: String,
        at: i64,
    },
    AssetReady {
        asset_id: String,
        duration: f64,
        at: i64,
    },
    ClipsRequested {
        clips: Vec<ClipPlan>,
        at: i64,
    },
    ClipCreated {
        clip_id: String,
        asset_id: String,
        playback_id: Option<String>,
        at: i64,
    },
    ClipReady {
        clip_id: String,
        at: i64,
    },
    ClipErrored {
        clip_id: String,
        reason: String,
        at: i64,
    },
    Completed {
        at: i64,
    },
    FailureDetected {
        reason: String,
        at: i64,
    },
    /// `stream_id: None`: there was no stream to delete.
    StreamDeleted {
        stream_id: Option<String>,
        error: Option<String>,
        at: i64,
    },
    LockReleased {
        at: i64,
    },
    Failed {
        reason: String,
        at: i64,
    },
}

impl SessionEvent {
    pub fn at(&self) -> i64 {
        match self {
            Self::Requested { at, .. }
            | Self::StreamCreateRequested { at }
            | Self::StreamCreated { at, .. }
            | Self::StreamReady { at }
            | Self::EgressStartRequested { at, .. }
            | Self::EgressStarted { at, .. }
            | Self::EgressActive { at }
            | Self::RecordingStarted { at, .. }
            | Self::StopRequested { at, .. }
            | Self::EgressStopped { at, .. }
            | Self::StreamCompleted { at, .. }
            | Self::AssetReady { at, .. }
            | Self::ClipsRequested { at, .. }
            | Self::ClipCreated { at, .. }
            | Self::ClipReady { at, .. }
            | Self::ClipErrored { at, .. }
            | Self::Completed { at }
            | Self::FailureDetected { at, .. }
            | Self::StreamDeleted { at, .. }
            | Self::LockReleased { at }
            | Self::Failed { at, .. } => *at,
        }
    }
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Requested { .. } => "RecordingRequested",
            Self::StreamCreateRequested { .. } => "StreamCreateRequested",
            Self::StreamCreated { .. } => "StreamCreated",
            Self::StreamReady { .. } => "StreamReady",
            Self::EgressStartRequested { .. } => "EgressStartRequested",
            Self::EgressStarted { .. } => "EgressStarted",
            Self::EgressActive { .. } => "EgressActive",
            Self::RecordingStarted { .. } => "RecordingStarted",
            Self::StopRequested { .. } => "StopRequested",
            Self::EgressStopped { .. } => "EgressStopped",
            Self::StreamCompleted { .. } => "StreamCompleted",
            Self::AssetReady { .. } => "RecordingAssetReady",
            Self::ClipsRequested { .. } => "ClipsRequested",
            Self::ClipCreated { .. } => "ClipCreated",
            Self::ClipReady { .. } => "ClipReady",
            Self::ClipErrored { .. } => "ClipErrored",
            Self::Completed { .. } => "RecordingCompleted",
            Self::FailureDetected { .. } => "RecordingFailureDetected",
            Self::StreamDeleted { .. } => "StreamDeleted",
            Self::LockReleased { .. } => "LockReleased",
            Self::Failed { .. } => "RecordingFailed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionCommand {
    Request {
        session_id: String,
        event_id: String,
        requested_by: String,
        at: i64,
    },
    RequestStop {
        reason: String,
        at: i64,
    },
    /// Records the outcome of a saga step; refused unless the state machine
    /// allows it now.
    Record(SessionEvent),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session was never requested")]
    NotRequested,
    #[error("{event} does not fit phase {phase:?}")]
    OutOfOrder { phase: Phase, event: String },
    #[error("no clip {0}")]
    UnknownClip(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordingSession {
    pub phase: Phase,
    pub session_id: String,
    pub event_id: String,
    pub requested_by: String,
    pub requested_at: i64,
    /// Time of the latest event: what orphan detection measures from.
    pub last_progress_at: i64,
    pub stream_id: Option<String>,
    pub stream_key: Option<String>,
    pub playback_id: Option<String>,
    pub page_url: Option<String>,
    pub egress_id: Option<String>,
    pub egress_stopped: bool,
    pub stream_deleted: bool,
    pub lock_released: bool,
    pub started_at: Option<i64>,
    pub stop_requested: Option<String>,
    pub stopped_at: Option<i64>,
    pub asset_id: Option<String>,
    pub duration: Option<f64>,
    pub clips: BTreeMap<String, ClipState>,
    pub failure: Option<String>,
    pub ended_at: Option<i64>,
}

impl RecordingSession {
    pub fn all_clips_settled(&self) -> bool {
        self.clips.values().all(|c| matches!(c.status, ClipStatus::Ready | ClipStatus::Errored))
    }

    fn fits(&self, event: &SessionEvent) -> bool {
        use Phase as P;
        use SessionEvent as E;
        let phase = self.phase;
        match event {
            E::Requested { .. } => false,
            E::StreamCreateRequested { .. } => phase == P::Requested,
            // In compensation: a stream found by reconciliation, to delete.
            E::StreamCreated { .. } => {
                phase == P::CreatingStream || (phase == P::Compensating && self.stream_id.is_none())
            }
            E::StreamReady { .. } => phase == P::StreamCreated,
            E::EgressStartRequested { .. } => phase == P::StreamReady,
            E::EgressStarted { .. } => {
                phase == P::StartingEgress || (phase == P::Compensating && self.egress_id.is_none())
            }
            E::EgressActive { .. } => phase == P::EgressStarted,
            E::RecordingStarted { .. } => phase == P::EgressActive,
            E::StopRequested { .. } => false,
            E::EgressStopped { .. } => (phase == P::Stopping || phase == P::Compensating) && !self.egress_stopped,
            E::StreamCompleted { .. } => phase == P::EgressStopped,
            E::AssetReady { .. } => phase == P::StreamCompleted,
            E::ClipsRequested { .. } => phase == P::AssetReady,
            E::ClipCreated { clip_id, .. } | E::ClipReady { clip_id, .. } | E::ClipErrored { clip_id, .. } => {
                phase == P::Clipping && self.clips.contains_key(clip_id)
            }
            E::Completed { .. } => phase == P::Clipping && self.all_clips_settled(),
            E::FailureDetected { .. } => !phase.is_terminal() && phase != P::Compensating && phase != P::New,
            E::StreamDeleted { .. } => phase == P::Compensating && !self.stream_deleted,
            // Stop releases the lock once the stream is complete, before the
            // asset and clips; a failure releases it while compensating.
            E::LockReleased { .. } => matches!(phase, P::Compensating | P::StreamCompleted) && !self.lock_released,
            E::Failed { .. } => phase == P::Compensating && self.lock_released,
        }
    }

    pub fn decide(&self, command: SessionCommand) -> Result<Vec<SessionEvent>, SessionError> {
        match command {
            SessionCommand::Request { session_id, event_id, requested_by, at } => {
                if self.phase == Phase::New {
                    Ok(vec![SessionEvent::Requested { session_id, event_id, requested_by, at }])
                } else {
                    Ok(vec![])
                }
            }
            SessionCommand::RequestStop { reason, at } => {
                if self.phase == Phase::New {
                    return Err(SessionError::NotRequested);
                }
                let stoppable = self.stop_requested.is_none()
                    && !self.phase.is_terminal()
                    && self.phase != Phase::Compensating
                    && (self.phase.before_recording() || self.phase == Phase::Recording);
                Ok(if stoppable { vec![SessionEvent::StopRequested { reason, at }] } else { vec![] })
            }
            SessionCommand::Record(event) => {
                if self.phase == Phase::New {
                    return Err(SessionError::NotRequested);
                }
                if self.fits(&event) {
                    Ok(vec![event])
                } else {
                    Err(SessionError::OutOfOrder { phase: self.phase, event: event.event_type() })
                }
            }
        }
    }
}

impl Aggregate for RecordingSession {
    crate::decided::decided_aggregate!("recording", SessionCommand, SessionEvent, SessionError);

    fn apply(&mut self, event: Self::Event) {
        use SessionEvent as E;
        self.last_progress_at = event.at();
        match event {
            E::Requested { session_id, event_id, requested_by, at } => {
                self.phase = Phase::Requested;
                self.session_id = session_id;
                self.event_id = event_id;
                self.requested_by = requested_by;
                self.requested_at = at;
            }
            E::StreamCreateRequested { .. } => self.phase = Phase::CreatingStream,
            E::StreamCreated { stream_id, stream_key, playback_id, .. } => {
                self.stream_id = Some(stream_id);
                self.stream_key = Some(stream_key);
                self.playback_id = playback_id;
                if self.phase == Phase::CreatingStream {
                    self.phase = Phase::StreamCreated;
                }
            }
            E::StreamReady { .. } => self.phase = Phase::StreamReady,
            E::EgressStartRequested { page_url, .. } => {
                self.page_url = Some(page_url);
                self.phase = Phase::StartingEgress;
            }
            E::EgressStarted { egress_id, .. } => {
                self.egress_id = Some(egress_id);
                if self.phase == Phase::StartingEgress {
                    self.phase = Phase::EgressStarted;
                }
            }
            E::EgressActive { .. } => self.phase = Phase::EgressActive,
            E::RecordingStarted { asset_id, at } => {
                self.asset_id = asset_id;
                self.started_at = Some(at);
                self.phase = Phase::Recording;
            }
            E::StopRequested { reason, at } => {
                self.stop_requested = Some(reason);
                if self.phase == Phase::Recording {
                    self.stopped_at = Some(at);
                    self.phase = Phase::Stopping;
                }
            }
            E::EgressStopped { .. } => {
                self.egress_stopped = true;
                if self.phase == Phase::Stopping {
                    self.phase = Phase::EgressStopped;
                }
            }
            E::StreamCompleted { asset_id, .. } => {
                self.asset_id = Some(asset_id);
                self.phase = Phase::StreamCompleted;
            }
            E::AssetReady { asset_id, duration, .. } => {
                self.asset_id = Some(asset_id);
                self.duration = Some(duration);
                self.phase = Phase::AssetReady;
            }
            E::ClipsRequested { clips, .. } => {
                for plan in clips {
                    let state = ClipState {
                        plan,
                        status: ClipStatus::Requested,
                        asset_id: None,
                        playback_id: None,
                        error: None,
                    };
                    self.clips.insert(state.plan.clip_id.clone(), state);
                }
                self.phase = Phase::Clipping;
            }
            E::ClipCreated { clip_id, asset_id, playback_id, .. } => {
                if let Some(clip) = self.clips.get_mut(&clip_id) {
                    clip.asset_id = Some(asset_id);
                    clip.playback_id = playback_id;
                    clip.status = ClipStatus::Preparing;
                }
            }
            E::ClipReady { clip_id, .. } => {
                if let Some(clip) = self.clips.get_mut(&clip_id) {
                    clip.status = ClipStatus::Ready;
                }
            }
            E::ClipErrored { clip_id, reason, .. } => {
                if let Some(clip) = self.clips.get_mut(&clip_id) {
                    clip.status = ClipStatus::Errored;
                    clip.error = Some(reason);
                }
            }
            E::Completed { at } => {
                self.phase = Phase::Completed;
                self.lock_released = true;
                self.ended_at = Some(at);
            }
            E::FailureDetected { reason, .. } => {
                self.failure = Some(reason);
                self.phase = Phase::Compensating;
            }
            E::StreamDeleted { .. } => self.stream_deleted = true,
            E::LockReleased { .. } => self.lock_released = true,
            E::Failed { reason, at } => {
                self.failure = Some(reason);
                self.phase = Phase::Failed;
                self.ended_at = Some(at);
            }
        }
    }
}
