//! Signing LiveKit webhooks exactly as LiveKit's Go server does
//! (`AccessToken(key, secret).SetValidFor(5m).SetSha256(b64)`): a raw HS256
//! JWT `{"iss","iat","nbf","exp","sha256"}` over the protojson body, plus
//! the signing-side faults.
//!
//! Signed with `jsonwebtoken` directly rather than the `livekit-api`
//! `AccessToken` builder because the builder has no `iat` claim and cannot
//! back-date a token, which the expired-token fault needs.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::faults::WebhookFault;

/// LiveKit signs webhooks for five minutes.
const VALID_FOR: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct WebhookClaims<'a> {
    iss: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    sha256: String,
}

/// A webhook ready to send: the body bytes to put on the wire and the
/// `Authorization` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedWebhook {
    pub body: String,
    pub authorization: String,
}

/// Signs `body` with `(api_key, api_secret)`, or deliberately wrongly when
/// a fault is given (`Duplicate` and `Drop` are delivery faults and sign
/// normally).
pub fn sign_webhook(api_key: &str, api_secret: &str, body: String, fault: Option<WebhookFault>) -> SignedWebhook {
    let now = crate::time::now_secs();
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
    let (mut iss, mut secret, mut iat) = (api_key, api_secret.to_owned(), now);
    let mut sent_body = body;
    match fault {
        Some(WebhookFault::BadSignature) => secret.push_str("-but-wrong"),
        Some(WebhookFault::UnknownKey) => {
            iss = "APIrotatedAway";
            secret = "a-secret-nobody-knows".into();
        }
        Some(WebhookFault::BodyHashMismatch) => {
            // What a body-parsing proxy forwards: same JSON, other bytes.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&sent_body) {
                sent_body = serde_json::to_string_pretty(&v).unwrap_or(sent_body);
            }
        }
        Some(WebhookFault::Expired) => iat = now.saturating_sub(2 * VALID_FOR.as_secs()),
        Some(WebhookFault::Duplicate | WebhookFault::Drop) | None => {}
    }
    let claims = WebhookClaims { iss, iat, nbf: iat, exp: iat + VALID_FOR.as_secs(), sha256: hash };
    let authorization =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap_or_else(|e| {
                // HS256 over a serialisable struct cannot fail; an empty token is
                // rejected by every receiver, which is the safe outcome anyway.
                tracing::error!(error = %e, "could not sign a simulated webhook");
                String::new()
            });
    SignedWebhook { body: sent_body, authorization }
}
