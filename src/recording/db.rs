//! The recording tables (`migrations/*/0004_recording.sql`): durable
//! commands and the sessions still being driven. SQL is written once with
//! `$n` placeholders and runs on both databases.

use crate::store::subscription::SqlValue;
use crate::store::{EventStore, StoreError};

/// Where a command is in the queue (the `status` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandStatus {
    /// Waiting for its (next) attempt.
    Pending,
    Done,
    /// Can never succeed (a start while another session records, a stop
    /// with nothing left to stop).
    Refused,
    /// Out of attempts: a dead letter until retried.
    Dead,
}

impl CommandStatus {
    const ALL: [Self; 4] = [Self::Pending, Self::Done, Self::Refused, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Refused => "refused",
            Self::Dead => "dead",
        }
    }

    pub fn parse(status: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == status)
    }
}

/// What a command asks for (the `kind` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    Start,
    Stop,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        [Self::Start, Self::Stop].into_iter().find(|k| k.as_str() == kind)
    }
}

/// A row of `recording_commands`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetter)]
pub struct CommandRow {
    pub command_id: String,
    pub event_id: String,
    pub kind: String,
    pub requested_by: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// For a stop: the session it stops.
    pub target_session_id: Option<String>,
}

impl CommandRow {
    /// The row's kind; `None` for a value this build does not know (the
    /// worker refuses such a command rather than stalling on it).
    pub fn kind(&self) -> Option<CommandKind> {
        CommandKind::parse(&self.kind)
    }

    pub fn status(&self) -> Option<CommandStatus> {
        CommandStatus::parse(&self.status)
    }
}

type CommandTuple = (String, String, String, String, String, i64, i64, Option<String>, i64, i64, Option<String>);

fn command_row(t: CommandTuple) -> CommandRow {
    CommandRow {
        command_id: t.0,
        event_id: t.1,
        kind: t.2,
        requested_by: t.3,
        status: t.4,
        attempts: t.5,
        next_attempt_at: t.6,
        last_error: t.7,
        created_at: t.8,
        updated_at: t.9,
        target_session_id: t.10,
    }
}

const COMMAND_COLUMNS: &str = "command_id, event_id, kind, requested_by, status, attempts, next_attempt_at, \
                               last_error, created_at, updated_at, target_session_id";

pub async fn insert_command(
    store: &EventStore,
    command_id: &str,
    event_id: &str,
    kind: CommandKind,
    requested_by: &str,
    target_session_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "insert into recording_commands (command_id, event_id, kind, requested_by, status, attempts, \
               next_attempt_at, created_at, updated_at, target_session_id) \
               values ($1, $2, $3, $4, $7, 0, $5, $5, $5, $6)";
    let args: [SqlValue; 7] = [
        command_id.into(),
        event_id.into(),
        kind.as_str().into(),
        requested_by.into(),
        now.into(),
        target_session_id.into(),
        CommandStatus::Pending.as_str().into(),
    ];
    store.execute(sql, &args).await?;
    Ok(())
}

/// Whether `error` is a unique-key violation (the one pending start per
/// event index).
pub fn is_unique_violation(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
}

pub async fn next_due_command(store: &EventStore, now: i64) -> Result<Option<CommandRow>, StoreError> {
    let sql = format!(
        "select {COMMAND_COLUMNS} from recording_commands where status = $2 and next_attempt_at <= $1 \
         order by next_attempt_at, command_id limit 1"
    );
    let rows: Vec<CommandTuple> = store.query_as(&sql, &[now.into(), CommandStatus::Pending.as_str().into()]).await?;
    Ok(rows.into_iter().next().map(command_row))
}

pub async fn commands_with_status(store: &EventStore, status: CommandStatus) -> Result<Vec<CommandRow>, StoreError> {
    let sql = format!("select {COMMAND_COLUMNS} from recording_commands where status = $1 order by created_at");
    let rows: Vec<CommandTuple> = store.query_as(&sql, &[status.as_str().into()]).await?;
    Ok(rows.into_iter().map(command_row).collect())
}

