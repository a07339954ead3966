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
//! - `room_presence`: `presence_sessions`, `stage_intervals`: a batch's row
//!   changes compacted to their net effect ([`presence::Writes`]) and written
//!   as a few multi-row statements (insert-or-ignore, update-if-open).
//! - `analytics`: `analytics_events`, `analytics_attendance`,
//!   `analytics_stage_time`, `analytics_queue_waits`,
//!   `analytics_recording_sessions`, `analytics_clips`: running totals, read,
//!   folded and written back per batch, a chunk of rows per statement (see
//!   `docs/ANALYTICS.md`).
//! - `interviews`: `interviews` (the interview list) and `analytics_ai_calls`
//!   (one row per AI call), one statement per change.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use eventuall_domain::interview::{DirectoryEvent, InterviewEvent};
use eventuall_domain::queue::QueueEvent;
use eventuall_domain::recording::SessionEvent;
use eventuall_domain::room::RoomEvent;
use eventuall_projections::analytics::{
    self, ClipOutcome, ClipRow, Input, Key, QueueWait, RecordingOutcome, RecordingRow, Rows,
};
use eventuall_projections::interviews::{self, InterviewChange};
use eventuall_projections::presence;
use serde::Serialize;
use tokio::sync::watch;

use crate::store::registry::Registry;
use crate::store::subscription::{FromAnyRow, SqlRef, SqlValue, load_checkpoint};
use crate::store::{CatchUp, DbTx, EventStore, RecordedEvent, StoreError};

/// Subscriber name (checkpoint key) of the room presence projection.
pub const ROOM_PRESENCE: &str = "room_presence";
/// Subscriber name (checkpoint key) of the analytics projection.
pub const ANALYTICS: &str = "analytics";
/// Subscriber name (checkpoint key) of the interview list and AI call rows.
pub const INTERVIEWS: &str = "interviews";
/// Suffix of the shadow tables a rebuild writes before swapping them in.
pub const SHADOW_SUFFIX: &str = "__rebuild";

/// The service's projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Projection {
    RoomPresence,
    Analytics,
    Interviews,
}

impl Projection {
    pub const ALL: [Projection; 3] = [Projection::RoomPresence, Projection::Analytics, Projection::Interviews];

    /// Its subscriber name: the checkpoint key and the CLI's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Projection::RoomPresence => ROOM_PRESENCE,
            Projection::Analytics => ANALYTICS,
            Projection::Interviews => INTERVIEWS,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The tables it owns (and a rebuild replaces).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Projection::RoomPresence => &["presence_sessions", "stage_intervals"],
            Projection::Analytics => &[
                "analytics_events",
                "analytics_attendance",
                "analytics_stage_time",
                "analytics_queue_waits",
                "analytics_recording_sessions",
                "analytics_clips",
            ],
            Projection::Interviews => &["interviews", "analytics_ai_calls"],
        }
    }

    /// Whether it reads events of `event_type` from streams of `category`:
    /// the others it skips without decoding (a rebuild does not even hand
    /// them over). Room heartbeats and sweeps change no row of either.
    pub fn reads(self, category: &str, event_type: &str) -> bool {
        match (self, category) {
            (Projection::RoomPresence | Projection::Analytics, "room") => {
                !presence::IGNORED_EVENT_TYPES.contains(&event_type)
            }
            (Projection::Analytics, "queue") => analytics::QUEUE_EVENT_TYPES.contains(&event_type),
            (Projection::Analytics, "recording") => true,
            (Projection::Interviews, "user_interviews" | "interview") => {
                !interviews::IGNORED_EVENT_TYPES.contains(&event_type)
            }
            _ => false,
        }
    }

    /// Whether any of `events` is one it reads.
    pub fn reads_any(self, events: &[RecordedEvent]) -> bool {
        events.iter().any(|e| self.reads(e.stream_id.category(), &e.event_type))
    }

    /// Applies `events` to this projection's `tables` inside `tx`.
    pub async fn apply_batch(self, tx: &mut DbTx, events: &[RecordedEvent], tables: Tables) -> Result<(), StoreError> {
        match self {
            Projection::RoomPresence => apply_presence(tx, events, tables).await,
            Projection::Analytics => apply_analytics(tx, events, tables).await,
            Projection::Interviews => apply_interviews(tx, events, tables).await,
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
    /// Nothing new in the log (or only appends of this process that it
    /// passed over, up to the newest).
    Idle,
}

/// Whether a step committed a transaction (the runner paces those) or
/// wrote nothing (it passed over what it read, or followed a rebuild).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    Transaction,
    Nothing,
}

/// One step of the room presence projection. Tests call this directly.
pub async fn try_step(store: &EventStore, subscription: &mut CatchUp) -> Result<Step, StoreError> {
    try_step_projection(store, Projection::RoomPresence, subscription).await
}

