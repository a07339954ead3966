//! The projection runner: keeps read-model tables up to date from the log.
//!
//! Each projection ([`Projection`]) is a catch-up subscription ([`CatchUp`])
//! with its own checkpoint. For every batch it maps events to row changes
//! with the pure folds of the `eventuall-projections` crate and writes them
//! with its checkpoint in one transaction, so each event is applied exactly
//! once, even across crashes.
//!
//! Table names are a parameter ([`Tables`]): the service writes the live
//! tables, `eventuall replay rebuild` runs the same code into shadow tables
//! (`presence_sessions__rebuild`, …) and swaps them in
//! (`crate::replay::rebuild`). A step first checks that its stored checkpoint
//! is still where it left it, so a swap that moved it is followed, not
//! overwritten.
//!
//! - `room_presence`: `presence_sessions`, `stage_intervals` (idempotent
//!   statements: insert-or-ignore, update-if-open).
//! - `analytics`: `analytics_events`, `analytics_attendance`,
//!   `analytics_stage_time`, `analytics_queue_waits`: running totals, read,
//!   folded and written back per batch (see `docs/ANALYTICS.md`).

use std::borrow::Cow;
use std::time::Duration;

use eventuall_domain::queue::QueueEvent;
use eventuall_domain::room::RoomEvent;
use eventuall_projections::analytics::{self, Input, Key, QueueWait, Rows};
use eventuall_projections::{RowChange, presence};
use serde::Serialize;
use tokio::sync::watch;

use crate::replay::registry::Registry;
use crate::store::subscription::{SqlValue, load_checkpoint};
use crate::store::{CatchUp, DbTx, EventStore, RecordedEvent, StoreError};

/// Subscriber name (checkpoint key) of the room presence projection.
pub const ROOM_PRESENCE: &str = "room_presence";
/// Subscriber name (checkpoint key) of the analytics projection.
pub const ANALYTICS: &str = "analytics";
/// Suffix of the shadow tables a rebuild writes before swapping them in.
pub const SHADOW_SUFFIX: &str = "__rebuild";

/// The service's projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Projection {
    RoomPresence,
    Analytics,
}

impl Projection {
    pub const ALL: [Projection; 2] = [Projection::RoomPresence, Projection::Analytics];

    /// Its subscriber name: the checkpoint key and the CLI's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Projection::RoomPresence => ROOM_PRESENCE,
            Projection::Analytics => ANALYTICS,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The tables it owns (and a rebuild replaces).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Projection::RoomPresence => &["presence_sessions", "stage_intervals"],
            Projection::Analytics => {
                &["analytics_events", "analytics_attendance", "analytics_stage_time", "analytics_queue_waits"]
            }
        }
    }

    /// Applies `events` to this projection's `tables` inside `tx`.
    pub async fn apply_batch(self, tx: &mut DbTx, events: &[RecordedEvent], tables: Tables) -> Result<(), StoreError> {
        match self {
            Projection::RoomPresence => {
                for event in events {
                    apply_presence(tx, event, tables).await?;
                }
                Ok(())
            }
            Projection::Analytics => apply_analytics(tx, events, tables).await,
        }
    }
}

/// Which copy of a projection's tables a step writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    /// The tables the service reads.
    Live,
    /// `{table}__rebuild`, filled by a rebuild before the swap.
    Shadow,
}

impl Tables {
    pub fn name(self, table: &'static str) -> Cow<'static, str> {
        match self {
            Tables::Live => Cow::Borrowed(table),
            Tables::Shadow => Cow::Owned(format!("{table}{SHADOW_SUFFIX}")),
        }
    }
}

/// What one step of a projection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Handled this many events (0: it followed a checkpoint moved by a
    /// rebuild and will read from there next).
    Progressed(usize),
    /// Nothing new in the log.
    Idle,
}

/// One step of the room presence projection. Tests call this directly.
pub async fn try_step(store: &EventStore, subscription: &mut CatchUp) -> Result<Step, StoreError> {
    try_step_projection(store, Projection::RoomPresence, subscription).await
}

/// Handles one batch of `projection`, if there is one, on the live tables.
pub async fn try_step_projection(
    store: &EventStore,
    projection: Projection,
    subscription: &mut CatchUp,
) -> Result<Step, StoreError> {
    let batch = subscription.poll().await?;
    let Some(last) = batch.last().map(|e| e.global_position) else {
        return Ok(Step::Idle);
    };
    let mut tx = DbTx::begin(store).await?;
    let stored = locked_checkpoint(&mut tx, subscription.subscriber()).await?;
    if stored != subscription.position() {
        // A rebuild swapped in tables that are at `stored`: continue there.
        tracing::info!(projection = projection.name(), from = subscription.position(), to = stored, "checkpoint moved");
        subscription.seek(stored);
        return Ok(Step::Progressed(0));
    }
    projection.apply_batch(&mut tx, &batch, Tables::Live).await?;
    subscription.commit(tx, last).await?;
    Ok(Step::Progressed(batch.len()))
}

