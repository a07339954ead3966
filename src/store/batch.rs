//! The batch planner of the group-commit writer: the requests of one
//! transaction ([`Appends`]), each checked against its stream's head
//! ([`StreamHead`], remembered between batches by [`HeadCache`]) and turned
//! into rows with versions and chained hashes ([`BatchPlan`]), before either
//! backend writes them. Pure: no IO here, so both backends plan alike and
//! the tests below need no database.

use std::sync::Arc;

use uuid::Uuid;

use super::{AppendOutcome, ExpectedVersion, NewEvent, SnapshotWrite, StoreError, StreamId, hash};

/// One request as the writer sees it, with the stream's head to check it
/// against; shared by both backends' batch writers.
pub(crate) struct PendingAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub snapshot: Option<SnapshotWrite>,
}

/// The requests of one transaction. Shared and immutable, so that SQLite's
/// writer thread can hold them while the group-commit task waits for it.
#[derive(Clone)]
pub(crate) struct Appends {
    all: Arc<[PendingAppend]>,
    range: std::ops::Range<usize>,
}

impl Appends {
    pub fn new(appends: Vec<PendingAppend>) -> Self {
        let range = 0..appends.len();
        Self { all: appends.into(), range }
    }

    /// Each request on its own (the one-by-one fallback of a failed batch).
    pub fn each(&self) -> impl Iterator<Item = Appends> + '_ {
        self.range.clone().map(|i| Self { all: self.all.clone(), range: i..i + 1 })
    }
}

impl std::ops::Deref for Appends {
    type Target = [PendingAppend];

    fn deref(&self) -> &[PendingAppend] {
        &self.all[self.range.clone()]
    }
}

/// The outcome of validating one request inside a batch, before writing.
pub(crate) enum Planned {
    /// Write these rows; the answer is known once the batch commits.
    Write {
        rows: Vec<PlannedRow>,
    },
    /// Every event id was already stored in this stream: answer from the log.
    AlreadyStored(AppendOutcome),
    Rejected(StoreError),
}

/// A row to insert, with its version and hash already computed.
pub(crate) struct PlannedRow {
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: i64,
    pub hash: [u8; 32],
}

/// A snapshot row to upsert with the batch, at the version its append reached.
pub(crate) struct PlannedSnapshot {
    pub stream_id: String,
    pub version: i64,
    pub schema_tag: String,
    pub state: Vec<u8>,
    pub taken_at: i64,
}

/// The state of a stream as seen by the writer mid-batch.
#[derive(Clone, Debug)]
pub(crate) struct StreamHead {
    pub version: u64,
    pub last_hash: [u8; 32],
}

impl StreamHead {
    pub fn empty() -> Self {
        Self { version: 0, last_hash: [0; 32] }
    }
}

/// Where an already-stored event id sits in the log.
#[derive(Clone, Debug)]
pub(crate) struct StoredId {
    pub stream_id: String,
    pub stream_version: u64,
    pub global_position: i64,
}

/// Checks one request against its stream's head (updated by earlier requests
/// of the same batch) and the ids already stored; plans its rows.
pub(crate) fn plan_append(
    request: &PendingAppend,
    head: &mut StreamHead,
    stored: &std::collections::HashMap<Uuid, StoredId>,
    recorded_at: i64,
) -> Planned {
    let already: Vec<&StoredId> = request.events.iter().filter_map(|e| stored.get(&e.event_id)).collect();
    if !already.is_empty() {
        let same_stream = already.iter().all(|s| s.stream_id == request.stream.as_str());
        if already.len() == request.events.len() && same_stream {
            let last = already.iter().max_by_key(|s| s.stream_version).expect("non-empty");
            let first_position = already.iter().map(|s| s.global_position).min().expect("non-empty");
            return Planned::AlreadyStored(AppendOutcome {
                next_version: last.stream_version,
                first_position,
                last_position: last.global_position,
                already_stored: true,
            });
        }
        return Planned::Rejected(StoreError::PartialDuplicate { stream_id: request.stream.to_string() });
    }
    let matches = match request.expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => head.version == 0,
        ExpectedVersion::Exact(v) => head.version == v,
    };
    if !matches {
        return Planned::Rejected(StoreError::Conflict {
            stream_id: request.stream.to_string(),
            expected: request.expected,
            actual: head.version,
        });
    }
    let mut rows = Vec::with_capacity(request.events.len());
    for event in &request.events {
        let metadata = serde_json::to_string(&event.metadata).expect("metadata serialises");
        let version = head.version + 1;
        let hash = hash::chain(
            &head.last_hash,
            hash::Fields {
                stream_id: request.stream.as_str(),
                stream_version: version,
                event_id: &event.event_id,
                event_type: &event.event_type,
                event_version: &event.event_version,
                payload: &event.payload,
                metadata: &metadata,
                recorded_at,
            },
        );
        rows.push(PlannedRow {
            stream_id: request.stream.to_string(),
            stream_version: version as i64,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload: event.payload.clone(),
            metadata,
            recorded_at,
            hash,
        });
        head.version = version;
        head.last_hash = hash;
    }
    Planned::Write { rows }
}

/// A whole batch checked against the heads and stored ids read in its
/// transaction: what to insert, which heads move, what each request is told.
pub(crate) struct BatchPlan {
    pub planned: Vec<Planned>,
    /// Heads of the streams this batch writes, after the batch.
    pub new_heads: std::collections::BTreeMap<String, StreamHead>,
    /// Snapshots that ride along with accepted appends.
    pub snapshots: Vec<PlannedSnapshot>,
}

