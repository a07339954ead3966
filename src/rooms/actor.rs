//! One room's actor: the single writer of stream `room-{eventId}`.
//!
//! It hosts the [`EventRoom`] ([`Hosted`]), turns messages into commands,
//! and follows the batch step of `crate::host`: everything queued is decided
//! on the live room, appended as one append (one group-commit slot, with the
//! snapshot when it crosses the mark), and only then answered and
//! broadcast. So every heartbeat is durable before anything depends on it,
//! a burst of changes costs one append and yields one snapshot, and the
//! snapshot sent last is always the newest.
//!
//! Subscribers are WebSocket connections, each with a slot for the newest
//! snapshot: a slow client gets the newest when it is ready, never waited
//! for; one that stops reading is dropped by its socket's writer.

use std::collections::HashMap;
use std::sync::Arc;

use eventuall_domain::room::{CloseReason, ConnectionKind, EventRoom, RoomCommand, RoomError, RoomSnapshot};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{RoomFailure, RoomMsg, Rooms};
use crate::actor::{Retirement, drain_batch};
use crate::host::{self, Answer, Batch, Failure, Hosted, Next, SNAPSHOT_EVERY, Snapshots};
use crate::outlet::{Outlet, Refused, Text};
use crate::store::{Metadata, StoreError, StreamId};

/// Messages handled per batch (one append, one snapshot).
const MAX_BATCH: usize = 512;

pub(super) struct RoomActor {
    rooms: Rooms,
    event_id: String,
    hosted: Hosted<EventRoom>,
    subscribers: HashMap<String, Outlet>,
    /// The last snapshot frame, rendered once per change and shared by every
    /// subscriber's outlet (and HTTP reader) until the next change.
    snapshot_json: Text,
    /// When the sweep timer is armed for, as far as this actor knows.
    sweep_armed_at: Option<i64>,
}

/// What to tell a message's sender once its batch is stored.
enum Reply {
    /// A socket joined: it subscribes, then hears it may go on.
    Connected {
        connection_id: String,
        outbound: Outlet,
        reply: oneshot::Sender<Result<(), RoomFailure>>,
    },
    /// A socket the room would not open.
    Refused(oneshot::Sender<Result<(), RoomFailure>>, RoomError),
    Snapshot(oneshot::Sender<Result<Arc<str>, RoomFailure>>),
    Done(oneshot::Sender<()>),
}

impl Answer for Reply {
    fn unavailable(self) {
        match self {
            Reply::Connected { reply, .. } | Reply::Refused(reply, _) => {
                let _ = reply.send(Err(Failure::Unavailable));
            }
            Reply::Snapshot(reply) => {
                let _ = reply.send(Err(Failure::Unavailable));
            }
            Reply::Done(done) => {
                let _ = done.send(());
            }
        }
    }
}

impl RoomActor {
    pub(super) async fn load(rooms: Rooms, event_id: String) -> Result<Self, StoreError> {
        let stream = StreamId::of(<EventRoom as cqrs_es::Aggregate>::TYPE, &event_id);
        let store = rooms.inner.store.clone();
        let hosted = Hosted::load(store, stream, Snapshots::InAppendEvery(SNAPSHOT_EVERY)).await?;
        let mut actor = Self {
            snapshot_json: Text::from_static(""),
            rooms,
            event_id,
            hosted,
            subscribers: HashMap::new(),
            sweep_armed_at: None,
        };
        actor.snapshot_json = actor.render();
        Ok(actor)
    }

