//! Recording: the per-event [`Coordinator`] (one active recording per room,
//! at most 12 hours) and the per-session [`RecordingSession`], whose events
//! record every request and result of the recording saga (Mux live stream,
//! LiveKit web egress, recording asset, one clip per stage interval) and of
//! its compensation when it fails.
//!
//! Like every aggregate here, these decide from state and command only; the
//! process manager in the service performs the external calls and records
//! their outcomes as commands (`RecordingSession::decide(SessionCommand::Record(..))`),
//! and the session refuses outcomes that do not fit its state machine.

mod coordinator;
mod session;

pub use coordinator::{
    Coordinator, CoordinatorCommand, CoordinatorError, CoordinatorEvent, EXPIRY_GRACE_MS, Lock, MAX_RECORDING_MS,
};
pub use session::{
    ClipPlan, ClipState, ClipStatus, Phase, RecordingSession, SessionCommand, SessionError, SessionEvent,
};

#[cfg(test)]
mod tests;