impl BatchPlan {
    pub fn new(
        appends: &[PendingAppend],
        mut heads: std::collections::HashMap<String, StreamHead>,
        stored: &std::collections::HashMap<Uuid, StoredId>,
        recorded_at: i64,
    ) -> Self {
        let mut new_heads = std::collections::BTreeMap::new();
        let mut snapshots = Vec::new();
        let planned = appends
            .iter()
            .map(|request| {
                let head = heads.entry(request.stream.to_string()).or_insert_with(StreamHead::empty);
                let plan = plan_append(request, head, stored, recorded_at);
                if matches!(plan, Planned::Write { .. }) {
                    new_heads.insert(request.stream.to_string(), head.clone());
                    if let Some(snapshot) = &request.snapshot {
                        snapshots.push(PlannedSnapshot {
                            stream_id: request.stream.to_string(),
                            version: head.version as i64,
                            schema_tag: snapshot.schema_tag.clone(),
                            state: snapshot.state.clone(),
                            taken_at: recorded_at,
                        });
                    }
                }
                plan
            })
            .collect();
        Self { planned, new_heads, snapshots }
    }

    pub fn rows(&self) -> impl Iterator<Item = &PlannedRow> {
        self.planned.iter().flat_map(|p| match p {
            Planned::Write { rows } => rows.as_slice(),
            _ => &[],
        })
    }

    /// Each request's answer, given the positions the insert assigned.
    pub fn answers(self, positions: &std::collections::HashMap<Uuid, i64>) -> Vec<Result<AppendOutcome, StoreError>> {
        self.planned
            .into_iter()
            .map(|plan| match plan {
                Planned::Write { rows } => {
                    let last = rows.last().expect("an append has events");
                    let assigned = || rows.iter().filter_map(|r| positions.get(&r.event_id)).copied();
                    let first_position = assigned().min().unwrap_or(0);
                    let last_position = assigned().max().unwrap_or(0);
                    Ok(AppendOutcome {
                        next_version: last.stream_version as u64,
                        first_position,
                        last_position,
                        already_stored: false,
                    })
                }
                Planned::AlreadyStored(outcome) => Ok(outcome),
                Planned::Rejected(error) => Err(error),
            })
            .collect()
    }
}

/// A committed batch: its plan and the position each inserted event got.
/// The group-commit writer turns it into answers and remembered heads.
pub(crate) struct WrittenBatch {
    pub plan: BatchPlan,
    pub positions: std::collections::HashMap<Uuid, i64>,
}

/// The fast path's plan: every request checked against the heads the writer
/// knows, without looking up stored event ids. `None` when any request would
/// be refused or answered from the log: only fresh reads may decide those.
/// An id that is in fact stored makes the insert skip its row, which sends
/// the batch down the checked path.
pub(crate) fn optimistic_plan(
    appends: &[PendingAppend],
    heads: std::collections::HashMap<String, StreamHead>,
    recorded_at: i64,
) -> Option<BatchPlan> {
    let plan = BatchPlan::new(appends, heads, &std::collections::HashMap::new(), recorded_at);
    plan.planned.iter().all(|p| matches!(p, Planned::Write { .. })).then_some(plan)
}

/// Stream heads the writer has committed, so that a batch need not read them
/// again: with them, a batch of appends is one insert and one commit.
///
/// Only ever a hint. A request the cache would refuse is re-checked against
/// the database, and a head that moved behind the cache's back (another
/// process or node appended) makes the insert collide with the log's unique
/// `(stream_id, stream_version)` key, which rolls the batch back and sends it
/// down the checked path with fresh reads.
#[derive(Default)]
pub(crate) struct HeadCache {
    heads: std::collections::HashMap<String, StreamHead>,
}

impl HeadCache {
    /// Bound on remembered streams; past it the cache starts over (a miss
    /// costs one indexed read, so precision here is not worth an LRU).
    const MAX_STREAMS: usize = 100_000;

    /// The known heads of `streams`, and the streams it does not know.
    pub fn lookup(&self, streams: &[String]) -> (std::collections::HashMap<String, StreamHead>, Vec<String>) {
        let mut known = std::collections::HashMap::with_capacity(streams.len());
        let mut missing = Vec::new();
        for stream in streams {
            match self.heads.get(stream) {
                Some(head) => {
                    known.insert(stream.clone(), head.clone());
                }
                None => missing.push(stream.clone()),
            }
        }
        (known, missing)
    }

    /// Records the heads a committed batch left behind. A head never moves
    /// back: with two writer tasks, the one that committed first may
    /// remember last.
    pub fn remember<'a>(&mut self, heads: impl IntoIterator<Item = (&'a String, &'a StreamHead)>) {
        if self.heads.len() > Self::MAX_STREAMS {
            self.heads.clear();
        }
        for (stream, head) in heads {
            match self.heads.get_mut(stream) {
                Some(known) if known.version >= head.version => {}
                Some(known) => *known = head.clone(),
                None => {
                    self.heads.insert(stream.clone(), head.clone());
                }
            }
        }
    }

    pub fn forget(&mut self, streams: &[String]) {
        for stream in streams {
            self.heads.remove(stream);
        }
    }

    pub fn clear(&mut self) {
        self.heads.clear();
    }
}

/// Distinct stream ids and all event ids of a batch, for the head and
/// idempotency look-ups.
pub(crate) fn batch_keys(appends: &[PendingAppend]) -> (Vec<String>, Vec<Uuid>) {
    let mut streams: Vec<String> = appends.iter().map(|a| a.stream.to_string()).collect();
    streams.sort();
    streams.dedup();
    let ids = appends.iter().flat_map(|a| a.events.iter().map(|e| e.event_id)).collect();
    (streams, ids)
}
