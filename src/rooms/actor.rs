//! One room's actor: the single writer of stream `room-{eventId}`.
//!
//! It keeps the [`EventRoom`] in memory, turns messages into commands, and
//! appends the resulting events. Messages are taken in batches: everything
//! queued is decided against a working copy of the state, appended as one
//! append (one group-commit slot), and only then applied, answered and
//! broadcast. So every heartbeat is durable before anything depends on it,
//! a burst of changes costs one append and yields one snapshot, and the
//! snapshot sent last is always the newest.
//!
//! Subscribers are WebSocket connections, each with a slot for the newest
//! snapshot: a slow client gets the newest when it is ready, never waited
//! for; one that stops reading is dropped by its socket's writer.

use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::{Aggregate, DomainEvent};
use eventuall_domain::room::{CloseReason, ConnectionKind, EventRoom, RoomCommand, RoomEvent, RoomSnapshot};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{RoomMsg, Rooms, SNAPSHOT_TAG};
use crate::actor::{Retirement, drain_batch};
use crate::outlet::{Outlet, Refused};
use crate::store::{ExpectedVersion, Metadata, NewEvent, StoreError, StreamId, aggregate};

/// Messages handled per batch (one append, one snapshot).
const MAX_BATCH: usize = 512;
/// Events between stored snapshots: bounds the tail a rebuild replays after
/// a crash (an orderly retirement snapshots at the head). The snapshot rides
/// in the same transaction as the append that crosses the mark, so it costs
/// no commit of its own, only its bytes.
const SNAPSHOT_EVERY: u64 = 25;

pub(super) struct RoomActor {
    rooms: Rooms,
    event_id: String,
    stream: StreamId,
    state: EventRoom,
    version: u64,
    snapshot_version: u64,
    subscribers: HashMap<String, Outlet>,
    /// The last snapshot JSON, shared by every reader until the next change.
    snapshot_json: Arc<str>,
    /// When the sweep timer is armed for, as far as this actor knows.
    sweep_armed_at: Option<i64>,
}

/// What to tell a message's sender once its batch is stored.
enum Reply {
    None,
    Connected(oneshot::Sender<Result<(), String>>),
    Snapshot(oneshot::Sender<Result<Arc<str>, String>>),
    Done(oneshot::Sender<()>),
}

/// A message decided against the working state: its events and its reply.
struct Decided {
    events: Vec<RoomEvent>,
    metadata: Metadata,
    reply: Reply,
    subscribe: Option<(String, Outlet)>,
}

impl RoomActor {
    pub(super) async fn load(rooms: Rooms, event_id: String) -> Result<Self, StoreError> {
        let stream = StreamId::of(EventRoom::TYPE, &event_id);
        let loaded = aggregate::load::<EventRoom>(&rooms.inner.store, &stream, SNAPSHOT_TAG).await?;
        let mut actor = Self {
            snapshot_json: Arc::from(""),
            rooms,
            event_id,
            stream,
            state: loaded.state,
            version: loaded.version,
            snapshot_version: loaded.snapshot_version,
            subscribers: HashMap::new(),
            sweep_armed_at: None,
        };
        actor.snapshot_json = actor.render();
        Ok(actor)
    }

    fn render(&self) -> Arc<str> {
        let snapshot: RoomSnapshot = self.state.snapshot(&self.event_id, self.version);
        let mut value = serde_json::to_value(snapshot).expect("snapshot serialises");
        value.as_object_mut().expect("object").insert("type".into(), "snapshot".into());
        Arc::from(value.to_string())
    }

    pub(super) async fn run(mut self, mut mailbox: mpsc::Receiver<RoomMsg>, retirement: Retirement<RoomMsg>) {
        // No socket survives the actor that served it: a freshly started
        // actor closes whatever sockets its log still shows as open.
        let at = self.rooms.now();
        self.process(vec![RoomMsg::System {
            command: RoomCommand::DropConnections { kind: ConnectionKind::WebSocket, at },
        }])
        .await;
        self.schedule_sweep().await;
        let evict_after = self.rooms.inner.timings.evict_after;
        loop {
            let first = if self.subscribers.is_empty() {
                match tokio::time::timeout(evict_after, mailbox.recv()).await {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(_) => {
                        if retirement.try_retire(&mut mailbox) {
                            self.save_snapshot().await;
                            tracing::debug!(room = %self.event_id, "room evicted");
                            return;
                        }
                        continue;
                    }
                }
            } else {
                match mailbox.recv().await {
                    Some(msg) => msg,
                    None => break,
                }
            };
            self.process(drain_batch(first, &mut mailbox, MAX_BATCH)).await;
        }
        self.save_snapshot().await;
    }

