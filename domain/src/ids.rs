//! Validated identifiers shared by every aggregate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An event (room) id: `[A-Za-z0-9_-]{1,128}` (public contract).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event ids are 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'")]
pub struct InvalidEventId;

impl EventId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidEventId> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid { Ok(Self(raw.to_owned())) } else { Err(InvalidEventId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = InvalidEventId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EventId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_follow_the_contract() {
        assert!(EventId::parse("launch_party-2026").is_ok());
        assert!(EventId::parse(&"a".repeat(128)).is_ok());
        assert_eq!(EventId::parse(""), Err(InvalidEventId));
        assert_eq!(EventId::parse(&"a".repeat(129)), Err(InvalidEventId));
        assert_eq!(EventId::parse("a/b"), Err(InvalidEventId));
        assert_eq!(EventId::parse("ü"), Err(InvalidEventId));
    }
}
