//! Loading an aggregate: its latest snapshot (if the schema tag matches)
//! plus the events after it. With snapshots kept every few hundred events,
//! load time does not grow with the stream's length.

use cqrs_es::Aggregate;

use super::{EventStore, SnapshotWrite, StoreError, StreamId};

/// Events read per page while replaying a tail.
const PAGE: usize = 2_000;

/// An aggregate as loaded from the log.
pub struct Loaded<A> {
    pub state: A,
    /// Version of the last event applied (0 for a new stream).
    pub version: u64,
    /// Version the snapshot used was taken at (0 if none).
    pub snapshot_version: u64,
}

/// Loads `stream` into `A`: snapshot (JSON, tagged `schema_tag`) + tail.
/// An unreadable snapshot is ignored and the stream replayed in full.
pub async fn load<A: Aggregate>(
    store: &EventStore,
    stream: &StreamId,
    schema_tag: &str,
) -> Result<Loaded<A>, StoreError> {
    let (mut state, mut version) = match store.load_snapshot(stream, schema_tag).await? {
        Some(snapshot) => match serde_json::from_slice::<A>(&snapshot.state) {
            Ok(state) => (state, snapshot.version),
            Err(error) => {
                tracing::warn!(%stream, %error, "unreadable snapshot; replaying the stream");
                (A::default(), 0)
            }
        },
        None => (A::default(), 0),
    };
    let snapshot_version = version;
    loop {
        let page = store.read_stream(stream, version + 1, PAGE).await?;
        let done = page.len() < PAGE;
        for recorded in page {
            state.apply(recorded.decode::<A::Event>()?);
            version = recorded.stream_version;
        }
        if done {
            return Ok(Loaded { state, version, snapshot_version });
        }
    }
}

/// Stores `state` as the snapshot of `stream` at `version`; answers its
/// size in bytes.
pub async fn save<A: Aggregate>(
    store: &EventStore,
    stream: &StreamId,
    schema_tag: &str,
    version: u64,
    state: &A,
) -> Result<usize, StoreError> {
    let snapshot = encode_snapshot(schema_tag, state)?;
    store.save_snapshot(stream, version, &snapshot.schema_tag, &snapshot.state).await?;
    Ok(snapshot.state.len())
}

/// `state` encoded as a snapshot to attach to an append
/// ([`EventStore::append_with_snapshot`]); the same encoding [`load`] reads.
pub fn encode_snapshot<A: Aggregate>(schema_tag: &str, state: &A) -> Result<SnapshotWrite, StoreError> {
    let state = serde_json::to_vec(state).map_err(StoreError::Encode)?;
    Ok(SnapshotWrite { schema_tag: schema_tag.to_owned(), state })
}
