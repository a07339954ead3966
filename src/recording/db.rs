//! The recording tables (`migrations/*/0004_recording.sql`): durable
//! commands and the sessions still being driven. SQL is written once with
//! `$n` placeholders and runs on both databases.

use crate::store::{Backend, EventStore, StoreError};

/// Runs `$body` with `$pool` bound to whichever database the store uses.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store.backend() {
            Backend::Sqlite(b) => {
                let $pool = b.pool();
                $body
            }
            Backend::Postgres(b) => {
                let $pool = b.pool();
                $body
            }
        }
    };
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
    kind: &str,
    requested_by: &str,
    target_session_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let sql = "insert into recording_commands (command_id, event_id, kind, requested_by, status, attempts, \
               next_attempt_at, created_at, updated_at, target_session_id) \
               values ($1, $2, $3, $4, 'pending', 0, $5, $5, $5, $6)";
    on_pool!(store, |pool| {
        sqlx::query(sql)
            .bind(command_id)
            .bind(event_id)
            .bind(kind)
            .bind(requested_by)
            .bind(now)
            .bind(target_session_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Whether `error` is a unique-key violation (the one pending start per
/// event index).
pub fn is_unique_violation(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
}

pub async fn next_due_command(store: &EventStore, now: i64) -> Result<Option<CommandRow>, StoreError> {
    let sql = format!(
        "select {COMMAND_COLUMNS} from recording_commands where status = 'pending' and next_attempt_at <= $1 \
         order by next_attempt_at, command_id limit 1"
    );
    let row: Option<CommandTuple> =
        on_pool!(store, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now).fetch_optional(pool).await?);
    Ok(row.map(command_row))
}

pub async fn commands_with_status(store: &EventStore, status: &str) -> Result<Vec<CommandRow>, StoreError> {
    let sql = format!("select {COMMAND_COLUMNS} from recording_commands where status = $1 order by created_at");
    let rows: Vec<CommandTuple> =
        on_pool!(store, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(status).fetch_all(pool).await?);
    Ok(rows.into_iter().map(command_row).collect())
}

pub async fn command(store: &EventStore, command_id: &str) -> Result<Option<CommandRow>, StoreError> {
    let sql = format!("select {COMMAND_COLUMNS} from recording_commands where command_id = $1");
    let row: Option<CommandTuple> =
        on_pool!(store, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(command_id).fetch_optional(pool).await?);
    Ok(row.map(command_row))
}

/// The queued start of an event, if any (at most one: the index of one
/// pending start per event).
pub async fn pending_start(store: &EventStore, event_id: &str) -> Result<Option<String>, StoreError> {
    let sql = "select command_id from recording_commands where event_id = $1 and kind = 'start' and status = 'pending'";
    Ok(on_pool!(store, |pool| sqlx::query_scalar::<_, String>(sql).bind(event_id).fetch_optional(pool).await?))
}

pub async fn update_command(
    store: &EventStore,
    command_id: &str,
    status: &str,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<&str>,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = "update recording_commands set status = $2, attempts = $3, next_attempt_at = $4, last_error = $5, \
               updated_at = $6 where command_id = $1";
    Ok(on_pool!(store, |pool| sqlx::query(sql)
        .bind(command_id)
        .bind(status)
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(last_error)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()))
}

/// Puts a dead letter back in the queue; false if `command_id` is not dead.
pub async fn retry_dead(store: &EventStore, command_id: &str, now: i64) -> Result<bool, StoreError> {
    let sql = "update recording_commands set status = 'pending', attempts = 0, next_attempt_at = $2, \
               updated_at = $2 where command_id = $1 and status = 'dead'";
    let changed =
        on_pool!(store, |pool| sqlx::query(sql).bind(command_id).bind(now).execute(pool).await?.rows_affected());
    Ok(changed == 1)
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
    on_pool!(store, |pool| {
        sqlx::query(sql).bind(session_id).bind(event_id).bind(now).execute(pool).await?;
    });
    Ok(())
}

/// Sessions whose next step is due: `(session_id, attempts)`.
pub async fn due_sessions(store: &EventStore, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = "select session_id, attempts from recording_sessions_active where next_attempt_at <= $1 \
               order by session_id";
    Ok(on_pool!(store, |pool| sqlx::query_as(sql).bind(now).fetch_all(pool).await?))
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
    on_pool!(store, |pool| {
        sqlx::query(sql).bind(session_id).bind(attempts).bind(next_attempt_at).bind(last_error).execute(pool).await?;
    });
    Ok(())
}

/// Whether the saga drives `session_id` (activated, not yet terminal).
pub async fn is_session_active(store: &EventStore, session_id: &str) -> Result<bool, StoreError> {
    let sql = "select count(*) from recording_sessions_active where session_id = $1";
    let n = on_pool!(store, |pool| sqlx::query_scalar::<_, i64>(sql).bind(session_id).fetch_one(pool).await?);
    Ok(n > 0)
}

pub async fn deactivate_session(store: &EventStore, session_id: &str) -> Result<(), StoreError> {
    let sql = "delete from recording_sessions_active where session_id = $1";
    on_pool!(store, |pool| {
        sqlx::query(sql).bind(session_id).execute(pool).await?;
    });
    Ok(())
}
