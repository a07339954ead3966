//! Client authentication: HS256 JWTs signed with the server's secret.
//!
//! Claims (public contract): `sub` = user id, `exp`, optional `name`,
//! optional `role` (`participant` | `moderator`, default participant),
//! optional `events` (event ids the token is scoped to; absent = all).
//! HTTP carries the token as `Authorization: Bearer …` (the scheme name is
//! case-insensitive, RFC 7235 §2.1), WebSockets as `?token=…`, checked
//! before the upgrade. `exp` is checked with no leeway and `nbf`, when
//! present, too (RFC 7519 §4.1.5): a token is refused before its time.
//!
//! Short tokens. `POST /auth/token` mints a 5-minute token for a caller
//! holding a *longer-lived* one (the contract). A short token must not be
//! able to renew itself, or a 5-minute token would live forever. How the
//! server tells them apart: every token it mints carries `iat` and the
//! private claim `short: true` (covered by the signature, so a client cannot
//! drop it); a token is also short when it carries `iat` and lives no longer
//! than [`SHORT_TOKEN_SECS`] (`exp - iat`), so short tokens minted elsewhere
//! with the same secret (the webapp) cannot renew themselves either. The
//! lifetime rule alone would not do: `iat` is optional in RFC 7519, and the
//! webapp's long tokens have none.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// Lifetime of the short-lived WebSocket tokens of `POST /auth/token`.
pub const SHORT_TOKEN_SECS: i64 = 5 * 60;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Participant,
    Moderator,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// The registered and private claims the server reads besides [`Claims`]:
/// what tells a short token from a longer-lived one.
#[derive(Serialize, Deserialize)]
struct WireClaims {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// Set on the tokens `POST /auth/token` mints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    short: bool,
}

/// Why a request is refused; maps to 401 / 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a valid token is required")]
    Unauthenticated,
    #[error("this token is not valid for event {0}")]
    WrongEvent(String),
    #[error("this action needs the moderator role")]
    NotModerator,
    #[error("this needs a token that is not scoped to events")]
    Scoped,
    #[error("a short-lived token cannot be renewed: present a longer-lived token")]
    ShortLived,
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub claims: Claims,
    /// The token's `iat`, if it has one.
    pub issued_at: Option<i64>,
    /// A short token (see the module docs): it may not mint another.
    pub short_lived: bool,
}

impl Caller {
    pub fn user_id(&self) -> &str {
        &self.claims.sub
    }

    /// The display name: the `name` claim, else the user id.
    pub fn display_name(&self) -> &str {
        self.claims.name.as_deref().unwrap_or(&self.claims.sub)
    }

    pub fn is_moderator(&self) -> bool {
        self.claims.role == Role::Moderator
    }

    /// Checks the `events` scope.
    pub fn may_access(&self, event_id: &str) -> Result<(), AuthError> {
        match &self.claims.events {
            Some(events) if !events.iter().any(|e| e == event_id) => Err(AuthError::WrongEvent(event_id.to_owned())),
            _ => Ok(()),
        }
    }

    pub fn may_moderate(&self, event_id: &str) -> Result<(), AuthError> {
        self.may_access(event_id)?;
        if self.is_moderator() { Ok(()) } else { Err(AuthError::NotModerator) }
    }

    /// Whether the token's `events` scope includes `event_id` (no scope:
    /// every event).
    pub fn covers(&self, event_id: &str) -> bool {
        self.may_access(event_id).is_ok()
    }

    /// A moderator of every event: operator views that span events (the
    /// projections' status) need a token with no `events` scope.
    pub fn may_administer(&self) -> Result<(), AuthError> {
        if !self.is_moderator() {
            return Err(AuthError::NotModerator);
        }
        if self.claims.events.is_some() {
            return Err(AuthError::Scoped);
        }
        Ok(())
    }

    /// Whether this token may mint a short one (`POST /auth/token`).
    pub fn may_renew(&self) -> Result<(), AuthError> {
        if self.short_lived { Err(AuthError::ShortLived) } else { Ok(()) }
    }
}