    /// The snapshot frame: `{"type":"snapshot",…}` written in one pass (the
    /// snapshot's own object with the tag spliced in front, no JSON tree).
    fn render(&self) -> Text {
        const TAG: &[u8] = br#"{"type":"snapshot""#;
        let snapshot: RoomSnapshot = self.hosted.state.snapshot(&self.event_id, self.hosted.version);
        let mut frame = Vec::with_capacity(TAG.len() + 64 + 96 * snapshot.presence.len());
        frame.extend_from_slice(TAG);
        serde_json::to_writer(&mut frame, &snapshot).expect("snapshot serialises");
        // The snapshot's `{` becomes the `,` after the tag (it has fields).
        frame[TAG.len()] = b',';
        Text::from(String::from_utf8(frame).expect("serde_json writes UTF-8"))
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
            let idle_after = self.subscribers.is_empty().then_some(evict_after);
            match host::next(&mut mailbox, idle_after).await {
                Next::Message(first) => self.process(drain_batch(first, &mut mailbox, MAX_BATCH)).await,
                Next::Idle if retirement.try_retire(&mut mailbox) => {
                    self.hosted.save_snapshot().await;
                    tracing::debug!(room = %self.event_id, "room evicted");
                    return;
                }
                Next::Idle => {}
                Next::Closed => break,
            }
        }
        self.hosted.save_snapshot().await;
    }

    /// The batch step: decides every message on the live room, appends
    /// once, then answers and broadcasts.
    async fn process(&mut self, msgs: Vec<RoomMsg>) {
        if self.hosted.refresh().await.is_err() {
            // The log is out of reach: callers see the room unavailable
            // (their reply channels close); sockets that left are forgotten.
            for msg in msgs {
                if let RoomMsg::Disconnect { connection_id, .. } = msg {
                    self.subscribers.remove(&connection_id);
                }
            }
            return;
        }
        let mut batch = Batch::default();
        let mut snapshot_changed = false;
        for msg in msgs {
            self.decide(&mut batch, msg, &mut snapshot_changed);
        }
        let Some((events, replies)) = self.hosted.commit(batch).await else {
            self.snapshot_json = self.render();
            return;
        };
        let mut newcomers = Vec::new();
        for reply in &replies {
            if let Reply::Connected { connection_id, outbound, .. } = reply {
                newcomers.push(connection_id.clone());
                self.subscribers.insert(connection_id.clone(), outbound.clone());
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
        for reply in replies {
            match reply {
                Reply::Connected { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                Reply::Refused(reply, error) => {
                    let _ = reply.send(Err(Failure::Refused(error)));
                }
                Reply::Snapshot(reply) => {
                    let _ = reply.send(Ok(Arc::from(self.snapshot_json.as_str())));
                }
                Reply::Done(done) => {
                    let _ = done.send(());
                }
            }
        }
        if !events.is_empty() || self.sweep_armed_at.is_none() {
            self.schedule_sweep().await;
        }
    }

    /// Decides one message on the live room into `batch`.
    fn decide(&mut self, batch: &mut Batch<EventRoom, Reply>, msg: RoomMsg, changed: &mut bool) {
        let now = self.rooms.now();
        let state = &self.hosted.state;
        let (command, metadata, reply) = match msg {
            RoomMsg::Connect { connection_id, client_id, user_id, name, outbound, reply } => {
                let metadata = Metadata::by(&user_id);
                let command = RoomCommand::Connect {
                    connection_id: connection_id.clone(),
                    client_id,
                    user_id,
                    name,
                    kind: ConnectionKind::WebSocket,
                    at: now,
                };
                (command, metadata, Some(Reply::Connected { connection_id, outbound, reply }))
            }
            RoomMsg::Heartbeat { connection_id } => {
                let actor = state.connections.get(&connection_id).map(|c| c.user_id.clone());
                (RoomCommand::Heartbeat { connection_id, at: now }, Metadata { actor, ..Metadata::default() }, None)
            }
            RoomMsg::Disconnect { connection_id, reason } => {
                self.subscribers.remove(&connection_id);
                let actor = state.connections.get(&connection_id).map(|c| c.user_id.clone());
                let command = RoomCommand::Disconnect { connection_id, reason, at: now };
                (command, Metadata { actor, ..Metadata::default() }, None)
            }
            RoomMsg::Command { command, metadata, reply } => (command, metadata, Some(Reply::Snapshot(reply))),
            RoomMsg::Snapshot { reply } => {
                batch.replies.push(Reply::Snapshot(reply));
                return;
            }
            RoomMsg::Sweep { done } => {
                let timings = self.rooms.inner.timings;
                let command = RoomCommand::Sweep {
                    at: now,
                    away_after_ms: timings.away_after.as_millis() as i64,
                    forget_after_ms: timings.forget_after.as_millis() as i64,
                };
                self.sweep_armed_at = None;
                (command, Metadata::by("system:sweep"), Some(Reply::Done(done)))
            }
            RoomMsg::System { command } => (command, Metadata::by("system:room"), None),
        };
        // Applied event by event, each judged against the state just before
        // it. No clone of the room per message (nor per batch): cloning and
        // dropping a 100-user room per heartbeat was ~37% of the server's
        // CPU under 2,000 heartbeats/s (`eventuall-bench rooms`, perf).
        let decided =
            self.hosted.decide(batch, command, metadata, |room, event| *changed |= event.changes_snapshot(room));
        match (decided, reply) {
            (Ok(_), Some(reply)) => batch.replies.push(reply),
            (Ok(_), None) => {}
            (Err(error), reply) => {
                // E.g. a heartbeat racing its connection's close: harmless.
                tracing::debug!(room = %self.event_id, %error, "command refused");
                match reply {
                    Some(Reply::Connected { reply, .. }) => batch.replies.push(Reply::Refused(reply, error)),
                    Some(other) => batch.replies.push(other),
                    None => {}
                }
            }
        }
    }

    async fn broadcast(&mut self) {
        let frame = &self.snapshot_json;
        let refused: Vec<(String, Refused)> = self
            .subscribers
            .iter()
            .filter_map(|(id, outlet)| outlet.replace_latest(frame.clone()).err().map(|why| (id.clone(), why)))
            .collect();
        for (id, why) in refused {
            self.forget(&id, why);
        }
    }

    /// Hands the current snapshot to one subscriber, replacing one it has
    /// not taken yet (a newer snapshot supersedes it; `outlet.rs`), so a
    /// slow reader never slows the room nor piles snapshots up. A client
    /// that stops reading is dropped by its socket's writer; a socket that
    /// is gone is forgotten here.
    async fn send_snapshot(&mut self, id: &str) {
        let Some(outlet) = self.subscribers.get(id) else { return };
        if let Err(why) = outlet.replace_latest(self.snapshot_json.clone()) {
            self.forget(id, why);
        }
    }

    /// Drops a subscriber whose outlet refused a snapshot and records its
    /// connection closed.
    fn forget(&mut self, id: &str, why: Refused) {
        let reason = match why {
            Refused::Full => CloseReason::TooSlow,
            Refused::Gone => CloseReason::Closed,
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
        if self.hosted.state.users.is_empty() {
            return;
        }
        let now = self.rooms.now();
        let anyone_connected = !self.hosted.state.connections.is_empty();
        let due = if anyone_connected {
            now + timings.sweep_every.as_millis() as i64
        } else {
            match self
                .hosted
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
}

/// A fresh server-side id for one socket.
pub fn new_connection_id() -> String {
    Uuid::now_v7().simple().to_string()
}
