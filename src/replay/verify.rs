//! `replay verify`: is the log intact?
//!
//! One pass over the log in global order, in batches, keeping only each
//! stream's last version and hash (O(streams) memory). Streams are spread
//! over one check thread per core by a hash of their id ([`Shards`]); each
//! thread walks its streams' events in log order, and the problems are
//! gathered back in log order. For every event it checks, in this order,
//! and reports the first failure:
//! 1. the stream id is well formed;
//! 2. the version follows the stream's previous one (`missing version 7
//!    (found 8)` after a deletion; `version 4 after version 5` when reordered);
//! 3. the hash equals `hash::chain(previous hash, fields)`: any edited field
//!    breaks it;
//! 4. the metadata is the JSON object the store writes;
//! 5. the payload decodes into its category's current event type, after
//!    upcasting ([`Registry`]); unknown categories must hold JSON.
//!
//! Archived segments (ADR 0017) are checked first (present, content hash,
//! metadata) and their events then take part in the pass in log order, so
//! the chain is checked across the archive/tail boundary like anywhere else.
//!
//! After a failure the stream continues from the event as stored, so one
//! tampered event is reported once, not once per later event. At the end,
//! each stored snapshot's version is compared with its stream's last event:
//! a snapshot of a version the log does not reach means the stream's tail
//! was cut. (A stream's head is its last event, ADR 0012, so events deleted
//! from the tail after the last snapshot leave a shorter, unbroken chain;
//! only a witness kept outside the database could tell.)

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Progress;
use crate::store::raw::{BATCH, Batches, Filter, RawBatch, RawRef};
use crate::store::registry::Registry;
use crate::store::{EventStore, Metadata, StoreError, StreamId, hash};

/// Problems kept in a report; later ones are only counted.
pub const MAX_PROBLEMS: usize = 10_000;

/// What is wrong with one event (or a stream's head).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    InvalidStreamId,
    /// A version was skipped: the events in between are missing.
    MissingVersion {
        expected: u64,
        found: u64,
    },
    /// A version at or below one already seen, in global order.
    OutOfOrder {
        after: u64,
        found: u64,
    },
    HashMismatch {
        stored: String,
        computed: String,
    },
    Metadata {
        error: String,
    },
    Decode {
        error: String,
    },
    /// A snapshot was taken at a version past the stream's last event: the
    /// events it was taken after are gone.
    SnapshotAhead {
        snapshot_version: u64,
        log_version: u64,
    },
    /// An archived segment is missing, altered (its content hash differs
    /// from the recorded one) or does not match its metadata; the pass goes
    /// on without it, so its events also show as missing versions.
    Segment {
        location: String,
        error: String,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::InvalidStreamId => write!(f, "invalid stream id"),
            ProblemKind::MissingVersion { expected, found } => write!(f, "missing version {expected} (found {found})"),
            ProblemKind::OutOfOrder { after, found } => {
                write!(f, "version {found} out of order (after version {after})")
            }
            ProblemKind::HashMismatch { .. } => write!(f, "hash mismatch"),
            ProblemKind::Metadata { error } => write!(f, "metadata error: {error}"),
            ProblemKind::Decode { error } => write!(f, "decode error: {error}"),
            ProblemKind::SnapshotAhead { snapshot_version, log_version } => {
                write!(f, "a snapshot is at version {snapshot_version} but the log ends at version {log_version}")
            }
            ProblemKind::Segment { error, .. } => write!(f, "{error}"),
        }
    }
}

/// One finding: where, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub stream_id: String,
    pub stream_version: u64,
    /// `None` for snapshots ahead of the log, which are about a stream, not
    /// an event.
    pub global_position: Option<i64>,
    #[serde(flatten)]
    pub kind: ProblemKind,
    /// The human-readable reason.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.global_position {
            Some(p) => write!(f, "{} version {} (position {p}): {}", self.stream_id, self.stream_version, self.kind),
            None => write!(f, "{} version {}: {}", self.stream_id, self.stream_version, self.kind),
        }
    }
}

