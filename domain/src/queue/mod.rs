//! The collaborative participant queue of an event (the Queue Durable Object).
//!
//! Moderators reorder two lists of participants, `pending` and `live`, from
//! their browsers with Yjs; the server holds the authoritative copy, keeps it
//! consistent and records every change so that audits can replay it.
//!
//! Layout:
//! - [`document`]: [`QueueDoc`], the Yjs document (two `Y.Array`s of plain
//!   `{"userId","name"}` objects), its read model [`QueueView`], the server's
//!   own edits and the deterministic repair of the queue's invariants.
//! - [`aggregate`]: [`Queue`], the cqrs-es aggregate. Its events carry the raw
//!   Yjs updates (the replayable truth) and semantic annotations derived from
//!   them ("alice was promoted by mod-1").
//! - [`sync`]: the y-websocket protocol as pure functions over bytes: frame
//!   decoding, a per-connection [`sync::Session`], the room's awareness
//!   registry. It knows nothing of sockets; the server feeds it frames.
//!
//! Nothing here performs IO or reads a clock: time arrives in commands.

pub mod aggregate;
pub mod document;
pub mod sync;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

use serde::{Deserialize, Serialize};

pub use aggregate::{Queue, QueueCommand, QueueEvent, UpdateOrigin};
pub use document::{Entry, QueueDoc, QueueList, QueueView, RemovalReason, RemovedEntry, Repair};
pub use sync::{AwarenessRegistry, Outcome, Session, SyncError};

/// What a connection or caller may do to the queue, from the token's `role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads the queue; its writes are dropped silently (public contract).
    Participant,
    /// Reads and writes the queue.
    Moderator,
}

/// Who asks for a change: the authenticated user and their role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: String,
    pub role: Role,
}

impl Actor {
    pub fn moderator(user_id: impl Into<String>) -> Self {
        Actor { user_id: user_id.into(), role: Role::Moderator }
    }

    pub fn participant(user_id: impl Into<String>) -> Self {
        Actor { user_id: user_id.into(), role: Role::Participant }
    }
}

/// Everything that can go wrong when reading or changing the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The bytes are not a Yjs v1 update (or yrs refused to integrate them).
    #[error("malformed Yjs update")]
    MalformedUpdate,
    /// The bytes are not a Yjs v1 state vector.
    #[error("malformed Yjs state vector")]
    MalformedStateVector,
    #[error("{0} is not in the queue")]
    UnknownParticipant(String),
    /// A position past the end of the target list (`len` is the largest allowed).
    #[error("index {index} is outside the list (at most {len})")]
    InvalidIndex { index: usize, len: usize },
    #[error("a user id must not be empty")]
    EmptyUserId,
    /// yrs panicked while integrating an update: the live document may hold
    /// part of it, which the log does not. The owner must reload it from the
    /// log before deciding anything else.
    #[error("the queue document diverged from its log")]
    Diverged,
    /// Only moderators may change the queue through server commands.
    #[error("{0} may not change the queue")]
    Forbidden(String),
}
