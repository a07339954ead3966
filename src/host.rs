//! An aggregate hosted by its actor: the one shape of every actor that
//! writes a stream (room, queue, interview, user-interviews; ADR 0019).
//!
//! The batch step: an actor takes what is queued ([`next`], then
//! [`crate::actor::drain_batch`]), decides every message on the live state
//! into one [`Batch`] ([`Hosted::decide`] applies each command's events at
//! once, so the next message sees them), stores the batch with one append
//! ([`Hosted::commit`]), and only then answers, relays and broadcasts. A
//! failed append answers every caller of the batch `Unavailable` and
//! reloads the state from the log, so a conflict (a second writer) or an
//! unknown outcome (a lost connection) is resolved by what the log says,
//! not by what the actor believed. A reload that fails too leaves the host
//! stale: the next batch reloads first ([`Hosted::refresh`]) and is dropped
//! if it cannot, so nothing is ever decided on events the log may not have.
//!
//! Snapshots ride in the append that crosses the host's mark (no commit of
//! their own, only their bytes), or are written apart by actors whose
//! snapshots are too large to delay an append with (the queue); and when
//! the actor retires, so a load replays a bounded tail.

use std::time::Duration;

use cqrs_es::{Aggregate, DomainEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::store::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId, aggregate};

/// Events between snapshots stored with an append, for hosts that snapshot
/// in the append: bounds the tail a rebuild replays after a crash. 100, not
/// 25: a room of 200 at 150 heartbeats/s wrote a 30 KB snapshot six times a
/// second, and a tail of 100 events replays in well under a millisecond.
pub const SNAPSHOT_EVERY: u64 = 100;

/// An aggregate whose decisions are a function of its state: what
/// [`Hosted`] needs beyond cqrs-es's `Aggregate`.
pub trait Decide: Aggregate + Serialize + DeserializeOwned {
    /// Schema tag of stored snapshots; bump it when the state changes shape.
    const SNAPSHOT_TAG: &'static str;

    /// The events `command` yields against this state, not yet applied. A
    /// refused command changes nothing; an accepted one may already have
    /// changed what applying its events changes (the queue integrates an
    /// update into its live document while deciding).
    fn decide(&mut self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// The command's name, recorded in its events' metadata.
    fn command_name(command: &Self::Command) -> &'static str;
}

/// Why an actor did not carry a request out.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Failure<E: std::error::Error> {
    /// The aggregate refused it; nothing was written.
    #[error(transparent)]
    Refused(E),
    /// The log did not take the batch, or the actor is gone.
    #[error("unavailable")]
    Unavailable,
}

/// Why [`Hosted::execute`] did not carry a command out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused it; nothing was written.
    #[error(transparent)]
    Refused(E),
    /// The log did not take the events (the state is reloaded).
    #[error(transparent)]
    Store(StoreError),
}

/// A caller waiting for its batch to be stored.
pub trait Answer {
    /// The batch was not stored: say so.
    fn unavailable(self);
}

/// What one batch decided: events not yet stored (each with its command's
/// metadata) and the callers to answer once they are.
pub struct Batch<A: Aggregate, R> {
    events: Vec<A::Event>,
    /// `metadata[i]` is `events[i]`'s.
    metadata: Vec<Metadata>,
    pub replies: Vec<R>,
}

impl<A: Aggregate, R> Default for Batch<A, R> {
    fn default() -> Self {
        Self { events: Vec::new(), metadata: Vec::new(), replies: Vec::new() }
    }
}

impl<A: Aggregate, R> Batch<A, R> {
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }
}

/// Where a host's snapshots are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshots {
    /// In the append that brings the stream this many events past the last
    /// snapshot.
    InAppendEvery(u64),
    /// Only by [`Hosted::save_snapshot`], when the actor chooses.
    Apart,
}

/// One aggregate in memory, the single writer of its stream.
pub struct Hosted<A: Decide> {
    store: EventStore,
    pub stream: StreamId,
    pub state: A,
    pub version: u64,
    pub snapshot_version: u64,
    /// The size of the last snapshot this host wrote (0 before its first).
    pub snapshot_bytes: usize,
    snapshots: Snapshots,
    /// The state may hold events the log does not: a failed append whose
    /// reload failed too.
    stale: bool,
}

