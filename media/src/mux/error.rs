//! Everything a Mux call can fail with, mapped from Mux's
//! `{"error":{"type","messages"}}` bodies and from transport failures.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MuxError {
    #[error("mux: not found")]
    NotFound,
    #[error("mux: invalid parameters: {0}")]
    InvalidParameters(String),
    #[error("mux: unauthorized (check the token id and secret)")]
    Unauthorized,
    #[error("mux: rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("mux: server error {status}")]
    Server { status: u16 },
    /// Any other 4xx, with Mux's error `type` and messages.
    #[error("mux: {status} {kind}: {message}")]
    Api { status: u16, kind: String, message: String },
    #[error("mux: request timed out")]
    Timeout,
    #[error("mux: transport error: {0}")]
    Transport(String),
    #[error("mux: could not decode the response: {0}")]
    Decode(String),
}

impl MuxError {
    /// True when the request may have taken effect although we saw an error.
    /// After such an error on a create, reconcile by `passthrough`
    /// (`find_live_stream_by_passthrough`) rather than creating again.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout | Self::Transport(_) | Self::Server { .. } | Self::Decode(_))
    }

    /// True for failures that a later identical request may not hit:
    /// rate limits, 5xx, timeouts and dropped connections.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout | Self::Transport(_))
    }

    pub(crate) fn from_reqwest(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout
        } else if err.is_decode() {
            Self::Decode(err.to_string())
        } else {
            Self::Transport(err.to_string())
        }
    }

    /// Maps a non-2xx response. `retry_after` comes from the headers.
    pub(crate) fn from_status(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let parsed = serde_json::from_slice::<ErrorEnvelope>(body).ok().map(|e| e.error);
        let message = parsed.as_ref().map(|e| e.messages.join("; ")).unwrap_or_default();
        let kind = parsed.and_then(|e| e.kind).unwrap_or_default();
        match status {
            401 => Self::Unauthorized,
            404 => Self::NotFound,
            429 => Self::RateLimited { retry_after },
            400 | 422 if kind == "invalid_parameters" || kind.is_empty() => Self::InvalidParameters(message),
            s if s >= 500 => Self::Server { status: s },
            s => Self::Api { status: s, kind, message },
        }
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    messages: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mux_error_bodies_map_to_variants() {
        let body = br#"{"error":{"type":"invalid_parameters","messages":["end_time too large","x"]}}"#;
        assert_eq!(MuxError::from_status(400, body, None), MuxError::InvalidParameters("end_time too large; x".into()));
        let body = br#"{"error":{"type":"not_found","messages":["gone"]}}"#;
        assert_eq!(MuxError::from_status(404, body, None), MuxError::NotFound);
        assert_eq!(
            MuxError::from_status(429, b"", Some(Duration::from_secs(2))),
            MuxError::RateLimited { retry_after: Some(Duration::from_secs(2)) }
        );
        assert_eq!(MuxError::from_status(502, b"<html>", None), MuxError::Server { status: 502 });
        let body = br#"{"error":{"type":"forbidden","messages":["no"]}}"#;
        assert_eq!(
            MuxError::from_status(403, body, None),
            MuxError::Api { status: 403, kind: "forbidden".into(), message: "no".into() }
        );
    }
}