#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `exp` and `nbf` mean what they say: no grace period.
        validation.leeway = 0;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data =
            decode::<WireClaims>(token, &self.decoding, &self.validation).map_err(|_| AuthError::Unauthenticated)?;
        let WireClaims { claims, iat, short } = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Unauthenticated);
        }
        let short_lived = short || iat.is_some_and(|iat| claims.exp - iat <= SHORT_TOKEN_SECS);
        Ok(Caller { claims, issued_at: iat, short_lived })
    }

    /// Verifies an `Authorization: Bearer …` header value. The scheme name
    /// is case-insensitive (RFC 7235 §2.1): `bearer`, `BEARER` all do.
    pub fn verify_bearer(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let (scheme, token) =
            header.map(str::trim_start).and_then(|h| h.split_once(' ')).ok_or(AuthError::Unauthenticated)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Unauthenticated);
        }
        self.verify(token.trim())
    }

    pub fn issue(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// A short token (`POST /auth/token`) with `claims`' `sub`, `name`,
    /// `role` and `events`, issued at `now` (seconds) and valid for
    /// [`SHORT_TOKEN_SECS`]; marked short so that it cannot mint another.
    /// Answers the token and its `exp`.
    pub fn issue_short(&self, claims: &Claims, now: i64) -> (String, i64) {
        let exp = now + SHORT_TOKEN_SECS;
        let wire = WireClaims { claims: Claims { exp, ..claims.clone() }, iat: Some(now), short: true };
        let token = encode(&Header::new(Algorithm::HS256), &wire, &self.encoding).expect("HS256 signing cannot fail");
        (token, exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims { sub: "alice".into(), exp, name: None, role: Role::Participant, events: Some(vec!["e1".into()]) }
    }

    fn now() -> i64 {
        crate::store::now_millis() / 1000
    }

    #[test]
    fn a_token_signed_with_the_secret_verifies() {
        let auth = Authenticator::new("s");
        let caller = auth.verify(&auth.issue(&claims(now() + 60))).unwrap();
        assert_eq!(caller.user_id(), "alice");
        assert_eq!(caller.display_name(), "alice");
        assert!(caller.may_access("e1").is_ok());
        assert_eq!(caller.may_access("e2"), Err(AuthError::WrongEvent("e2".into())));
        assert_eq!(caller.may_moderate("e1"), Err(AuthError::NotModerator));
    }

    #[test]
    fn expired_badly_signed_and_malformed_tokens_are_refused() {
        let auth = Authenticator::new("s");
        assert_eq!(auth.verify(&auth.issue(&claims(now() - 5))), Err(AuthError::Unauthenticated));
        assert_eq!(
            auth.verify(&Authenticator::new("other").issue(&claims(now() + 60))),
            Err(AuthError::Unauthenticated)
        );
        assert_eq!(auth.verify("not.a.jwt"), Err(AuthError::Unauthenticated));
        assert_eq!(auth.verify_bearer(Some("Basic abc")), Err(AuthError::Unauthenticated));
        assert_eq!(auth.verify_bearer(None), Err(AuthError::Unauthenticated));
    }

    fn signed(claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"s")).unwrap()
    }

    #[test]
    fn a_token_before_its_nbf_is_refused_and_after_it_accepted() {
        let auth = Authenticator::new("s");
        let early = signed(serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 120}));
        assert_eq!(auth.verify(&early), Err(AuthError::Unauthenticated));
        let due = signed(serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() - 1}));
        assert!(auth.verify(&due).is_ok());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let auth = Authenticator::new("s");
        let token = auth.issue(&claims(now() + 60));
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert!(auth.verify_bearer(Some(&format!("{scheme} {token}"))).is_ok(), "{scheme}");
        }
        assert!(auth.verify_bearer(Some(&format!("Bearer   {token}"))).is_ok(), "extra spaces");
        assert_eq!(auth.verify_bearer(Some(&format!("Bearertoken{token}"))), Err(AuthError::Unauthenticated));
        assert_eq!(auth.verify_bearer(Some(&format!("Token {token}"))), Err(AuthError::Unauthenticated));
        assert_eq!(auth.verify_bearer(Some("Bearer")), Err(AuthError::Unauthenticated));
    }

    #[test]
    fn short_tokens_are_marked_and_cannot_renew_but_long_ones_can() {
        let auth = Authenticator::new("s");
        let long = auth.verify(&auth.issue(&claims(now() + 3600))).unwrap();
        assert!(!long.short_lived);
        assert!(long.may_renew().is_ok());
        let (short, exp) = auth.issue_short(&long.claims, now());
        assert_eq!(exp, now() + SHORT_TOKEN_SECS);
        let short = auth.verify(&short).unwrap();
        assert!(short.short_lived);
        assert_eq!(short.may_renew(), Err(AuthError::ShortLived));
        assert_eq!((short.claims.sub.as_str(), short.claims.events.clone()), ("alice", Some(vec!["e1".to_owned()])));
        // Short by its lifetime, without the marker: minted elsewhere.
        let brief = signed(serde_json::json!({"sub": "a", "iat": now(), "exp": now() + 300}));
        assert_eq!(auth.verify(&brief).unwrap().may_renew(), Err(AuthError::ShortLived));
        let day = signed(serde_json::json!({"sub": "a", "iat": now(), "exp": now() + 86_400}));
        assert!(auth.verify(&day).unwrap().may_renew().is_ok());
    }

    #[test]
    fn operator_views_need_an_unscoped_moderator() {
        let auth = Authenticator::new("s");
        let mut c = claims(now() + 60);
        c.role = Role::Moderator;
        assert_eq!(auth.verify(&auth.issue(&c)).unwrap().may_administer(), Err(AuthError::Scoped));
        c.events = None;
        assert!(auth.verify(&auth.issue(&c)).unwrap().may_administer().is_ok());
        c.role = Role::Participant;
        assert_eq!(auth.verify(&auth.issue(&c)).unwrap().may_administer(), Err(AuthError::NotModerator));
    }

    #[test]
    fn an_unknown_role_is_refused() {
        let auth = Authenticator::new("s");
        let token = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": now() + 60, "role": "admin"}),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(auth.verify(&token), Err(AuthError::Unauthenticated));
    }
}
