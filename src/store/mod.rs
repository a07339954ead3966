//! The event log: the system of record for every aggregate.
//!
//! Owns the `events`, `snapshots`, `checkpoints` tables and the contract
//! every other part relies on (a stream's head, its version and last hash,
//! is its last event: ADR 0012):
//!
//! - [`EventStore::append`] writes a batch to one stream with an explicit
//!   [`ExpectedVersion`]; a mismatch is [`StoreError::Conflict`], never a
//!   generic database error. Re-sending events whose ids are already stored
//!   succeeds once and writes nothing (idempotent retries).
//! - Appends from many callers are **group-committed**: one writer task per
//!   store drains whatever is queued into one transaction (see
//!   [`group_commit`]), so many small events cost one fsync, while each
//!   request still gets its own version check and its own answer. An append
//!   is acknowledged only after its transaction committed.
//! - Every event has a global position. Positions become visible in order on
//!   both databases (SQLite: one writer; PostgreSQL: an advisory lock held
//!   across the append, ADR 0002), so [`subscription`]s never skip one.
//! - Each stream is hash-chained ([`hash`]) for tamper evidence.
//! - The writer records what this process appended (`recent`), so a
//!   subscriber passes over a stretch of its own appends that it reads
//!   nothing of without reading it ([`EventStore::unread_local_through`]).
//! - Snapshots carry a schema tag; a tag mismatch reads as "no snapshot".
//!
//! Backends live in [`sqlite`] and [`postgres`]; this module is the one
//! interface the rest of the service sees. It knows nothing of aggregates:
//! payloads are JSON text and `cqrs` adapts cqrs-es on top.

#[macro_use]
mod shared_sql;

pub mod aggregate;
pub mod archive;
mod batch;
pub mod cqrs;
pub mod group_commit;
pub mod hash;
pub mod postgres;
pub mod raw;
mod recent;
pub mod registry;
pub mod sqlite;
mod sqlite_writer;
pub mod subscription;
mod wal_sync;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

pub(crate) use batch::*;
pub use group_commit::GroupCommitConfig;
pub use subscription::{CatchUp, DbTx};

/// Which database a store runs on, chosen by the URL scheme.
#[derive(Clone)]
pub enum Backend {
    Sqlite(sqlite::SqliteBackend),
    Postgres(postgres::PgBackend),
}

/// A stream's name: `{category}-{id}`, e.g. `room-launch-party`.
///
/// The category (text before the first `-`) groups streams of one aggregate
/// type for exports and subscriptions that only care about one kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// Longest accepted stream id: category + `-` + a 128-character entity id.
    pub const MAX_LEN: usize = 200;

    pub fn parse(raw: impl Into<String>) -> Result<Self, StoreError> {
        let raw = raw.into();
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.find('-').is_some_and(|i| i > 0 && i + 1 < raw.len())
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if valid { Ok(Self(raw)) } else { Err(StoreError::InvalidStreamId(raw)) }
    }

    /// `{category}-{id}` from parts already validated by their owners.
    pub fn of(category: &str, id: &str) -> Self {
        Self(format!("{category}-{id}"))
    }

    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(&self.0, |(c, _)| c)
    }

    /// The entity id after the category prefix.
    pub fn entity_id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The version an append expects the stream to be at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version (no concurrency check).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version (0 = empty).
    Exact(u64),
}

/// Who caused an event and why: the audit trail's answer to "who did this,
/// through which command, as part of which larger operation".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// User id, or `system:<component>` for timers and process managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The command that produced the event, e.g. `EnterStage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Shared by every event of one user-visible operation (an HTTP request,
    /// a recording saga).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event or command that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
}

impl Metadata {
    pub fn by(actor: impl Into<String>) -> Self {
        Self { actor: Some(actor.into()), ..Self::default() }
    }

    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    pub fn correlated(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = Some(correlation_id);
        self
    }

    pub fn caused_by(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }
}

/// An event to append. `payload` is JSON text, stored byte for byte.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: Metadata,
}

