//! The segment file: one stream's events, every stored field, as JSON Lines.
//!
//! Line 1 is a [`Header`] (format tag, stream, version range, event count,
//! the snapshot that moved with the segment); then one line per event in
//! version order. Payload and metadata are kept as the exact stored text,
//! because the hash chain covers those bytes and a re-encoding would break
//! it. A segment is immutable once written: its sha-256 ([`content_hash`])
//! is recorded beside it and checked on every read.
//!
//! Text, not a binary format: an auditor reads a segment with any text tool,
//! and the extra bytes are paid in cold storage, not in the hot tables.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::store::raw::RawEvent;

/// The format tag on the first line; a reader refuses any other.
pub const FORMAT: &str = "eventuall-segment/1";

/// A stream's snapshot as stored in `snapshots`, moved into its segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentSnapshot {
    pub schema_tag: String,
    pub version: i64,
    #[serde(with = "base64_bytes")]
    pub state: Vec<u8>,
    pub taken_at: i64,
}

/// A decoded segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub stream_id: String,
    /// In version order, contiguous.
    pub events: Vec<RawEvent>,
    pub snapshot: Option<SegmentSnapshot>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    format: String,
    stream_id: String,
    first_version: i64,
    last_version: i64,
    event_count: u64,
    snapshot: Option<SegmentSnapshot>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line<'a> {
    position: i64,
    version: i64,
    event_id: Uuid,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event_version: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    metadata: std::borrow::Cow<'a, str>,
    recorded_at: i64,
    hash: String,
}

/// Why bytes are not a readable segment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("not a segment of format {FORMAT}")]
    UnknownFormat,
    #[error("{0}")]
    Inconsistent(String),
}

