//! Group commit: a writer task per store (two on PostgreSQL) turns many
//! concurrent appends into few transactions.
//!
//! Callers send their append over a channel and wait on a oneshot. The writer
//! takes the first queued request, then everything else already queued (up to
//! `max_batch_events`), and writes the lot in one transaction: one fsync for
//! the batch instead of one per event. No timer is involved: while one batch
//! commits, the next one queues up, so batches grow with load and a lone
//! append is written at once. Before it writes, the writer yields to the
//! runtime a few times while requests keep arriving: the callers its last
//! answers woke are runnable but, on two cores, mostly not yet run, and
//! without that pause a batch of one would make all of them wait a commit.
//!
//! The writer remembers the stream heads it committed ([`HeadCache`]), so a
//! batch on streams it knows skips the head and idempotency look-ups: on
//! SQLite one insert and a commit, on PostgreSQL one call and a flush.
//! Anything the cache cannot decide goes down the checked path with fresh
//! reads.
//!
//! Each request is still checked on its own (expected version, idempotency)
//! and answered on its own; a rejected request does not fail its neighbours.
//! If the transaction itself fails, the writer retries the batch's requests
//! one per transaction, so that one poisonous request cannot fail the others.
//!
//! On SQLite a commit is not yet durable when it returns ([`WalSync`]): the
//! batch's answers wait in order for the WAL sync that covers it, while the
//! writer already writes the next batch. So that the writer has a next
//! batch to write, a large gathered batch is written there as two commits
//! (ADR 0013). On PostgreSQL the backend's write
//! returns only after its flush (ADR 0011), so the answers go out at once.
//!
//! On PostgreSQL two writer tasks, each with its own connection, take turns
//! at the queue: while one batch is on the server (waiting for or holding
//! the append lock, ADR 0002), the other task gathers and plans the next, so
//! the server's serial part never waits for the client's. They share the
//! head cache; as it is only a hint, a batch planned on a head the other
//! task is about to move collides with the unique keys and takes the checked
//! path (ADR 0010). SQLite has one writer connection, so one task.

use std::sync::{Arc, Mutex as StdMutex, RwLock};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::recent::{LocalAppend, RecentAppends};
use super::wal_sync::WalSync;
use super::{AppendOutcome, Appends, Backend, HeadCache, PendingAppend, StoreError, WrittenBatch, batch_keys};

/// Yields in a row without a new request before the writer stops gathering.
/// Each costs a trip through the scheduler (microseconds); a lone append
/// pays them once.
const GATHER_YIELDS: usize = 2;

/// Events from which a gathered batch whose answers wait for a WAL sync is
/// written as two commits (see [`Acknowledge::commits`]). Below it a batch
/// writes faster than another commit's fixed cost would repay.
const SPLIT_FROM_EVENTS: usize = 32;

/// Committed batches that may wait for their WAL sync at once; past it the
/// writer waits too, so a stalled disk holds back callers, not memory.
const BATCHES_AWAITING_SYNC: usize = 64;

#[derive(Clone, Debug)]
pub struct GroupCommitConfig {
    /// Upper bound on events per transaction: keeps one batch's statements
    /// well under SQLite's bind-parameter limit and its latency bounded.
    pub max_batch_events: usize,
    /// Appends that may wait for the writer before callers feel backpressure.
    pub queue_depth: usize,
    /// Writer tasks (each with its own connection) on PostgreSQL; SQLite
    /// always has one. Two let one batch be planned while the other is on
    /// the server; more only queue up on the append lock.
    pub postgres_writers: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self { max_batch_events: 4096, queue_depth: 16_384, postgres_writers: 2 }
    }
}

type Answer = Result<AppendOutcome, StoreError>;
type Reply = oneshot::Sender<Answer>;

struct Request {
    append: PendingAppend,
    reply: Reply,
}

