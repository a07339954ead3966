//! Event rooms: presence, stage and live snapshots (the Event Durable Object).
//!
//! [`Rooms`] is the service's handle: it finds (or starts) the actor of a
//! room and talks to it with [`RoomMsg`]s; the actor itself lives in
//! [`actor`]. Sweep timers are durable ([`crate::timers`]); a firing is
//! delivered as [`RoomMsg::Sweep`], which starts an evicted room if needed.

pub mod actor;

use std::sync::Arc;

use eventuall_domain::room::{CloseReason, EventRoom, RoomCommand, RoomError};
use tokio::sync::oneshot;

use crate::actor::{ActorHandle, Registry};
use crate::clock::SharedClock;
use crate::config::PresenceTimings;
use crate::host::{Decide, Failure};
pub use crate::outlet::{Outbound, Outlet};
use crate::store::{EventStore, Metadata};
use crate::timers::{Timer, Timers};

/// Schema tag of stored room states; bump it when `EventRoom` changes shape.
pub const SNAPSHOT_TAG: &str = "room-v1";
/// Name of a room's sweep timer.
pub const SWEEP_TIMER: &str = "sweep";

/// Why a room request failed.
pub type RoomFailure = Failure<RoomError>;

impl Decide for EventRoom {
    const SNAPSHOT_TAG: &'static str = SNAPSHOT_TAG;

    fn decide(&mut self, command: RoomCommand) -> Result<Vec<eventuall_domain::room::RoomEvent>, RoomError> {
        EventRoom::decide(self, command)
    }

    fn command_name(command: &RoomCommand) -> &'static str {
        command.name()
    }
}

pub enum RoomMsg {
    Connect {
        connection_id: String,
        client_id: Option<String>,
        user_id: String,
        name: String,
        outbound: Outlet,
        reply: oneshot::Sender<Result<(), RoomFailure>>,
    },
    Heartbeat {
        connection_id: String,
    },
    Disconnect {
        connection_id: String,
        reason: CloseReason,
    },
    /// A command from the API (stage, recording, LiveKit presence); answered
    /// with the snapshot after it (also when the room refuses it: every
    /// such command is idempotent). The metadata's command name is the
    /// command's own.
    Command {
        command: RoomCommand,
        metadata: Metadata,
        reply: oneshot::Sender<Result<Arc<str>, RoomFailure>>,
    },
    Snapshot {
        reply: oneshot::Sender<Result<Arc<str>, RoomFailure>>,
    },
    Sweep {
        done: oneshot::Sender<()>,
    },
    /// Internal housekeeping commands of the actor itself.
    System {
        command: RoomCommand,
    },
}

#[derive(Clone)]
pub struct Rooms {
    inner: Arc<RoomsInner>,
}

struct RoomsInner {
    store: EventStore,
    timers: Arc<Timers>,
    clock: SharedClock,
    timings: PresenceTimings,
    registry: std::sync::OnceLock<Arc<Registry<RoomMsg>>>,
    /// Several nodes: hands commands for rooms another node owns to it.
    remote: std::sync::OnceLock<Arc<dyn RemoteRooms>>,
}

/// Where a room command goes when another node owns the room (ADR 0020).
pub trait RemoteRooms: Send + Sync {
    /// `None` when the room is served here; else the owner's answer.
    fn forward<'a>(
        &'a self,
        event_id: &'a str,
        command: &'a RoomCommand,
        metadata: &'a Metadata,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Result<Arc<str>, RoomFailure>>> + Send + 'a>>;
}

/// The timer owner of a room.
pub fn timer_owner(event_id: &str) -> String {
    format!("room-{event_id}")
}

impl Rooms {
    pub fn new(store: EventStore, timers: Arc<Timers>, clock: SharedClock, timings: PresenceTimings) -> Self {
        let rooms = Self {
            inner: Arc::new(RoomsInner {
                store,
                timers,
                clock,
                timings,
                registry: std::sync::OnceLock::new(),
                remote: std::sync::OnceLock::new(),
            }),
        };
        let weak = Arc::downgrade(&rooms.inner);
        let registry = Registry::new(move |event_id: String, mailbox, retirement| {
            let weak = weak.clone();
            async move {
                let Some(inner) = weak.upgrade() else { return };
                let rooms = Rooms { inner };
                match actor::RoomActor::load(rooms, event_id.clone()).await {
                    Ok(actor) => actor.run(mailbox, retirement).await,
                    Err(error) => {
                        // Callers waiting on replies see their channel close.
                        tracing::error!(room = %event_id, %error, "room could not be loaded");
                    }
                }
            }
        });
        let _ = rooms.inner.registry.set(registry);
        rooms
    }

    /// Installs the forwarder for rooms other nodes own (once).
    pub fn set_remote(&self, remote: Arc<dyn RemoteRooms>) {
        let _ = self.inner.remote.set(remote);
    }

    /// The room actors (the cluster gates and evicts them).
    pub fn registry(&self) -> &Arc<Registry<RoomMsg>> {
        self.inner.registry.get().expect("registry is set in new")
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    pub async fn send(&self, event_id: &str, msg: RoomMsg) {
        self.registry().send(event_id, msg).await;
    }

    /// The way to one room's actor for a socket's many messages.
    pub fn handle(&self, event_id: &str) -> ActorHandle<RoomMsg> {
        self.registry().handle(event_id)
    }

    /// The room's current snapshot JSON (an empty room at version 0 if it
    /// was never used).
    pub async fn snapshot(&self, event_id: &str) -> Result<Arc<str>, RoomFailure> {
        let (reply, answer) = oneshot::channel();
        self.send(event_id, RoomMsg::Snapshot { reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)?
    }

    /// Runs a command; answers the snapshot after it.
    pub async fn command(
        &self,
        event_id: &str,
        command: RoomCommand,
        metadata: Metadata,
    ) -> Result<Arc<str>, RoomFailure> {
        if let Some(remote) = self.inner.remote.get()
            && let Some(answer) = remote.forward(event_id, &command, &metadata).await
        {
            return answer;
        }
        let (reply, answer) = oneshot::channel();
        self.send(event_id, RoomMsg::Command { command, metadata, reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)?
    }

    /// Delivers a fired sweep timer and waits until the room handled it.
    pub async fn fire(&self, timer: Timer) {
        let Some(event_id) = timer.owner.strip_prefix("room-") else { return };
        let (done, handled) = oneshot::channel();
        self.send(event_id, RoomMsg::Sweep { done }).await;
        let _ = handled.await;
    }

    /// Rooms currently in memory.
    pub fn live_rooms(&self) -> usize {
        self.registry().live()
    }

    pub fn is_live(&self, event_id: &str) -> bool {
        self.registry().is_live(event_id)
    }
}