    /// Decides, appends, applies, answers and broadcasts one batch.
    async fn process(&mut self, batch: Vec<RoomMsg>) {
        let mut working = self.state.clone();
        let mut decided = Vec::with_capacity(batch.len());
        let mut snapshot_changed = false;
        for msg in batch {
            if let Some(d) = self.decide(&mut working, msg, &mut snapshot_changed).await {
                decided.push(d);
            }
        }
        let new_events: Vec<NewEvent> = decided
            .iter()
            .flat_map(|d| {
                d.events.iter().map(|e| {
                    NewEvent::json(e.event_type(), e.event_version(), e, d.metadata.clone())
                        .expect("room events serialise")
                })
            })
            .collect();
        let count = new_events.len() as u64;
        if count > 0 {
            let store = &self.rooms.inner.store;
            let expected = ExpectedVersion::Exact(self.version);
            let snapshot = (self.version + count - self.snapshot_version >= SNAPSHOT_EVERY)
                .then(|| aggregate::encode_snapshot(SNAPSHOT_TAG, &working))
                .and_then(|encoded| {
                    encoded.inspect_err(|error| tracing::warn!(room = %self.event_id, %error, "room snapshot")).ok()
                });
            let with_snapshot = snapshot.is_some();
            let appended = match snapshot {
                Some(snapshot) => store.append_with_snapshot(&self.stream, expected, new_events, snapshot).await,
                None => store.append(&self.stream, expected, new_events).await,
            };
            if let Err(error) = appended {
                tracing::error!(room = %self.event_id, %error, "room append failed; reloading");
                for d in decided {
                    fail(d.reply, "the room could not store the change");
                }
                self.reload().await;
                return;
            }
            self.state = working;
            self.version += count;
            if with_snapshot {
                self.snapshot_version = self.version;
            }
        }
        let mut newcomers = Vec::new();
        for d in &mut decided {
            if let Some((id, sender)) = d.subscribe.take() {
                newcomers.push(id.clone());
                self.subscribers.insert(id, sender);
            }
        }
        if snapshot_changed || !newcomers.is_empty() {
            self.snapshot_json = self.render();
        }
        if snapshot_changed {
            self.broadcast().await;
        } else {
            for id in newcomers {
                self.send_snapshot(&id).await;
            }
        }
        for d in decided {
            match d.reply {
                Reply::None => {}
                Reply::Connected(tx) => {
                    let _ = tx.send(Ok(()));
                }
                Reply::Snapshot(tx) => {
                    let _ = tx.send(Ok(self.snapshot_json.clone()));
                }
                Reply::Done(tx) => {
                    let _ = tx.send(());
                }
            }
        }
        if count > 0 || self.sweep_armed_at.is_none() {
            self.schedule_sweep().await;
        }
    }

    /// Turns one message into events against `working`, which it updates.
    async fn decide(&mut self, working: &mut EventRoom, msg: RoomMsg, changed: &mut bool) -> Option<Decided> {
        let now = self.rooms.now();
        let (command, metadata, reply, subscribe) = match msg {
            RoomMsg::Connect { connection_id, client_id, user_id, name, outbound, reply } => {
                let metadata = Metadata::by(&user_id).command("Connect");
                let command = RoomCommand::Connect {
                    connection_id: connection_id.clone(),
                    client_id,
                    user_id,
                    name,
                    kind: ConnectionKind::WebSocket,
                    at: now,
                };
                (command, metadata, Reply::Connected(reply), Some((connection_id, outbound)))
            }
            RoomMsg::Heartbeat { connection_id } => {
                let actor = working.connections.get(&connection_id).map(|c| c.user_id.clone());
                let metadata = Metadata { actor, command: Some("Heartbeat".into()), ..Metadata::default() };
                (RoomCommand::Heartbeat { connection_id, at: now }, metadata, Reply::None, None)
            }
            RoomMsg::Disconnect { connection_id, reason } => {
                self.subscribers.remove(&connection_id);
                let actor = working.connections.get(&connection_id).map(|c| c.user_id.clone());
                let metadata = Metadata { actor, command: Some("Disconnect".into()), ..Metadata::default() };
                (RoomCommand::Disconnect { connection_id, reason, at: now }, metadata, Reply::None, None)
            }
            RoomMsg::Command { command, metadata, reply } => (command, metadata, Reply::Snapshot(reply), None),
            RoomMsg::Snapshot { reply } => {
                return Some(Decided {
                    events: vec![],
                    metadata: Metadata::default(),
                    reply: Reply::Snapshot(reply),
                    subscribe: None,
                });
            }
            RoomMsg::Sweep { done } => {
                let timings = self.rooms.inner.timings;
                let command = RoomCommand::Sweep {
                    at: now,
                    away_after_ms: timings.away_after.as_millis() as i64,
                    forget_after_ms: timings.forget_after.as_millis() as i64,
                };
                self.sweep_armed_at = None;
                (command, Metadata::by("system:sweep").command("Sweep"), Reply::Done(done), None)
            }
            RoomMsg::System { command } => {
                (command, Metadata::by("system:room").command("DropConnections"), Reply::None, None)
            }
        };
        // Decide, then apply event by event, judging each against the state
        // just before it. No per-message clone of the room: cloning and
        // dropping a 100-user room per heartbeat was ~37% of the server's
        // CPU under 2,000 heartbeats/s (`eventuall-bench rooms`, perf).
        let events = match working.decide(command) {
            Ok(events) => events,
            Err(error) => {
                // E.g. a heartbeat racing its connection's close: harmless.
                tracing::debug!(room = %self.event_id, %error, "command refused");
                let reply = match reply {
                    Reply::Connected(tx) => {
                        let _ = tx.send(Err(error.to_string()));
                        Reply::None
                    }
                    other => other,
                };
                return Some(Decided { events: vec![], metadata, reply, subscribe: None });
            }
        };
        for event in &events {
            *changed |= event.changes_snapshot(working);
            working.apply(event.clone());
        }
        Some(Decided { events, metadata, reply, subscribe })
    }

