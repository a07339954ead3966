//! The archive tier of the event log (ADR 0017): a stream's older events
//! moved to object storage as immutable segment files, read back
//! transparently.
//!
//! Owns the `archive_segments` table and the rules that keep every event in
//! exactly one place:
//! - **Archiving** ([`EventStore::archive_stream`]) writes the segment object
//!   (durable on return), then in one transaction records it and deletes the
//!   same events (and the snapshot that moved with it) from the hot tables.
//!   A crash before that commit leaves an unreferenced object that the next
//!   run overwrites with the same bytes; after it, the events are archived.
//! - The stream's **newest event stays hot**, so its head (version, last
//!   hash: ADR 0012), the appends and the log's head position never look at
//!   the archive. Only events every subscriber has passed (≤ the lowest
//!   checkpoint) are archived, so live projections never need them either.
//! - **Reads join archive and tail**: [`EventStore::read_stream`] fills a gap
//!   before the first hot event from the stream's segments;
//!   [`EventStore::read_all`] and the raw batches of replay merge segments
//!   and hot rows by position ([`merge`]); a snapshot missing from the hot
//!   table is looked for in the newest segment. Another process's archiving
//!   shows within seconds: scans re-read the highest archived position at
//!   their start, whole-log pages when it is older than 5 s.
//! - **Restoring** ([`EventStore::restore_stream`]) puts the events back with
//!   their positions and drops the metadata in one transaction, then deletes
//!   the objects.
//!
//! Segments are checked on every read: the object's sha-256 against the
//! metadata, then the header and the version range ([`segment`]).

pub mod merge;
pub mod objects;
pub mod segment;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sqlx::AssertSqlSafe;

use self::objects::Objects;
use self::segment::{Segment, SegmentSnapshot, content_hash};
use super::raw::{Filter, RawEvent};
use super::subscription::{DbTx, SqlValue};
use super::{Backend, EventStore, RecordedEvent, Snapshot, StoreError, StreamId, now_millis};

/// Events per segment: a long stream is archived as several.
pub const SEGMENT_EVENTS: usize = 10_000;
/// How stale a store's view of the highest archived position may get
/// before a whole-log page reads it again.
const REFRESH_EVERY_MS: i64 = 5_000;
/// Decoded segments kept in memory, counted in events.
const CACHE_EVENTS: usize = 200_000;

/// The archive of one store: where segments live and what is cached.
pub struct Archive {
    objects: Objects,
    cache: Mutex<SegmentCache>,
    /// The highest position of an archived event as this process knows it
    /// (read at open, moved by this process's archiving): whole-log reads
    /// after it never look for segments.
    max_position: AtomicI64,
    /// When `max_position` was last read from the table (ms since the
    /// epoch): whole-log pages re-read it at most every [`REFRESH_EVERY_MS`],
    /// so a process sees another's archiving within that time.
    refreshed_at: AtomicI64,
    /// Segments an audit found broken: whole-log scans leave them out
    /// instead of failing, so `replay verify` reports everything.
    quarantined: Mutex<std::collections::HashSet<String>>,
}

/// One row of `archive_segments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRow {
    pub stream_id: String,
    pub first_version: i64,
    pub last_version: i64,
    pub first_position: i64,
    pub last_position: i64,
    pub event_count: i64,
    pub location: String,
    #[serde(serialize_with = "hex_bytes")]
    pub content_hash: Vec<u8>,
    pub bytes: i64,
    pub has_snapshot: i64,
    pub archived_at: i64,
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

const SEGMENT_COLUMNS: &str = "stream_id, first_version, last_version, first_position, last_position, event_count, \
     location, content_hash, bytes, has_snapshot, archived_at";

/// What archiving one stream did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveOutcome {
    pub segments: u64,
    pub events: u64,
    pub bytes: u64,
}

/// What restoring one stream did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOutcome {
    pub segments: u64,
    pub events: u64,
}

/// Why a segment cannot be read: what `replay verify` reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentProblem {
    #[error("segment {location} of {stream} is missing")]
    Missing { stream: String, location: String },
    #[error("segment {location} of {stream} was altered: its content hash is not the recorded one")]
    Altered { stream: String, location: String },
    #[error("segment {location} of {stream} does not match its metadata: {reason}")]
    Mismatch { stream: String, location: String, reason: String },
    #[error("segment {location} of {stream} could not be read: {reason}")]
    Unreadable { stream: String, location: String, reason: String },
}

