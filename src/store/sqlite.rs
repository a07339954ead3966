//! The event log on SQLite: the embedded default.
//!
//! WAL mode. An append is acknowledged only once its commit is on disk (it
//! survives `kill -9` and power loss): the appending connection commits with
//! `synchronous = NORMAL` and the WAL is synced beside it by
//! [`super::wal_sync`], which the group-commit writer waits on; every other
//! connection commits with `synchronous = FULL`. One dedicated connection
//! appends, a rusqlite connection on a thread of its own
//! ([`super::sqlite_writer`]; SQLite has one writer anyway, and
//! `BEGIN IMMEDIATE` takes the write lock up front instead of failing on
//! upgrade); a pool of sqlx readers serves loads, subscriptions, projections
//! and HTTP reads concurrently, and runs the migrations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::sqlite_writer::{CommitSync, SqliteWriter, WriterSettings};
use super::{
    Appends, BatchPlan, RecordedEvent, Snapshot, StoreError, StoredId, StreamHead, StreamId, WrittenBatch,
    hash_from_bytes, now_millis, optimistic_plan, parse_metadata,
};

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
    /// The one appending connection, on its own thread.
    writer: Arc<SqliteWriter>,
    readers: SqlitePool,
    /// The database file whose WAL the writer leaves unsynced at commit;
    /// `None` when the file is not in WAL mode, where the writer commits as
    /// the others do.
    deferred_sync: Option<PathBuf>,
    /// The database file.
    file: PathBuf,
}

impl SqliteBackend {
    pub async fn connect(url: &str, max_readers: u32, existing_only: bool) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(!existing_only)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let readers =
            SqlitePoolOptions::new().max_connections(max_readers.max(1)).connect_with(options.clone()).await?;
        let (file, in_wal_mode) = database_file(&readers).await?;
        let Some(file) = file else {
            // An in-memory log would lose every acknowledged event with the
            // process; the contract is "acknowledged means durable".
            return Err(StoreError::Unsupported("an in-memory SQLite event log (use a file)"));
        };
        let deferred_sync = in_wal_mode.then(|| file.clone());
        let settings = WriterSettings {
            sync: if in_wal_mode { CommitSync::Deferred } else { CommitSync::AtCommit },
            busy_timeout: BUSY_TIMEOUT,
            cache_kib: WRITER_CACHE_KIB,
            autocheckpoint_pages: WRITER_CHECKPOINT_PAGES,
        };
        let writer = Arc::new(SqliteWriter::open(&file, settings)?);
        Ok(Self { writer, readers, deferred_sync, file })
    }

    /// The database file whose WAL commits of the writer leave to be synced,
    /// if any.
    pub(crate) fn deferred_sync_file(&self) -> Option<&Path> {
        self.deferred_sync.as_deref()
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The pool for queries outside the append path (projections, timers).
    pub fn pool(&self) -> &SqlitePool {
        &self.readers
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&self.readers).await?;
        Ok(())
    }

    /// The fast path: `heads` as the cache knows them (the `missing` ones
    /// read in the transaction), no look-up of stored ids, and inserts that
    /// skip rows colliding with stored ones. `None` (and nothing written)
    /// when the batch needs the checked path.
    pub(crate) async fn write_fast(
        &self,
        appends: &Appends,
        mut heads: HashMap<String, StreamHead>,
        missing: Vec<String>,
    ) -> Result<Option<WrittenBatch>, StoreError> {
        let appends = appends.clone();
        self.writer
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if !missing.is_empty() {
                    heads.extend(read_heads(&tx, &missing)?);
                }
                // Returning early drops `tx`, which rolls it back.
                let Some(plan) = optimistic_plan(&appends, heads, now_millis()) else { return Ok(None) };
                // A stored id or a head moved by another process: nothing of
                // this attempt may stay.
                commit_plan(tx, plan, Conflicts::Skip)
            })
            .await
    }

    /// The checked path: heads and stored ids read afresh under the write
    /// lock; decides every request exactly.
    pub(crate) async fn write_checked(
        &self,
        appends: &Appends,
        streams: &[String],
        ids: &[Uuid],
    ) -> Result<WrittenBatch, StoreError> {
        let (appends, streams, ids) = (appends.clone(), streams.to_vec(), ids.to_vec());
        self.writer
            .run(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let heads = read_heads(&tx, &streams)?;
                let stored = read_stored_ids(&tx, &ids)?;
                let plan = BatchPlan::new(&appends, heads, &stored, now_millis());
                commit_plan(tx, plan, Conflicts::Fail)?
                    .ok_or(StoreError::Unsupported("a checked insert that skipped a row"))
            })
            .await
    }

    shared_reads!(readers);
}

/// The main database's file (`None` when in memory), and whether it is in
/// WAL mode.
async fn database_file(pool: &SqlitePool) -> Result<(Option<PathBuf>, bool), StoreError> {
    let journal: String = sqlx::query_scalar("pragma journal_mode").fetch_one(pool).await?;
    let file: String =
        sqlx::query_scalar("select file from pragma_database_list where name = 'main'").fetch_one(pool).await?;
    let file = (!file.is_empty()).then(|| PathBuf::from(file));
    Ok((file, journal.eq_ignore_ascii_case("wal")))
}