pub(crate) struct WriterHandle {
    sender: RwLock<Option<mpsc::Sender<Request>>>,
    /// The writer tasks, then the task answering after WAL syncs, if any.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What the writer tasks of one store share.
struct Shared {
    backend: Backend,
    config: GroupCommitConfig,
    /// The queue: a task holds it only while it gathers a batch.
    receiver: Mutex<mpsc::Receiver<Request>>,
    /// Never held across an `.await`.
    heads: StdMutex<HeadCache>,
    acknowledge: Acknowledge,
}

/// Where a written batch becomes visible: the appends it made, then the
/// head that wakes subscribers.
pub(crate) struct Publish {
    pub head: watch::Sender<i64>,
    pub recent: Arc<StdMutex<RecentAppends>>,
}

pub(crate) async fn spawn(
    backend: Backend,
    config: GroupCommitConfig,
    publish: Publish,
) -> Result<WriterHandle, StoreError> {
    let (sender, receiver) = mpsc::channel(config.queue_depth);
    let (wal_sync, writers) = match &backend {
        Backend::Sqlite(b) => (b.deferred_sync_file().map(WalSync::start).transpose().map_err(sqlx::Error::Io)?, 1),
        Backend::Postgres(_) => (None, config.postgres_writers.max(1)),
    };
    let (acknowledge, answering) = Acknowledge::new(publish, wal_sync);
    let shared = Arc::new(Shared {
        backend,
        config,
        receiver: Mutex::new(receiver),
        heads: StdMutex::new(HeadCache::default()),
        acknowledge,
    });
    let mut tasks: Vec<_> = (0..writers).map(|_| tokio::spawn(run_writer(shared.clone()))).collect();
    // Last: it ends once the writers are gone (they hold its queue).
    tasks.extend(answering);
    Ok(WriterHandle { sender: RwLock::new(Some(sender)), tasks: Mutex::new(tasks) })
}

impl WriterHandle {
    pub async fn append(&self, append: PendingAppend) -> Result<AppendOutcome, StoreError> {
        let sender = self.sender.read().expect("writer lock").clone().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let request = Request { append, reply };
        sender.send(request).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Closes the queue and waits until every queued append is committed
    /// and answered.
    pub async fn shutdown(&self) {
        self.sender.write().expect("writer lock").take();
        let tasks = std::mem::take(&mut *self.tasks.lock().await);
        for task in tasks {
            let _ = task.await;
        }
    }
}

async fn run_writer(shared: Arc<Shared>) {
    while let Some(batch) = gather(&shared).await {
        for commit in shared.acknowledge.commits(batch) {
            let (appends, replies): (Vec<_>, Vec<_>) = commit.into_iter().map(|r| (r.append, r.reply)).unzip();
            let appends = Appends::new(appends);
            let answers = match shared.acknowledge.refusal() {
                Some(reason) => appends.iter().map(|_| Err(StoreError::NotDurable(reason.clone()))).collect(),
                None => write_with_fallback(&shared.backend, &appends, &shared.heads).await,
            };
            let appended = local_appends(&appends, &answers);
            shared.acknowledge.batch(Answered { replies, answers, appended }).await;
        }
    }
}

/// The next batch: the first queued request, then whatever else is queued,
/// up to `max_batch_events`. `None` once the queue is closed and empty.
async fn gather(shared: &Shared) -> Option<Vec<Request>> {
    let mut receiver = shared.receiver.lock().await;
    let first = receiver.recv().await?;
    let mut events = first.append.events.len();
    let mut batch = vec![first];
    let mut idle_yields = 0;
    while events < shared.config.max_batch_events {
        match receiver.try_recv() {
            Ok(next) => {
                events += next.append.events.len();
                batch.push(next);
                idle_yields = 0;
            }
            Err(TryRecvError::Empty) if idle_yields < GATHER_YIELDS => {
                idle_yields += 1;
                tokio::task::yield_now().await;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// What each newly written append of a batch holds, where its positions
/// are consecutive (its first to its last position is exactly its events:
/// positions are unique, so no other row lies between). Idempotent retries
/// wrote nothing new, and an append whose rows another writer's interleave
/// (PostgreSQL's sequence may) cannot vouch for its range: both are left
/// out, which only makes subscribers read that stretch.
fn local_appends(appends: &Appends, answers: &[Answer]) -> Vec<LocalAppend> {
    appends
        .iter()
        .zip(answers)
        .filter_map(|(append, answer)| {
            let outcome = answer.as_ref().ok().filter(|o| !o.already_stored)?;
            let (first, last) = (outcome.first_position, outcome.last_position);
            let consecutive = last - first + 1 == append.events.len() as i64;
            let types = append.events.iter().map(|e| e.event_type.as_str());
            consecutive.then(|| LocalAppend::new(first, last, append.stream.category(), types))
        })
        .collect()
}

/// A written batch's answers, in request order, with where they go.
struct Answered {
    replies: Vec<Reply>,
    answers: Vec<Answer>,
    appended: Vec<LocalAppend>,
}

impl Answered {
    /// Records the batch's appends, moves the store's head past them, then
    /// answers its callers.
    fn send(mut self, publish: &Publish) {
        if !self.appended.is_empty() {
            let mut recent = publish.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.record(std::mem::take(&mut self.appended));
        }
        let head = &publish.head;
        let highest = self.answers.iter().filter_map(|a| a.as_ref().ok()).map(|o| o.last_position).max();
        if let Some(highest) = highest {
            head.send_if_modified(|h| {
                let moved = highest > *h;
                if moved {
                    *h = highest;
                }
                moved
            });
        }
        self.deliver();
    }

    /// Answers with `error()` every request that would have succeeded.
    fn fail(mut self, error: impl Fn() -> StoreError) {
        for answer in &mut self.answers {
            if answer.is_ok() {
                *answer = Err(error());
            }
        }
        self.deliver();
    }

    fn deliver(self) {
        for (reply, answer) in self.replies.into_iter().zip(self.answers) {
            let _ = reply.send(answer);
        }
    }
}

/// When a written batch may be answered.
enum Acknowledge {
    /// The commit was durable: answer at once.
    AtCommit(Publish),
    /// The commit left the WAL to sync: answer, in commit order, once a sync
    /// that started after the commit has finished. Needs commits and sync
    /// requests in one order, so SQLite has one writer task; the answering
    /// task ends when that writer drops `queue`.
    AfterWalSync { sync: Arc<WalSync>, queue: mpsc::Sender<(u64, Answered)> },
}

impl Acknowledge {
    /// The policy, and the answering task it runs, if any.
    fn new(publish: Publish, wal_sync: Option<WalSync>) -> (Self, Option<JoinHandle<()>>) {
        let Some(sync) = wal_sync else { return (Self::AtCommit(publish), None) };
        let sync = Arc::new(sync);
        let (queue, waiting) = mpsc::channel(BATCHES_AWAITING_SYNC);
        let task = tokio::spawn(answer_when_durable(sync.clone(), waiting, publish));
        (Self::AfterWalSync { sync, queue }, Some(task))
    }

    /// Why no batch may be written any more (a WAL sync failed).
    fn refusal(&self) -> Option<Arc<str>> {
        match self {
            Self::AtCommit(_) => None,
            Self::AfterWalSync { sync, .. } => sync.failure().map(|failed| failed.0),
        }
    }

    /// The commits a gathered batch is written as, in order. Answered at
    /// commit, one. Answered after a WAL sync, two halves once the batch is
    /// large: with one commit, every caller in it waits out the sync while
    /// the writer, having nobody else queued, waits for them, so under a
    /// steady load the callers herd into one cohort and the disk's flush and
    /// the writer take turns instead of overlapping. Halves keep two cohorts
    /// apart: the first half's sync runs while the second half is written,
    /// and its callers queue their next appends meanwhile.
    fn commits(&self, mut batch: Vec<Request>) -> Vec<Vec<Request>> {
        let events: usize = batch.iter().map(|r| r.append.events.len()).sum();
        let split = matches!(self, Self::AfterWalSync { .. }) && batch.len() > 1 && events >= SPLIT_FROM_EVENTS;
        if !split {
            return vec![batch];
        }
        let second_half = batch.split_off(first_half_len(&batch, events));
        vec![batch, second_half]
    }

    async fn batch(&self, answered: Answered) {
        match self {
            Self::AtCommit(publish) => answered.send(publish),
            Self::AfterWalSync { sync, queue, .. } => {
                let generation = sync.request();
                if let Err(returned) = queue.send((generation, answered)).await {
                    // Only if the answering task panicked: callers must still hear.
                    returned.0.1.fail(|| StoreError::Closed);
                }
            }
        }
    }
}

/// How many of `batch`'s requests (at least one, leaving at least one)
/// hold the first half of its `events`.
fn first_half_len(batch: &[Request], events: usize) -> usize {
    let mut taken = 0;
    for (index, request) in batch.iter().enumerate() {
        taken += request.append.events.len();
        if taken * 2 >= events {
            return (index + 1).min(batch.len() - 1);
        }
    }
    batch.len() - 1
}

async fn answer_when_durable(sync: Arc<WalSync>, mut waiting: mpsc::Receiver<(u64, Answered)>, publish: Publish) {
    while let Some((generation, answered)) = waiting.recv().await {
        match sync.durable(generation).await {
            Ok(()) => answered.send(&publish),
            Err(failed) => answered.fail(|| StoreError::NotDurable(failed.0.clone())),
        }
    }
}

async fn write_with_fallback(
    backend: &Backend,
    appends: &Appends,
    heads: &StdMutex<HeadCache>,
) -> Vec<Result<AppendOutcome, StoreError>> {
    match write_batch(backend, appends, heads).await {
        Ok(answers) => answers,
        Err(error) if appends.len() == 1 => vec![Err(error)],
        Err(error) => {
            tracing::warn!(%error, requests = appends.len(), "batch append failed; retrying one by one");
            let mut answers = Vec::with_capacity(appends.len());
            for append in appends.each() {
                let answer = match write_batch(backend, &append, heads).await {
                    Ok(mut single) => single.pop().expect("one answer per request"),
                    Err(error) => Err(error),
                };
                answers.push(answer);
            }
            answers
        }
    }
}

/// Writes one batch: the fast path when the cache allows it, else the
/// checked path with fresh reads. The cache's whole policy lives here: heads
/// are remembered only after a commit, the batch's streams are forgotten
/// before the checked path, and any failure clears it (whether a failed
/// commit took effect is unknown).
async fn write_batch(
    backend: &Backend,
    appends: &Appends,
    heads: &StdMutex<HeadCache>,
) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
    let started = std::time::Instant::now();
    let (streams, ids) = batch_keys(appends);
    let (known, missing) = cache(heads).lookup(&streams);
    let fast = match backend {
        Backend::Sqlite(b) => b.write_fast(appends, known, missing).await,
        Backend::Postgres(b) => b.write_fast(appends, known, missing).await,
    };
    let written = match fast {
        Ok(Some(written)) => Ok(written),
        Ok(None) => {
            cache(heads).forget(&streams);
            match backend {
                Backend::Sqlite(b) => b.write_checked(appends, &streams, &ids).await,
                Backend::Postgres(b) => b.write_checked(appends, &streams, &ids).await,
            }
        }
        Err(error) => Err(error),
    };
    match written {
        Ok(WrittenBatch { plan, positions }) => {
            let events = positions.len();
            metrics::histogram!(crate::metrics::COMMIT_DURATION).record(started.elapsed().as_secs_f64());
            metrics::histogram!(crate::metrics::BATCH_EVENTS).record(events as f64);
            metrics::counter!(crate::metrics::BATCHES).increment(1);
            metrics::counter!(crate::metrics::EVENTS_APPENDED).increment(events as u64);
            cache(heads).remember(&plan.new_heads);
            Ok(plan.answers(&positions))
        }
        Err(error) => {
            cache(heads).clear();
            Err(error)
        }
    }
}

fn cache(heads: &StdMutex<HeadCache>) -> std::sync::MutexGuard<'_, HeadCache> {
    // A panic while the cache was held leaves nothing half-done that
    // matters: the cache is only a hint.
    heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::super::{ExpectedVersion, Metadata, NewEvent, StreamId};
    use super::*;

    /// Queued requests holding these numbers of events; the replies go nowhere.
    fn requests(events_each: &[usize]) -> Vec<Request> {
        events_each
            .iter()
            .enumerate()
            .map(|(index, &count)| Request {
                append: PendingAppend {
                    stream: StreamId::of("test", &format!("s{index}")),
                    expected: ExpectedVersion::Any,
                    events: (0..count)
                        .map(|_| NewEvent::new("Ticked", "1", "{}".into(), Metadata::by("test")))
                        .collect(),
                    snapshot: None,
                },
                reply: oneshot::channel().0,
            })
            .collect()
    }

    fn sizes(commits: &[Vec<Request>]) -> Vec<Vec<usize>> {
        commits.iter().map(|c| c.iter().map(|r| r.append.events.len()).collect()).collect()
    }

    #[test]
    fn the_first_half_holds_half_the_events_and_each_half_a_request() {
        let half = |each: &[usize]| first_half_len(&requests(each), each.iter().sum());
        assert_eq!(half(&[1, 1, 1, 1]), 2);
        assert_eq!(half(&[1, 1, 1, 1, 1]), 3);
        assert_eq!(half(&[10, 1, 1]), 1, "one large request is a half of its own");
        assert_eq!(half(&[1, 1, 10]), 2, "the second half keeps at least the last request");
        assert_eq!(half(&[5, 5]), 1);
    }

    #[tokio::test]
    async fn only_batches_answered_after_a_wal_sync_are_split_and_only_large_ones() {
        let publish = || Publish { head: watch::channel(0).0, recent: Default::default() };
        let (at_commit, _) = Acknowledge::new(publish(), None);
        let large = vec![1; SPLIT_FROM_EVENTS];
        assert_eq!(sizes(&at_commit.commits(requests(&large))), vec![large.clone()]);

        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("log-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let (after_sync, _) = Acknowledge::new(publish(), Some(WalSync::sync_only(wal).unwrap()));
        let halves = sizes(&after_sync.commits(requests(&large)));
        assert_eq!(halves, vec![vec![1; SPLIT_FROM_EVENTS / 2], vec![1; SPLIT_FROM_EVENTS / 2]]);

        let small = vec![1; SPLIT_FROM_EVENTS - 1];
        assert_eq!(sizes(&after_sync.commits(requests(&small))), vec![small]);
        let lone = vec![SPLIT_FROM_EVENTS * 4];
        assert_eq!(sizes(&after_sync.commits(requests(&lone))), vec![lone], "one request is one commit");
    }
}