impl NewEvent {
    /// A new event with a fresh time-ordered id.
    pub fn new(
        event_type: impl Into<String>,
        event_version: impl Into<String>,
        payload: String,
        metadata: Metadata,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            event_version: event_version.into(),
            payload,
            metadata,
        }
    }

    /// Serialises `payload` to JSON.
    pub fn json<T: Serialize>(
        event_type: impl Into<String>,
        event_version: impl Into<String>,
        payload: &T,
        metadata: Metadata,
    ) -> Result<Self, StoreError> {
        let payload = serde_json::to_string(payload).map_err(StoreError::Encode)?;
        Ok(Self::new(event_type, event_version, payload, metadata))
    }

    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub global_position: i64,
    pub stream_id: StreamId,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: Metadata,
    /// Milliseconds since the Unix epoch.
    pub recorded_at: i64,
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// The event as its category's current type: upcast first when it was
    /// stored under an older `event_version` ([`registry::Registry`]), as
    /// replay and the projections read it, so live actors and audits never
    /// disagree about an old event.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, StoreError> {
        let payload = registry::Registry::standard()
            .upcast(self.stream_id.category(), &self.event_type, &self.event_version, &self.payload)
            .map_err(|error| StoreError::Upcast {
                stream_id: self.stream_id.to_string(),
                stream_version: self.stream_version,
                reason: error.to_string(),
            })?;
        serde_json::from_str(&payload).map_err(|source| StoreError::Decode {
            stream_id: self.stream_id.to_string(),
            stream_version: self.stream_version,
            source,
        })
    }
}

/// What an acknowledged append wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append (its last event's version).
    pub next_version: u64,
    /// Global position of the first event of this append.
    pub first_position: i64,
    /// Global position of the last event of this append.
    pub last_position: i64,
    /// True when every event was already stored (an idempotent retry): the
    /// positions and version are those of the original append.
    pub already_stored: bool,
}

/// A snapshot to store along with an append
/// ([`EventStore::append_with_snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotWrite {
    pub schema_tag: String,
    pub state: Vec<u8>,
}

/// A stored snapshot that matched the requested schema tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u64,
    pub state: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the append expected.
    #[error("stream {stream_id} is at version {actual}, expected {expected:?}")]
    Conflict { stream_id: String, expected: ExpectedVersion, actual: u64 },
    /// Some but not all of an append's event ids are already stored: this is
    /// not a retry of the same append, and writing the rest would fork it.
    #[error("append to {stream_id} repeats some stored event ids but not all")]
    PartialDuplicate { stream_id: String },
    #[error("invalid stream id {0:?}")]
    InvalidStreamId(String),
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("event payload could not be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("event {stream_id}@{stream_version} could not be decoded: {source}")]
    Decode { stream_id: String, stream_version: u64, source: serde_json::Error },
    /// An event stored under an older version that no upcaster brings up
    /// to date.
    #[error("event {stream_id}@{stream_version} could not be upcast: {reason}")]
    Upcast { stream_id: String, stream_version: u64, reason: String },
    #[error("the store is shutting down")]
    Closed,
    /// The append was committed but could not be made durable (syncing the
    /// log to disk failed); the store takes no more appends.
    #[error("{0}")]
    NotDurable(std::sync::Arc<str>),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An error of SQLite's appending connection or of a direct SQLite
    /// read (`rusqlite`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store cannot do this (a setting or a state it refuses).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// A whole-log scan in storage order met a position not past the one
    /// before it: the caller scans again in log order (`store::raw::scan`).
    #[error("a scan in storage order met position {0} out of log order")]
    ScanOutOfOrder(i64),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The archive tier could not be read or written (a missing or altered
    /// segment, an unreachable object store, a bad `EVENTUALL_ARCHIVE_URL`).
    #[error("archive: {0}")]
    Archive(String),
    /// Another node owns the stream's aggregate (several nodes, ADR 0020):
    /// this process must not write it.
    #[error("this node does not own {0}")]
    NotOwner(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::PartialDuplicate { .. })
    }
}

/// Options that shape a store; defaults suit production.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub group_commit: GroupCommitConfig,
    /// Connections for readers (subscriptions, loads, HTTP reads).
    pub max_read_connections: u32,
    /// Refuse to create a SQLite file that is not there (audit tools: a
    /// mistyped path must fail, not verify an empty new log).
    pub existing_only: bool,
    /// Where archived segments live (`file:///…`, `s3://bucket/prefix`);
    /// `None`: a folder beside the SQLite file, or `./eventuall-archive`.
    pub archive_url: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            group_commit: GroupCommitConfig::default(),
            max_read_connections: 8,
            existing_only: false,
            archive_url: None,
        }
    }
}

/// Handle to the event log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    writer: group_commit::WriterHandle,
    /// The highest position this process has committed; subscribers on this
    /// node wake on changes (other nodes' writes are found by polling).
    head: watch::Receiver<i64>,
    /// What this process appended lately: subscribers pass over what they
    /// would not read without reading it.
    recent: Arc<std::sync::Mutex<recent::RecentAppends>>,
    archive: archive::Archive,
    /// Several nodes: refuses appends to streams another node owns.
    write_guard: std::sync::OnceLock<WriteGuard>,
}

/// Whether this process may append to a stream (several nodes: it holds
/// the lease of the stream's aggregate).
pub type WriteGuard = Arc<dyn Fn(&StreamId) -> bool + Send + Sync>;