/// The stored checkpoint, locked until `tx` ends (PostgreSQL: the row lock a
/// rebuild's swap also takes; SQLite: `BEGIN IMMEDIATE` already serialises).
pub async fn locked_checkpoint(tx: &mut DbTx, subscriber: &str) -> Result<i64, StoreError> {
    let sql = if tx.is_postgres() {
        "select position from checkpoints where subscriber = $1 for update"
    } else {
        "select position from checkpoints where subscriber = $1"
    };
    Ok(tx.query_i64(sql, &[subscriber.into()]).await?.unwrap_or(0))
}

fn registry() -> &'static Registry {
    Registry::standard()
}

async fn apply_presence(tx: &mut DbTx, event: &RecordedEvent, tables: Tables) -> Result<(), StoreError> {
    if event.stream_id.category() != "room" {
        return Ok(());
    }
    let room_event: RoomEvent = match registry().decode(event) {
        Ok(e) => e,
        Err(error) => {
            // A payload this code cannot read must not stop every read
            // model; `replay verify` reports it.
            tracing::error!(%error, stream = %event.stream_id, version = event.stream_version, "room projection skipped an undecodable event");
            return Ok(());
        }
    };
    for change in presence::changes(event.stream_id.entity_id(), &room_event) {
        write_presence(tx, change, tables).await?;
    }
    Ok(())
}

async fn write_presence(tx: &mut DbTx, change: RowChange, tables: Tables) -> Result<(), StoreError> {
    let sessions = tables.name("presence_sessions");
    let stages = tables.name("stage_intervals");
    let (sql, args): (String, Vec<SqlValue>) = match change {
        RowChange::SessionOpened { event_id, connection_id, user_id, kind, connected_at } => (
            format!(
                "insert into {sessions} (event_id, connection_id, user_id, kind, connected_at) \
                 values ($1, $2, $3, $4, $5) on conflict do nothing"
            ),
            vec![event_id.into(), connection_id.into(), user_id.into(), kind.into(), connected_at.into()],
        ),
        RowChange::SessionClosed { event_id, connection_id, disconnected_at, reason } => (
            format!(
                "update {sessions} set disconnected_at = $3, close_reason = $4 \
                 where event_id = $1 and connection_id = $2 and disconnected_at is null"
            ),
            vec![event_id.into(), connection_id.into(), disconnected_at.into(), reason.into()],
        ),
        RowChange::StageIntervalOpened { event_id, user_id, entered_at } => (
            format!("insert into {stages} (event_id, user_id, entered_at) values ($1, $2, $3) on conflict do nothing"),
            vec![event_id.into(), user_id.into(), entered_at.into()],
        ),
        RowChange::StageIntervalClosed { event_id, user_id, exited_at } => (
            format!("update {stages} set exited_at = $3 where event_id = $1 and user_id = $2 and exited_at is null"),
            vec![event_id.into(), user_id.into(), exited_at.into()],
        ),
    };
    tx.execute(&sql, &args).await?;
    Ok(())
}

/// A decoded event the analytics fold reads.
enum Decoded {
    Room(RoomEvent),
    Queue(QueueEvent),
}

impl Decoded {
    fn input(&self) -> Input<'_> {
        match self {
            Decoded::Room(e) => Input::Room(e),
            Decoded::Queue(e) => Input::Queue(e),
        }
    }
}

