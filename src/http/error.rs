//! The one error type of the HTTP API: a stable `code` per case.
//!
//! Bodies are `{"error":{"code","message"}}`. Internal errors are logged here,
//! once, with their detail; the client sees only `internal` and a generic
//! message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a request that does not parse or validate.
    #[error("{0}")]
    InvalidRequest(String),
    /// 400: a body that is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// 401
    #[error("a valid token is required")]
    Unauthorized,
    /// 403
    #[error("{0}")]
    Forbidden(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 413
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 429
    #[error("too many requests")]
    RateLimited,
    /// 503: a dependency is down or the service is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: details are logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                "internal error".to_owned()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "unavailable");
                "service unavailable, try again".to_owned()
            }
            other => other.to_string(),
        };
        (self.status(), Json(json!({"error": {"code": self.code(), "message": message}}))).into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated => ApiError::Unauthorized,
            other => ApiError::Forbidden(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } | StoreError::PartialDuplicate { .. } => ApiError::Conflict(error.to_string()),
            StoreError::Closed => ApiError::Unavailable("the store is shutting down".into()),
            other => ApiError::Internal(other.into()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
