//! One queue's actor: the single writer of stream `queue-{eventId}`.
//!
//! It hosts the [`Queue`] aggregate (the Yjs document; [`Hosted`]), the
//! room's awareness registry and one protocol [`Session`] per connection,
//! and follows the batch step of `crate::host`: everything queued is
//! decided on the live document (ADR 0016), appended as one append, and
//! only then relayed and answered, so no one ever sees an update that is
//! not durable.
//!
//! The document is compacted into a snapshot after [`SNAPSHOT_DEBOUNCE`]
//! of quiet, when the last connection leaves, when the actor is evicted,
//! and under a steady stream of edits once the updates since the last one
//! add up to half its size (and at least [`SNAPSHOT_EVERY`] events), each
//! written apart from the appends. A snapshot is O(document, history
//! included), so that last rule keeps its cost per update flat however long
//! the queue has lived; load = snapshot + tail, so a crash between an
//! append and a snapshot loses nothing.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use eventuall_domain::queue::sync::{self, AwarenessRegistry};
use eventuall_domain::queue::{Actor, Queue, QueueCommand, QueueError, Session};
use tokio::sync::{mpsc, oneshot};

use super::{QueueFailure, QueueMsg, Queues};
use crate::actor::{Retirement, drain_batch};
use crate::host::{self, Answer, Batch, Failure, Hosted, Next, Snapshots};
use crate::outlet::{Outbound, Outlet};
use crate::store::{Metadata, StoreError, StreamId};

/// Messages handled per batch.
const MAX_BATCH: usize = 256;
/// Frames a queue connection may have waiting before it is dropped as too
/// slow: four batches. A batch relays up to `MAX_BATCH` updates to every
/// connection at once, so at the default bound (`CONNECTION_QUEUE`, 256) a
/// client with one frame still waiting was dropped by a single moderator's
/// burst however fast it read (issue #21: the storm benchmark's author,
/// every run).
pub const CONNECTION_FRAMES: usize = 4 * MAX_BATCH;
/// Fewest events between snapshots under a steady stream of edits.
const SNAPSHOT_EVERY: u64 = 200;
/// Quiet time after a change before the document is snapshotted (the
/// y-partyserver / Hocuspocus default).
const SNAPSHOT_DEBOUNCE: Duration = Duration::from_secs(2);

struct Connection {
    session: Session,
    actor: Actor,
    outbound: Outlet,
}

pub(super) struct QueueActor {
    queues: Queues,
    event_id: String,
    hosted: Hosted<Queue>,
    awareness: AwarenessRegistry,
    connections: HashMap<String, Connection>,
    /// The last connection left during this batch: snapshot after storing.
    left_last: bool,
    /// The document diverged from the log (yrs panicked inside an update):
    /// store what was decided before, then reload.
    diverged: bool,
    /// Bytes of the updates stored since the last snapshot.
    tail_bytes: usize,
}

/// What to tell a caller once what came before it is stored.
enum Reply {
    Answer(oneshot::Sender<Result<String, QueueFailure>>),
    Failed(oneshot::Sender<Result<String, QueueFailure>>, QueueError),
    View(oneshot::Sender<String>),
}

impl Answer for Reply {
    fn unavailable(self) {
        match self {
            Reply::Answer(reply) | Reply::Failed(reply, _) => {
                let _ = reply.send(Err(Failure::Unavailable));
            }
            // Its caller sees the channel close: unavailable.
            Reply::View(_) => {}
        }
    }
}

/// Whether a steady stream of edits has earned a snapshot: the log's tail
/// past the last one is long (`events` since it) and heavy (`tail_bytes` of
/// updates, against the last snapshot's `snapshot_bytes`) enough that
/// compacting it costs each update a bounded share.
fn snapshot_due(events: u64, tail_bytes: usize, snapshot_bytes: usize) -> bool {
    events >= SNAPSHOT_EVERY && tail_bytes >= snapshot_bytes / 2
}

/// Whether a frame starts with a SyncStep1 message (`[0, 0, …]`).
fn is_sync_step1(frame: &[u8]) -> bool {
    frame.starts_with(&[0, 0])
}

impl QueueActor {
    pub(super) async fn load(queues: Queues, event_id: String) -> Result<Self, StoreError> {
        let stream = StreamId::of(<Queue as cqrs_es::Aggregate>::TYPE, &event_id);
        let hosted = Hosted::load(queues.inner.store.clone(), stream, Snapshots::Apart).await?;
        Ok(Self {
            queues,
            event_id,
            hosted,
            awareness: AwarenessRegistry::new(),
            connections: HashMap::new(),
            left_last: false,
            diverged: false,
            tail_bytes: 0,
        })
    }

