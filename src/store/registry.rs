//! Which event type each stream category holds, and how old payloads are
//! brought up to date (upcasters).
//!
//! Every read path that decodes events from the log (live actors loading
//! an aggregate through [`crate::store::RecordedEvent::decode`], `replay
//! verify`, `replay state`, the projections) goes through [`Registry`], so
//! an event stored under an older `event_version` is upcast the same way
//! everywhere.
//! An aggregate added later plugs in with one line in [`Registry::standard`]:
//! `.aggregate::<Recording>("1")`, where `"1"` is the `event_version` its
//! events are written with today. When an event's shape changes, bump that
//! version and register an upcaster from the old one:
//! `.upcaster("room", "1", "2", room_v1_to_v2)`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use cqrs_es::Aggregate;
use eventuall_domain::queue::Queue;
use eventuall_domain::room::EventRoom;
use serde::de::DeserializeOwned;

use crate::store::RecordedEvent;

/// Rewrites one stored payload of `event_type` from one version to the next.
pub type Upcaster = fn(event_type: &str, payload: serde_json::Value) -> Result<serde_json::Value, String>;

/// Why a payload could not be read as its current event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Shape(String),
    #[error("no upcaster from {category} event version {from} (current {current})")]
    NoUpcaster { category: String, from: String, current: String },
    #[error("upcaster {from}→{to} failed: {reason}")]
    Upcast { from: String, to: String, reason: String },
}

struct Entry {
    current_version: &'static str,
    /// Deserialises a payload into the category's event type, discarding it.
    check: fn(&str) -> Result<(), serde_json::Error>,
    /// Upcasters by the version they read.
    upcasters: HashMap<&'static str, (&'static str, Upcaster)>,
}

/// Stream category → event type (+ upcasters).
pub struct Registry {
    entries: HashMap<&'static str, Entry>,
}

static STANDARD: LazyLock<Registry> = LazyLock::new(Registry::build_standard);

impl Registry {
    pub fn empty() -> Self {
        Self { entries: HashMap::new() }
    }

