//! The event log on SQLite: the embedded default.
//!
//! WAL mode. An append is acknowledged only once its commit is on disk (it
//! survives `kill -9` and power loss): the appending connection commits with
//! `synchronous = NORMAL` and the WAL is synced beside it by
//! [`super::wal_sync`], which the group-commit writer waits on; every other
//! connection commits with `synchronous = FULL`. One dedicated connection
//! appends (SQLite has one writer anyway, and `BEGIN IMMEDIATE` takes the
//! write lock up front instead of failing on upgrade); a pool of readers
//! serves loads, subscriptions, projections and HTTP reads concurrently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    BatchPlan, HeadCache, PendingAppend, PlannedRow, RecordedEvent, Snapshot, StoreError, StoredId, StreamHead,
    StreamId, WrittenBatch, hash_from_bytes, now_millis, optimistic_plan, parse_metadata,
};

/// Rows per multi-row INSERT, largest first. Fixed sizes keep the set of
/// distinct statements small, so every one stays in the prepared cache.
const INSERT_CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];
/// Ids per `IN (…)` look-up; far below SQLite's 32,766 bind limit.
const LOOKUP_CHUNK: usize = 500;
/// WAL pages after which the writer checkpoints itself (16 MiB).
const WRITER_CHECKPOINT_PAGES: u32 = 4_000;
/// The writer's page cache (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const EVENT_COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, \
     event_version, payload, metadata, recorded_at, hash";

#[derive(Clone)]
pub struct SqliteBackend {
    writer: SqlitePool,
    readers: SqlitePool,
    /// The database file whose WAL the writer leaves unsynced at commit;
    /// `None` for an in-memory database, where the writer commits as the
    /// others do.
    deferred_sync: Option<PathBuf>,
}

impl SqliteBackend {
    pub async fn connect(url: &str, max_readers: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let readers =
            SqlitePoolOptions::new().max_connections(max_readers.max(1)).connect_with(options.clone()).await?;
        let deferred_sync = file_in_wal_mode(&readers).await?;
        // A multi-row insert inside a transaction keeps a statement journal
        // (to undo just that statement on a constraint error); in a temp
        // file that cost a write syscall per page, 13 % of the writer's time.
        // Its checkpoints are a backstop (see `wal_sync`): a background
        // thread copies frames back as they come, and the writer's own
        // checkpoint, once the WAL holds this many pages, lets it start over.
        // A page cache that holds every stream's index leaf spares the
        // writer re-reading them on each batch.
        let mut writer_options = options
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string())
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"));
        if deferred_sync.is_some() {
            writer_options = writer_options.synchronous(SqliteSynchronous::Normal);
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await?;
        Ok(Self { writer, readers, deferred_sync })
    }

    /// The database file whose WAL commits of the writer leave to be synced,
    /// if any.
    pub(crate) fn deferred_sync_file(&self) -> Option<&Path> {
        self.deferred_sync.as_deref()
    }

    /// The pool for queries outside the append path (projections, timers).
    pub fn pool(&self) -> &SqlitePool {
        &self.readers
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }

    /// The fast path: heads from the cache (reading only the unknown ones),
    /// no look-up of stored ids, and an insert that skips rows colliding with
    /// stored ones. `None` (and nothing written) when the batch needs the
    /// checked path.
    pub(crate) async fn write_fast(
        &self,
        appends: &[PendingAppend],
        streams: &[String],
        cache: &HeadCache,
    ) -> Result<Option<WrittenBatch>, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let (mut heads, missing) = cache.lookup(streams);
        if !missing.is_empty() {
            heads.extend(read_heads(&mut tx, &missing).await?);
        }
        let Some(plan) = optimistic_plan(appends, heads, now_millis()) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let positions = insert_rows(&mut tx, &plan, Conflicts::Skip).await?;
        if positions.len() != plan.rows().count() {
            // A stored id or a head moved by another process: nothing of this
            // attempt may stay.
            tx.rollback().await?;
            return Ok(None);
        }
        upsert_heads(&mut tx, &plan).await?;
        upsert_snapshots(&mut tx, &plan).await?;
        tx.commit().await?;
        Ok(Some(WrittenBatch { plan, positions }))
    }

    /// The checked path: heads and stored ids read afresh under the write
    /// lock; decides every request exactly.
    pub(crate) async fn write_checked(
        &self,
        appends: &[PendingAppend],
        streams: &[String],
        ids: &[Uuid],
    ) -> Result<WrittenBatch, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let heads = read_heads(&mut tx, streams).await?;
        let stored = read_stored_ids(&mut tx, ids).await?;
        let plan = BatchPlan::new(appends, heads, &stored, now_millis());
        let positions = insert_rows(&mut tx, &plan, Conflicts::Fail).await?;
        upsert_heads(&mut tx, &plan).await?;
        upsert_snapshots(&mut tx, &plan).await?;
        tx.commit().await?;
        Ok(WrittenBatch { plan, positions })
    }

    shared_reads!(readers);
}

