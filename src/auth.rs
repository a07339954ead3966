//! Client authentication: HS256 JWTs signed with the server's secret.
//!
//! Claims (public contract): `sub` = user id, `exp`, optional `name`,
//! optional `role` (`participant` | `moderator`, default participant),
//! optional `events` (event ids the token is scoped to; absent = all).
//! HTTP carries the token as `Authorization: Bearer …`, WebSockets as
//! `?token=…`, checked before the upgrade.

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

/// Why a request is refused; maps to 401 / 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a valid token is required")]
    Unauthenticated,
    #[error("this token is not valid for event {0}")]
    WrongEvent(String),
    #[error("this action needs the moderator role")]
    NotModerator,
}

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub claims: Claims,
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
        // `exp` means what it says: no grace period.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|_| AuthError::Unauthenticated)?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Caller { claims: data.claims })
    }

    /// Verifies an `Authorization: Bearer …` header value.
    pub fn verify_bearer(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .ok_or(AuthError::Unauthenticated)?;
        self.verify(token.trim())
    }

    pub fn issue(&self, claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signing cannot fail")
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