    pub(super) async fn run(mut self, mut mailbox: mpsc::Receiver<QueueMsg>, retirement: Retirement<QueueMsg>) {
        let evict_after = self.queues.inner.evict_after;
        loop {
            let dirty = self.hosted.version > self.hosted.snapshot_version;
            let wait = if dirty { SNAPSHOT_DEBOUNCE.min(evict_after) } else { evict_after };
            match host::next(&mut mailbox, Some(wait)).await {
                Next::Message(first) => self.process(drain_batch(first, &mut mailbox, MAX_BATCH)).await,
                Next::Idle if dirty => self.save_snapshot().await,
                Next::Idle if self.connections.is_empty() && retirement.try_retire(&mut mailbox) => {
                    self.save_snapshot().await;
                    return;
                }
                Next::Idle => {}
                Next::Closed => break,
            }
        }
        self.hosted.save_snapshot().await;
    }

    /// The batch step: decides every message on the live document, appends
    /// once (and before any SyncStep1 answer), then relays and answers.
    async fn process(&mut self, msgs: Vec<QueueMsg>) {
        if self.hosted.refresh().await.is_err() {
            // The log is out of reach: callers see the queue unavailable
            // (their reply channels close); connections that left are
            // forgotten.
            for msg in msgs {
                if let QueueMsg::Disconnect { connection_id } = msg {
                    self.disconnect(&connection_id);
                }
            }
            return;
        }
        let mut batch = Batch::default();
        for msg in msgs {
            match msg {
                QueueMsg::Connect { connection_id, actor, outbound, reply } => {
                    // The greeting carries only the server's state vector,
                    // never content, so pending changes cannot leak here.
                    for frame in sync::greeting(self.hosted.state.doc(), &self.awareness) {
                        let _ = outbound.try_send(Outbound::Binary(Bytes::from(frame)));
                    }
                    let session = Session::new(actor.role);
                    self.connections.insert(connection_id, Connection { session, actor, outbound });
                    let _ = reply.send(());
                }
                QueueMsg::Frame { connection_id, frame } => {
                    // A SyncStep1 is answered with document content: store
                    // what is pending first, so only durable state is sent.
                    if is_sync_step1(&frame) && batch.has_events() {
                        self.flush(std::mem::take(&mut batch)).await;
                    }
                    if let Some(update) = self.on_frame(&connection_id, &frame) {
                        let actor = self.connections[&connection_id].actor.clone();
                        let metadata = Metadata::by(&actor.user_id);
                        let command = QueueCommand::ApplyClientUpdate { update, actor, at: self.queues.now() };
                        match self.hosted.decide(&mut batch, command, metadata, |_, _| {}) {
                            Ok(_) => {}
                            Err(QueueError::Diverged) => {
                                tracing::warn!(queue = %self.event_id, "client update broke the document; reloading");
                                self.diverged = true;
                                self.flush(std::mem::take(&mut batch)).await;
                            }
                            Err(error) => {
                                tracing::debug!(queue = %self.event_id, %error, "client update refused")
                            }
                        }
                    }
                }
                QueueMsg::Disconnect { connection_id } => self.disconnect(&connection_id),
                QueueMsg::Command { command, reply } => {
                    let metadata = Metadata::by(&command.actor().user_id);
                    match self.hosted.decide(&mut batch, command, metadata, |_, _| {}) {
                        Ok(_) => batch.replies.push(Reply::Answer(reply)),
                        Err(error) => batch.replies.push(Reply::Failed(reply, error)),
                    }
                }
                QueueMsg::View { reply } => batch.replies.push(Reply::View(reply)),
            }
        }
        self.flush(batch).await;
    }

    fn disconnect(&mut self, connection_id: &str) {
        if let Some(connection) = self.connections.remove(connection_id) {
            if let Some(frame) = connection.session.closing_awareness(&mut self.awareness) {
                self.broadcast(Bytes::from(frame));
            }
            self.left_last |= self.connections.is_empty();
        }
    }

    /// Appends what the batch decided, then relays its updates and answers
    /// callers.
    async fn flush(&mut self, batch: Batch<Queue, Reply>) {
        let left_last = std::mem::take(&mut self.left_last);
        let diverged = std::mem::take(&mut self.diverged);
        let Some((events, replies)) = self.hosted.commit(batch).await else { return };
        // Durable now: relay to everyone, the author included (it needs the
        // repair, and an update it already has is a no-op). One frame per
        // update as stored: merging them would re-encode the items (yrs
        // writes object keys in hash order), so clients would see the same
        // entries with their keys reordered.
        for update in events.iter().filter_map(|e| e.update()) {
            self.tail_bytes += update.len();
            self.broadcast(Bytes::from(sync::update_frame(&update)));
        }
        if diverged {
            let _ = self.hosted.reload().await;
        }
        // The JSON view is O(queue): rendered only for callers that wait.
        let view = if replies.is_empty() { String::new() } else { self.view_json() };
        for reply in replies {
            match reply {
                Reply::Answer(reply) => {
                    let _ = reply.send(Ok(view.clone()));
                }
                Reply::View(reply) => {
                    let _ = reply.send(view.clone());
                }
                Reply::Failed(reply, error) => {
                    let _ = reply.send(Err(Failure::Refused(error)));
                }
            }
        }
        if left_last || self.snapshot_due() {
            self.save_snapshot().await;
        }
    }

    fn snapshot_due(&self) -> bool {
        snapshot_due(self.hosted.version - self.hosted.snapshot_version, self.tail_bytes, self.hosted.snapshot_bytes)
    }

