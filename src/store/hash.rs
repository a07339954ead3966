//! The per-stream hash chain that makes tampering with the log evident.
//!
//! Each event's hash is SHA-256 over the previous event's hash (32 zero bytes
//! for a stream's first event) and every stored field of the event, each
//! length-prefixed so that no two different events encode the same bytes.
//! `replay verify` recomputes the chain; an edited payload, a deleted event
//! or a reordered event breaks it at that event.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The stored fields of one event that its hash covers.
pub struct Fields<'a> {
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_id: &'a Uuid,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at: i64,
}

/// The hash of an event chained to its predecessor's hash.
pub fn chain(previous: &[u8; 32], fields: Fields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    for part in [fields.stream_id, fields.event_type, fields.event_version, fields.payload, fields.metadata] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(fields.stream_version.to_le_bytes());
    hasher.update(fields.event_id.as_bytes());
    hasher.update(fields.recorded_at.to_le_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(id: &'a Uuid, payload: &'a str) -> Fields<'a> {
        Fields {
            stream_id: "room-a",
            stream_version: 1,
            event_id: id,
            event_type: "T",
            event_version: "1",
            payload,
            metadata: "{}",
            recorded_at: 5,
        }
    }

    #[test]
    fn a_changed_payload_changes_the_hash() {
        let id = Uuid::nil();
        assert_ne!(chain(&[0; 32], fields(&id, "{\"a\":1}")), chain(&[0; 32], fields(&id, "{\"a\":2}")));
    }

    #[test]
    fn the_hash_depends_on_the_previous_hash() {
        let id = Uuid::nil();
        assert_ne!(chain(&[0; 32], fields(&id, "{}")), chain(&[1; 32], fields(&id, "{}")));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let id = Uuid::nil();
        let mut a = fields(&id, "{}");
        a.event_type = "ab";
        a.event_version = "c";
        let mut b = fields(&id, "{}");
        b.event_type = "a";
        b.event_version = "bc";
        assert_ne!(chain(&[0; 32], a), chain(&[0; 32], b));
    }
}
