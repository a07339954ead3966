//! Eventuall's read models as pure folds over domain events.
//!
//! Each projection turns one event into the row changes it implies
//! ([`RowChange`]); it never touches a database. The service's projection
//! runner (`src/projections.rs`) applies those changes in SQL, in the same
//! transaction as the subscriber's checkpoint, so a read model is updated
//! exactly once per event and can be rebuilt from position 0.
//!
//! Layout:
//! - [`presence`]: presence sessions (who was connected when) and stage
//!   intervals (who was on stage when): raw material for analytics and clips.
//! - [`analytics`]: per-event running totals (attendance, peak concurrency,
//!   stage time, queue waits) over the rows an event touches.
//! - [`interviews`]: the interview list and one row per AI call.

pub mod analytics;
pub mod interviews;
pub mod presence;

/// A change to one read-model row, in terms the SQL layer maps to tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowChange {
    /// A connection opened: a new presence session row.
    SessionOpened { event_id: String, connection_id: String, user_id: String, kind: String, connected_at: i64 },
    /// A connection closed: its session row gets its end.
    SessionClosed { event_id: String, connection_id: String, disconnected_at: i64, reason: String },
    /// A user stepped on stage: a new open interval.
    StageIntervalOpened { event_id: String, user_id: String, entered_at: i64 },
    /// A user left the stage: their open interval is closed.
    StageIntervalClosed { event_id: String, user_id: String, exited_at: i64 },
}
