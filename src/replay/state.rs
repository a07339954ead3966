//! `replay state`: time travel. An aggregate's state as it was at a global
//! position or at a time, by replaying its stream up to there.
//!
//! "At a time" means as the log knew it then: every event *stored* at or
//! before that instant (`recorded_at`), which is what the live service showed
//! at that moment. Rooms render as their snapshot frame (what clients saw),
//! queues as their view (`{"pending":[…],"live":[…]}`).

use std::str::FromStr;

use cqrs_es::Aggregate;
use eventuall_domain::interview::{Interview, UserInterviews};
use eventuall_domain::queue::Queue;
use eventuall_domain::room::EventRoom;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ReplayError;
use crate::store::registry::Registry;
use crate::store::{EventStore, RecordedEvent, StreamId};

/// Events read per page while replaying.
const PAGE: usize = 5_000;

/// Where to stop replaying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Events with a global position ≤ this.
    Position(i64),
    /// Events stored at or before this time (ms since the Unix epoch).
    Time(i64),
}

impl FromStr for At {
    type Err = ReplayError;

    /// `1234` is a global position, `1764000000000ms` a time in
    /// milliseconds, `2026-11-23T18:30:00Z` an RFC 3339 time.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if let Ok(position) = raw.parse::<i64>() {
            return Ok(At::Position(position));
        }
        if let Some(millis) = raw.strip_suffix("ms").and_then(|m| m.trim().parse::<i64>().ok()) {
            return Ok(At::Time(millis));
        }
        let time = humantime::parse_rfc3339_weak(raw).map_err(|_| ReplayError::InvalidAt(raw.to_owned()))?;
        let millis = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| ReplayError::InvalidAt(raw.to_owned()))?;
        Ok(At::Time(millis.as_millis() as i64))
    }
}

impl At {
    fn includes(self, event: &RecordedEvent) -> bool {
        match self {
            At::Position(p) => event.global_position <= p,
            At::Time(t) => event.recorded_at <= t,
        }
    }
}

/// An aggregate's state at a point of its history.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateAt {
    pub stream_id: String,
    /// The version of the last event applied (0: the stream did not exist yet).
    pub version: u64,
    /// Global position of the last event applied.
    pub global_position: Option<i64>,
    /// When that event was stored.
    pub recorded_at: Option<i64>,
    /// The aggregate as its snapshot shows it (a room snapshot, a queue view, …).
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

/// The stream categories [`state_at`] can rebuild (its match arms; any
/// other is `UnknownCategory`). The OpenAPI document's pattern of
/// `/admin/streams/{streamId}/state` is built from the same list.
pub const STATE_CATEGORIES: [&str; 4] = ["room", "queue", "interview", "user_interviews"];

/// Replays `stream` up to `at` and renders the state.
pub async fn state_at(
    store: &EventStore,
    registry: &Registry,
    stream: &StreamId,
    at: At,
) -> Result<StateAt, ReplayError> {
    match stream.category() {
        "room" => {
            let (room, stop) = fold::<EventRoom>(store, registry, stream, at).await?;
            let snapshot = room.snapshot(stream.entity_id(), stop.version);
            Ok(stop.render(stream, serde_json::to_value(snapshot).expect("snapshots serialise")))
        }
        "queue" => {
            let (queue, stop) = fold::<Queue>(store, registry, stream, at).await?;
            Ok(stop.render(stream, serde_json::to_value(queue.view()).expect("views serialise")))
        }
        "interview" => {
            let (interview, stop) = fold::<Interview>(store, registry, stream, at).await?;
            let mut state = serde_json::to_value(&interview).expect("interviews serialise");
            state["state"] = interview.state().as_str().into();
            Ok(stop.render(stream, state))
        }
        "user_interviews" => {
            let (directory, stop) = fold::<UserInterviews>(store, registry, stream, at).await?;
            Ok(stop.render(stream, serde_json::to_value(&directory).expect("directories serialise")))
        }
        other => Err(ReplayError::UnknownCategory(other.to_owned())),
    }
}

#[derive(Default)]
struct Stop {
    version: u64,
    global_position: Option<i64>,
    recorded_at: Option<i64>,
}

impl Stop {
    fn render(self, stream: &StreamId, state: serde_json::Value) -> StateAt {
        StateAt {
            stream_id: stream.to_string(),
            version: self.version,
            global_position: self.global_position,
            recorded_at: self.recorded_at,
            state,
        }
    }
}

async fn fold<A>(store: &EventStore, registry: &Registry, stream: &StreamId, at: At) -> Result<(A, Stop), ReplayError>
where
    A: Aggregate,
    A::Event: DeserializeOwned,
{
    if store.stream_version(stream).await? == 0 {
        return Err(ReplayError::EmptyStream(stream.to_string()));
    }
    let mut state = A::default();
    let mut stop = Stop::default();
    loop {
        let page = store.read_stream(stream, stop.version + 1, PAGE).await?;
        let done = page.len() < PAGE;
        for event in page {
            // A stream's versions follow its positions and times, so the
            // first event past `at` ends the replay.
            if !at.includes(&event) {
                return Ok((state, stop));
            }
            let decoded = registry.decode::<A::Event>(&event).map_err(|error| ReplayError::Decode {
                stream: stream.to_string(),
                version: event.stream_version,
                error,
            })?;
            state.apply(decoded);
            stop = Stop {
                version: event.stream_version,
                global_position: Some(event.global_position),
                recorded_at: Some(event.recorded_at),
            };
        }
        if done {
            return Ok((state, stop));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_reads_positions_milliseconds_and_rfc3339() {
        assert_eq!("42".parse::<At>().unwrap(), At::Position(42));
        assert_eq!("1764000000123ms".parse::<At>().unwrap(), At::Time(1_764_000_000_123));
        assert_eq!("2025-11-24T16:00:00.123Z".parse::<At>().unwrap(), At::Time(1_764_000_000_123));
        assert!("yesterday".parse::<At>().is_err());
    }
}