/// Named points of archiving and restoring where a fault-injection run
/// (`EVENTUALL_ARCHIVE_CRASH_AT=<step>`) aborts the process as `kill -9`
/// would: the crash tests stop at each and check nothing is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Events read, nothing written.
    BeforePut,
    /// The segment object written, nothing committed.
    AfterPut,
    /// Metadata inserted and hot rows deleted (committed).
    AfterCommit,
    /// Restore: events back in the hot table (committed), objects not yet
    /// deleted.
    RestoreAfterCommit,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::BeforePut => "before-put",
            Step::AfterPut => "after-put",
            Step::AfterCommit => "after-commit",
            Step::RestoreAfterCommit => "restore-after-commit",
        }
    }

    fn reached(self) {
        if std::env::var("EVENTUALL_ARCHIVE_CRASH_AT").is_ok_and(|at| at == self.name()) {
            eprintln!("EVENTUALL_ARCHIVE_CRASH_AT={}: aborting", self.name());
            std::process::abort();
        }
    }
}

impl Archive {
    pub(crate) fn new(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            objects: Objects::parse(url)?,
            cache: Mutex::new(SegmentCache::default()),
            max_position: AtomicI64::new(0),
            refreshed_at: AtomicI64::new(0),
            quarantined: Mutex::new(Default::default()),
        })
    }

    /// Leaves the segment at `location` out of whole-log scans from now on.
    pub fn quarantine(&self, location: &str) {
        self.quarantined.lock().expect("quarantine lock").insert(location.to_owned());
    }

    pub(crate) fn is_quarantined(&self, location: &str) -> bool {
        self.quarantined.lock().expect("quarantine lock").contains(location)
    }

    /// The archive's root URL.
    pub fn url(&self) -> &str {
        self.objects.root()
    }

    /// The highest archived position this process knows of.
    pub fn max_position(&self) -> i64 {
        self.max_position.load(Ordering::Acquire)
    }

    fn cached(&self, location: &str) -> Option<Arc<Segment>> {
        self.cache.lock().expect("cache lock").get(location)
    }
}

/// Decoded segments by location, oldest dropped first when over
/// [`CACHE_EVENTS`]. Segments never change, so nothing is invalidated.
#[derive(Default)]
struct SegmentCache {
    segments: HashMap<String, Arc<Segment>>,
    order: VecDeque<String>,
    events: usize,
}

impl SegmentCache {
    fn get(&self, location: &str) -> Option<Arc<Segment>> {
        self.segments.get(location).cloned()
    }

    fn insert(&mut self, location: String, segment: Arc<Segment>) {
        if self.segments.contains_key(&location) || segment.events.len() > CACHE_EVENTS {
            return;
        }
        self.events += segment.events.len();
        self.order.push_back(location.clone());
        self.segments.insert(location, segment);
        while self.events > CACHE_EVENTS {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(dropped) = self.segments.remove(&oldest) {
                self.events -= dropped.events.len();
            }
        }
    }

    fn remove(&mut self, location: &str) {
        if let Some(dropped) = self.segments.remove(location) {
            self.events -= dropped.events.len();
            self.order.retain(|l| l != location);
        }
    }
}

/// The default archive beside the database: `<file>.archive/` next to a
/// SQLite file, `./eventuall-archive/` for PostgreSQL.
pub(crate) fn default_url(backend: &Backend) -> String {
    let folder = match backend {
        Backend::Sqlite(b) => {
            let mut name = b.file().as_os_str().to_owned();
            name.push(".archive");
            std::path::PathBuf::from(name)
        }
        Backend::Postgres(_) => std::env::current_dir().unwrap_or_default().join("eventuall-archive"),
    };
    url::Url::from_directory_path(&folder).map_or_else(|()| format!("file://{}", folder.display()), |u| u.to_string())
}

impl EventStore {
    /// The store's archive tier.
    pub fn archive(&self) -> &Archive {
        &self.inner.archive
    }