/// The outcome of a verification.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub events: u64,
    pub streams: u64,
    /// The head the pass stopped at (appends after it are not checked).
    pub head: i64,
    pub problem_count: u64,
    /// The first [`MAX_PROBLEMS`] problems, in log order.
    pub problems: Vec<Problem>,
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Report {
    pub fn is_sound(&self) -> bool {
        self.problem_count == 0
    }

    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn push(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// A stream's state as the pass has seen it.
struct Tail {
    version: u64,
    hash: [u8; 32],
}

/// Batches handed to the check threads and not yet collected: enough to
/// keep every thread busy while the scan reads ahead, few enough to keep
/// memory flat (each batch is about 3 MB).
const IN_FLIGHT: usize = 3;

/// Most check threads used, however many cores there are: beyond this the
/// scan, not the checks, is the limit.
const MAX_CHECK_THREADS: usize = 8;

/// How a verification spreads its work; the report does not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Threads that run the checks (streams are spread over them).
    pub check_threads: usize,
    /// Events per read.
    pub batch: usize,
}

impl Default for VerifyOptions {
    /// One check thread per core, up to [`MAX_CHECK_THREADS`].
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { check_threads: cores.clamp(1, MAX_CHECK_THREADS), batch: BATCH }
    }
}

/// Verifies the whole log up to its current head.
pub async fn verify(
    store: &EventStore,
    registry: &'static Registry,
    progress: &Progress,
) -> Result<Report, StoreError> {
    verify_with(store, registry, progress, VerifyOptions::default()).await
}

/// [`verify`] with the work spread as `options` says.
pub async fn verify_with(
    store: &EventStore,
    registry: &'static Registry,
    progress: &Progress,
    options: VerifyOptions,
) -> Result<Report, StoreError> {
    let started = Instant::now();
    let head = store.head_position().await?;
    let batch = options.batch.max(1);
    // Archived segments first: each is read and checked against its
    // content hash and metadata; a broken one is reported and left out of
    // the pass, which then also reports its events as missing.
    let mut segment_problems = Vec::new();
    store.refresh_archive().await?;
    for row in store.all_segments().await? {
        if let Err(problem) = store.check_segment(&row).await {
            store.archive().quarantine(&row.location);
            segment_problems.push(Problem {
                stream_id: row.stream_id.clone(),
                stream_version: row.first_version as u64,
                global_position: None,
                message: problem.to_string(),
                kind: ProblemKind::Segment { location: row.location.clone(), error: problem.to_string() },
            });
        }
    }
    let shards = Shards::new(options.check_threads);
    let pass = |batches: Batches| {
        progress.start(head.max(0) as u64, "verifying");
        let thread_progress = progress.clone();
        tokio::task::spawn_blocking(move || check_log(batches, registry, shards, head, &thread_progress))
    };
    // The cheaper storage-order scan first; if the log is not stored in its
    // own order, the pass is thrown away and run again in log order.
    let first =
        pass(Batches::start_in_storage_order(store, 0, head, batch)).await.expect("the verify pass does not panic");
    let (mut report, tails) = match first {
        Err(StoreError::ScanOutOfOrder(position)) => {
            tracing::info!(position, "the log is not stored in log order; verifying again in log order");
            pass(Batches::start(store, Filter::All, 0, head, batch)).await.expect("the verify pass does not panic")?
        }
        other => other?,
    };
    for problem in segment_problems.into_iter().chain(check_snapshots(store, &tails, head).await?) {
        report.push(problem);
    }
    report.streams = tails.len() as u64;
    report.elapsed = started.elapsed();
    progress.finish();
    Ok(report)
}

/// How streams are spread over the check threads: by a hash of the stream
/// id, so each stream's events meet one thread, in log order, and its chain
/// is walked exactly as a single pass would.
#[derive(Clone, Copy)]
struct Shards(usize);

impl Shards {
    fn new(count: usize) -> Self {
        Self(count.max(1))
    }

    /// FNV-1a: the same shard for the same id on every run and machine.
    fn of(self, stream_id: &str) -> usize {
        let hash =
            stream_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        (hash % self.0 as u64) as usize
    }
}

/// One batch for one check thread: the positions in it of that thread's
/// events.
struct Job {
    batch: Arc<RawBatch>,
    indices: Vec<u32>,
}