    /// Every aggregate of the service. Add new aggregates here.
    pub fn standard() -> &'static Registry {
        &STANDARD
    }

    fn build_standard() -> Self {
        Self::empty()
            .aggregate::<EventRoom>("1")
            .aggregate::<Queue>("1")
            .aggregate::<eventuall_domain::recording::Coordinator>("1")
            .aggregate::<eventuall_domain::recording::RecordingSession>("1")
            .aggregate::<eventuall_domain::interview::UserInterviews>("1")
            .aggregate::<eventuall_domain::interview::Interview>("1")
    }

    /// Registers aggregate `A`: streams of category `A::TYPE` hold
    /// `A::Event`s, currently written as `current_version`.
    pub fn aggregate<A: Aggregate>(self, current_version: &'static str) -> Self
    where
        A::Event: DeserializeOwned,
    {
        self.category::<A::Event>(A::TYPE, current_version)
    }

    /// Registers event type `E` for streams of `category`.
    pub fn category<E: DeserializeOwned>(mut self, category: &'static str, current_version: &'static str) -> Self {
        fn check<E: DeserializeOwned>(payload: &str) -> Result<(), serde_json::Error> {
            serde_json::from_str::<E>(payload).map(drop)
        }
        self.entries.insert(category, Entry { current_version, check: check::<E>, upcasters: HashMap::new() });
        self
    }

    /// Registers an upcaster of `category` payloads from version `from` to `to`.
    ///
    /// # Panics
    /// If `category` is not registered (a programming error caught at start).
    pub fn upcaster(mut self, category: &str, from: &'static str, to: &'static str, upcast: Upcaster) -> Self {
        let entry = self.entries.get_mut(category).expect("register the category before its upcasters");
        entry.upcasters.insert(from, (to, upcast));
        self
    }

    pub fn knows(&self, category: &str) -> bool {
        self.entries.contains_key(category)
    }

    /// The payload as the current event type expects it: unchanged when
    /// stored at the current version (or of an unknown category), else run
    /// through the chain of upcasters.
    pub fn upcast<'a>(
        &self,
        category: &str,
        event_type: &str,
        event_version: &str,
        payload: &'a str,
    ) -> Result<Cow<'a, str>, DecodeError> {
        let Some(entry) = self.entries.get(category) else {
            return Ok(Cow::Borrowed(payload));
        };
        if event_version == entry.current_version {
            return Ok(Cow::Borrowed(payload));
        }
        let mut value: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        let mut version = event_version;
        // Bounded by the number of upcasters, so a cycle cannot loop forever.
        for _ in 0..=entry.upcasters.len() {
            if version == entry.current_version {
                return Ok(Cow::Owned(value.to_string()));
            }
            let Some((to, upcast)) = entry.upcasters.get(version) else { break };
            value = upcast(event_type, value).map_err(|reason| DecodeError::Upcast {
                from: version.to_owned(),
                to: (*to).to_owned(),
                reason,
            })?;
            version = to;
        }
        Err(DecodeError::NoUpcaster {
            category: category.to_owned(),
            from: event_version.to_owned(),
            current: entry.current_version.to_owned(),
        })
    }

    /// Checks that a payload decodes into its category's current event type
    /// (after upcasting); payloads of unknown categories must be JSON.
    pub fn check(
        &self,
        category: &str,
        event_type: &str,
        event_version: &str,
        payload: &str,
    ) -> Result<(), DecodeError> {
        let Some(entry) = self.entries.get(category) else {
            return serde_json::from_str::<serde::de::IgnoredAny>(payload)
                .map(drop)
                .map_err(|e| DecodeError::NotJson(e.to_string()));
        };
        let payload = self.upcast(category, event_type, event_version, payload)?;
        (entry.check)(&payload).map_err(|e| match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                DecodeError::NotJson(e.to_string())
            }
            _ => DecodeError::Shape(e.to_string()),
        })
    }

    /// Decodes a recorded event into `E`, upcasting it first.
    pub fn decode<E: DeserializeOwned>(&self, event: &RecordedEvent) -> Result<E, DecodeError> {
        let payload =
            self.upcast(event.stream_id.category(), &event.event_type, &event.event_version, &event.payload)?;
        serde_json::from_str(&payload).map_err(|e| DecodeError::Shape(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: &str = r#"{"HeartbeatReceived":{"connection_id":"c","user_id":"u","at":1}}"#;

    #[test]
    fn current_payloads_of_known_categories_decode() {
        let registry = Registry::standard();
        assert_eq!(registry.check("room", "HeartbeatReceived", "1", HEARTBEAT), Ok(()));
        assert!(matches!(registry.check("room", "X", "1", r#"{"Nope":{}}"#), Err(DecodeError::Shape(_))));
        assert!(matches!(registry.check("room", "X", "1", "{"), Err(DecodeError::NotJson(_))));
    }

    #[test]
    fn unknown_categories_only_need_json() {
        assert_eq!(Registry::standard().check("load", "Loaded", "7", r#"{"n":1}"#), Ok(()));
        assert!(Registry::standard().check("load", "Loaded", "7", "nope").is_err());
    }

    #[test]
    fn old_versions_go_through_the_upcaster_chain() {
        fn v0_to_1(_: &str, mut payload: serde_json::Value) -> Result<serde_json::Value, String> {
            // v0 called the connection `conn`.
            let body = payload["HeartbeatReceived"].as_object_mut().ok_or("not a heartbeat")?;
            let conn = body.remove("conn").ok_or("no conn")?;
            body.insert("connection_id".into(), conn);
            Ok(payload)
        }
        let registry = Registry::empty().aggregate::<EventRoom>("1").upcaster("room", "0", "1", v0_to_1);
        let old = r#"{"HeartbeatReceived":{"conn":"c","user_id":"u","at":1}}"#;
        assert_eq!(registry.check("room", "HeartbeatReceived", "0", old), Ok(()));
        assert!(matches!(registry.check("room", "HeartbeatReceived", "-1", old), Err(DecodeError::NoUpcaster { .. })));
    }
}