/// Handles one batch of `projection`, if there is one, on the live tables.
/// A batch of nothing it reads (heartbeats, sweeps) is passed over in
/// memory, without a transaction ([`CatchUp::skip_to`]): at low rates each
/// append is its own batch, and three projections committing a checkpoint
/// per heartbeat batch cost more than the heartbeats (issue #21).
/// [`save_skipped`] stores such a checkpoint later.
pub async fn try_step_projection(
    store: &EventStore,
    projection: Projection,
    subscription: &mut CatchUp,
) -> Result<Step, StoreError> {
    step(store, projection, subscription).await.map(|(step, _)| step)
}

/// [`try_step_projection`], also saying whether the step wrote a
/// transaction (the runner paces those under load).
async fn step(
    store: &EventStore,
    projection: Projection,
    subscription: &mut CatchUp,
) -> Result<(Step, Wrote), StoreError> {
    // What this process itself appended since, if the projection reads
    // none of it, is passed over without a query: at low rates each commit
    // is a heartbeat or two, and reading each back cost more than writing it.
    let position = subscription.position();
    if let Some(through) =
        store.unread_local_through(position, |category, event_type| projection.reads(category, event_type))
    {
        subscription.skip_to(through);
        let passed = usize::try_from(through - position).unwrap_or(0);
        let step = if through >= store.local_head() { Step::Idle } else { Step::Progressed(passed) };
        return Ok((step, Wrote::Nothing));
    }
    let batch = subscription.poll().await?;
    let Some(last) = batch.last().map(|e| e.global_position) else {
        return Ok((Step::Idle, Wrote::Nothing));
    };
    if !projection.reads_any(&batch) {
        subscription.skip_to(last);
        return Ok((Step::Progressed(batch.len()), Wrote::Nothing));
    }
    let mut tx = DbTx::begin(store).await?;
    if follows_a_rebuild(&mut tx, projection, subscription).await? {
        return Ok((Step::Progressed(0), Wrote::Nothing));
    }
    projection.apply_batch(&mut tx, &batch, Tables::Live).await?;
    subscription.commit(tx, last).await?;
    Ok((Step::Progressed(batch.len()), Wrote::Transaction))
}

/// Whether `projection` has handled every event it reads: nothing it reads
/// lies after its stored checkpoint (which skipped batches may leave
/// behind the head for up to a second). Readers that promise
/// read-your-writes wait for this, not for checkpoint = head.
pub async fn caught_up(store: &EventStore, projection: Projection) -> Result<bool, StoreError> {
    const SCAN: usize = 2_000;
    let checkpoint = load_checkpoint(store, projection.name()).await?;
    if checkpoint >= store.head_position().await? {
        return Ok(true);
    }
    let pending = store.read_all(checkpoint, SCAN).await?;
    Ok(pending.len() < SCAN && !projection.reads_any(&pending))
}

/// Stores a checkpoint that skipped batches left only in memory; `true`
/// when there was one to store.
pub async fn save_skipped(
    store: &EventStore,
    projection: Projection,
    subscription: &mut CatchUp,
) -> Result<bool, StoreError> {
    if subscription.position() == subscription.saved_position() {
        return Ok(false);
    }
    let mut tx = DbTx::begin(store).await?;
    if !follows_a_rebuild(&mut tx, projection, subscription).await? {
        let position = subscription.position();
        subscription.commit(tx, position).await?;
    }
    Ok(true)
}

