//! [`WebhookVerifier`]: authenticates LiveKit webhooks signed with any of
//! several API keys, so keys can be rotated without dropping events.
//!
//! LiveKit signs each webhook with a JWT whose `iss` is the API key and whose
//! `sha256` claim is the base64 SHA-256 of the body. The `livekit-api`
//! receiver checks one key only, so we read `iss` unverified to pick the key
//! (as LiveKit's Go `KeyProvider` does), then let that key's
//! `WebhookReceiver` do the real verification. Feed it the raw body bytes: a
//! body re-serialised by a JSON parser no longer matches the hash
//! (livekit/protocol#1145).

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use livekit_api::access_token::{AccessTokenError, Claims, TokenVerifier};
use livekit_api::webhooks::{WebhookError, WebhookReceiver};
use livekit_protocol as proto;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookVerifyError {
    /// The token names an API key we do not hold (rotated out, or foreign).
    #[error("webhook signed with unknown api key {0:?}")]
    UnknownKey(String),
    /// Wrong signature, or the body does not match the signed hash.
    #[error("webhook signature or body hash mismatch")]
    BadSignature,
    /// `exp` passed (beyond the 60 s leeway) or `nbf` not reached yet.
    #[error("webhook token expired or not yet valid")]
    Expired,
    #[error("webhook malformed: {0}")]
    Malformed(String),
}

#[derive(Clone, Debug, Default)]
pub struct WebhookVerifier {
    receivers: HashMap<String, WebhookReceiver>,
}

impl WebhookVerifier {
    /// One `(api_key, api_secret)` pair per key that may sign webhooks.
    pub fn new<K, S>(keys: impl IntoIterator<Item = (K, S)>) -> Self
    where
        K: Into<String>,
        S: AsRef<str>,
    {
        let receivers = keys
            .into_iter()
            .map(|(key, secret)| {
                let key = key.into();
                let receiver = WebhookReceiver::new(TokenVerifier::with_api_key(&key, secret.as_ref()));
                (key, receiver)
            })
            .collect();
        Self { receivers }
    }

    /// Verifies and parses one webhook. `authorization` is the raw header
    /// value; LiveKit sends the bare JWT, but a `Bearer ` prefix added by a
    /// proxy is tolerated. Leeway on `exp`/`nbf` is the crate's 60 s.
    pub fn verify(&self, body: &[u8], authorization: &str) -> Result<proto::WebhookEvent, WebhookVerifyError> {
        let token = authorization.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        if token.is_empty() {
            return Err(WebhookVerifyError::Malformed("missing authorization".into()));
        }
        let body = std::str::from_utf8(body).map_err(|_| WebhookVerifyError::Malformed("body is not UTF-8".into()))?;
        let claims = Claims::from_unverified(token).map_err(|e| malformed(&e))?;
        let receiver =
            self.receivers.get(&claims.iss).ok_or_else(|| WebhookVerifyError::UnknownKey(claims.iss.clone()))?;
        receiver.receive(body, token).map_err(|e| match e {
            WebhookError::InvalidSignature => WebhookVerifyError::BadSignature,
            WebhookError::InvalidBase64(e) => WebhookVerifyError::Malformed(e.to_string()),
            WebhookError::InvalidData(e) => WebhookVerifyError::Malformed(e.to_string()),
            WebhookError::InvalidAuth(AccessTokenError::Encoding(jwt)) => match jwt.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => WebhookVerifyError::Expired,
                ErrorKind::InvalidSignature => WebhookVerifyError::BadSignature,
                ErrorKind::InvalidIssuer => WebhookVerifyError::UnknownKey(claims.iss.clone()),
                _ => WebhookVerifyError::Malformed(jwt.to_string()),
            },
            WebhookError::InvalidAuth(e) => WebhookVerifyError::Malformed(e.to_string()),
        })
    }
}

fn malformed(e: &AccessTokenError) -> WebhookVerifyError {
    WebhookVerifyError::Malformed(e.to_string())
}
