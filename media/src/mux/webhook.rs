//! Mux webhook authentication: `mux-signature: t=<unix>,v1=<hex>` where the
//! hex is HMAC-SHA256(secret, "<t>.<raw body>"). Mux may send several `v1`
//! values (while a secret is being rolled); any one matching is enough.
//! Verify the raw request bytes: re-serialised JSON never matches.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Mux's SDKs reject signatures older than five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxWebhookError {
    #[error("mux-signature header is malformed")]
    MalformedHeader,
    #[error("mux-signature timestamp is outside the tolerance")]
    StaleTimestamp,
    #[error("mux-signature does not match the body")]
    BadSignature,
}

/// Checks a Mux webhook. `header` is the raw `mux-signature` value, `body`
/// the raw request body. A timestamp further than `tolerance` from `now`, in
/// either direction, is rejected (replay protection and clock skew).
pub fn verify_webhook(
    secret: &str,
    header: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), MuxWebhookError> {
    let mut timestamp: Option<u64> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => timestamp = Some(v.parse().map_err(|_| MuxWebhookError::MalformedHeader)?),
            "v1" => signatures.push(v),
            _ => {} // future schemes (v2…) are ignored, as Mux's SDKs do
        }
    }
    let timestamp = timestamp.ok_or(MuxWebhookError::MalformedHeader)?;
    if signatures.is_empty() {
        return Err(MuxWebhookError::MalformedHeader);
    }
    let now = crate::time::unix_secs(now);
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(MuxWebhookError::StaleTimestamp);
    }
    let mac = keyed(secret, timestamp, body);
    let matched = signatures.iter().any(|hex_sig| {
        // `verify_slice` compares in constant time.
        hex::decode(hex_sig).is_ok_and(|sig| mac.clone().verify_slice(&sig).is_ok())
    });
    if matched { Ok(()) } else { Err(MuxWebhookError::BadSignature) }
}

/// Produces a `mux-signature` header value, as Mux would, for tests and the
/// simulator.
pub fn sign_webhook(secret: &str, body: &[u8], at: SystemTime) -> String {
    let t = crate::time::unix_secs(at);
    let sig = keyed(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(sig))
}

fn keyed(secret: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The envelope common to every Mux webhook. `data` is the resource
/// (live stream or asset) as it was when the event fired; its `created_at` is
/// a number here, unlike in REST responses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MuxWebhookEvent {
    /// Unique per event; deliveries repeat even after a 2xx, so deduplicate on it.
    pub id: String,
    /// e.g. `video.live_stream.active`, `video.asset.ready`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub object: Option<MuxWebhookObject>,
    #[serde(default)]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MuxWebhookObject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let body = br#"{"type":"video.live_stream.active","id":"e1","data":{}}"#;
        let header = sign_webhook(SECRET, body, at(1_735_689_660));
        assert_eq!(verify_webhook(SECRET, &header, body, at(1_735_689_700), DEFAULT_TOLERANCE), Ok(()));
    }

    #[test]
    fn any_of_several_v1_values_may_match() {
        let body = b"{}";
        let good = sign_webhook(SECRET, body, at(100));
        let good_sig = good.split_once(",v1=").unwrap().1;
        let header = format!("t=100,v1={},v1={good_sig}", "00".repeat(32));
        assert_eq!(verify_webhook(SECRET, &header, body, at(100), DEFAULT_TOLERANCE), Ok(()));
    }

    #[test]
    fn tampering_staleness_and_garbage_are_rejected() {
        let body = br#"{"id":"e1"}"#;
        let header = sign_webhook(SECRET, body, at(1000));
        assert_eq!(
            verify_webhook(SECRET, &header, br#"{"id":"e2"}"#, at(1000), DEFAULT_TOLERANCE),
            Err(MuxWebhookError::BadSignature)
        );
        assert_eq!(
            verify_webhook("other", &header, body, at(1000), DEFAULT_TOLERANCE),
            Err(MuxWebhookError::BadSignature)
        );
        assert_eq!(
            verify_webhook(SECRET, &header, body, at(1301), DEFAULT_TOLERANCE),
            Err(MuxWebhookError::StaleTimestamp)
        );
        assert_eq!(
            verify_webhook(SECRET, "v1=abc", body, at(1000), DEFAULT_TOLERANCE),
            Err(MuxWebhookError::MalformedHeader)
        );
        assert_eq!(
            verify_webhook(SECRET, "t=1000", body, at(1000), DEFAULT_TOLERANCE),
            Err(MuxWebhookError::MalformedHeader)
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let body = r#"{"type":"video.live_stream.active","object":{"type":"live_stream","id":"Qr"},"id":"3a56","environment":{"name":"Production","id":"j0863n"},"data":{"id":"Qr","status":"active","created_at":1735689600},"created_at":"2025-01-01T00:01:00.000000Z","attempts":[]}"#;
        let event: MuxWebhookEvent = serde_json::from_str(body).unwrap();
        assert_eq!(event.kind, "video.live_stream.active");
        assert_eq!(event.object.unwrap().id, "Qr");
        let stream: crate::mux::LiveStream = serde_json::from_value(event.data).unwrap();
        assert_eq!(stream.created_at, Some(1_735_689_600));
    }
}
