//! `replay history` and `replay export`: the log as people and tools read it.
//!
//! A history line shows when (the time the event was stored), the stream
//! version, the event type, who (actor), through which command, as part of
//! which operation (correlation id), and a short summary of the payload.
//! Exports are JSON Lines with every stored field; payload and metadata are
//! spliced in byte for byte when they are single-line JSON (so the hash can
//! be recomputed from an export), else written as JSON strings.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::store::raw::{BATCH, Batches, Filter, RawEvent};
use crate::store::{EventStore, StreamId};

/// Longest payload summary in a history line.
const SUMMARY_CHARS: usize = 100;

/// One line of a stream's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// RFC 3339, milliseconds, UTC.
    pub time: String,
    pub recorded_at: i64,
    pub global_position: i64,
    pub version: u64,
    pub event_type: String,
    pub event_version: String,
    pub actor: Option<String>,
    pub command: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub summary: String,
}

impl HistoryEntry {
    pub fn of(event: &RawEvent) -> Self {
        let metadata: Value = serde_json::from_str(&event.metadata).unwrap_or(Value::Null);
        let field = |name: &str| metadata.get(name).and_then(Value::as_str).map(str::to_owned);
        Self {
            time: rfc3339_millis(event.recorded_at),
            recorded_at: event.recorded_at,
            global_position: event.global_position,
            version: event.stream_version.max(0) as u64,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            actor: field("actor"),
            command: field("command"),
            correlation_id: field("correlation_id"),
            causation_id: field("causation_id"),
            summary: summarize(&event.payload),
        }
    }

    /// The human-readable line.
    pub fn line(&self) -> String {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        format!(
            "{}  v{:<5} {:<20} actor={} command={} correlation={}  {}",
            self.time,
            self.version,
            self.event_type,
            dash(&self.actor),
            dash(&self.command),
            dash(&self.correlation_id),
            self.summary
        )
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339_millis(millis: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// `key=value` pairs of the payload's fields (of the variant, for enum
/// payloads like `{"StageEntered":{…}}`), without the `at` time, shortened.
pub fn summarize(payload: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(payload) else {
        return "(not JSON)".to_owned();
    };
    let body = match &value {
        Value::Object(map) if map.len() == 1 && map.values().all(Value::is_object) => {
            map.values().next().expect("one entry")
        }
        other => other,
    };
    let text = match body {
        Value::Object(fields) => fields
            .iter()
            .filter(|(k, _)| k.as_str() != "at")
            .map(|(k, v)| format!("{k}={}", short(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => short(other),
    };
    if text.chars().count() > SUMMARY_CHARS {
        let cut: String = text.chars().take(SUMMARY_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn short(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 40 => format!("{}…", s.chars().take(39).collect::<String>()),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{} items]", items.len()),
        Value::Object(map) => format!("{{{} fields}}", map.len()),
        other => other.to_string(),
    }
}

/// Calls `each` with every event of `stream`, oldest first.
pub async fn for_each_history(
    store: &EventStore,
    stream: &StreamId,
    mut each: impl FnMut(HistoryEntry) -> std::io::Result<()>,
) -> Result<u64, super::ReplayError> {
    let head = store.head_position().await?;
    let mut batches = Batches::start(store, Filter::Stream(stream.to_string()), 0, head, BATCH);
    let mut count = 0;
    while let Some(batch) = batches.next().await {
        for event in batch?.to_events() {
            each(HistoryEntry::of(&event))?;
            count += 1;
        }
    }
    Ok(count)
}

/// One export line (without the newline).
pub fn export_line(event: &RawEvent) -> String {
    let mut line = String::with_capacity(event.payload.len() + event.metadata.len() + 300);
    line.push('{');
    let mut field = |name: &str, json: &str| {
        if line.len() > 1 {
            line.push(',');
        }
        line.push('"');
        line.push_str(name);
        line.push_str("\":");
        line.push_str(json);
    };
    let string = |s: &str| serde_json::to_string(s).expect("strings serialise");
    field("globalPosition", &event.global_position.to_string());
    field("streamId", &string(&event.stream_id));
    field("streamVersion", &event.stream_version.to_string());
    field("eventId", &string(&event.event_id.to_string()));
    field("eventType", &string(&event.event_type));
    field("eventVersion", &string(&event.event_version));
    field("payload", &verbatim(&event.payload));
    field("metadata", &verbatim(&event.metadata));
    field("recordedAt", &event.recorded_at.to_string());
    field("hash", &string(&hex::encode(&event.hash)));
    line.push('}');
    line
}

/// Stored JSON as is when it is valid single-line JSON, else as a string.
fn verbatim(stored: &str) -> String {
    let single_line = !stored.contains(['\n', '\r']);
    if single_line && serde_json::from_str::<serde::de::IgnoredAny>(stored).is_ok() {
        stored.to_owned()
    } else {
        serde_json::to_string(stored).expect("strings serialise")
    }
}

/// Calls `each` with the export line of every event matching `filter`.
pub async fn for_each_export(
    store: &EventStore,
    filter: Filter,
    mut each: impl FnMut(&RawEvent, String) -> std::io::Result<()>,
) -> Result<u64, super::ReplayError> {
    let head = store.head_position().await?;
    let mut batches = Batches::start(store, filter, 0, head, BATCH);
    let mut count = 0;
    while let Some(batch) = batches.next().await {
        for event in batch?.to_events() {
            let line = export_line(&event);
            each(&event, line)?;
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_show_the_variant_fields_without_the_time() {
        assert_eq!(summarize(r#"{"StageEntered":{"user_id":"alice","at":5}}"#), "user_id=alice");
        assert_eq!(summarize(r#"{"n":1}"#), "n=1");
        assert_eq!(summarize("nope"), "(not JSON)");
    }

    #[test]
    fn times_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_millis(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
    }
}
