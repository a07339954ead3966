//! One queue's actor: the single writer of stream `queue-{eventId}`.
//!
//! It holds the [`Queue`] aggregate (the Yjs document), the room's awareness
//! registry and one protocol [`Session`] per connection. A moderator's update
//! is decided by the aggregate (which repairs the queue's invariants),
//! appended, and only then relayed to every connection, so no one ever sees
//! an update that is not durable. Like the room actor it works in batches:
//! everything queued is handled, appended as one append, then broadcast.
//!
//! The document is compacted into a snapshot after [`SNAPSHOT_EVERY`]
//! events, after [`SNAPSHOT_DEBOUNCE`] of quiet, when the last connection
//! leaves and when the actor is evicted; load = snapshot + tail, so a crash
//! between an append and a snapshot loses nothing.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use eventuall_domain::queue::sync::{self, AwarenessRegistry};
use eventuall_domain::queue::{Actor, Queue, QueueCommand, QueueError, QueueEvent, Session};
use tokio::sync::{mpsc, oneshot};

use super::{QueueFailure, QueueMsg, Queues, SNAPSHOT_TAG};
use crate::actor::{Retirement, drain_batch};
use crate::outlet::{Outbound, Outlet};
use crate::store::{ExpectedVersion, Metadata, NewEvent, StoreError, StreamId, aggregate};

/// Messages handled per batch.
const MAX_BATCH: usize = 256;
/// Events between snapshots, whatever the pace.
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
    stream: StreamId,
    queue: Queue,
    version: u64,
    snapshot_version: u64,
    awareness: AwarenessRegistry,
    connections: HashMap<String, Connection>,
}

/// A caller to answer once what came before it is stored.
enum After {
    Answer(oneshot::Sender<Result<String, QueueFailure>>),
    Failed(oneshot::Sender<Result<String, QueueFailure>>, QueueError),
    View(oneshot::Sender<String>),
}

/// Events decided but not yet stored, and who waits for them.
#[derive(Default)]
struct Pending {
    events: Vec<(QueueEvent, Metadata)>,
    after: Vec<After>,
    /// The last connection left: snapshot after storing.
    left_last: bool,
    /// The document diverged from the log (yrs panicked inside an update):
    /// store what was decided before, then reload.
    reload: bool,
}

/// Whether a frame starts with a SyncStep1 message (`[0, 0, …]`).
fn is_sync_step1(frame: &[u8]) -> bool {
    frame.starts_with(&[0, 0])
}

impl QueueActor {
    pub(super) async fn load(queues: Queues, event_id: String) -> Result<Self, StoreError> {
        let stream = StreamId::of(Queue::TYPE, &event_id);
        let loaded = aggregate::load::<Queue>(&queues.inner.store, &stream, SNAPSHOT_TAG).await?;
        Ok(Self {
            queues,
            event_id,
            stream,
            queue: loaded.state,
            version: loaded.version,
            snapshot_version: loaded.snapshot_version,
            awareness: AwarenessRegistry::new(),
            connections: HashMap::new(),
        })
    }