/// Whether a rebuild moved the stored checkpoint since this subscriber last
/// stored it (it swapped in tables that are at the stored position): the
/// subscriber then continues there.
async fn follows_a_rebuild(
    tx: &mut DbTx,
    projection: Projection,
    subscription: &mut CatchUp,
) -> Result<bool, StoreError> {
    let stored = locked_checkpoint(tx, subscription.subscriber()).await?;
    if stored == subscription.saved_position() {
        return Ok(false);
    }
    tracing::info!(projection = projection.name(), from = subscription.position(), to = stored, "checkpoint moved");
    subscription.seek(stored);
    Ok(true)
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

async fn apply_presence(tx: &mut DbTx, events: &[RecordedEvent], tables: Tables) -> Result<(), StoreError> {
    let mut changes = Vec::new();
    for event in events {
        if !Projection::RoomPresence.reads(event.stream_id.category(), &event.event_type) {
            continue;
        }
        let room_event: RoomEvent = match registry().decode(event) {
            Ok(e) => e,
            Err(error) => {
                // A payload this code cannot read must not stop every read
                // model; `replay verify` reports it.
                tracing::error!(%error, stream = %event.stream_id, version = event.stream_version, "room projection skipped an undecodable event");
                continue;
            }
        };
        changes.extend(presence::changes(event.stream_id.entity_id(), &room_event));
    }
    let writes = presence::Writes::compact(changes);
    if writes.is_empty() {
        return Ok(());
    }
    write_presence(tx, &writes, tables).await
}

/// Rows per multi-row statement, largest first: a few fixed shapes, so each
/// stays in the prepared-statement cache; 256 × 7 binds is far below either
/// database's bind limit.
const ROWS_PER_STATEMENT: [usize; 5] = [256, 64, 16, 4, 1];

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` binds.
fn values_list(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(row * columns + column + 1).to_string());
        }
        out.push(')');
    }
    out
}

/// `rows` cut into chunks of the sizes in [`ROWS_PER_STATEMENT`], largest first.
fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = ROWS_PER_STATEMENT.into_iter().find(|s| *s <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// Runs `statement(values list)` over `rows` in chunks of
/// [`ROWS_PER_STATEMENT`], binding each row's `columns` values.
async fn execute_rows<'r, T>(
    tx: &mut DbTx,
    rows: &'r [T],
    columns: usize,
    statement: impl Fn(&str) -> String,
    binds: impl Fn(&'r T) -> Vec<SqlRef<'r>>,
) -> Result<(), StoreError> {
    for chunk in statement_chunks(rows) {
        let sql = statement(&values_list(chunk.len(), columns));
        let all: Vec<SqlRef<'r>> = chunk.iter().flat_map(&binds).collect();
        tx.execute_typed(&sql, &all).await?;
    }
    Ok(())
}

/// Inserts `rows` into `table`, or where a row with the same `key` is
/// there, overwrites its other `columns`: a chunk of rows per statement
/// ([`execute_rows`]). `binds` gives a row's values in `columns` order.
async fn upsert_rows<'r, T>(
    tx: &mut DbTx,
    rows: &'r [T],
    table: &str,
    columns: &[&str],
    key: &[&str],
    binds: impl Fn(&'r T) -> Vec<SqlRef<'r>>,
) -> Result<(), StoreError> {
    let names = columns.join(", ");
    let updates: Vec<String> =
        columns.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
    let (key, updates) = (key.join(", "), updates.join(", "));
    execute_rows(
        tx,
        rows,
        columns.len(),
        |values| format!("insert into {table} ({names}) values {values} on conflict ({key}) do update set {updates}"),
        binds,
    )
    .await
}

/// The rows of `pairs` (live event id, user id) that `statement` selects:
/// one query per live event and chunk of [`ROWS_PER_STATEMENT`] users, with
/// the event bound as `$1` and `statement` given the users' `$2, $3, …`.
async fn fetch_by_user<T: FromAnyRow>(
    tx: &mut DbTx,
    pairs: &[(&str, &str)],
    statement: impl Fn(&str) -> String,
) -> Result<Vec<T>, StoreError> {
    let mut users_by_event: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (event_id, user_id) in pairs {
        users_by_event.entry(event_id).or_default().push(user_id);
    }
    let mut found = Vec::new();
    for (event_id, users) in users_by_event {
        for chunk in statement_chunks(&users) {
            let list = (2..chunk.len() + 2).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
            let binds: Vec<SqlRef<'_>> =
                std::iter::once(SqlRef::Text(event_id)).chain(chunk.iter().map(|u| SqlRef::Text(u))).collect();
            found.extend(tx.fetch_all_typed::<T>(&statement(&list), &binds).await?);
        }
    }
    Ok(found)
}

/// Applies compacted presence writes in the order [`presence::Writes`]
/// requires: closes before inserts, per table.
async fn write_presence(tx: &mut DbTx, writes: &presence::Writes, tables: Tables) -> Result<(), StoreError> {
    let sessions = tables.name("presence_sessions");
    let stages = tables.name("stage_intervals");
    execute_rows(
        tx,
        &writes.session_closes,
        4,
        |values| {
            format!(
                "with v (event_id, connection_id, disconnected_at, close_reason) as (values {values}) \
                 update {sessions} set disconnected_at = v.disconnected_at, close_reason = v.close_reason from v \
                 where {sessions}.event_id = v.event_id and {sessions}.connection_id = v.connection_id \
                 and {sessions}.disconnected_at is null"
            )
        },
        |c| {
            vec![
                SqlRef::Text(&c.event_id),
                SqlRef::Text(&c.connection_id),
                SqlRef::Int(c.disconnected_at),
                SqlRef::Text(&c.reason),
            ]
        },
    )
    .await?;
    execute_rows(
        tx,
        &writes.session_inserts,
        7,
        |values| {
            format!(
                "insert into {sessions} (event_id, connection_id, user_id, kind, connected_at, disconnected_at, \
                 close_reason) values {values} on conflict do nothing"
            )
        },
        |r| {
            vec![
                SqlRef::Text(&r.event_id),
                SqlRef::Text(&r.connection_id),
                SqlRef::Text(&r.user_id),
                SqlRef::Text(&r.kind),
                SqlRef::Int(r.connected_at),
                SqlRef::OptInt(r.disconnected_at),
                SqlRef::OptText(r.close_reason.as_deref()),
            ]
        },
    )
    .await?;
    execute_rows(
        tx,
        &writes.stage_closes,
        3,
        |values| {
            format!(
                "with v (event_id, user_id, exited_at) as (values {values}) \
                 update {stages} set exited_at = v.exited_at from v \
                 where {stages}.event_id = v.event_id and {stages}.user_id = v.user_id and {stages}.exited_at is null"
            )
        },
        |c| vec![SqlRef::Text(&c.event_id), SqlRef::Text(&c.user_id), SqlRef::Int(c.exited_at)],
    )
    .await?;
    execute_rows(
        tx,
        &writes.stage_inserts,
        4,
        |values| {
            format!(
                "insert into {stages} (event_id, user_id, entered_at, exited_at) values {values} on conflict do nothing"
            )
        },
        |r| {
            vec![
                SqlRef::Text(&r.event_id),
                SqlRef::Text(&r.user_id),
                SqlRef::Int(r.entered_at),
                SqlRef::OptInt(r.exited_at),
            ]
        },
    )
    .await
}

/// A decoded event the analytics fold reads.
enum Decoded {
    Room(RoomEvent),
    Queue(QueueEvent),
    Recording(SessionEvent),
}

impl Decoded {
    fn input(&self) -> Input<'_> {
        match self {
            Decoded::Room(e) => Input::Room(e),
            Decoded::Queue(e) => Input::Queue(e),
            Decoded::Recording(e) => Input::Recording(e),
        }
    }
}

async fn apply_analytics(tx: &mut DbTx, events: &[RecordedEvent], tables: Tables) -> Result<(), StoreError> {
    let mut decoded = Vec::new();
    for event in events {
        if !Projection::Analytics.reads(event.stream_id.category(), &event.event_type) {
            continue;
        }
        let result = match event.stream_id.category() {
            "room" => registry().decode(event).map(Decoded::Room),
            "queue" => registry().decode(event).map(Decoded::Queue),
            "recording" => registry().decode(event).map(Decoded::Recording),
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
    load_rows(tx, &mut rows, &keys, tables).await?;
    for (event_id, d) in &decoded {
        analytics::apply(&mut rows, event_id, d.input());
    }
    write_rows(tx, rows, tables).await
}

/// Loads the rows `keys` name. The per-user rows (attendance, stage time,
/// open waits: one or two per join, leave or queue change) are read a
/// chunk of users at a time; a batch of 300 queued participants was 300
/// queries, each several hops to SQLite's worker thread (issue #21).
async fn load_rows(tx: &mut DbTx, rows: &mut Rows, keys: &[Key], tables: Tables) -> Result<(), StoreError> {
    let mut attendance = Vec::new();
    let mut stage = Vec::new();
    let mut open_waits = Vec::new();
    for key in keys {
        match key {
            Key::Attendance { event_id, user_id } => attendance.push((event_id.as_str(), user_id.as_str())),
            Key::Stage { event_id, user_id } => stage.push((event_id.as_str(), user_id.as_str())),
            Key::OpenWait { event_id, user_id } => open_waits.push((event_id.as_str(), user_id.as_str())),
            Key::Totals { event_id } => load_totals(tx, rows, event_id, tables).await?,
            Key::Recording { session_id } => load_recording(tx, rows, session_id, tables).await?,
            Key::Clip { session_id, clip_id } => load_clip(tx, rows, session_id, clip_id, tables).await?,
        }
    }
    let table = tables.name("analytics_attendance");
    let found: Vec<(String, String, i64, Option<i64>, i64, Option<i64>, i64, i64)> =
        fetch_by_user(tx, &attendance, |users| {
            format!(
                "select event_id, user_id, first_joined_at, last_left_at, open_connections, present_since, \
                 present_ms, sessions from {table} where event_id = $1 and user_id in ({users})"
            )
        })
        .await?;
    for (event_id, user_id, first_joined_at, last_left_at, open_connections, present_since, present_ms, sessions) in
        found
    {
        rows.attendance.insert(
            (event_id.clone(), user_id.clone()),
            analytics::Attendance {
                event_id,
                user_id,
                first_joined_at,
                last_left_at,
                open_connections,
                present_since,
                present_ms,
                sessions,
            },
        );
    }
    let table = tables.name("analytics_stage_time");
    let found: Vec<(String, String, Option<i64>, i64, i64)> = fetch_by_user(tx, &stage, |users| {
        format!(
            "select event_id, user_id, on_stage_since, stage_ms, stage_entries from {table} \
             where event_id = $1 and user_id in ({users})"
        )
    })
    .await?;
    for (event_id, user_id, on_stage_since, stage_ms, stage_entries) in found {
        rows.stage.insert(
            (event_id.clone(), user_id.clone()),
            analytics::StageTime { event_id, user_id, on_stage_since, stage_ms, stage_entries },
        );
    }
    // A user's open wait is their newest without an end.
    let table = tables.name("analytics_queue_waits");
    let found: Vec<(String, String, i64)> = fetch_by_user(tx, &open_waits, |users| {
        format!(
            "select event_id, user_id, max(queued_at) from {table} \
             where event_id = $1 and user_id in ({users}) and ended_at is null group by event_id, user_id"
        )
    })
    .await?;
    for (event_id, user_id, queued_at) in found {
        rows.open_waits.insert(
            (event_id.clone(), user_id.clone()),
            QueueWait { event_id, user_id, queued_at, ended_at: None, outcome: None },
        );
    }
    Ok(())
}

// Live event totals, recordings and clips: a few rows a batch, one query each.

async fn load_totals(tx: &mut DbTx, rows: &mut Rows, event_id: &str, tables: Tables) -> Result<(), StoreError> {
    let sql = format!(
        "select event_id, present_users, peak_concurrent_users, peak_at, first_activity_at, last_activity_at \
             from {} where event_id = $1",
        tables.name("analytics_events")
    );
    let found: Vec<(String, i64, i64, Option<i64>, Option<i64>, Option<i64>)> =
        tx.fetch_all_as(&sql, &[event_id.into()]).await?;
    for (event_id, present_users, peak_concurrent_users, peak_at, first_activity_at, last_activity_at) in found {
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
    Ok(())
}

async fn load_recording(tx: &mut DbTx, rows: &mut Rows, session_id: &str, tables: Tables) -> Result<(), StoreError> {
    let sql = format!(
        "select event_id, requested_by, requested_at, recording_started_at, recording_stopped_at, \
             duration_ms, asset_duration_ms, ended_at, outcome, failure_reason from {} where session_id = $1",
        tables.name("analytics_recording_sessions")
    );
    type Found =
        (String, String, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, String, Option<String>);
    let found: Vec<Found> = tx.fetch_all_as(&sql, &[session_id.into()]).await?;
    for (
        event_id,
        requested_by,
        requested_at,
        recording_started_at,
        recording_stopped_at,
        duration_ms,
        asset_duration_ms,
        ended_at,
        outcome,
        failure_reason,
    ) in found
    {
        rows.recordings.insert(
            session_id.to_owned(),
            RecordingRow {
                event_id,
                session_id: session_id.to_owned(),
                requested_by,
                requested_at,
                recording_started_at,
                recording_stopped_at,
                duration_ms,
                asset_duration_ms,
                ended_at,
                outcome: RecordingOutcome::parse(&outcome).unwrap_or(RecordingOutcome::Requested),
                failure_reason,
            },
        );
    }
    Ok(())
}

async fn load_clip(
    tx: &mut DbTx,
    rows: &mut Rows,
    session_id: &str,
    clip_id: &str,
    tables: Tables,
) -> Result<(), StoreError> {
    let sql = format!(
        "select event_id, user_id, start_ms, end_ms, requested_at, finished_at, status, error from {} \
             where session_id = $1 and clip_id = $2",
        tables.name("analytics_clips")
    );
    type Found = (String, String, i64, i64, i64, Option<i64>, String, Option<String>);
    let found: Vec<Found> = tx.fetch_all_as(&sql, &[session_id.into(), clip_id.into()]).await?;
    for (event_id, user_id, start_ms, end_ms, requested_at, finished_at, status, error) in found {
        rows.clips.insert(
            (session_id.to_owned(), clip_id.to_owned()),
            ClipRow {
                event_id,
                session_id: session_id.to_owned(),
                clip_id: clip_id.to_owned(),
                user_id,
                start_ms,
                end_ms,
                requested_at,
                finished_at,
                status: ClipOutcome::parse(&status).unwrap_or(ClipOutcome::Requested),
                error,
            },
        );
    }
    Ok(())
}

/// Writes back every row the batch touched, a chunk of rows per statement
/// (the per-user rows were one statement each, issue #21).
async fn write_rows(tx: &mut DbTx, rows: Rows, tables: Tables) -> Result<(), StoreError> {
    let totals: Vec<_> = rows.totals.into_values().collect();
    upsert_rows(
        tx,
        &totals,
        &tables.name("analytics_events"),
        &["event_id", "present_users", "peak_concurrent_users", "peak_at", "first_activity_at", "last_activity_at"],
        &["event_id"],
        |t| {
            vec![
                SqlRef::Text(&t.event_id),
                SqlRef::Int(t.present_users),
                SqlRef::Int(t.peak_concurrent_users),
                SqlRef::OptInt(t.peak_at),
                SqlRef::OptInt(t.first_activity_at),
                SqlRef::OptInt(t.last_activity_at),
            ]
        },
    )
    .await?;
    let attendance: Vec<_> = rows.attendance.into_values().collect();
    upsert_rows(
        tx,
        &attendance,
        &tables.name("analytics_attendance"),
        &[
            "event_id",
            "user_id",
            "first_joined_at",
            "last_left_at",
            "open_connections",
            "present_since",
            "present_ms",
            "sessions",
        ],
        &["event_id", "user_id"],
        |a| {
            vec![
                SqlRef::Text(&a.event_id),
                SqlRef::Text(&a.user_id),
                SqlRef::Int(a.first_joined_at),
                SqlRef::OptInt(a.last_left_at),
                SqlRef::Int(a.open_connections),
                SqlRef::OptInt(a.present_since),
                SqlRef::Int(a.present_ms),
                SqlRef::Int(a.sessions),
            ]
        },
    )
    .await?;
    let stage: Vec<_> = rows.stage.into_values().collect();
    upsert_rows(
        tx,
        &stage,
        &tables.name("analytics_stage_time"),
        &["event_id", "user_id", "on_stage_since", "stage_ms", "stage_entries"],
        &["event_id", "user_id"],
        |s| {
            vec![
                SqlRef::Text(&s.event_id),
                SqlRef::Text(&s.user_id),
                SqlRef::OptInt(s.on_stage_since),
                SqlRef::Int(s.stage_ms),
                SqlRef::Int(s.stage_entries),
            ]
        },
    )
    .await?;
    // Ended waits before open ones (a user can leave and queue again in one
    // batch). One statement may not update a row twice on PostgreSQL, so of
    // two ends of the same wait (same start) the later is kept, as the
    // second of two single-row upserts would.
    let table = tables.name("analytics_queue_waits");
    let ended = last_end_of_each_wait(&rows.ended_waits);
    upsert_rows(
        tx,
        &ended,
        &table,
        &["event_id", "user_id", "queued_at", "ended_at", "outcome"],
        &["event_id", "user_id", "queued_at"],
        |(w, ended_at, outcome)| {
            vec![
                SqlRef::Text(&w.event_id),
                SqlRef::Text(&w.user_id),
                SqlRef::Int(w.queued_at),
                SqlRef::Int(*ended_at),
                SqlRef::Text(outcome.as_str()),
            ]
        },
    )
    .await?;
    let open: Vec<_> = rows.open_waits.into_values().collect();
    execute_rows(
        tx,
        &open,
        3,
        |values| format!("insert into {table} (event_id, user_id, queued_at) values {values} on conflict do nothing"),
        |w| vec![SqlRef::Text(&w.event_id), SqlRef::Text(&w.user_id), SqlRef::Int(w.queued_at)],
    )
    .await?;
    // Typed binds: these rows have nullable text columns.
    let recording_sql = format!(
        "insert into {} (event_id, session_id, requested_by, requested_at, recording_started_at, \
         recording_stopped_at, duration_ms, asset_duration_ms, ended_at, outcome, failure_reason) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) on conflict (event_id, session_id) do update set \
         recording_started_at = excluded.recording_started_at, recording_stopped_at = excluded.recording_stopped_at, \
         duration_ms = excluded.duration_ms, asset_duration_ms = excluded.asset_duration_ms, \
         ended_at = excluded.ended_at, outcome = excluded.outcome, failure_reason = excluded.failure_reason",
        tables.name("analytics_recording_sessions")
    );
    for r in rows.recordings.values() {
        let binds = [
            SqlRef::Text(&r.event_id),
            SqlRef::Text(&r.session_id),
            SqlRef::Text(&r.requested_by),
            SqlRef::Int(r.requested_at),
            SqlRef::OptInt(r.recording_started_at),
            SqlRef::OptInt(r.recording_stopped_at),
            SqlRef::OptInt(r.duration_ms),
            SqlRef::OptInt(r.asset_duration_ms),
            SqlRef::OptInt(r.ended_at),
            SqlRef::Text(r.outcome.as_str()),
            SqlRef::OptText(r.failure_reason.as_deref()),
        ];
        tx.execute_typed(&recording_sql, &binds).await?;
    }
    let clip_sql = format!(
        "insert into {} (event_id, clip_id, session_id, user_id, start_ms, end_ms, requested_at, finished_at, \
         status, error) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) on conflict (event_id, clip_id) do update set \
         finished_at = excluded.finished_at, status = excluded.status, error = excluded.error",
        tables.name("analytics_clips")
    );
    for c in rows.clips.values() {
        let binds = [
            SqlRef::Text(&c.event_id),
            SqlRef::Text(&c.clip_id),
            SqlRef::Text(&c.session_id),
            SqlRef::Text(&c.user_id),
            SqlRef::Int(c.start_ms),
            SqlRef::Int(c.end_ms),
            SqlRef::Int(c.requested_at),
            SqlRef::OptInt(c.finished_at),
            SqlRef::Text(c.status.as_str()),
            SqlRef::OptText(c.error.as_deref()),
        ];
        tx.execute_typed(&clip_sql, &binds).await?;
    }
    Ok(())
}

/// The ended waits of a batch with their end, the last end of each wait
/// (by event, user and start) only, in batch order.
fn last_end_of_each_wait(ended: &[QueueWait]) -> Vec<(&QueueWait, i64, analytics::WaitOutcome)> {
    let mut last = std::collections::HashMap::new();
    for (index, w) in ended.iter().enumerate() {
        last.insert((w.event_id.as_str(), w.user_id.as_str(), w.queued_at), index);
    }
    ended
        .iter()
        .enumerate()
        .filter(|(index, w)| last[&(w.event_id.as_str(), w.user_id.as_str(), w.queued_at)] == *index)
        .filter_map(|(_, w)| Some((w, w.ended_at?, w.outcome?)))
        .collect()
}

/// How far one projection has got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    let mut last_save = tokio::time::Instant::now();
    let mut pace = Pace::default();
    while !*shutdown.borrow() {
        head.mark_unchanged();
        match step(&store, projection, &mut subscription).await {
            Ok((Step::Progressed(_), wrote)) => {
                if wrote == Wrote::Transaction {
                    pace.wrote(tokio::time::Instant::now());
                }
                continue;
            }
            Ok((Step::Idle, _)) => {}
            Err(error) => {
                tracing::error!(%error, projection = projection.name(), "projection step failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        if last_save.elapsed() >= SAVE_SKIPPED_EVERY {
            last_save = tokio::time::Instant::now();
            if let Err(error) = save_skipped(&store, projection, &mut subscription).await {
                tracing::warn!(%error, projection = projection.name(), "checkpoint not saved; retrying later");
            }
        }
        tokio::select! {
            _ = head.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => {}
        }
        // Appends that trickle in while the projection is at the head are
        // taken together: the next write waits out the pace after the last.
        // (Not once shutdown has begun: its change was already taken above.)
        if !*shutdown.borrow()
            && let Some(until) = pace.wait_until(tokio::time::Instant::now())
        {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    // What skipped batches moved, stored before the process goes.
    let _ = save_skipped(&store, projection, &mut subscription).await;
}

/// The least time between two transactions of one projection at the head
/// of the log. Each transaction is several round trips to the database's
/// own thread and holds SQLite's write lock against the event log's
/// writer; with one per join, the projections took a fifth of a
/// 200-client join's latency (issue #21). Paced, joins arriving every few
/// milliseconds are projected together; a quiet projection still writes
/// at once (the pace counts from its last write), and a catch-up after a
/// restart is not paced at all (it never waits between full batches).
pub const BUSY_PACE: Duration = Duration::from_millis(20);

/// When a projection at the head may write next ([`BUSY_PACE`]).
#[derive(Debug, Default)]
struct Pace {
    last_write: Option<tokio::time::Instant>,
}

impl Pace {
    fn wrote(&mut self, at: tokio::time::Instant) {
        self.last_write = Some(at);
    }

    /// Until when a step woken `now` waits; `None`: it goes at once.
    fn wait_until(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        self.last_write.map(|at| at + BUSY_PACE).filter(|until| *until > now)
    }
}

/// How often a checkpoint moved only by skipped batches is stored.
const SAVE_SKIPPED_EVERY: Duration = Duration::from_secs(1);

async fn apply_interviews(tx: &mut DbTx, events: &[RecordedEvent], tables: Tables) -> Result<(), StoreError> {
    let list = tables.name("interviews");
    let calls = tables.name("analytics_ai_calls");
    for event in events {
        if !Projection::Interviews.reads(event.stream_id.category(), &event.event_type) {
            continue;
        }
        let entity = event.stream_id.entity_id();
        let changes = match event.stream_id.category() {
            "user_interviews" => registry()
                .decode::<DirectoryEvent>(event)
                .map(|e| interviews::changes(interviews::Input::Directory { user_id: entity, event: &e })),
            _ => registry()
                .decode::<InterviewEvent>(event)
                .map(|e| interviews::changes(interviews::Input::Interview { interview_id: entity, event: &e })),
        };
        let changes = match changes {
            Ok(changes) => changes,
            Err(error) => {
                tracing::error!(%error, stream = %event.stream_id, version = event.stream_version, "interview projection skipped an undecodable event");
                continue;
            }
        };
        for change in changes {
            write_interview_change(tx, change, &list, &calls).await?;
        }
    }
    Ok(())
}

async fn write_interview_change(
    tx: &mut DbTx,
    change: InterviewChange,
    list: &str,
    calls: &str,
) -> Result<(), StoreError> {
    let skills_json = |skills: &[String]| serde_json::to_string(skills).expect("strings serialise");
    let (sql, args): (String, Vec<SqlValue>) = match change {
        InterviewChange::Created { interview_id, user_id, title, job_description, skills, at } => (
            format!(
                "insert into {list} (interview_id, user_id, title, job_description, skills, state, created_at, \
                 updated_at, message_count, hints_given, archived, deleted) \
                 values ($1, $2, $3, $4, $5, 'idle', $6, $6, 0, 0, 0, 0) \
                 on conflict (interview_id) do update set user_id = excluded.user_id, title = excluded.title, \
                 job_description = excluded.job_description, skills = excluded.skills, created_at = excluded.created_at"
            ),
            vec![
                interview_id.into(),
                user_id.into(),
                title.into(),
                job_description.into(),
                skills_json(&skills).into(),
                at.into(),
            ],
        ),
        InterviewChange::Renamed { interview_id, title, at } => (
            format!("update {list} set title = $2, updated_at = $3 where interview_id = $1"),
            vec![interview_id.into(), title.into(), at.into()],
        ),
        InterviewChange::SkillsSet { interview_id, skills, at } => (
            format!("update {list} set skills = $2, updated_at = $3 where interview_id = $1"),
            vec![interview_id.into(), skills_json(&skills).into(), at.into()],
        ),
        InterviewChange::Archived { interview_id, at } => (
            format!("update {list} set archived = 1, updated_at = $2 where interview_id = $1"),
            vec![interview_id.into(), at.into()],
        ),
        InterviewChange::Deleted { interview_id, at } => (
            format!("update {list} set deleted = 1, updated_at = $2 where interview_id = $1"),
            vec![interview_id.into(), at.into()],
        ),
        InterviewChange::StateChanged { interview_id, state, at } => (
            format!("update {list} set state = $2, updated_at = $3 where interview_id = $1"),
            vec![interview_id.into(), state.as_str().into(), at.into()],
        ),
        InterviewChange::MessageAdded { interview_id, hint, at } => (
            format!(
                "update {list} set message_count = message_count + 1, hints_given = hints_given + $2, \
                 updated_at = $3 where interview_id = $1"
            ),
            vec![interview_id.into(), i64::from(hint).into(), at.into()],
        ),
        InterviewChange::CallStarted { call_id, interview_id, kind, model, input_size, at } => (
            format!(
                "insert into {calls} (call_id, interview_id, user_id, kind, model, started_at, input_size, outcome) \
                 values ($1, $2, coalesce((select user_id from {list} where interview_id = $2), ''), $3, $4, $5, $6, \
                 'running') on conflict (call_id) do nothing"
            ),
            vec![call_id.into(), interview_id.into(), kind.as_str().into(), model.into(), at.into(), input_size.into()],
        ),
        InterviewChange::CallEnded { call_id, outcome, latency_ms, prompt_tokens, completion_tokens, at } => (
            format!(
                "update {calls} set outcome = $2, latency_ms = $3, prompt_tokens = $4, completion_tokens = $5, \
                 ended_at = $6 where call_id = $1"
            ),
            vec![
                call_id.into(),
                outcome.into(),
                latency_ms.into(),
                prompt_tokens.into(),
                completion_tokens.into(),
                at.into(),
            ],
        ),
    };
    tx.execute(&sql, &args).await?;
    Ok(())
}

#[cfg(test)]
mod reads_tests {
    use super::Projection;

    /// Each projection reads its own categories only: the interviews
    /// projection once read every room event too, and logged each one as
    /// undecodable (found by the kill -9 soak).
    #[test]
    fn each_projection_reads_only_its_categories() {
        for event_type in ["ConnectionOpened", "StageEntered"] {
            assert!(Projection::RoomPresence.reads("room", event_type));
            assert!(Projection::Analytics.reads("room", event_type));
            assert!(!Projection::Interviews.reads("room", event_type));
        }
        assert!(!Projection::RoomPresence.reads("room", "LiveKitDeliveryApplied"));
        assert!(!Projection::Interviews.reads("queue", "ParticipantQueued"));
        assert!(Projection::Analytics.reads("queue", "ParticipantQueued"));
        assert!(!Projection::RoomPresence.reads("interview", "UserAnswered"));
        assert!(!Projection::Analytics.reads("user_interviews", "InterviewCreated"));
    }
}

#[cfg(test)]
mod pace_tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{BUSY_PACE, Pace};

    /// A projection that has not written goes at once; after a write at t,
    /// a step woken at t + 19.999 ms waits until t + 20 ms, and one woken
    /// at t + 20 ms goes at once.
    #[tokio::test(start_paused = true)]
    async fn a_write_holds_the_next_one_back_for_the_pace_and_no_longer() {
        let mut pace = Pace::default();
        let t = Instant::now();
        assert_eq!(pace.wait_until(t), None, "a quiet projection writes at once");
        pace.wrote(t);
        let just_before = t + BUSY_PACE - Duration::from_micros(1);
        assert_eq!(pace.wait_until(just_before), Some(t + BUSY_PACE));
        assert_eq!(pace.wait_until(t + BUSY_PACE), None);
        assert_eq!(pace.wait_until(t + BUSY_PACE * 50), None, "a write long ago holds nothing back");
    }
}