/// The file of a database kept in a file in WAL mode; `None` for an
/// in-memory one (no file, nothing to sync).
async fn file_in_wal_mode(pool: &SqlitePool) -> Result<Option<PathBuf>, StoreError> {
    let journal: String = sqlx::query_scalar("pragma journal_mode").fetch_one(pool).await?;
    let file: String =
        sqlx::query_scalar("select file from pragma_database_list where name = 'main'").fetch_one(pool).await?;
    let in_wal_file = journal.eq_ignore_ascii_case("wal") && !file.is_empty();
    Ok(in_wal_file.then(|| PathBuf::from(file)))
}

/// What an insert does with a row whose event id or stream version is
/// already stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Conflicts {
    /// Leave it out of the result (the fast path counts what came back).
    Skip,
    /// Fail the statement: the checked path has ruled collisions out.
    Fail,
}

/// Inserts the plan's rows in fixed-size multi-row statements; returns each
/// inserted event's global position.
async fn insert_rows(
    tx: &mut Transaction<'_, Sqlite>,
    plan: &BatchPlan,
    conflicts: Conflicts,
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let rows: Vec<&PlannedRow> = plan.rows().collect();
    let mut positions = HashMap::with_capacity(rows.len());
    for chunk in fixed_chunks(&rows) {
        insert_events(tx, chunk, conflicts, &mut positions).await?;
    }
    Ok(positions)
}

/// `items` split into chunks of the sizes in [`INSERT_CHUNKS`], largest
/// first, so every multi-row statement has one of a few fixed shapes.
fn fixed_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let size = INSERT_CHUNKS.into_iter().find(|s| *s <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// Moves the heads of every stream the plan writes.
async fn upsert_heads(tx: &mut Transaction<'_, Sqlite>, plan: &BatchPlan) -> Result<(), StoreError> {
    let heads: Vec<(&String, &StreamHead)> = plan.new_heads.iter().collect();
    for chunk in fixed_chunks(&heads) {
        upsert_head_chunk(tx, chunk).await?;
    }
    Ok(())
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

/// Inserts one chunk and records each row's global position.
///
/// Positions are worked out, not returned: the writer holds SQLite's write
/// lock, and an `autoincrement` key gives the rows of one multi-row insert
/// consecutive values in `VALUES` order, ending at `last_insert_rowid`.
/// (`returning` would hand each row across sqlx's worker thread on its own,
/// which cost more than the insert.) When rows were skipped the positions
/// cannot be told apart, so none are recorded: the caller sees fewer
/// positions than rows and rolls back.
async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    chunk: &[&PlannedRow],
    conflicts: Conflicts,
    positions: &mut HashMap<Uuid, i64>,
) -> Result<(), StoreError> {
    let values = rows_of_placeholders(chunk.len(), 9);
    // `or ignore` rather than `on conflict do nothing`: the same for the
    // unique keys (the only constraints a planned row can break), but a
    // statement that can no longer abort halfway needs no statement journal.
    let verb = if conflicts == Conflicts::Skip { "insert or ignore" } else { "insert" };
    let sql = format!(
        "{verb} into events (stream_id, stream_version, event_id, event_type, event_version, payload, \
         metadata, recorded_at, hash) values {values}"
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
    let done = query.execute(&mut **tx).await?;
    if done.rows_affected() == chunk.len() as u64 {
        let first = done.last_insert_rowid() - chunk.len() as i64 + 1;
        for (offset, row) in chunk.iter().enumerate() {
            positions.insert(row.event_id, first + offset as i64);
        }
    }
    Ok(())
}

/// One multi-row upsert of stream heads (one statement per chunk, not per
/// stream: a batch from 256 streams would otherwise cost 256 round trips).
async fn upsert_head_chunk(
    tx: &mut Transaction<'_, Sqlite>,
    chunk: &[(&String, &StreamHead)],
) -> Result<(), StoreError> {
    let values = rows_of_placeholders(chunk.len(), 3);
    let sql = format!(
        "insert into streams (stream_id, version, last_hash) values {values} \
         on conflict (stream_id) do update set version = excluded.version, last_hash = excluded.last_hash"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (stream_id, head) in chunk {
        query = query.bind(stream_id.as_str()).bind(head.version as i64).bind(&head.last_hash[..]);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

// Multi-row statements use anonymous `?` placeholders, never `$N`: sqlx
// resolves each numbered placeholder through `sqlite3_bind_parameter_name`,
// a linear scan in SQLite, so binding a 2,304-parameter insert by number cost
// quadratic time (16 % of the append profile at 256 streams).

/// `?,?,…` with `n` placeholders.
fn placeholders(n: usize) -> String {
    let mut out = "?,".repeat(n);
    out.pop();
    out
}

/// `(?,…),(?,…),…`: `rows` tuples of `columns` placeholders.
fn rows_of_placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", placeholders(columns));
    vec![row; rows].join(",")
}

decode_event_fn!(SqliteRow);
upsert_snapshots_fn!(sqlx::SqliteConnection);
