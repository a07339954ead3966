//! The recording coordinator of one event (stream `coordinator-{eventId}`):
//! the lock that allows one active recording session per room.

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The longest a recording may run: Mux cuts a live stream after 12 hours,
/// so a lock older than this can only be left over from a lost session.
pub const MAX_RECORDING_MS: i64 = 12 * 60 * 60 * 1000;

/// Extra time past [`MAX_RECORDING_MS`] before a lock counts as abandoned:
/// the session's own 12 h timer must get the chance to stop and clean up.
pub const EXPIRY_GRACE_MS: i64 = 30 * 60 * 1000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coordinator {
    pub active: Option<Lock>,
    /// The most recent session, active or not (what `status` shows).
    pub last_session: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub session_id: String,
    pub acquired_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinatorCommand {
    Acquire { session_id: String, at: i64 },
    Release { session_id: String, reason: String, at: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinatorEvent {
    LockAcquired {
        session_id: String,
        at: i64,
    },
    LockReleased {
        session_id: String,
        reason: String,
        at: i64,
    },
    /// A lock held past the 12 h maximum was taken away.
    LockExpired {
        session_id: String,
        at: i64,
    },
}

impl DomainEvent for CoordinatorEvent {
    fn event_type(&self) -> String {
        match self {
            Self::LockAcquired { .. } => "LockAcquired",
            Self::LockReleased { .. } => "LockReleased",
            Self::LockExpired { .. } => "LockExpired",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    #[error("session {session_id} is already recording this event")]
    AlreadyRecording { session_id: String },
}

impl Coordinator {
    /// The lock, unless it outlived the 12 h maximum (plus grace) at `now`.
    pub fn active_at(&self, now: i64) -> Option<&Lock> {
        self.active.as_ref().filter(|lock| now - lock.acquired_at <= MAX_RECORDING_MS + EXPIRY_GRACE_MS)
    }

    pub fn decide(&self, command: CoordinatorCommand) -> Result<Vec<CoordinatorEvent>, CoordinatorError> {
        match command {
            CoordinatorCommand::Acquire { session_id, at } => match &self.active {
                // Acquiring again for the same session is a retry.
                Some(lock) if lock.session_id == session_id => Ok(vec![]),
                Some(lock) if self.active_at(at).is_some() => {
                    Err(CoordinatorError::AlreadyRecording { session_id: lock.session_id.clone() })
                }
                Some(lock) => Ok(vec![
                    CoordinatorEvent::LockExpired { session_id: lock.session_id.clone(), at },
                    CoordinatorEvent::LockAcquired { session_id, at },
                ]),
                None => Ok(vec![CoordinatorEvent::LockAcquired { session_id, at }]),
            },
            CoordinatorCommand::Release { session_id, reason, at } => match &self.active {
                Some(lock) if lock.session_id == session_id => {
                    Ok(vec![CoordinatorEvent::LockReleased { session_id, reason, at }])
                }
                // Not held by this session: releasing is idempotent.
                _ => Ok(vec![]),
            },
        }
    }
}

impl Aggregate for Coordinator {
    crate::decided::decided_aggregate!("coordinator", CoordinatorCommand, CoordinatorEvent, CoordinatorError);

    fn apply(&mut self, event: Self::Event) {
        match event {
            CoordinatorEvent::LockAcquired { session_id, at } => {
                self.last_session = Some(session_id.clone());
                self.active = Some(Lock { session_id, acquired_at: at });
            }
            CoordinatorEvent::LockReleased { .. } | CoordinatorEvent::LockExpired { .. } => self.active = None,
        }
    }
}