pub async fn command(store: &EventStore, command_id: &str) -> Result<Option<CommandRow>, StoreError> {
    let sql = format!("select {COMMAND_COLUMNS} from recording_commands where command_id = $1");
    let rows: Vec<CommandTuple> = store.query_as(&sql, &[command_id.into()]).await?;
    Ok(rows.into_iter().next().map(command_row))
}

/// The queued start of an event, if any (at most one: the index of one
/// pending start per event).
pub async fn pending_start(store: &EventStore, event_id: &str) -> Result<Option<String>, StoreError> {
    let sql = "select command_id from recording_commands where event_id = $1 and kind = $2 and status = $3";
    let args: [SqlValue; 3] =
        [event_id.into(), CommandKind::Start.as_str().into(), CommandStatus::Pending.as_str().into()];
    let rows: Vec<(String,)> = store.query_as(sql, &args).await?;
    Ok(rows.into_iter().next().map(|row| row.0))
}

pub async fn update_command(
    store: &EventStore,
    command_id: &str,
    status: CommandStatus,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<&str>,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = "update recording_commands set status = $2, attempts = $3, next_attempt_at = $4, last_error = $5, \
               updated_at = $6 where command_id = $1";
    let args: [SqlValue; 6] = [
        command_id.into(),
        status.as_str().into(),
        attempts.into(),
        next_attempt_at.into(),
        last_error.into(),
        now.into(),
    ];
    store.execute(sql, &args).await
}

/// Puts a dead letter back in the queue; false if `command_id` is not dead.
pub async fn retry_dead(store: &EventStore, command_id: &str, now: i64) -> Result<bool, StoreError> {
    let sql = "update recording_commands set status = $3, attempts = 0, next_attempt_at = $2, \
               updated_at = $2 where command_id = $1 and status = $4";
    let args: [SqlValue; 4] =
        [command_id.into(), now.into(), CommandStatus::Pending.as_str().into(), CommandStatus::Dead.as_str().into()];
    Ok(store.execute(sql, &args).await? == 1)
}

/// Starts driving a session (idempotent).
pub async fn activate_session(
    store: &EventStore,
    session_id: &str,
    event_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "insert into recording_sessions_active (session_id, event_id, attempts, next_attempt_at) \
               values ($1, $2, 0, $3) on conflict (session_id) do nothing";
    store.execute(sql, &[session_id.into(), event_id.into(), now.into()]).await?;
    Ok(())
}

/// Sessions whose next step is due: `(session_id, attempts)`.
pub async fn due_sessions(store: &EventStore, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = "select session_id, attempts from recording_sessions_active where next_attempt_at <= $1 \
               order by session_id";
    store.query_as(sql, &[now.into()]).await
}

pub async fn set_session_retry(
    store: &EventStore,
    session_id: &str,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<&str>,
) -> Result<(), StoreError> {
    let sql = "update recording_sessions_active set attempts = $2, next_attempt_at = $3, last_error = $4 \
               where session_id = $1";
    store.execute(sql, &[session_id.into(), attempts.into(), next_attempt_at.into(), last_error.into()]).await?;
    Ok(())
}

/// Whether the saga drives `session_id` (activated, not yet terminal).
pub async fn is_session_active(store: &EventStore, session_id: &str) -> Result<bool, StoreError> {
    let sql = "select count(*) from recording_sessions_active where session_id = $1";
    let rows: Vec<(i64,)> = store.query_as(sql, &[session_id.into()]).await?;
    Ok(rows.first().is_some_and(|row| row.0 > 0))
}

pub async fn deactivate_session(store: &EventStore, session_id: &str) -> Result<(), StoreError> {
    let sql = "delete from recording_sessions_active where session_id = $1";
    store.execute(sql, &[session_id.into()]).await?;
    Ok(())
}