impl<A: Decide> Hosted<A>
where
    A::Event: Serialize + DeserializeOwned,
{
    /// Loads `stream`: snapshot + tail.
    pub async fn load(store: EventStore, stream: StreamId, snapshots: Snapshots) -> Result<Self, StoreError> {
        let loaded = aggregate::load::<A>(&store, &stream, A::SNAPSHOT_TAG).await?;
        Ok(Self {
            store,
            stream,
            state: loaded.state,
            version: loaded.version,
            snapshot_version: loaded.snapshot_version,
            snapshot_bytes: 0,
            snapshots,
            stale: false,
        })
    }

    /// Decides `command` on the live state and applies its events at once;
    /// they wait in `batch` for [`Hosted::commit`]. `before_apply` sees each
    /// event against the state just before it. The metadata's command name
    /// is the command's own.
    pub fn decide<R>(
        &mut self,
        batch: &mut Batch<A, R>,
        command: A::Command,
        metadata: Metadata,
        mut before_apply: impl FnMut(&A, &A::Event),
    ) -> Result<usize, A::Error> {
        let metadata = metadata.command(A::command_name(&command));
        let events = self.state.decide(command)?;
        let count = events.len();
        for event in events {
            before_apply(&self.state, &event);
            self.state.apply(event.clone());
            batch.events.push(event);
        }
        batch.metadata.extend(std::iter::repeat_n(metadata, count));
        Ok(count)
    }

    /// Stores what `batch` decided with one append and hands back its
    /// events and callers. Nothing decided: nothing is written. A failed
    /// append answers every caller `Unavailable`, reloads and gives `None`.
    pub async fn commit<R: Answer>(&mut self, batch: Batch<A, R>) -> Option<(Vec<A::Event>, Vec<R>)> {
        let Batch { events, metadata, replies } = batch;
        match self.append(events, metadata).await {
            Ok(events) => Some((events, replies)),
            Err(_) => {
                for reply in replies {
                    reply.unavailable();
                }
                None
            }
        }
    }

    /// Decides `command` alone and stores its events (none: nothing is
    /// written); returns them.
    pub async fn execute(
        &mut self,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Vec<A::Event>, ExecuteError<A::Error>> {
        self.refresh().await.map_err(ExecuteError::Store)?;
        let mut batch = Batch::<A, ()>::default();
        self.decide(&mut batch, command, metadata, |_, _| {}).map_err(ExecuteError::Refused)?;
        self.append(batch.events, batch.metadata).await.map_err(ExecuteError::Store)
    }

    async fn append(&mut self, events: Vec<A::Event>, metadata: Vec<Metadata>) -> Result<Vec<A::Event>, StoreError> {
        if events.is_empty() {
            return Ok(events);
        }
        match self.append_all(&events, metadata).await {
            Ok(()) => Ok(events),
            Err(error) => {
                tracing::error!(stream = %self.stream, %error, "append failed; reloading from the log");
                self.stale = true;
                let _ = self.refresh().await;
                Err(error)
            }
        }
    }

    async fn append_all(&mut self, events: &[A::Event], metadata: Vec<Metadata>) -> Result<(), StoreError> {
        let new_events = events
            .iter()
            .zip(metadata)
            .map(|(e, metadata)| NewEvent::json(e.event_type(), e.event_version(), e, metadata))
            .collect::<Result<Vec<_>, _>>()?;
        let count = new_events.len() as u64;
        let expected = ExpectedVersion::Exact(self.version);
        let snapshot = match self.snapshots {
            Snapshots::InAppendEvery(every) if self.version + count - self.snapshot_version >= every => {
                aggregate::encode_snapshot(A::SNAPSHOT_TAG, &self.state)
                    .inspect_err(|error| tracing::warn!(stream = %self.stream, %error, "snapshot not encoded"))
                    .ok()
            }
            _ => None,
        };
        let with_snapshot = snapshot.is_some();
        match snapshot {
            Some(snapshot) => self.store.append_with_snapshot(&self.stream, expected, new_events, snapshot).await?,
            None => self.store.append(&self.stream, expected, new_events).await?,
        };
        self.version += count;
        if with_snapshot {
            self.snapshot_version = self.version;
        }
        Ok(())
    }

    /// Reloads from the log if the state may hold events the log does not
    /// (after a failed append); an actor calls it before each batch.
    pub async fn refresh(&mut self) -> Result<(), StoreError> {
        if self.stale {
            self.reload().await?;
        }
        Ok(())
    }

    /// Replaces the state by what the log says.
    pub async fn reload(&mut self) -> Result<(), StoreError> {
        match aggregate::load::<A>(&self.store, &self.stream, A::SNAPSHOT_TAG).await {
            Ok(fresh) => {
                self.state = fresh.state;
                self.version = fresh.version;
                self.snapshot_version = fresh.snapshot_version;
                self.stale = false;
                Ok(())
            }
            Err(error) => {
                tracing::error!(stream = %self.stream, %error, "reload failed; the next batch tries again");
                self.stale = true;
                Err(error)
            }
        }
    }

    /// Stores a snapshot at the current version if the last one is older.
    pub async fn save_snapshot(&mut self) {
        if self.version == self.snapshot_version || self.stale {
            return;
        }
        match aggregate::save(&self.store, &self.stream, A::SNAPSHOT_TAG, self.version, &self.state).await {
            Ok(bytes) => {
                self.snapshot_version = self.version;
                self.snapshot_bytes = bytes;
            }
            Err(error) => tracing::warn!(stream = %self.stream, %error, "could not save a snapshot"),
        }
    }
}

/// What an actor's mailbox gave.
pub enum Next<M> {
    Message(M),
    /// Nothing came for the idle wait: the actor may retire.
    Idle,
    /// Every sender is gone.
    Closed,
}

/// The next message; with `idle_after`, [`Next::Idle`] if none comes that
/// soon (an actor nobody listens to waits that long before retiring).
pub async fn next<M>(mailbox: &mut mpsc::Receiver<M>, idle_after: Option<Duration>) -> Next<M> {
    let received = match idle_after {
        Some(wait) => match tokio::time::timeout(wait, mailbox.recv()).await {
            Ok(received) => received,
            Err(_) => return Next::Idle,
        },
        None => mailbox.recv().await,
    };
    match received {
        Some(msg) => Next::Message(msg),
        None => Next::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn next_gives_a_queued_message_then_idle_after_the_wait_then_closed() {
        let (tx, mut mailbox) = mpsc::channel(4);
        tx.send(1).await.unwrap();
        let wait = Some(Duration::from_secs(10));
        assert!(matches!(next(&mut mailbox, wait).await, Next::Message(1)));
        let started = tokio::time::Instant::now();
        assert!(matches!(next(&mut mailbox, wait).await, Next::Idle));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(tx);
        assert!(matches!(next(&mut mailbox, None).await, Next::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn next_without_a_wait_is_never_idle() {
        let (tx, mut mailbox) = mpsc::channel(4);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            tx.send("late").await.unwrap();
        });
        assert!(matches!(next(&mut mailbox, None).await, Next::Message("late")));
        sender.await.unwrap();
    }
}