impl EventStore {
    /// Opens (and migrates) the store at `url`: `sqlite://path?mode=rwc`,
    /// `sqlite::memory:` or `postgres://…`.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let writers = options.group_commit.postgres_writers as u32;
            Backend::Postgres(postgres::PgBackend::connect(url, options.max_read_connections, writers).await?)
        } else {
            Backend::Sqlite(
                sqlite::SqliteBackend::connect(url, options.max_read_connections, options.existing_only).await?,
            )
        };
        backend.migrate().await?;
        let archive_url = options.archive_url.clone().unwrap_or_else(|| archive::default_url(&backend));
        let archive = archive::Archive::new(&archive_url)?;
        let store = Self::start(backend, options.group_commit, archive).await?;
        store.refresh_archive().await?;
        Ok(store)
    }

    async fn start(backend: Backend, config: GroupCommitConfig, archive: archive::Archive) -> Result<Self, StoreError> {
        let initial_head = backend.head_position().await?;
        let (head_tx, head) = watch::channel(initial_head);
        let recent = Arc::new(std::sync::Mutex::new(recent::RecentAppends::default()));
        let publish = group_commit::Publish { head: head_tx, recent: recent.clone() };
        let writer = group_commit::spawn(backend.clone(), config, publish).await?;
        let inner = Inner { backend, writer, head, recent, archive, write_guard: Default::default() };
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Installs the write guard (once; several nodes, ADR 0020).
    pub fn set_write_guard(&self, guard: WriteGuard) {
        let _ = self.inner.write_guard.set(guard);
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres(_))
    }

    /// Appends `events` to `stream`; returns once they are durable.
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.submit(stream, expected, events, None).await
    }

    /// Appends `events` and, in the same transaction, stores `snapshot` as
    /// the stream's state at the version the append reaches. Costs no commit
    /// of its own, so an aggregate can snapshot every few dozen events and
    /// keep its load after a crash short. Nothing is stored when the append
    /// is refused or was already stored.
    pub async fn append_with_snapshot(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        snapshot: SnapshotWrite,
    ) -> Result<AppendOutcome, StoreError> {
        self.submit(stream, expected, events, Some(snapshot)).await
    }

    async fn submit(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        snapshot: Option<SnapshotWrite>,
    ) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        if let Some(guard) = self.inner.write_guard.get()
            && !guard(stream)
        {
            return Err(StoreError::NotOwner(stream.to_string()));
        }
        self.inner.writer.append(PendingAppend { stream: stream.clone(), expected, events, snapshot }).await
    }

    /// Events of `stream` with version ≥ `from_version`, at most `limit`,
    /// archived ones included ([`archive`]).
    pub async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from_version = from_version.max(1);
        // Archiving keeps a stream's newest event hot and takes a prefix, so
        // a read needs the archive exactly when its first hot event comes
        // after `from_version`. An archive or restore committing between the
        // two reads shows as a gap the segments do not close: read again.
        for _ in 0..3 {
            let hot = match &self.inner.backend {
                Backend::Sqlite(b) => b.read_stream(stream, from_version, limit).await?,
                Backend::Postgres(b) => b.read_stream(stream, from_version, limit).await?,
            };
            if hot.first().is_none_or(|e| e.stream_version == from_version) || limit == 0 {
                return Ok(hot);
            }
            if let Some(events) = self.fill_from_archive(stream, from_version, limit, hot).await? {
                return Ok(events);
            }
        }
        Err(StoreError::Archive(format!(
            "{stream}: events from version {from_version} are neither hot nor in a segment"
        )))
    }

    /// Events of every stream with position > `after`, in position order,
    /// archived ones included.
    pub async fn read_all(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let hot = match &self.inner.backend {
            Backend::Sqlite(b) => b.read_all(after, limit).await?,
            Backend::Postgres(b) => b.read_all(after, limit).await?,
        };
        if after >= self.archived_max_position().await? {
            return Ok(hot);
        }
        self.merge_all_with_archive(after, limit, hot).await
    }

    /// The stream's current version (0 when it has no events).
    pub async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.stream_version(stream).await,
            Backend::Postgres(b) => b.stream_version(stream).await,
        }
    }

    /// The highest committed position, as the database sees it now.
    pub async fn head_position(&self) -> Result<i64, StoreError> {
        self.inner.backend.head_position().await
    }

    /// The highest position this process has committed and published.
    pub fn local_head(&self) -> i64 {
        *self.inner.head.borrow()
    }

    /// The last position of the stretch of the log right after `after`
    /// that this process appended and of which `reads(category,
    /// event_type)` reads nothing, known without reading the log; `None`
    /// when no such stretch is known (read the log).
    pub fn unread_local_through(&self, after: i64, reads: impl Fn(&str, &str) -> bool) -> Option<i64> {
        let recent = self.inner.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.unread_through(after, reads)
    }

    /// A receiver that changes whenever this process commits an append
    /// after this call.
    pub fn head_watch(&self) -> watch::Receiver<i64> {
        // A clone inherits the stored receiver's "last seen" version, which
        // never moves: without this, `changed()` on every fresh receiver
        // resolves at once after the first append, and waiters spin.
        let mut head = self.inner.head.clone();
        head.mark_unchanged();
        head
    }

    /// The snapshot of `stream` if one exists with this `schema_tag`: the
    /// hot one, else the one that moved into the stream's newest segment.
    pub async fn load_snapshot(&self, stream: &StreamId, schema_tag: &str) -> Result<Option<Snapshot>, StoreError> {
        let hot = match &self.inner.backend {
            Backend::Sqlite(b) => b.load_snapshot(stream, schema_tag).await?,
            Backend::Postgres(b) => b.load_snapshot(stream, schema_tag).await?,
        };
        match hot {
            Some(snapshot) => Ok(Some(snapshot)),
            None if self.archive().max_position() > 0 => self.archived_snapshot(stream, schema_tag).await,
            None => Ok(None),
        }
    }

    /// Stores a snapshot unless a newer one (higher version) is stored.
    pub async fn save_snapshot(
        &self,
        stream: &StreamId,
        version: u64,
        schema_tag: &str,
        state: &[u8],
    ) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(b) => b.save_snapshot(stream, version, schema_tag, state).await,
            Backend::Postgres(b) => b.save_snapshot(stream, version, schema_tag, state).await,
        }
    }

    /// Stops accepting appends, commits everything already queued, and waits
    /// for the writer to finish. Later appends fail with `Closed`.
    pub async fn shutdown(&self) {
        self.inner.writer.shutdown().await;
    }
}

