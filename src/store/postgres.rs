//! The event log on PostgreSQL: for several nodes sharing one database.
//!
//! A batch append takes `pg_advisory_xact_lock(APPEND_LOCK)` before it draws
//! positions. PostgreSQL makes a committing transaction visible before it
//! releases its locks, so the next appender (on any node) cannot draw a
//! position until the previous batch is visible: positions become visible in
//! order and subscribers never skip one (ADR 0002). The lock serialises
//! appenders, which group commit makes cheap: one lock per batch, not per
//! event. Rows go in with one `unnest` insert per batch. On the fast path the
//! lock and the insert are one call of the server-side function
//! `eventlog_append` (migrations 0007, 0010): one round trip under the lock.
//! A stream's head is its last event, read from the `(stream_id,
//! stream_version)` index; no table repeats it (ADR 0012).
//!
//! The writer connections commit with `synchronous_commit = off`, so the
//! lock is released without waiting for the WAL flush, and a batch is
//! answered only after `eventlog_flush` (migration 0009) has returned on the
//! same connection: a second round trip, outside the lock, whose flush
//! coalesces with the other writers'. The serial part of an append is the
//! insert, not the disk (ADR 0011).

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use uuid::Uuid;

use super::{
    Appends, BatchPlan, RecordedEvent, Snapshot, StoreError, StoredId, StreamHead, StreamId, WrittenBatch,
    hash_from_bytes, now_millis, optimistic_plan, parse_metadata,
};

/// Key of the advisory lock that orders appends ("eventlog" in ASCII).
const APPEND_LOCK: i64 = 0x6576_656e_746c_6f67;
/// SQLSTATE of the unique violation `eventlog_append` raises when a row
/// collides with a stored one (migration 0008: a plain insert, which rolls
/// the whole call back).
const APPEND_CONFLICT: &str = "23505";

const EVENT_COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, \
     event_version, payload::text, metadata::text, recorded_at, hash";

#[derive(Clone)]
pub struct PgBackend {
    pool: PgPool,
    /// The group-commit writers' own connections (one per writer task):
    /// never wait behind readers, are not pinged before each batch, and
    /// commit without waiting for the WAL flush ([`flush`] makes them
    /// durable).
    writer: PgPool,
}

impl PgBackend {
    pub async fn connect(url: &str, max_readers: u32, writers: u32) -> Result<Self, StoreError> {
        // Readers plus the writer plus room for projections and timers.
        let pool = PgPoolOptions::new()
            .max_connections(max_readers + 4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // Asynchronous commit on these connections only: every write they
        // make is answered after `flush`, and everything else (projections,
        // timers, commands) keeps synchronous commits.
        let writer_options = url.parse::<PgConnectOptions>()?.options([("synchronous_commit", "off")]);
        let writer = PgPoolOptions::new()
            .max_connections(writers.max(1))
            .min_connections(writers.max(1))
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(writer_options)
            .await?;
        Ok(Self { pool, writer })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    /// The checked path: heads and stored ids read afresh under the append
    /// lock; decides every request exactly.
    pub(crate) async fn write_checked(
        &self,
        appends: &Appends,
        streams: &[String],
        ids: &[Uuid],
    ) -> Result<WrittenBatch, StoreError> {
        let mut connection = self.writer.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *connection).await?;
        sqlx::query("select pg_advisory_xact_lock($1)").bind(APPEND_LOCK).execute(&mut *tx).await?;
        let heads = read_heads(&mut *tx, streams).await?;
        let stored = read_stored_ids(&mut tx, ids).await?;
        let plan = BatchPlan::new(appends, heads, &stored, now_millis());
        let columns = Columns::of(&plan);
        let mut positions = HashMap::with_capacity(columns.event_ids.len());
        if !columns.event_ids.is_empty() {
            let returned = sqlx::query(
                "insert into events (stream_id, stream_version, event_id, event_type, event_version, \
                   payload, metadata, recorded_at, hash) \
                 select s, v, id, t, tv, p::json, m::json, r, h \
                 from unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
                             $7::text[], $8::bigint[], $9::bytea[]) \
                      with ordinality as u(s, v, id, t, tv, p, m, r, h, n) \
                 order by n \
                 returning global_position, event_id",
            );
            for row in columns.bind_events(returned).fetch_all(&mut *tx).await? {
                positions.insert(row.get::<Uuid, _>(1), row.get::<i64, _>(0));
            }
        }
        upsert_snapshots(&mut tx, &plan).await?;
        tx.commit().await?;
        flush(&mut connection).await?;
        Ok(WrittenBatch { plan, positions })
    }

