//! Extractors that fail with the API's JSON errors instead of axum's text.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use eventuall_domain::EventId;
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::auth::Caller;

/// The caller, from `Authorization: Bearer <jwt>`; 401 otherwise.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        Ok(Self(state.auth.verify_bearer(header)?))
    }
}

/// A caller who may read the event named by the route's `{event_id}`:
/// 401 without a valid bearer token, 400 for a malformed id, 403 for a
/// token scoped to other events (in that order, as the contract says).
pub struct EventReader {
    pub caller: Caller,
    pub event_id: EventId,
}

/// [`EventReader`] who is also a moderator (403 otherwise).
pub struct EventModerator {
    pub caller: Caller,
    pub event_id: EventId,
}

/// The caller and the route's event id, checked in the contract's order.
async fn caller_and_event(parts: &mut Parts, state: &AppState) -> Result<(Caller, EventId), ApiError> {
    let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
    let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    Ok((caller, event_id(&raw)?))
}

impl FromRequestParts<AppState> for EventReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (caller, event_id) = caller_and_event(parts, state).await?;
        caller.may_access(event_id.as_str())?;
        Ok(Self { caller, event_id })
    }
}

impl FromRequestParts<AppState> for EventModerator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (caller, event_id) = caller_and_event(parts, state).await?;
        caller.may_moderate(event_id.as_str())?;
        Ok(Self { caller, event_id })
    }
}

/// A JSON body; malformed → 400 `invalid_json`, wrong shape → 400
/// `invalid_request`, too large → 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::InvalidJson(e.body_text())),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::InvalidRequest(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::InvalidRequest("expected Content-Type: application/json".into()))
            }
            Err(JsonRejection::BytesRejection(e)) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge)
            }
            Err(other) => Err(ApiError::InvalidRequest(other.body_text())),
        }
    }
}

/// Longest `userId` a request body may name, in characters: room and
/// queue entries keep it verbatim (the document's `maxLength` says the same;
/// `openapi::tests` keep the two equal).
pub const MAX_USER_ID_CHARS: usize = 256;

/// Checks a body's `userId`: 1 to [`MAX_USER_ID_CHARS`] characters.
pub fn body_user_id(user_id: &str) -> Result<(), ApiError> {
    let chars = user_id.chars().count();
    if chars == 0 || chars > MAX_USER_ID_CHARS {
        return Err(ApiError::InvalidRequest(format!("userId must be 1 to {MAX_USER_ID_CHARS} characters")));
    }
    Ok(())
}

/// Validates an event id from the path.
pub fn event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}