async fn apply_analytics(tx: &mut DbTx, events: &[RecordedEvent], tables: Tables) -> Result<(), StoreError> {
    let mut decoded = Vec::new();
    for event in events {
        let result = match event.stream_id.category() {
            "room" => registry().decode(event).map(Decoded::Room),
            "queue" => registry().decode(event).map(Decoded::Queue),
            _ => continue,
        };
        match result {
            Ok(d) => decoded.push((event.stream_id.entity_id(), d)),
            Err(error) => {
                tracing::error!(%error, stream = %event.stream_id, version = event.stream_version, "analytics skipped an undecodable event");
            }
        }
    }
    let mut keys = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (event_id, d) in &decoded {
        for key in analytics::keys(event_id, d.input()) {
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let mut rows = Rows::default();
    for key in &keys {
        load_row(tx, &mut rows, key, tables).await?;
    }
    for (event_id, d) in &decoded {
        analytics::apply(&mut rows, event_id, d.input());
    }
    write_rows(tx, rows, tables).await
}

async fn load_row(tx: &mut DbTx, rows: &mut Rows, key: &Key, tables: Tables) -> Result<(), StoreError> {
    match key {
        Key::Totals { event_id } => {
            let sql = format!(
                "select event_id, present_users, peak_concurrent_users, peak_at, first_activity_at, last_activity_at \
                 from {} where event_id = $1",
                tables.name("analytics_events")
            );
            let found: Vec<(String, i64, i64, Option<i64>, Option<i64>, Option<i64>)> =
                tx.fetch_all_as(&sql, &[event_id.as_str().into()]).await?;
            for (event_id, present_users, peak_concurrent_users, peak_at, first_activity_at, last_activity_at) in found
            {
                rows.totals.insert(
                    event_id.clone(),
                    analytics::EventTotals {
                        event_id,
                        present_users,
                        peak_concurrent_users,
                        peak_at,
                        first_activity_at,
                        last_activity_at,
                    },
                );
            }
        }
        Key::Attendance { event_id, user_id } => {
            let sql = format!(
                "select first_joined_at, last_left_at, open_connections, present_since, present_ms, sessions \
                 from {} where event_id = $1 and user_id = $2",
                tables.name("analytics_attendance")
            );
            let found: Vec<(i64, Option<i64>, i64, Option<i64>, i64, i64)> =
                tx.fetch_all_as(&sql, &[event_id.as_str().into(), user_id.as_str().into()]).await?;
            for (first_joined_at, last_left_at, open_connections, present_since, present_ms, sessions) in found {
                rows.attendance.insert(
                    (event_id.clone(), user_id.clone()),
                    analytics::Attendance {
                        event_id: event_id.clone(),
                        user_id: user_id.clone(),
                        first_joined_at,
                        last_left_at,
                        open_connections,
                        present_since,
                        present_ms,
                        sessions,
                    },
                );
            }
        }
        Key::Stage { event_id, user_id } => {
            let sql = format!(
                "select on_stage_since, stage_ms, stage_entries from {} where event_id = $1 and user_id = $2",
                tables.name("analytics_stage_time")
            );
            let found: Vec<(Option<i64>, i64, i64)> =
                tx.fetch_all_as(&sql, &[event_id.as_str().into(), user_id.as_str().into()]).await?;
            for (on_stage_since, stage_ms, stage_entries) in found {
                rows.stage.insert(
                    (event_id.clone(), user_id.clone()),
                    analytics::StageTime {
                        event_id: event_id.clone(),
                        user_id: user_id.clone(),
                        on_stage_since,
                        stage_ms,
                        stage_entries,
                    },
                );
            }
        }
        Key::OpenWait { event_id, user_id } => {
            let sql = format!(
                "select queued_at from {} where event_id = $1 and user_id = $2 and ended_at is null \
                 order by queued_at desc limit 1",
                tables.name("analytics_queue_waits")
            );
            let found: Vec<(i64,)> =
                tx.fetch_all_as(&sql, &[event_id.as_str().into(), user_id.as_str().into()]).await?;
            for (queued_at,) in found {
                rows.open_waits.insert(
                    (event_id.clone(), user_id.clone()),
                    QueueWait {
                        event_id: event_id.clone(),
                        user_id: user_id.clone(),
                        queued_at,
                        ended_at: None,
                        outcome: None,
                    },
                );
            }
        }
    }
    Ok(())
}

async fn write_rows(tx: &mut DbTx, rows: Rows, tables: Tables) -> Result<(), StoreError> {
    let totals_sql = format!(
        "insert into {} (event_id, present_users, peak_concurrent_users, peak_at, first_activity_at, last_activity_at) \
         values ($1, $2, $3, $4, $5, $6) on conflict (event_id) do update set \
         present_users = excluded.present_users, peak_concurrent_users = excluded.peak_concurrent_users, \
         peak_at = excluded.peak_at, first_activity_at = excluded.first_activity_at, \
         last_activity_at = excluded.last_activity_at",
        tables.name("analytics_events")
    );
    for t in rows.totals.into_values() {
        let args: [SqlValue; 6] = [
            t.event_id.into(),
            t.present_users.into(),
            t.peak_concurrent_users.into(),
            t.peak_at.into(),
            t.first_activity_at.into(),
            t.last_activity_at.into(),
        ];
        tx.execute(&totals_sql, &args).await?;
    }
    let attendance_sql = format!(
        "insert into {} (event_id, user_id, first_joined_at, last_left_at, open_connections, present_since, \
         present_ms, sessions) values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (event_id, user_id) do update set \
         first_joined_at = excluded.first_joined_at, last_left_at = excluded.last_left_at, \
         open_connections = excluded.open_connections, present_since = excluded.present_since, \
         present_ms = excluded.present_ms, sessions = excluded.sessions",
        tables.name("analytics_attendance")
    );
    for a in rows.attendance.into_values() {
        let args: [SqlValue; 8] = [
            a.event_id.into(),
            a.user_id.into(),
            a.first_joined_at.into(),
            a.last_left_at.into(),
            a.open_connections.into(),
            a.present_since.into(),
            a.present_ms.into(),
            a.sessions.into(),
        ];
        tx.execute(&attendance_sql, &args).await?;
    }
    let stage_sql = format!(
        "insert into {} (event_id, user_id, on_stage_since, stage_ms, stage_entries) values ($1, $2, $3, $4, $5) \
         on conflict (event_id, user_id) do update set on_stage_since = excluded.on_stage_since, \
         stage_ms = excluded.stage_ms, stage_entries = excluded.stage_entries",
        tables.name("analytics_stage_time")
    );
    for s in rows.stage.into_values() {
        let args: [SqlValue; 5] =
            [s.event_id.into(), s.user_id.into(), s.on_stage_since.into(), s.stage_ms.into(), s.stage_entries.into()];
        tx.execute(&stage_sql, &args).await?;
    }
    // Two statements, so that `outcome` (text) is never bound as an untyped
    // NULL: PostgreSQL would fix the parameter's type from the first binding.
    let ended_sql = format!(
        "insert into {} (event_id, user_id, queued_at, ended_at, outcome) values ($1, $2, $3, $4, $5) \
         on conflict (event_id, user_id, queued_at) do update set ended_at = excluded.ended_at, \
         outcome = excluded.outcome",
        tables.name("analytics_queue_waits")
    );
    let open_sql = format!(
        "insert into {} (event_id, user_id, queued_at) values ($1, $2, $3) on conflict do nothing",
        tables.name("analytics_queue_waits")
    );
    for w in rows.ended_waits {
        let (Some(ended_at), Some(outcome)) = (w.ended_at, w.outcome) else { continue };
        let args: [SqlValue; 5] =
            [w.event_id.into(), w.user_id.into(), w.queued_at.into(), ended_at.into(), outcome.as_str().into()];
        tx.execute(&ended_sql, &args).await?;
    }
    for w in rows.open_waits.into_values() {
        let args: [SqlValue; 3] = [w.event_id.into(), w.user_id.into(), w.queued_at.into()];
        tx.execute(&open_sql, &args).await?;
    }
    Ok(())
}

/// How far one projection has got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    /// Position of the last event it handled (its checkpoint).
    pub position: i64,
    /// The log's highest position now.
    pub head: i64,
    /// `head - position`: positions not yet handled (PostgreSQL may leave
    /// gaps from rolled-back appends, so this is an upper bound on events).
    pub lag: i64,
}

/// Every projection's checkpoint against the log head.
pub async fn status(store: &EventStore) -> Result<Vec<ProjectionStatus>, StoreError> {
    let head = store.head_position().await?;
    let mut out = Vec::new();
    for projection in Projection::ALL {
        let position = load_checkpoint(store, projection.name()).await?;
        out.push(ProjectionStatus {
            name: projection.name().to_owned(),
            position,
            head,
            lag: (head - position).max(0),
        });
    }
    Ok(out)
}

/// Runs every projection until `shutdown` turns true.
pub async fn run(store: EventStore, shutdown: watch::Receiver<bool>) {
    let loops = Projection::ALL.map(|p| run_one(store.clone(), p, shutdown.clone()));
    futures::future::join_all(loops).await;
}

async fn run_one(store: EventStore, projection: Projection, mut shutdown: watch::Receiver<bool>) {
    let mut subscription = loop {
        match CatchUp::resume(&store, projection.name()).await {
            Ok(s) => break s,
            Err(error) => {
                tracing::error!(%error, projection = projection.name(), "projection cannot start; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    // One receiver for the whole loop, marked before each step: an append
    // that lands while a step runs still wakes the next wait.
    let mut head = store.head_watch();
    while !*shutdown.borrow() {
        head.mark_unchanged();
        match try_step_projection(&store, projection, &mut subscription).await {
            Ok(Step::Progressed(_)) => continue,
            Ok(Step::Idle) => {}
            Err(error) => {
                tracing::error!(%error, projection = projection.name(), "projection step failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        tokio::select! {
            _ = head.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