    /// Re-reads the highest archived position (after another process, such
    /// as the `eventuall archive` command, archived streams).
    pub async fn refresh_archive(&self) -> Result<(), StoreError> {
        let max: Vec<(Option<i64>,)> = self.query_as("select max(last_position) from archive_segments", &[]).await?;
        let max = max.first().and_then(|(m,)| *m).unwrap_or(0);
        self.archive().max_position.store(max, Ordering::Release);
        self.archive().refreshed_at.store(now_millis(), Ordering::Release);
        Ok(())
    }

    /// The highest archived position, re-read when this process's view is
    /// older than [`REFRESH_EVERY_MS`].
    pub(crate) async fn archived_max_position(&self) -> Result<i64, StoreError> {
        if now_millis() - self.archive().refreshed_at.load(Ordering::Acquire) > REFRESH_EVERY_MS {
            self.refresh_archive().await?;
        }
        Ok(self.archive().max_position())
    }

    /// The segments of `stream`, oldest first.
    pub async fn segments_of(&self, stream: &StreamId) -> Result<Vec<SegmentRow>, StoreError> {
        let sql = format!("select {SEGMENT_COLUMNS} from archive_segments where stream_id = $1 order by first_version");
        self.query_as(&sql, &[stream.as_str().into()]).await
    }

    /// Every segment, by stream then version.
    pub async fn all_segments(&self) -> Result<Vec<SegmentRow>, StoreError> {
        let sql = format!("select {SEGMENT_COLUMNS} from archive_segments order by stream_id, first_version");
        self.query_as(&sql, &[]).await
    }

    /// The position every subscriber has passed: events at or before it may
    /// be archived without a live projection ever needing them again.
    pub async fn archivable_position(&self) -> Result<i64, StoreError> {
        let lowest: Vec<(Option<i64>,)> = self.query_as("select min(position) from checkpoints", &[]).await?;
        let head = self.head_position().await?;
        Ok(lowest.first().and_then(|(p,)| *p).map_or(head, |p| p.min(head)))
    }

    /// Streams of `category` whose newest event is older than `before`
    /// (milliseconds since the epoch) and that have something to archive.
    pub async fn cold_streams(&self, category: &str, before: i64) -> Result<Vec<StreamId>, StoreError> {
        let rows: Vec<(String,)> = self
            .query_as(
                "select stream_id from events where stream_id >= $1 and stream_id < $2 \
                 group by stream_id having max(recorded_at) < $3 and count(*) > 1 order by stream_id",
                &[format!("{category}-").into(), format!("{category}.").into(), before.into()],
            )
            .await?;
        rows.into_iter().map(|(s,)| StreamId::parse(s)).collect()
    }

    /// Moves the events of `stream` that every subscriber has passed, except
    /// its newest, into segments (see the module header for the order of
    /// writes). Archiving an archived stream archives only what was appended
    /// since; nothing to archive is not an error.
    pub async fn archive_stream(&self, stream: &StreamId) -> Result<ArchiveOutcome, StoreError> {
        let bound = self.archivable_position().await?;
        let head_version = self.stream_version(stream).await? as i64;
        let mut outcome = ArchiveOutcome::default();
        loop {
            let through = self.segments_of(stream).await?.last().map_or(0, |s| s.last_version);
            let events = self.read_hot_versions(stream, through, head_version, bound, SEGMENT_EVENTS).await?;
            let Some(first) = events.first() else { return Ok(outcome) };
            if first.stream_version != through + 1 {
                return Err(StoreError::Archive(format!(
                    "{stream}: version {} follows the archived version {through}; the log has a hole",
                    first.stream_version
                )));
            }
            let last_chunk = events.len() < SEGMENT_EVENTS;
            let snapshot = if last_chunk { self.hot_snapshot(stream).await? } else { None };
            let segment = Segment { stream_id: stream.to_string(), events, snapshot };
            outcome.bytes += self.write_segment(&segment).await?;
            outcome.segments += 1;
            outcome.events += segment.events.len() as u64;
            if last_chunk {
                return Ok(outcome);
            }
        }
    }