    pub(super) async fn run(mut self, mut mailbox: mpsc::Receiver<QueueMsg>, retirement: Retirement<QueueMsg>) {
        let evict_after = self.queues.inner.evict_after;
        loop {
            let dirty = self.version > self.snapshot_version;
            let wait = if dirty { SNAPSHOT_DEBOUNCE.min(evict_after) } else { evict_after };
            let first = match tokio::time::timeout(wait, mailbox.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) if dirty => {
                    self.save_snapshot().await;
                    continue;
                }
                Err(_) if self.connections.is_empty() => {
                    if retirement.try_retire(&mut mailbox) {
                        self.save_snapshot().await;
                        return;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            self.process(drain_batch(first, &mut mailbox, MAX_BATCH)).await;
        }
        self.save_snapshot().await;
    }

    async fn process(&mut self, batch: Vec<QueueMsg>) {
        let mut pending = Pending::default();
        for msg in batch {
            match msg {
                QueueMsg::Connect { connection_id, actor, outbound, reply } => {
                    // The greeting carries only the server's state vector,
                    // never content, so pending changes cannot leak here.
                    for frame in sync::greeting(self.queue.doc(), &self.awareness) {
                        let _ = outbound.try_send(Outbound::Binary(Bytes::from(frame)));
                    }
                    let session = Session::new(actor.role);
                    self.connections.insert(connection_id, Connection { session, actor, outbound });
                    let _ = reply.send(());
                }
                QueueMsg::Frame { connection_id, frame } => {
                    // A SyncStep1 is answered with document content: store
                    // what is pending first, so only durable state is sent.
                    if is_sync_step1(&frame) && !pending.events.is_empty() {
                        self.flush(std::mem::take(&mut pending)).await;
                    }
                    if let Some(update) = self.on_frame(&connection_id, &frame) {
                        let actor = self.connections[&connection_id].actor.clone();
                        let metadata = Metadata::by(&actor.user_id).command("ApplyClientUpdate");
                        let command = QueueCommand::ApplyClientUpdate { update, actor, at: self.queues.now() };
                        match self.decide(command).await {
                            Ok(new) => pending.events.extend(new.into_iter().map(|e| (e, metadata.clone()))),
                            Err(QueueError::Diverged) => {
                                tracing::warn!(queue = %self.event_id, "client update broke the document; reloading");
                                let mut decided = std::mem::take(&mut pending);
                                decided.reload = true;
                                self.flush(decided).await;
                            }
                            Err(error) => {
                                tracing::debug!(queue = %self.event_id, %error, "client update refused")
                            }
                        }
                    }
                }
                QueueMsg::Disconnect { connection_id } => {
                    if let Some(connection) = self.connections.remove(&connection_id) {
                        if let Some(frame) = connection.session.closing_awareness(&mut self.awareness) {
                            self.broadcast(Bytes::from(frame));
                        }
                        pending.left_last |= self.connections.is_empty();
                    }
                }
                QueueMsg::Command { command, reply } => {
                    let metadata = Metadata::by(command_actor(&command)).command(command_name(&command));
                    match self.decide(command).await {
                        Ok(new) => {
                            pending.events.extend(new.into_iter().map(|e| (e, metadata.clone())));
                            pending.after.push(After::Answer(reply));
                        }
                        Err(error) => pending.after.push(After::Failed(reply, error)),
                    }
                }
                QueueMsg::View { reply } => pending.after.push(After::View(reply)),
            }
        }
        self.flush(pending).await;
    }

    /// Appends what is pending, then relays its updates and answers callers.
    async fn flush(&mut self, pending: Pending) {
        let Pending { events, after, left_last, reload } = pending;
        if !events.is_empty() {
            let updates: Vec<Vec<u8>> = events.iter().filter_map(|(e, _)| e.update()).collect();
            let new_events: Vec<NewEvent> = events
                .iter()
                .map(|(e, m)| {
                    NewEvent::json(e.event_type(), e.event_version(), e, m.clone()).expect("queue events serialise")
                })
                .collect();
            let count = new_events.len() as u64;
            let appended =
                self.queues.inner.store.append(&self.stream, ExpectedVersion::Exact(self.version), new_events).await;
            if let Err(error) = appended {
                tracing::error!(queue = %self.event_id, %error, "queue append failed; reloading");
                for a in after {
                    match a {
                        After::Answer(reply) | After::Failed(reply, _) => {
                            let _ = reply.send(Err(QueueFailure::Unavailable));
                        }
                        After::View(_) => {}
                    }
                }
                self.reload().await;
                return;
            }
            self.version += count;
            // Durable now: relay to everyone, the author included (it needs
            // the repair, and an update it already has is a no-op). One frame
            // per update as stored: merging them would re-encode the items
            // (yrs writes object keys in hash order), so clients would see
            // the same entries with their keys reordered.
            for update in updates {
                self.broadcast(Bytes::from(sync::update_frame(&update)));
            }
        }
        if reload {
            self.reload().await;
        }
        // The JSON view is O(queue): rendered only for callers that wait.
        let view = if after.is_empty() { String::new() } else { self.view_json() };
        for a in after {
            match a {
                After::Answer(reply) => {
                    let _ = reply.send(Ok(view.clone()));
                }
                After::View(reply) => {
                    let _ = reply.send(view.clone());
                }
                After::Failed(reply, error) => {
                    let _ = reply.send(Err(QueueFailure::Rejected(error)));
                }
            }
        }
        if left_last || self.version - self.snapshot_version >= SNAPSHOT_EVERY {
            self.save_snapshot().await;
        }
    }

    /// Runs one frame through the connection's protocol session: replies go
    /// to it, awareness to everyone; returns a moderator's update, if any.
    fn on_frame(&mut self, connection_id: &str, frame: &[u8]) -> Option<Vec<u8>> {
        let connection = self.connections.get_mut(connection_id)?;
        let outcome = match connection.session.on_frame(frame, self.queue.doc(), &mut self.awareness) {
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

    /// Applies `command` to the live aggregate and returns its events. A
    /// refused command leaves it unchanged (the aggregate checks before it
    /// changes anything); if the batch's append fails the actor reloads from
    /// the log.
    async fn decide(&mut self, command: QueueCommand) -> Result<Vec<QueueEvent>, QueueError> {
        let sink = EventSink::default();
        self.queue.handle(command, &(), &sink).await?;
        Ok(sink.collect().await)
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
        serde_json::to_string(&self.queue.view()).expect("view serialises")
    }

    async fn save_snapshot(&mut self) {
        if self.version == self.snapshot_version {
            return;
        }
        match aggregate::save(&self.queues.inner.store, &self.stream, SNAPSHOT_TAG, self.version, &self.queue).await {
            Ok(()) => self.snapshot_version = self.version,
            Err(error) => tracing::warn!(queue = %self.event_id, %error, "could not save queue snapshot"),
        }
    }

    async fn reload(&mut self) {
        match aggregate::load::<Queue>(&self.queues.inner.store, &self.stream, SNAPSHOT_TAG).await {
            Ok(loaded) => {
                self.queue = loaded.state;
                self.version = loaded.version;
                self.snapshot_version = loaded.snapshot_version;
            }
            Err(error) => tracing::error!(queue = %self.event_id, %error, "queue reload failed"),
        }
    }
}

fn command_actor(command: &QueueCommand) -> &str {
    match command {
        QueueCommand::ApplyClientUpdate { actor, .. }
        | QueueCommand::Add { actor, .. }
        | QueueCommand::Move { actor, .. }
        | QueueCommand::Promote { actor, .. }
        | QueueCommand::Remove { actor, .. } => &actor.user_id,
    }
}

fn command_name(command: &QueueCommand) -> &'static str {
    match command {
        QueueCommand::ApplyClientUpdate { .. } => "ApplyClientUpdate",
        QueueCommand::Add { .. } => "AddToQueue",
        QueueCommand::Move { .. } => "MoveInQueue",
        QueueCommand::Promote { .. } => "PromoteToLive",
        QueueCommand::Remove { .. } => "RemoveFromQueue",
    }
}