/// A problem found by a check thread: the event's index in its batch.
type Found = Vec<(u32, ProblemKind)>;

struct Worker {
    jobs: mpsc::Sender<Job>,
    found: mpsc::Receiver<Found>,
}

/// Runs every check of every event on the check threads and gathers the
/// problems in log order (within a batch by index, batches in order), so the
/// report is the one a single pass would write. Returns it with every
/// stream's tail.
fn check_log(
    mut batches: Batches,
    registry: &'static Registry,
    shards: Shards,
    head: i64,
    progress: &Progress,
) -> Result<(Report, HashMap<String, Tail>), StoreError> {
    let mut report =
        Report { events: 0, streams: 0, head, problem_count: 0, problems: Vec::new(), elapsed: Duration::ZERO };
    std::thread::scope(|scope| {
        let mut workers = Vec::with_capacity(shards.0);
        let mut threads = Vec::with_capacity(shards.0);
        for _ in 0..shards.0 {
            let (jobs, job_receiver) = mpsc::channel();
            let (found_sender, found) = mpsc::channel();
            threads.push(scope.spawn(move || check_shard(registry, job_receiver, found_sender)));
            workers.push(Worker { jobs, found });
        }
        let mut pending = VecDeque::with_capacity(IN_FLIGHT + 1);
        let mut outcome = Ok(());
        while let Some(batch) = batches.blocking_next() {
            let batch = match batch {
                Ok(batch) => Arc::new(batch),
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            };
            let mut indices = vec![Vec::with_capacity(batch.len() / shards.0 + 1); shards.0];
            for (index, event) in batch.iter().enumerate() {
                indices[shards.of(event.stream_id)].push(index as u32);
            }
            for (worker, indices) in workers.iter().zip(indices) {
                // A send fails only if the thread is gone; its join says why.
                let _ = worker.jobs.send(Job { batch: Arc::clone(&batch), indices });
            }
            pending.push_back(batch);
            if pending.len() > IN_FLIGHT
                && let Some(oldest) = pending.pop_front()
            {
                collect(&workers, &oldest, &mut report, progress);
            }
        }
        if outcome.is_ok() {
            while let Some(oldest) = pending.pop_front() {
                collect(&workers, &oldest, &mut report, progress);
            }
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = workers.into_iter().map(|w| (w.jobs, w.found)).unzip();
        drop(senders);
        let mut tails = HashMap::new();
        for thread in threads {
            tails.extend(thread.join().expect("check threads do not panic"));
        }
        drop(receivers);
        outcome.map(|()| (report, tails))
    })
}

/// Adds one batch's problems to the report, in log order.
fn collect(workers: &[Worker], batch: &RawBatch, report: &mut Report, progress: &Progress) {
    let mut found: Found = Vec::new();
    for worker in workers {
        // Empty only if the thread is gone; `check_log` joins it and says why.
        found.extend(worker.found.recv().unwrap_or_default());
    }
    // Each index belongs to one shard: the order is total.
    found.sort_unstable_by_key(|(index, _)| *index);
    for (index, kind) in found {
        let Some(event) = batch.get(index as usize) else { continue };
        let message = kind.to_string();
        report.push(Problem {
            stream_id: event.stream_id.to_owned(),
            stream_version: event.stream_version.max(0) as u64,
            global_position: Some(event.global_position),
            kind,
            message,
        });
    }
    report.events += batch.len() as u64;
    if let Some(last) = batch.last_position() {
        progress.set(last as u64);
    }
}

/// One check thread: every check of its shard's events, in the order given,
/// against the tails of its own streams; returns those tails at the end.
fn check_shard(registry: &Registry, jobs: mpsc::Receiver<Job>, found: mpsc::Sender<Found>) -> HashMap<String, Tail> {
    let mut tails = HashMap::new();
    let mut decoded = Decoded::default();
    for job in jobs {
        let mut problems = Vec::new();
        for &index in &job.indices {
            let Some(event) = job.batch.get(index as usize) else { continue };
            // The first failure in check order: a broken chain hides the content.
            let problem = check_chain(&mut tails, &event).or_else(|| check_content(registry, &event, &mut decoded));
            if let Some(kind) = problem {
                problems.push((index, kind));
            }
        }
        if found.send(problems).is_err() {
            break;
        }
    }
    tails
}

/// Checks 1–3 of one event against its stream's tail and moves the tail to it.
fn check_chain(tails: &mut HashMap<String, Tail>, event: &RawRef<'_>) -> Option<ProblemKind> {
    // A stream gets a tail only once its id parsed, and parsing depends on
    // the text alone: a known id needs no second parse (which allocates).
    if !tails.contains_key(event.stream_id) {
        if StreamId::parse(event.stream_id).is_err() {
            return Some(ProblemKind::InvalidStreamId);
        }
        tails.insert(event.stream_id.to_owned(), Tail { version: 0, hash: [0; 32] });
    }
    let tail = tails.get_mut(event.stream_id).expect("inserted above");
    let version = event.stream_version.max(0) as u64;
    let stored_hash = stored_hash(event.hash);
    if version <= tail.version {
        // Keep the tail: the stream goes on from the higher version.
        return Some(ProblemKind::OutOfOrder { after: tail.version, found: version });
    }
    if version != tail.version + 1 {
        let expected = tail.version + 1;
        *tail = Tail { version, hash: stored_hash };
        return Some(ProblemKind::MissingVersion { expected, found: version });
    }
    let computed = hash::chain(
        &tail.hash,
        hash::Fields {
            stream_id: event.stream_id,
            stream_version: version,
            event_id: &event.event_id,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
        },
    );
    *tail = Tail { version, hash: stored_hash };
    if computed != stored_hash || event.hash.len() != 32 {
        return Some(ProblemKind::HashMismatch { stored: hex::encode(event.hash), computed: hex::encode(computed) });
    }
    None
}

/// The last metadata text that decoded. A log repeats a few metadata texts
/// (one per actor and command) and decoding depends on the text alone, so
/// an equal text is known to decode without decoding it again.
#[derive(Default)]
struct Decoded {
    metadata: String,
}

/// Checks 4–5 of one event: its metadata and payload decode.
fn check_content(registry: &Registry, event: &RawRef<'_>, decoded: &mut Decoded) -> Option<ProblemKind> {
    if event.metadata != decoded.metadata {
        if let Err(error) = serde_json::from_str::<Metadata>(event.metadata) {
            return Some(ProblemKind::Metadata { error: error.to_string() });
        }
        event.metadata.clone_into(&mut decoded.metadata);
    }
    registry
        .check(event.category(), event.event_type, event.event_version, event.payload)
        .err()
        .map(|error| ProblemKind::Decode { error: error.to_string() })
}

fn stored_hash(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if bytes.len() == 32 {
        out.copy_from_slice(bytes);
    }
    out
}

/// Compares every stored snapshot's version with its stream's last event
/// as the pass saw it. Streams that got events after `head` (appended
/// during the pass, perhaps with a newer snapshot) are skipped.
async fn check_snapshots(
    store: &EventStore,
    tails: &HashMap<String, Tail>,
    head: i64,
) -> Result<Vec<Problem>, StoreError> {
    let snapshots_sql = "select stream_id, version from snapshots order by stream_id";
    let moved_sql = "select distinct stream_id from events where global_position > $1";
    let snapshots: Vec<(String, i64)> = store.query_as(snapshots_sql, &[]).await?;
    let moved: Vec<(String,)> = store.query_as(moved_sql, &[head.into()]).await?;
    let moved: std::collections::HashSet<String> = moved.into_iter().map(|(s,)| s).collect();
    let mut problems = Vec::new();
    for (stream_id, version) in snapshots {
        let snapshot_version = version.max(0) as u64;
        let log_version = tails.get(&stream_id).map_or(0, |t| t.version);
        if snapshot_version > log_version && !moved.contains(&stream_id) {
            let kind = ProblemKind::SnapshotAhead { snapshot_version, log_version };
            problems.push(Problem {
                message: kind.to_string(),
                stream_id,
                stream_version: log_version,
                global_position: None,
                kind,
            });
        }
    }
    Ok(problems)
}