    /// Writes one segment's object, then records it and deletes its events
    /// from the hot tables in one transaction. Returns the object's size.
    async fn write_segment(&self, segment: &Segment) -> Result<u64, StoreError> {
        let (first, last) = (&segment.events[0], segment.events.last().expect("a segment has events"));
        let category = segment.stream_id.split_once('-').map_or(segment.stream_id.as_str(), |(c, _)| c);
        let key = format!(
            "{category}/{stream}/{:012}-{:012}.jsonl",
            first.stream_version,
            last.stream_version,
            stream = segment.stream_id
        );
        let location = self.archive().objects.location(&key);
        let bytes = segment.encode();
        let size = bytes.len() as u64;
        let hash = content_hash(&bytes);
        Step::BeforePut.reached();
        self.archive().objects.put(&location, bytes).await?;
        Step::AfterPut.reached();

        let mut tx = DbTx::begin(self).await?;
        let row: Vec<SqlValue> = vec![
            segment.stream_id.as_str().into(),
            first.stream_version.into(),
            last.stream_version.into(),
            first.global_position.into(),
            last.global_position.into(),
            (segment.events.len() as i64).into(),
            location.as_str().into(),
            SqlValue::Bytes(hash.to_vec()),
            (size as i64).into(),
            i64::from(segment.snapshot.is_some()).into(),
            now_millis().into(),
        ];
        tx.execute(
            &format!(
                "insert into archive_segments ({SEGMENT_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &row,
        )
        .await?;
        let deleted = tx
            .execute(
                "delete from events where stream_id = $1 and stream_version >= $2 and stream_version <= $3",
                &[segment.stream_id.as_str().into(), first.stream_version.into(), last.stream_version.into()],
            )
            .await?;
        if deleted != segment.events.len() as u64 {
            // Another archiver got there first; the transaction rolls back.
            return Err(StoreError::Archive(format!(
                "{}: expected to move {} events, found {deleted}",
                segment.stream_id,
                segment.events.len()
            )));
        }
        if let Some(snapshot) = &segment.snapshot {
            // Only the snapshot that was copied: a newer one stays hot.
            tx.execute(
                "delete from snapshots where stream_id = $1 and version = $2 and schema_tag = $3",
                &[segment.stream_id.as_str().into(), snapshot.version.into(), snapshot.schema_tag.as_str().into()],
            )
            .await?;
        }
        tx.commit().await?;
        self.archive().max_position.fetch_max(last.global_position, Ordering::AcqRel);
        Step::AfterCommit.reached();
        Ok(size)
    }

    /// Puts every archived event of `stream` back in the hot table with its
    /// position, and its archived snapshot back unless a newer one is hot;
    /// then deletes the objects.
    pub async fn restore_stream(&self, stream: &StreamId) -> Result<RestoreOutcome, StoreError> {
        let rows = self.segments_of(stream).await?;
        if rows.is_empty() {
            return Ok(RestoreOutcome::default());
        }
        let mut segments = Vec::with_capacity(rows.len());
        for row in &rows {
            segments.push(self.load_segment(row).await?);
        }
        let mut tx = DbTx::begin(self).await?;
        let mut events = 0u64;
        for segment in &segments {
            for event in &segment.events {
                insert_raw(&mut tx, event).await?;
                events += 1;
            }
        }
        if let Some(snapshot) = segments.iter().rev().find_map(|s| s.snapshot.as_ref()) {
            tx.execute(
                "insert into snapshots (stream_id, version, schema_tag, state, taken_at) values ($1, $2, $3, $4, $5) \
                 on conflict (stream_id) do nothing",
                &[
                    stream.as_str().into(),
                    snapshot.version.into(),
                    snapshot.schema_tag.as_str().into(),
                    SqlValue::Bytes(snapshot.state.clone()),
                    snapshot.taken_at.into(),
                ],
            )
            .await?;
        }
        tx.execute("delete from archive_segments where stream_id = $1", &[stream.as_str().into()]).await?;
        tx.commit().await?;
        Step::RestoreAfterCommit.reached();
        for row in &rows {
            self.archive().cache.lock().expect("cache lock").remove(&row.location);
            // The events are hot again: a left-over object is only litter.
            if let Err(error) = self.archive().objects.delete(&row.location).await {
                tracing::warn!(%error, location = %row.location, "restored segment not deleted");
            }
        }
        self.refresh_archive().await?;
        Ok(RestoreOutcome { segments: rows.len() as u64, events })
    }

    /// The segment of `row`, checked against the row and its content hash.
    pub async fn check_segment(&self, row: &SegmentRow) -> Result<Arc<Segment>, SegmentProblem> {
        if let Some(segment) = self.archive().cached(&row.location) {
            return Ok(segment);
        }
        let problem = |reason: String| SegmentProblem::Unreadable {
            stream: row.stream_id.clone(),
            location: row.location.clone(),
            reason,
        };
        let bytes = self.archive().objects.get(&row.location).await.map_err(|e| problem(e.to_string()))?;
        let Some(bytes) = bytes else {
            return Err(SegmentProblem::Missing { stream: row.stream_id.clone(), location: row.location.clone() });
        };
        if content_hash(&bytes)[..] != row.content_hash[..] {
            return Err(SegmentProblem::Altered { stream: row.stream_id.clone(), location: row.location.clone() });
        }
        let segment = Segment::decode(&bytes).map_err(|e| problem(e.to_string()))?;
        let mismatch = |reason: String| SegmentProblem::Mismatch {
            stream: row.stream_id.clone(),
            location: row.location.clone(),
            reason,
        };
        let (first, last) = match (segment.events.first(), segment.events.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(mismatch("it holds no events".into())),
        };
        if segment.stream_id != row.stream_id {
            return Err(mismatch(format!("it holds stream {}", segment.stream_id)));
        }
        let found = (first.stream_version, last.stream_version, first.global_position, last.global_position);
        let recorded = (row.first_version, row.last_version, row.first_position, row.last_position);
        if found != recorded {
            return Err(mismatch(format!("versions and positions {found:?}, recorded {recorded:?}")));
        }
        if (row.has_snapshot != 0) != segment.snapshot.is_some() {
            return Err(mismatch("the snapshot is not where the metadata says".into()));
        }
        let segment = Arc::new(segment);
        self.archive().cache.lock().expect("cache lock").insert(row.location.clone(), segment.clone());
        Ok(segment)
    }

    async fn load_segment(&self, row: &SegmentRow) -> Result<Arc<Segment>, StoreError> {
        self.check_segment(row).await.map_err(|problem| StoreError::Archive(problem.to_string()))
    }

    /// Hot events of `stream` with `after_version < version < before_version`
    /// and position ≤ `until`, in version order.
    async fn read_hot_versions(
        &self,
        stream: &StreamId,
        after_version: i64,
        before_version: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<RawEvent>, StoreError> {
        let columns = super::raw::columns(self.backend());
        let sql = format!(
            "select {columns} from events where stream_id = $1 and stream_version > $2 and stream_version < $3 \
             and global_position <= $4 order by stream_version limit $5"
        );
        macro_rules! run {
            ($pool:expr) => {
                sqlx::query_as::<_, RawEvent>(AssertSqlSafe(sql))
                    .bind(stream.as_str())
                    .bind(after_version)
                    .bind(before_version)
                    .bind(until)
                    .bind(limit as i64)
                    .fetch_all($pool)
                    .await?
            };
        }
        Ok(match self.backend() {
            Backend::Sqlite(b) => run!(b.pool()),
            Backend::Postgres(b) => run!(b.pool()),
        })
    }

    async fn hot_snapshot(&self, stream: &StreamId) -> Result<Option<SegmentSnapshot>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>, i64)> = self
            .query_as(
                "select schema_tag, version, state, taken_at from snapshots where stream_id = $1",
                &[stream.as_str().into()],
            )
            .await?;
        Ok(rows.into_iter().next().map(|(schema_tag, version, state, taken_at)| SegmentSnapshot {
            schema_tag,
            version,
            state,
            taken_at,
        }))
    }