    /// The fast path: `heads` as the cache knows them (the `missing` ones
    /// read as a hint outside any transaction), no look-up of stored ids, and one call
    /// of `eventlog_append`, which takes the append lock, inserts, stores
    /// attached snapshots and commits — or, when any row
    /// collides with a stored one, rolls everything back with
    /// [`APPEND_CONFLICT`] — then [`flush`]. `None` (and nothing written)
    /// when the batch needs the checked path.
    pub(crate) async fn write_fast(
        &self,
        appends: &Appends,
        mut heads: HashMap<String, StreamHead>,
        missing: Vec<String>,
    ) -> Result<Option<WrittenBatch>, StoreError> {
        let mut connection = self.writer.acquire().await?;
        if !missing.is_empty() {
            heads.extend(read_heads(&mut *connection, &missing).await?);
        }
        let Some(plan) = optimistic_plan(appends, heads, now_millis()) else {
            return Ok(None);
        };
        let columns = Columns::of(&plan);
        let call = sqlx::query(
            "select out_position, out_event_id from eventlog_append($1, $2, $3, $4, $5, $6, $7::json[], \
             $8::json[], $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(APPEND_LOCK);
        let call = columns.bind_snapshots(columns.bind_events(call));
        match call.fetch_all(&mut *connection).await {
            Ok(returned) => {
                let positions = returned.iter().map(|row| (row.get::<Uuid, _>(1), row.get::<i64, _>(0))).collect();
                flush(&mut connection).await?;
                Ok(Some(WrittenBatch { plan, positions }))
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(APPEND_CONFLICT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    shared_reads!(pool);
}

/// Returns once every transaction `connection` has committed is durable
/// (migration 0009). An error leaves that unknown: the batch is answered
/// with the error, and a retry with the same event ids finds out.
async fn flush(connection: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("select eventlog_flush()").execute(connection).await?;
    Ok(())
}

/// One array per column for the `unnest` inserts of events and snapshots.
#[derive(Default)]
struct Columns {
    stream_ids: Vec<String>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<String>,
    type_versions: Vec<String>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    snapshot_ids: Vec<String>,
    snapshot_versions: Vec<i64>,
    snapshot_tags: Vec<String>,
    snapshot_states: Vec<Vec<u8>>,
    snapshot_taken_at: Vec<i64>,
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

impl Columns {
    fn of(plan: &BatchPlan) -> Self {
        let mut columns = Self::default();
        for row in plan.rows() {
            columns.stream_ids.push(row.stream_id.clone());
            columns.versions.push(row.stream_version);
            columns.event_ids.push(row.event_id);
            columns.types.push(row.event_type.clone());
            columns.type_versions.push(row.event_version.clone());
            columns.payloads.push(row.payload.clone());
            columns.metadata.push(row.metadata.clone());
            columns.recorded_at.push(row.recorded_at);
            columns.hashes.push(row.hash.to_vec());
        }
        for snapshot in &plan.snapshots {
            columns.snapshot_ids.push(snapshot.stream_id.clone());
            columns.snapshot_versions.push(snapshot.version);
            columns.snapshot_tags.push(snapshot.schema_tag.clone());
            columns.snapshot_states.push(snapshot.state.clone());
            columns.snapshot_taken_at.push(snapshot.taken_at);
        }
        columns
    }

    /// Binds the nine event columns, in table order.
    fn bind_events<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.stream_ids)
            .bind(&self.versions)
            .bind(&self.event_ids)
            .bind(&self.types)
            .bind(&self.type_versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
            .bind(&self.recorded_at)
            .bind(&self.hashes)
    }

    /// Binds the five snapshot columns.
    fn bind_snapshots<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.snapshot_ids)
            .bind(&self.snapshot_versions)
            .bind(&self.snapshot_tags)
            .bind(&self.snapshot_states)
            .bind(&self.snapshot_taken_at)
    }
}

/// The heads of `streams` that have events: each stream's last event, one
/// backward step down the `(stream_id, stream_version)` index.
async fn read_heads(
    executor: impl sqlx::PgExecutor<'_>,
    streams: &[String],
) -> Result<HashMap<String, StreamHead>, StoreError> {
    let rows = sqlx::query(
        "select s.id, last.stream_version, last.hash from unnest($1::text[]) as s(id) \
         cross join lateral (select stream_version, hash from events where stream_id = s.id \
                             order by stream_version desc limit 1) as last",
    )
    .bind(streams)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let head =
                StreamHead { version: row.get::<i64, _>(1) as u64, last_hash: hash_from_bytes(row.get::<&[u8], _>(2)) };
            (row.get(0), head)
        })
        .collect())
}

async fn read_stored_ids(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, StoredId>, StoreError> {
    let rows =
        sqlx::query("select event_id, stream_id, stream_version, global_position from events where event_id = any($1)")
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let stored = StoredId {
                stream_id: row.get(1),
                stream_version: row.get::<i64, _>(2) as u64,
                global_position: row.get(3),
            };
            (row.get(0), stored)
        })
        .collect())
}

decode_event_fn!(PgRow);
/// Stores the snapshots that ride along with a batch, inside its
/// transaction (one statement each: an aggregate attaches one every few
/// dozen events, so they are few).
async fn upsert_snapshots(conn: &mut sqlx::PgConnection, plan: &BatchPlan) -> Result<(), StoreError> {
    for snapshot in &plan.snapshots {
        sqlx::query(super::UPSERT_SNAPSHOT)
            .bind(&snapshot.stream_id)
            .bind(snapshot.version)
            .bind(&snapshot.schema_tag)
            .bind(&snapshot.state)
            .bind(snapshot.taken_at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