    async fn broadcast(&mut self) {
        let ids: Vec<String> = self.subscribers.keys().cloned().collect();
        for id in ids {
            self.send_snapshot(&id).await;
        }
    }

    /// Hands the current snapshot to one subscriber, replacing one it has
    /// not taken yet (a newer snapshot supersedes it; `outlet.rs`), so a
    /// slow reader never slows the room nor piles snapshots up. A client
    /// that stops reading is dropped by its socket's writer; a socket that
    /// is gone is forgotten here.
    async fn send_snapshot(&mut self, id: &str) {
        let Some(outlet) = self.subscribers.get(id) else { return };
        let reason = match outlet.replace_latest(self.snapshot_json.clone()) {
            Ok(()) => return,
            Err(Refused::Full) => CloseReason::TooSlow,
            Err(Refused::Gone) => CloseReason::Closed,
        };
        if let Some(outlet) = self.subscribers.remove(id) {
            outlet.drop_slow();
        }
        // The socket task reports its own disconnect too; closing twice
        // records nothing.
        let rooms = self.rooms.clone();
        let event_id = self.event_id.clone();
        let connection_id = id.to_owned();
        tokio::spawn(async move { rooms.send(&event_id, RoomMsg::Disconnect { connection_id, reason }).await });
    }

    /// Keeps one sweep timer armed while anyone is listed: every
    /// `sweep_every` while someone is connected, else at the next forget time.
    async fn schedule_sweep(&mut self) {
        let timings = self.rooms.inner.timings;
        if self.state.users.is_empty() {
            return;
        }
        let now = self.rooms.now();
        let anyone_connected = !self.state.connections.is_empty();
        let due = if anyone_connected {
            now + timings.sweep_every.as_millis() as i64
        } else {
            match self
                .state
                .next_deadline(timings.away_after.as_millis() as i64, timings.forget_after.as_millis() as i64)
            {
                Some(deadline) => deadline.max(now),
                None => return,
            }
        };
        // Keep an earlier armed sweep: the cadence is "every sweep_every".
        if self.sweep_armed_at.is_some_and(|armed| armed <= due) {
            return;
        }
        match self.rooms.inner.timers.arm(&super::timer_owner(&self.event_id), super::SWEEP_TIMER, due, "").await {
            Ok(()) => self.sweep_armed_at = Some(due),
            Err(error) => tracing::error!(room = %self.event_id, %error, "could not arm the sweep timer"),
        }
    }

    async fn save_snapshot(&mut self) {
        if self.version == self.snapshot_version {
            return;
        }
        match aggregate::save(&self.rooms.inner.store, &self.stream, SNAPSHOT_TAG, self.version, &self.state).await {
            Ok(()) => self.snapshot_version = self.version,
            Err(error) => tracing::warn!(room = %self.event_id, %error, "could not save room snapshot"),
        }
    }

    async fn reload(&mut self) {
        match Self::load(self.rooms.clone(), self.event_id.clone()).await {
            Ok(fresh) => {
                self.state = fresh.state;
                self.version = fresh.version;
                self.snapshot_version = fresh.snapshot_version;
                self.snapshot_json = self.render();
            }
            Err(error) => tracing::error!(room = %self.event_id, %error, "room reload failed"),
        }
    }
}

fn fail(reply: Reply, message: &str) {
    match reply {
        Reply::None => {}
        Reply::Connected(tx) => {
            let _ = tx.send(Err(message.to_owned()));
        }
        Reply::Snapshot(tx) => {
            let _ = tx.send(Err(message.to_owned()));
        }
        Reply::Done(tx) => {
            let _ = tx.send(());
        }
    }
}

/// A fresh server-side id for one socket.
pub fn new_connection_id() -> String {
    Uuid::now_v7().simple().to_string()
}