    /// The snapshot that moved into the newest segment of `stream` holding
    /// one, if its schema tag is `schema_tag`.
    pub(crate) async fn archived_snapshot(
        &self,
        stream: &StreamId,
        schema_tag: &str,
    ) -> Result<Option<Snapshot>, StoreError> {
        let sql = format!(
            "select {SEGMENT_COLUMNS} from archive_segments where stream_id = $1 and has_snapshot = 1 \
             order by first_version desc limit 1"
        );
        let rows: Vec<SegmentRow> = self.query_as(&sql, &[stream.as_str().into()]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let segment = self.load_segment(row).await?;
        Ok(segment
            .snapshot
            .as_ref()
            .filter(|s| s.schema_tag == schema_tag)
            .map(|s| Snapshot { version: s.version as u64, state: s.state.clone() }))
    }

    /// `hot` (a read of `stream` from `from_version` whose first event comes
    /// later) with the archived events before it: `None` when the segments
    /// do not close the gap (an archive or restore committed between the
    /// two reads; the caller reads again).
    pub(crate) async fn fill_from_archive(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
        hot: Vec<RecordedEvent>,
    ) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let first_hot = hot.first().map_or(u64::MAX, |e| e.stream_version);
        let mut out = Vec::with_capacity(limit.min(SEGMENT_EVENTS));
        let mut next = from_version;
        for row in self.segments_of(stream).await? {
            if (row.last_version as u64) < next || out.len() >= limit {
                continue;
            }
            let segment = self.load_segment(&row).await?;
            for event in &segment.events {
                if event.stream_version as u64 == next && out.len() < limit {
                    out.push(recorded(event)?);
                    next += 1;
                }
            }
        }
        if out.len() < limit && next != first_hot {
            return Ok(None);
        }
        let room = limit - out.len();
        out.extend(hot.into_iter().take(room));
        Ok(Some(out))
    }

