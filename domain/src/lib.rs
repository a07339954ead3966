//! Eventuall's domain: aggregates, their commands, events and errors.
//!
//! No IO lives here: no database, no sockets, no clocks. Time arrives inside
//! commands (`at`, milliseconds since the Unix epoch), so every decision is a
//! pure function of state and command, and replaying a stream always rebuilds
//! the same state. Each aggregate implements cqrs-es's `Aggregate` and is
//! tested given/when/then with its `TestFramework`.
//!
//! Layout:
//! - [`room`]: an event room (the Event Durable Object): presence per
//!   connection and user, the stage, and the room's recording status.
//! - `queue`: the collaborative participant queue, a Yjs document.
//! - [`recording`]: the recording coordinator (one session per room) and the
//!   recording session, the saga's log.
//! - [`interview`]: AI interview rooms (the second seed): a user's directory
//!   of interviews with their AI quota, and each interview's conversation.

mod decided;
pub mod ids;
pub mod interview;
pub mod queue;
pub mod recording;
pub mod room;

pub use ids::EventId;
