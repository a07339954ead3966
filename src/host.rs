//! An aggregate hosted by its actor: load it, decide a command against it,
//! append the events, apply them. The shape every new actor shares (the
//! interview and user-interviews actors; the room and queue actors predate
//! it and keep their batch loops).
//!
//! [`Hosted::execute`] is the whole write path: decide on the live state
//! (deciding borrows it, so nothing changes until the append is durable),
//! append with the expected version, then apply. A failed append leaves the
//! state as it was; the host reloads from the log so that a conflict (a
//! second writer) or an unknown outcome (a lost connection) is resolved by
//! what the log says, not by what the actor believed.
//!
//! Snapshots ride in the append every [`SNAPSHOT_EVERY`] events and are
//! written when the actor retires, so a load replays a bounded tail.

use cqrs_es::{Aggregate, DomainEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId, aggregate};

/// Events between snapshots stored with an append.
pub const SNAPSHOT_EVERY: u64 = 25;

/// An aggregate whose decisions are a pure function of its state: what
/// [`Hosted`] needs beyond cqrs-es's `Aggregate`.
pub trait Decide: Aggregate + Clone + Serialize + DeserializeOwned {
    /// Schema tag of stored snapshots; bump it when the state changes shape.
    const SNAPSHOT_TAG: &'static str;

    /// The events `command` yields against this state, not yet applied.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// The command's name, recorded in its events' metadata.
    fn command_name(command: &Self::Command) -> &'static str;
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused it; nothing was written.
    #[error(transparent)]
    Refused(E),
    /// The log did not take the events (the state is reloaded).
    #[error(transparent)]
    Store(StoreError),
}

/// One aggregate in memory, the single writer of its stream.
pub struct Hosted<A: Decide> {
    store: EventStore,
    pub stream: StreamId,
    pub state: A,
    pub version: u64,
    snapshot_version: u64,
}

impl<A: Decide> Hosted<A>
where
    A::Event: Serialize + DeserializeOwned,
{
    /// Loads `stream`: snapshot + tail.
    pub async fn load(store: EventStore, stream: StreamId) -> Result<Self, StoreError> {
        let loaded = aggregate::load::<A>(&store, &stream, A::SNAPSHOT_TAG).await?;
        Ok(Self {
            store,
            stream,
            state: loaded.state,
            version: loaded.version,
            snapshot_version: loaded.snapshot_version,
        })
    }

    /// Decides `command`, appends its events (none: nothing is written) and
    /// applies them; returns them.
    pub async fn execute(
        &mut self,
        command: A::Command,
        metadata: Metadata,
    ) -> Result<Vec<A::Event>, ExecuteError<A::Error>> {
        let metadata = metadata.command(A::command_name(&command));
        let events = self.state.decide(command).map_err(ExecuteError::Refused)?;
        if events.is_empty() {
            return Ok(events);
        }
        let new_events = events
            .iter()
            .map(|e| NewEvent::json(e.event_type(), e.event_version(), e, metadata.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ExecuteError::Store)?;
        let count = new_events.len() as u64;
        let mut next = self.state.clone();
        for event in &events {
            next.apply(event.clone());
        }
        let expected = ExpectedVersion::Exact(self.version);
        let snapshot = (self.version + count - self.snapshot_version >= SNAPSHOT_EVERY)
            .then(|| aggregate::encode_snapshot(A::SNAPSHOT_TAG, &next).ok())
            .flatten();
        let with_snapshot = snapshot.is_some();
        let appended = match snapshot {
            Some(snapshot) => self.store.append_with_snapshot(&self.stream, expected, new_events, snapshot).await,
            None => self.store.append(&self.stream, expected, new_events).await,
        };
        if let Err(error) = appended {
            tracing::error!(stream = %self.stream, %error, "append failed; reloading from the log");
            self.reload().await;
            return Err(ExecuteError::Store(error));
        }
        self.state = next;
        self.version += count;
        if with_snapshot {
            self.snapshot_version = self.version;
        }
        Ok(events)
    }

    /// Stores a snapshot at the current version if the last one is older.
    pub async fn save_snapshot(&mut self) {
        if self.version == self.snapshot_version {
            return;
        }
        match aggregate::save(&self.store, &self.stream, A::SNAPSHOT_TAG, self.version, &self.state).await {
            Ok(()) => self.snapshot_version = self.version,
            Err(error) => tracing::warn!(stream = %self.stream, %error, "could not save a snapshot"),
        }
    }

    async fn reload(&mut self) {
        match aggregate::load::<A>(&self.store, &self.stream, A::SNAPSHOT_TAG).await {
            Ok(fresh) => {
                self.state = fresh.state;
                self.version = fresh.version;
                self.snapshot_version = fresh.snapshot_version;
            }
            Err(error) => tracing::error!(stream = %self.stream, %error, "reload failed; keeping the last known state"),
        }
    }
}
