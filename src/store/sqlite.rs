//! The event log on SQLite: the embedded default.
//!
//! WAL mode with `synchronous = FULL`, so a commit is on disk before an append
//! is acknowledged (it survives `kill -9` and power loss). One dedicated
//! connection writes (SQLite has one writer anyway, and `BEGIN IMMEDIATE`
//! takes the write lock up front instead of failing on upgrade); a pool of
//! readers serves loads, subscriptions and HTTP reads concurrently.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    AppendOutcome, BatchPlan, PendingAppend, PlannedRow, RecordedEvent, Snapshot, StoreError, StoredId, StreamHead,
    StreamId, batch_keys, hash_from_bytes, now_millis, parse_metadata,
};

/// Rows per multi-row INSERT, largest first. Fixed sizes keep the set of
/// distinct statements small, so every one stays in the prepared cache.
const INSERT_CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];
/// Ids per `IN (…)` look-up; far below SQLite's 32,766 bind limit.
const LOOKUP_CHUNK: usize = 500;
/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const EVENT_COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, \
     event_version, payload, metadata, recorded_at, hash";

#[derive(Clone)]
pub struct SqliteBackend {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteBackend {
    pub async fn connect(url: &str, max_readers: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new().max_connections(max_readers.max(1)).connect_with(options).await?;
        Ok(Self { writer, readers })
    }

    /// The pool for queries outside the append path (projections, timers).
    pub fn pool(&self) -> &SqlitePool {
        &self.readers
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }

    pub(crate) async fn write_batch(
        &self,
        appends: &[PendingAppend],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let (streams, ids) = batch_keys(appends);
        let heads = read_heads(&mut tx, &streams).await?;
        let stored = read_stored_ids(&mut tx, &ids).await?;
        let plan = BatchPlan::new(appends, heads, &stored, now_millis());

        let rows: Vec<&PlannedRow> = plan.rows().collect();
        let mut positions = HashMap::with_capacity(rows.len());
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let size = INSERT_CHUNKS.into_iter().find(|s| *s <= rest.len()).expect("1 fits");
            let (chunk, tail) = rest.split_at(size);
            insert_events(&mut tx, chunk, &mut positions).await?;
            rest = tail;
        }
        let heads: Vec<(&String, &StreamHead)> = plan.new_heads.iter().collect();
        let mut rest = heads.as_slice();
        while !rest.is_empty() {
            let size = INSERT_CHUNKS.into_iter().find(|s| *s <= rest.len()).expect("1 fits");
            let (chunk, tail) = rest.split_at(size);
            upsert_heads(&mut tx, chunk).await?;
            rest = tail;
        }
        tx.commit().await?;
        Ok(plan.answers(&positions))
    }

    shared_reads!(readers);
}

async fn read_heads(
    tx: &mut Transaction<'_, Sqlite>,
    streams: &[String],
) -> Result<HashMap<String, StreamHead>, StoreError> {
    let mut heads = HashMap::with_capacity(streams.len());
    for chunk in streams.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "select stream_id, version, last_hash from streams where stream_id in ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for stream in chunk {
            query = query.bind(stream);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let head =
                StreamHead { version: row.get::<i64, _>(1) as u64, last_hash: hash_from_bytes(row.get::<&[u8], _>(2)) };
            heads.insert(row.get(0), head);
        }
    }
    Ok(heads)
}

async fn read_stored_ids(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, StoredId>, StoreError> {
    let mut stored = HashMap::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "select event_id, stream_id, stream_version, global_position from events where event_id in ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let id: Uuid = row.get(0);
            stored.insert(
                id,
                StoredId {
                    stream_id: row.get(1),
                    stream_version: row.get::<i64, _>(2) as u64,
                    global_position: row.get(3),
                },
            );
        }
    }
    Ok(stored)
}

async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    chunk: &[&PlannedRow],
    positions: &mut HashMap<Uuid, i64>,
) -> Result<(), StoreError> {
    let values = (0..chunk.len())
        .map(|i| {
            let b = i * 9;
            format!(
                "(${},${},${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "insert into events (stream_id, stream_version, event_id, event_type, event_version, payload, \
         metadata, recorded_at, hash) values {values} returning global_position, event_id"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for row in chunk {
        query = query
            .bind(&row.stream_id)
            .bind(row.stream_version)
            .bind(row.event_id)
            .bind(&row.event_type)
            .bind(&row.event_version)
            .bind(&row.payload)
            .bind(&row.metadata)
            .bind(row.recorded_at)
            .bind(&row.hash[..]);
    }
    for returned in query.fetch_all(&mut **tx).await? {
        positions.insert(returned.get(1), returned.get(0));
    }
    Ok(())
}

/// One multi-row upsert of stream heads (one statement per chunk, not per
/// stream: a batch from 256 streams would otherwise cost 256 round trips).
async fn upsert_heads(tx: &mut Transaction<'_, Sqlite>, chunk: &[(&String, &StreamHead)]) -> Result<(), StoreError> {
    let values =
        (0..chunk.len()).map(|i| format!("(${},${},${})", i * 3 + 1, i * 3 + 2, i * 3 + 3)).collect::<Vec<_>>();
    let sql = format!(
        "insert into streams (stream_id, version, last_hash) values {} \
         on conflict (stream_id) do update set version = excluded.version, last_hash = excluded.last_hash",
        values.join(",")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (stream_id, head) in chunk {
        query = query.bind(stream_id.as_str()).bind(head.version as i64).bind(&head.last_hash[..]);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(",")
}

decode_event_fn!(SqliteRow);