/// What an insert does with a row whose event id or stream version is
/// already stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Conflicts {
    /// Stop and answer `None`: the fast path's view was stale.
    Skip,
    /// Fail the statement: the checked path has ruled collisions out.
    Fail,
}

/// Writes a planned batch — rows and attached snapshots — and commits.
/// `None`, with everything rolled back, when a row was skipped as already
/// stored (`Conflicts::Skip`).
fn commit_plan(
    tx: rusqlite::Transaction<'_>,
    plan: BatchPlan,
    conflicts: Conflicts,
) -> Result<Option<WrittenBatch>, StoreError> {
    let Some(positions) = insert_rows(&tx, &plan, conflicts)? else { return Ok(None) };
    upsert_snapshots(&tx, &plan)?;
    tx.commit()?;
    Ok(Some(WrittenBatch { plan, positions }))
}

/// Inserts the plan's rows, one prepared statement executed per row; returns
/// each inserted event's global position, or `None` when a row was skipped
/// as already stored (`Conflicts::Skip`; the caller rolls back).
fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    plan: &BatchPlan,
    conflicts: Conflicts,
) -> Result<Option<HashMap<Uuid, i64>>, StoreError> {
    // `or ignore` rather than `on conflict do nothing`: the same for the
    // unique keys (the only constraints a planned row can break), but a
    // statement that cannot abort halfway needs no statement journal.
    let mut insert = tx.prepare_cached(match conflicts {
        Conflicts::Skip => INSERT_OR_IGNORE_EVENT,
        Conflicts::Fail => INSERT_EVENT,
    })?;
    let mut positions = HashMap::new();
    for row in plan.rows() {
        let inserted = insert.execute(rusqlite::params![
            row.stream_id,
            row.stream_version,
            &row.event_id.as_bytes()[..],
            row.event_type,
            row.event_version,
            row.payload,
            row.metadata,
            row.recorded_at,
            &row.hash[..],
        ])?;
        if inserted == 0 {
            return Ok(None);
        }
        // The writer holds SQLite's write lock: the row's rowid is its
        // global position.
        positions.insert(row.event_id, tx.last_insert_rowid());
    }
    Ok(Some(positions))
}

const INSERT_EVENT: &str = "insert into events (stream_id, stream_version, event_id, event_type, event_version, \
     payload, metadata, recorded_at, hash) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const INSERT_OR_IGNORE_EVENT: &str = "insert or ignore into events (stream_id, stream_version, event_id, event_type, \
     event_version, payload, metadata, recorded_at, hash) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Stores the snapshots that ride along with the batch.
fn upsert_snapshots(tx: &rusqlite::Transaction<'_>, plan: &BatchPlan) -> Result<(), StoreError> {
    if plan.snapshots.is_empty() {
        return Ok(());
    }
    let mut upsert = tx.prepare_cached(super::UPSERT_SNAPSHOT)?;
    for snapshot in &plan.snapshots {
        upsert.execute(rusqlite::params![
            snapshot.stream_id,
            snapshot.version,
            snapshot.schema_tag,
            snapshot.state,
            snapshot.taken_at,
        ])?;
    }
    Ok(())
}

/// The heads of `streams` that have events: each stream's last event, one
/// backward step down the `(stream_id, stream_version)` index.
fn read_heads(tx: &rusqlite::Transaction<'_>, streams: &[String]) -> Result<HashMap<String, StreamHead>, StoreError> {
    let mut select = tx.prepare_cached(
        "select stream_version, hash from events where stream_id = ?1 order by stream_version desc limit 1",
    )?;
    let mut heads = HashMap::with_capacity(streams.len());
    for stream in streams {
        let head = select
            .query_row([stream], |row| {
                Ok(StreamHead {
                    version: row.get::<_, i64>(0)? as u64,
                    last_hash: hash_from_bytes(row.get_ref(1)?.as_blob()?),
                })
            })
            .optional()?;
        if let Some(head) = head {
            heads.insert(stream.clone(), head);
        }
    }
    Ok(heads)
}

fn read_stored_ids(tx: &rusqlite::Transaction<'_>, ids: &[Uuid]) -> Result<HashMap<Uuid, StoredId>, StoreError> {
    let mut select =
        tx.prepare_cached("select stream_id, stream_version, global_position from events where event_id = ?1")?;
    let mut stored = HashMap::new();
    for id in ids {
        let found = select
            .query_row([&id.as_bytes()[..]], |row| {
                Ok(StoredId {
                    stream_id: row.get(0)?,
                    stream_version: row.get::<_, i64>(1)? as u64,
                    global_position: row.get(2)?,
                })
            })
            .optional()?;
        if let Some(found) = found {
            stored.insert(*id, found);
        }
    }
    Ok(stored)
}

decode_event_fn!(SqliteRow);