    /// `hot` (a page of the whole log after `after`) merged with the
    /// archived events in its range.
    pub(crate) async fn merge_all_with_archive(
        &self,
        after: i64,
        limit: usize,
        hot: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let bound = if hot.len() >= limit { hot.last().map_or(i64::MAX, |e| e.global_position) } else { i64::MAX };
        let mut cursor = merge::ArchivedCursor::open(self, &Filter::All, after, bound).await?;
        let archived = cursor.next_upto(bound, limit).await?;
        if archived.is_empty() {
            return Ok(hot);
        }
        let mut out = Vec::with_capacity(limit);
        let mut hot = hot.into_iter().peekable();
        let mut archived = archived.into_iter().peekable();
        while out.len() < limit {
            let take_hot = match (hot.peek(), archived.peek()) {
                (Some(h), Some(a)) => h.global_position < a.global_position,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_hot {
                out.extend(hot.next());
            } else if let Some(a) = archived.next() {
                out.push(recorded(&a)?);
            }
        }
        Ok(out)
    }
}

/// An archived event as the store's readers see events.
fn recorded(event: &RawEvent) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        global_position: event.global_position,
        stream_id: StreamId::parse(event.stream_id.clone())?,
        stream_version: event.stream_version as u64,
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        event_version: event.event_version.clone(),
        payload: event.payload.clone(),
        metadata: super::parse_metadata(&event.metadata),
        recorded_at: event.recorded_at,
        hash: super::hash_from_bytes(&event.hash),
    })
}

/// Inserts an archived event back with its own position (restore).
async fn insert_raw(tx: &mut DbTx, event: &RawEvent) -> Result<(), StoreError> {
    const COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, event_version, \
         payload, metadata, recorded_at, hash";
    macro_rules! run {
        ($tx:expr, $sql:expr) => {
            sqlx::query(AssertSqlSafe($sql))
                .bind(event.global_position)
                .bind(&event.stream_id)
                .bind(event.stream_version)
                .bind(event.event_id)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(&event.payload)
                .bind(&event.metadata)
                .bind(event.recorded_at)
                .bind(&event.hash)
                .execute(&mut **$tx)
                .await?
        };
    }
    match tx {
        DbTx::Sqlite(tx) => {
            run!(tx, format!("insert into events ({COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"));
        }
        DbTx::Postgres(tx) => {
            // The identity column takes the archived position as it was.
            run!(
                tx,
                format!(
                    "insert into events ({COLUMNS}) overriding system value \
                     values ($1, $2, $3, $4, $5, $6, $7::json, $8::json, $9, $10)"
                )
            );
        }
    }
    Ok(())
}