/// sha-256 of a segment object's bytes.
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Segment {
    pub fn first_version(&self) -> i64 {
        self.events.first().map_or(0, |e| e.stream_version)
    }

    pub fn last_version(&self) -> i64 {
        self.events.last().map_or(0, |e| e.stream_version)
    }

    /// The segment as file bytes. Deterministic: the same events and
    /// snapshot always give the same bytes (a re-run after a crash writes
    /// the very object it wrote before).
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            format: FORMAT.to_owned(),
            stream_id: self.stream_id.clone(),
            first_version: self.first_version(),
            last_version: self.last_version(),
            event_count: self.events.len() as u64,
            snapshot: self.snapshot.clone(),
        };
        let text_bytes: usize = self.events.iter().map(|e| e.payload.len() + e.metadata.len() + 200).sum();
        let mut out = Vec::with_capacity(text_bytes + 256);
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_writer(&mut out, &header).expect("a header serialises");
        out.push(b'\n');
        for event in &self.events {
            let line = Line {
                position: event.global_position,
                version: event.stream_version,
                event_id: event.event_id,
                event_type: event.event_type.as_str().into(),
                event_version: event.event_version.as_str().into(),
                payload: event.payload.as_str().into(),
                metadata: event.metadata.as_str().into(),
                recorded_at: event.recorded_at,
                hash: hex::encode(&event.hash),
            };
            serde_json::to_writer(&mut out, &line).expect("an event line serialises");
            out.push(b'\n');
        }
        out
    }

    /// Parses and checks a segment: the format tag, the count, contiguous
    /// versions of the header's stream, and positions that only grow.
    pub fn decode(bytes: &[u8]) -> Result<Self, SegmentError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| SegmentError::Malformed { line: 0, reason: format!("not UTF-8: {e}") })?;
        let mut lines = text.split_terminator('\n');
        let header: Header = serde_json::from_str(lines.next().unwrap_or_default())
            .map_err(|e| SegmentError::Malformed { line: 1, reason: e.to_string() })?;
        if header.format != FORMAT {
            return Err(SegmentError::UnknownFormat);
        }
        let mut events = Vec::with_capacity(header.event_count.min(1 << 20) as usize);
        for (index, raw) in lines.enumerate() {
            let number = index + 2;
            let line: Line<'_> = serde_json::from_str(raw)
                .map_err(|e| SegmentError::Malformed { line: number, reason: e.to_string() })?;
            let hash = hex::decode(&line.hash)
                .map_err(|e| SegmentError::Malformed { line: number, reason: format!("hash: {e}") })?;
            let expected_version = header.first_version + index as i64;
            if line.version != expected_version {
                return Err(SegmentError::Inconsistent(format!(
                    "line {number} has version {}, expected {expected_version}",
                    line.version
                )));
            }
            if let Some(before) = events.last().map(|e: &RawEvent| e.global_position)
                && line.position <= before
            {
                return Err(SegmentError::Inconsistent(format!(
                    "line {number}: position {} after {before}",
                    line.position
                )));
            }
            events.push(RawEvent {
                global_position: line.position,
                stream_id: header.stream_id.clone(),
                stream_version: line.version,
                event_id: line.event_id,
                event_type: line.event_type.into_owned(),
                event_version: line.event_version.into_owned(),
                payload: line.payload.into_owned(),
                metadata: line.metadata.into_owned(),
                recorded_at: line.recorded_at,
                hash,
            });
        }
        if events.len() as u64 != header.event_count {
            return Err(SegmentError::Inconsistent(format!(
                "the header says {} events, the segment holds {}",
                header.event_count,
                events.len()
            )));
        }
        if events.last().map(|e| e.stream_version) != Some(header.last_version) {
            return Err(SegmentError::Inconsistent("the last event is not the header's last version".into()));
        }
        Ok(Self { stream_id: header.stream_id, events, snapshot: header.snapshot })
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: i64, position: i64) -> RawEvent {
        RawEvent {
            global_position: position,
            stream_id: "room-a".into(),
            stream_version: version,
            event_id: Uuid::new_v4(),
            event_type: "Joined".into(),
            event_version: "1".into(),
            // Odd spacing and an escaped quote: kept byte for byte.
            payload: r#"{"user" : "u\"1",  "n":1.50}"#.into(),
            metadata: r#"{"actor":"u1"}"#.into(),
            recorded_at: 1_700_000_000_000 + version,
            hash: vec![version as u8; 32],
        }
    }

    fn segment() -> Segment {
        Segment {
            stream_id: "room-a".into(),
            events: vec![event(1, 3), event(2, 10), event(3, 11)],
            snapshot: Some(SegmentSnapshot {
                schema_tag: "room/1".into(),
                version: 4,
                state: vec![0, 1, 2, 255],
                taken_at: 5,
            }),
        }
    }

    #[test]
    fn a_segment_round_trips_every_stored_byte() {
        let segment = segment();
        let bytes = segment.encode();
        assert_eq!(Segment::decode(&bytes).unwrap(), segment);
        assert_eq!(segment.encode(), bytes, "encoding is deterministic");
    }

    #[test]
    fn a_gap_in_versions_or_a_wrong_count_is_refused() {
        let mut gap = segment();
        gap.events.remove(1);
        let bytes = gap.encode();
        assert!(matches!(Segment::decode(&bytes), Err(SegmentError::Inconsistent(_))));

        let bytes = segment().encode();
        let truncated = &bytes[..bytes.len() - 1 - bytes.iter().rev().skip(1).position(|b| *b == b'\n').unwrap()];
        assert!(matches!(Segment::decode(truncated), Err(SegmentError::Inconsistent(_))));
    }

    #[test]
    fn other_formats_and_garbage_are_refused() {
        let bytes = String::from_utf8(segment().encode()).unwrap().replace(FORMAT, "eventuall-segment/9");
        assert_eq!(Segment::decode(bytes.as_bytes()), Err(SegmentError::UnknownFormat));
        assert!(matches!(Segment::decode(b"{\"format\":"), Err(SegmentError::Malformed { line: 1, .. })));
        assert!(matches!(Segment::decode(&[0xff, 0xfe]), Err(SegmentError::Malformed { line: 0, .. })));
    }

    #[test]
    fn the_content_hash_changes_with_one_byte() {
        let bytes = segment().encode();
        let mut altered = bytes.clone();
        let at = altered.len() / 2;
        altered[at] ^= 1;
        assert_ne!(content_hash(&bytes), content_hash(&altered));
    }
}