    async fn save_snapshot(&mut self) {
        self.hosted.save_snapshot().await;
        if self.hosted.snapshot_version == self.hosted.version {
            self.tail_bytes = 0;
        }
    }

    /// Runs one frame through the connection's protocol session: replies go
    /// to it, awareness to everyone; returns a moderator's update, if any.
    fn on_frame(&mut self, connection_id: &str, frame: &[u8]) -> Option<Vec<u8>> {
        let connection = self.connections.get_mut(connection_id)?;
        let outcome = match connection.session.on_frame(frame, self.hosted.state.doc(), &mut self.awareness) {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::debug!(queue = %self.event_id, %error, "malformed frame ignored");
                return None;
            }
        };
        for reply in outcome.replies {
            let _ = connection.outbound.try_send(Outbound::Binary(Bytes::from(reply)));
        }
        if let Some(awareness) = outcome.awareness {
            self.broadcast(Bytes::from(awareness));
        }
        outcome.update
    }

    /// Queues a frame for every connection; a connection whose queue is full
    /// is too slow and is closed.
    fn broadcast(&mut self, frame: Bytes) {
        let mut slow = Vec::new();
        for (id, connection) in &self.connections {
            if connection.outbound.try_send(Outbound::Binary(frame.clone())).is_err() {
                slow.push(id.clone());
            }
        }
        for id in slow {
            if let Some(connection) = self.connections.remove(&id) {
                connection.outbound.drop_slow();
                if let Some(frame) = connection.session.closing_awareness(&mut self.awareness) {
                    self.broadcast(Bytes::from(frame));
                }
            }
        }
    }

    fn view_json(&self) -> String {
        serde_json::to_string(&self.hosted.state.view()).expect("view serialises")
    }
}

#[cfg(test)]
mod tests {
    use eventuall_domain::queue::QueueList;
    use eventuall_domain::queue::test_support::TestClient;

    use super::*;
    use crate::clock::ManualClock;
    use crate::outlet::CONNECTION_QUEUE;
    use crate::store::{EventStore, StoreOptions};

    /// `n` y-websocket update frames, each pushing one entry.
    fn pushes(n: usize) -> Vec<Bytes> {
        let client = TestClient::new(1);
        (0..n).map(|i| Bytes::from(sync::update_frame(&client.push(QueueList::Pending, &format!("u{i}"))))).collect()
    }

    /// A full batch of updates relayed to a connection that has not read
    /// its greeting yet: at the default bound it is dropped as too slow, at
    /// `CONNECTION_FRAMES` it keeps every frame.
    #[tokio::test]
    async fn a_full_batch_of_updates_fits_a_queue_connection_with_frames_still_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("log.db").display());
        let store = EventStore::open(&url, StoreOptions::default()).await.unwrap();
        let queues = Queues::new(store, ManualClock::starting_at(0), Duration::from_secs(60));
        for (capacity, kept) in [(CONNECTION_QUEUE, false), (CONNECTION_FRAMES, true)] {
            let mut actor = QueueActor::load(queues.clone(), format!("burst-{capacity}")).await.unwrap();
            let (outlet, mut queue) = Outlet::with_capacity(capacity);
            let (reply, _joined) = oneshot::channel();
            let connection_id = "c".to_owned();
            let actor_of = Actor::moderator("m");
            let connect = QueueMsg::Connect {
                connection_id: connection_id.clone(),
                actor: actor_of,
                outbound: outlet.clone(),
                reply,
            };
            actor.process(vec![connect]).await;
            let greeting = queue.len();
            assert!(greeting > 0, "the greeting waits unread");
            let frames = pushes(MAX_BATCH)
                .into_iter()
                .map(|frame| QueueMsg::Frame { connection_id: connection_id.clone(), frame });
            actor.process(frames.collect()).await;
            assert_eq!(actor.connections.contains_key("c"), kept, "capacity {capacity}");
            assert_eq!(outlet.dropped().is_cancelled(), !kept, "capacity {capacity}");
            assert_eq!(actor.hosted.state.view().pending.len(), MAX_BATCH, "every update was stored either way");
            if kept {
                assert_eq!(queue.len(), greeting + MAX_BATCH, "every update relayed");
            }
            queue.close();
        }
    }

    #[test]
    fn a_snapshot_is_due_once_the_tail_is_long_and_half_as_heavy_as_the_last() {
        // The first snapshot: only the count.
        assert!(!snapshot_due(SNAPSHOT_EVERY - 1, 10_000, 0));
        assert!(snapshot_due(SNAPSHOT_EVERY, 0, 0));
        // A large document's next one waits for half its size in updates.
        assert!(!snapshot_due(SNAPSHOT_EVERY * 10, 49_999, 100_000));
        assert!(snapshot_due(SNAPSHOT_EVERY * 10, 50_000, 100_000));
        // However heavy the tail, never sooner than the count.
        assert!(!snapshot_due(SNAPSHOT_EVERY - 1, 1_000_000, 100_000));
    }
}
