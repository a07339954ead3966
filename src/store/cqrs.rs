//! cqrs-es on top of our log: [`PersistedEventRepository`] for [`EventStore`].
//!
//! This lets cqrs-es's `PersistedEventStore`, `CqrsFramework` and upcasters
//! run on the log unchanged. An aggregate `A` with id `x` lives in stream
//! `{A::TYPE}-{x}`; cqrs-es sequences are our stream versions (both start at
//! 1). cqrs-es cannot pass an expected version or read positions, so the
//! service's own actors use [`EventStore`] directly; this adapter is for
//! compatibility and for code that wants the plain cqrs-es API.

use std::collections::HashMap;

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use serde_json::Value;

use super::{EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError, StreamId};

/// Snapshot tag under which cqrs-es aggregate snapshots are stored.
const CQRS_SNAPSHOT_TAG: &str = "cqrs-es";
/// Events fetched per read while replaying a stream.
const PAGE: usize = 1_000;

fn stream_of<A: Aggregate>(aggregate_id: &str) -> StreamId {
    StreamId::of(A::TYPE, aggregate_id)
}

fn to_persistence(error: StoreError) -> PersistenceError {
    match error {
        StoreError::Conflict { .. } | StoreError::PartialDuplicate { .. } => PersistenceError::OptimisticLockError,
        StoreError::Database(e) => PersistenceError::ConnectionError(Box::new(e)),
        StoreError::Sqlite(e) => PersistenceError::ConnectionError(Box::new(e)),
        StoreError::Decode { .. } | StoreError::Encode(_) => PersistenceError::DeserializationError(Box::new(error)),
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

/// cqrs-es metadata is a flat string map; ours is typed. Known keys map to
/// typed fields; the whole map is also kept so nothing is lost.
fn metadata_from_value(value: &Value) -> Metadata {
    let map: HashMap<String, String> = serde_json::from_value(value.clone()).unwrap_or_default();
    Metadata {
        actor: map.get("actor").cloned(),
        command: map.get("command").cloned(),
        correlation_id: map.get("correlation_id").and_then(|v| v.parse().ok()),
        causation_id: map.get("causation_id").and_then(|v| v.parse().ok()),
    }
}

fn metadata_to_value(metadata: &Metadata) -> Value {
    let mut map = serde_json::Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            map.insert(k.to_owned(), Value::String(v));
        }
    };
    put("actor", metadata.actor.clone());
    put("command", metadata.command.clone());
    put("correlation_id", metadata.correlation_id.map(|u| u.to_string()));
    put("causation_id", metadata.causation_id.map(|u| u.to_string()));
    Value::Object(map)
}

fn to_serialized<A: Aggregate>(event: RecordedEvent) -> Result<SerializedEvent, PersistenceError> {
    let payload: Value = serde_json::from_str(&event.payload)?;
    Ok(SerializedEvent {
        aggregate_id: event.stream_id.entity_id().to_owned(),
        sequence: event.stream_version as usize,
        aggregate_type: A::TYPE.to_owned(),
        event_type: event.event_type,
        event_version: event.event_version,
        payload,
        metadata: metadata_to_value(&event.metadata),
    })
}

impl EventStore {
    async fn read_whole_stream(&self, stream: &StreamId, from: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let page = self.read_stream(stream, next, PAGE).await?;
            let done = page.len() < PAGE;
            if let Some(last) = page.last() {
                next = last.stream_version + 1;
            }
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }
}

impl PersistedEventRepository for EventStore {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.read_whole_stream(&stream_of::<A>(aggregate_id), 1).await.map_err(to_persistence)?;
        events.into_iter().map(to_serialized::<A>).collect()
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let stream = stream_of::<A>(aggregate_id);
        let events = self.read_whole_stream(&stream, last_sequence as u64 + 1).await.map_err(to_persistence)?;
        events.into_iter().map(to_serialized::<A>).collect()
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let stream = stream_of::<A>(aggregate_id);
        let Some(snapshot) = self.load_snapshot(&stream, CQRS_SNAPSHOT_TAG).await.map_err(to_persistence)? else {
            return Ok(None);
        };
        let aggregate: Value = serde_json::from_slice(&snapshot.state)?;
        Ok(Some(SerializedSnapshot {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            current_sequence: snapshot.version as usize,
            current_snapshot: snapshot.version as usize,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if let Some(first) = events.first() {
            let stream = stream_of::<A>(&first.aggregate_id);
            let expected = ExpectedVersion::Exact(first.sequence.saturating_sub(1) as u64);
            let new_events = events
                .iter()
                .map(|e| {
                    NewEvent::new(
                        &e.event_type,
                        &e.event_version,
                        e.payload.to_string(),
                        metadata_from_value(&e.metadata),
                    )
                })
                .collect();
            self.append(&stream, expected, new_events).await.map_err(to_persistence)?;
        }
        if let Some((aggregate_id, state, version)) = snapshot_update {
            let stream = stream_of::<A>(&aggregate_id);
            let bytes = serde_json::to_vec(&state)?;
            self.save_snapshot(&stream, version as u64, CQRS_SNAPSHOT_TAG, &bytes).await.map_err(to_persistence)?;
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        Ok(replay_of(events))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(PAGE);
        let store = self.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let page = match store.read_all(after, PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        // Unlike a panic in the feeder, an error reaches the reader.
                        let _ = feed.push(Err(to_persistence(error))).await;
                        return;
                    }
                };
                let done = page.len() < PAGE;
                for event in page {
                    after = event.global_position;
                    if event.stream_id.category() != A::TYPE {
                        continue;
                    }
                    if feed.push(to_serialized::<A>(event)).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
            }
        });
        Ok(stream)
    }
}

fn replay_of(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    tokio::spawn(async move {
        for event in events {
            if feed.push(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    stream
}
