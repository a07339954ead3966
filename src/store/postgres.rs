//! The event log on PostgreSQL: for several nodes sharing one database.
//!
//! A batch append takes `pg_advisory_xact_lock(APPEND_LOCK)` before it draws
//! positions. PostgreSQL makes a committing transaction visible before it
//! releases its locks, so the next appender (on any node) cannot draw a
//! position until the previous batch is visible: positions become visible in
//! order and subscribers never skip one (ADR 0002). The lock serialises
//! appenders, which group commit makes cheap: one lock per batch, not per
//! event. Rows go in with one `unnest` insert per batch.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use uuid::Uuid;

use super::{
    AppendOutcome, BatchPlan, PendingAppend, RecordedEvent, Snapshot, StoreError, StoredId, StreamHead, StreamId,
    batch_keys, hash_from_bytes, now_millis, parse_metadata,
};

/// Key of the advisory lock that orders appends ("eventlog" in ASCII).
const APPEND_LOCK: i64 = 0x6576_656e_746c_6f67;

const EVENT_COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, \
     event_version, payload::text, metadata::text, recorded_at, hash";

#[derive(Clone)]
pub struct PgBackend {
    pool: PgPool,
}

impl PgBackend {
    pub async fn connect(url: &str, max_readers: u32) -> Result<Self, StoreError> {
        // Readers plus the writer plus room for projections and timers.
        let pool = PgPoolOptions::new()
            .max_connections(max_readers + 4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn write_batch(
        &self,
        appends: &[PendingAppend],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)").bind(APPEND_LOCK).execute(&mut *tx).await?;
        let (streams, ids) = batch_keys(appends);
        let heads = read_heads(&mut tx, &streams).await?;
        let stored = read_stored_ids(&mut tx, &ids).await?;
        let plan = BatchPlan::new(appends, heads, &stored, now_millis());

        let mut columns = InsertColumns::default();
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
            )
            .bind(&columns.stream_ids)
            .bind(&columns.versions)
            .bind(&columns.event_ids)
            .bind(&columns.types)
            .bind(&columns.type_versions)
            .bind(&columns.payloads)
            .bind(&columns.metadata)
            .bind(&columns.recorded_at)
            .bind(&columns.hashes)
            .fetch_all(&mut *tx)
            .await?;
            for row in returned {
                positions.insert(row.get::<Uuid, _>(1), row.get::<i64, _>(0));
            }
            let (head_ids, (head_versions, head_hashes)): (Vec<&String>, (Vec<i64>, Vec<Vec<u8>>)) =
                plan.new_heads.iter().map(|(id, head)| (id, (head.version as i64, head.last_hash.to_vec()))).unzip();
            sqlx::query(
                "insert into streams (stream_id, version, last_hash) \
                 select * from unnest($1::text[], $2::bigint[], $3::bytea[]) \
                 on conflict (stream_id) do update set version = excluded.version, last_hash = excluded.last_hash",
            )
            .bind(&head_ids)
            .bind(&head_versions)
            .bind(&head_hashes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(plan.answers(&positions))
    }

    shared_reads!(pool);
}

/// One array per column for the `unnest` insert.
#[derive(Default)]
struct InsertColumns {
    stream_ids: Vec<String>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    types: Vec<String>,
    type_versions: Vec<String>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<i64>,
    hashes: Vec<Vec<u8>>,
}

async fn read_heads(
    tx: &mut Transaction<'_, Postgres>,
    streams: &[String],
) -> Result<HashMap<String, StreamHead>, StoreError> {
    let rows = sqlx::query("select stream_id, version, last_hash from streams where stream_id = any($1)")
        .bind(streams)
        .fetch_all(&mut **tx)
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
