//! Collaborative queues: one Yjs document per event (the Queue Durable
//! Object), synced with unmodified y-websocket clients.
//!
//! [`Queues`] finds (or starts) the actor of an event's queue and talks to it
//! with [`QueueMsg`]s; the actor ([`actor`]) is the single writer of stream
//! `queue-{eventId}`. The protocol itself (frames, sessions, awareness) is
//! pure and lives in `eventuall_domain::queue::sync`.

pub mod actor;

use std::sync::Arc;

use eventuall_domain::queue::{Actor, Queue, QueueCommand, QueueError, QueueEvent};
use tokio::sync::oneshot;

use crate::actor::{ActorHandle, Registry};
use crate::clock::SharedClock;
use crate::host::{Decide, Failure};
use crate::outlet::Outlet;
use crate::store::EventStore;

/// Schema tag of stored queue states; bump it when `Queue` changes shape.
pub const SNAPSHOT_TAG: &str = "queue-v1";

/// Why a queue request failed.
pub type QueueFailure = Failure<QueueError>;

impl Decide for Queue {
    const SNAPSHOT_TAG: &'static str = SNAPSHOT_TAG;

    fn decide(&mut self, command: QueueCommand) -> Result<Vec<QueueEvent>, QueueError> {
        Queue::decide(self, command)
    }

    fn command_name(command: &QueueCommand) -> &'static str {
        command.name()
    }
}

pub enum QueueMsg {
    Connect {
        connection_id: String,
        actor: Actor,
        outbound: Outlet,
        reply: oneshot::Sender<()>,
    },
    /// A binary frame from a connection (y-websocket protocol).
    Frame {
        connection_id: String,
        frame: bytes::Bytes,
    },
    Disconnect {
        connection_id: String,
    },
    /// An HTTP command; answered with the queue's JSON view after it.
    Command {
        command: QueueCommand,
        reply: oneshot::Sender<Result<String, QueueFailure>>,
    },
    View {
        reply: oneshot::Sender<String>,
    },
}

#[derive(Clone)]
pub struct Queues {
    inner: Arc<QueuesInner>,
}

struct QueuesInner {
    store: EventStore,
    clock: SharedClock,
    evict_after: std::time::Duration,
    registry: std::sync::OnceLock<Arc<Registry<QueueMsg>>>,
}

impl Queues {
    pub fn new(store: EventStore, clock: SharedClock, evict_after: std::time::Duration) -> Self {
        let queues =
            Self { inner: Arc::new(QueuesInner { store, clock, evict_after, registry: std::sync::OnceLock::new() }) };
        let weak = Arc::downgrade(&queues.inner);
        let registry = Registry::new(move |event_id: String, mailbox, retirement| {
            let weak = weak.clone();
            async move {
                let Some(inner) = weak.upgrade() else { return };
                match actor::QueueActor::load(Queues { inner }, event_id.clone()).await {
                    Ok(actor) => actor.run(mailbox, retirement).await,
                    Err(error) => tracing::error!(queue = %event_id, %error, "queue could not be loaded"),
                }
            }
        });
        let _ = queues.inner.registry.set(registry);
        queues
    }

    /// The queue actors (the cluster gates and evicts them).
    pub fn registry(&self) -> &Arc<Registry<QueueMsg>> {
        self.inner.registry.get().expect("registry is set in new")
    }

    /// Queues currently in memory.
    pub fn live_queues(&self) -> usize {
        self.registry().live()
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    pub async fn send(&self, event_id: &str, msg: QueueMsg) {
        self.registry().send(event_id, msg).await;
    }

    /// The way to one queue's actor for a socket's many messages.
    pub fn handle(&self, event_id: &str) -> ActorHandle<QueueMsg> {
        self.registry().handle(event_id)
    }

    /// The queue's JSON view `{"pending":[…],"live":[…]}`.
    pub async fn view(&self, event_id: &str) -> Result<String, QueueFailure> {
        let (reply, answer) = oneshot::channel();
        self.send(event_id, QueueMsg::View { reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)
    }

    pub async fn command(&self, event_id: &str, command: QueueCommand) -> Result<String, QueueFailure> {
        let (reply, answer) = oneshot::channel();
        self.send(event_id, QueueMsg::Command { command, reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)?
    }

    pub fn is_live(&self, event_id: &str) -> bool {
        self.registry().is_live(event_id)
    }
}