impl Backend {
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(b) => b.migrate().await,
            Backend::Postgres(b) => b.migrate().await,
        }
    }

    pub async fn head_position(&self) -> Result<i64, StoreError> {
        match self {
            Backend::Sqlite(b) => b.head_position().await,
            Backend::Postgres(b) => b.head_position().await,
        }
    }
}

/// Stores a snapshot unless a newer one of the same schema is stored; the
/// same SQL on both databases. Binds: stream id, version, schema tag, state,
/// taken at.
pub(crate) const UPSERT_SNAPSHOT: &str = "insert into snapshots (stream_id, version, schema_tag, state, taken_at) \
     values ($1, $2, $3, $4, $5) \
     on conflict (stream_id) do update set version = excluded.version, \
     schema_tag = excluded.schema_tag, state = excluded.state, taken_at = excluded.taken_at \
     where excluded.version >= snapshots.version or excluded.schema_tag <> snapshots.schema_tag";

/// Milliseconds since the Unix epoch, the log's one time format.
pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Decodes the `metadata` column; a malformed value reads as empty metadata
/// rather than failing a whole read (`replay verify` reports it).
pub(crate) fn parse_metadata(raw: &str) -> Metadata {
    serde_json::from_str(raw).unwrap_or_default()
}

pub(crate) fn hash_from_bytes(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if bytes.len() == 32 {
        out.copy_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(version: u64) -> StreamHead {
        StreamHead { version, last_hash: [version as u8; 32] }
    }

    #[test]
    fn the_head_cache_never_moves_a_head_back() {
        let mut cache = HeadCache::default();
        let stream = "room-a".to_string();
        cache.remember([(&stream, &head(7))]);
        // The writer task that committed version 5 first remembers last.
        cache.remember([(&stream, &head(5))]);
        let (known, missing) = cache.lookup(std::slice::from_ref(&stream));
        assert!(missing.is_empty());
        assert_eq!(known[&stream].version, 7);
        assert_eq!(known[&stream].last_hash, [7; 32]);
        cache.remember([(&stream, &head(8))]);
        assert_eq!(cache.lookup(std::slice::from_ref(&stream)).0[&stream].version, 8);
    }

    #[test]
    fn appends_split_into_each_request_in_order() {
        let append = |n: &str| PendingAppend {
            stream: StreamId::of("room", n),
            expected: ExpectedVersion::Any,
            events: vec![],
            snapshot: None,
        };
        let all = Appends::new(vec![append("a"), append("b"), append("c")]);
        assert_eq!(all.len(), 3);
        let each: Vec<String> = all
            .each()
            .map(|one| {
                assert_eq!(one.len(), 1);
                one[0].stream.to_string()
            })
            .collect();
        assert_eq!(each, ["room-a", "room-b", "room-c"]);
    }
}
