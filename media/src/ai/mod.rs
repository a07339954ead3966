//! A client for any OpenAI-compatible AI API (OpenAI, Workers AI, Ollama,
//! vLLM, llama.cpp's server): streamed chat completions (server-sent
//! events), JSON completions and audio transcription. Wire format:
//! `shared/research/ai.md`.
//!
//! Reliability policy, the same for every call:
//! - timeouts on connecting, on the first chunk of a stream (or the whole
//!   answer of a non-streamed call) and on every gap between two chunks;
//! - retries with exponential backoff for 429, 5xx, connection failures and
//!   timeouts, honouring `retry-after` (capped), but **only before the first
//!   chunk**: text already relayed to a user cannot be taken back, so a
//!   stream that breaks mid-way is an error for the caller to record;
//! - a stream counts as finished only with a `finish_reason` or `[DONE]`;
//!   an end without either, a reset, or a `data: {"error":…}` event is
//!   [`AiError::StreamBroken`].

mod client;
mod stream;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::AiClient;
pub use stream::ChatStream;

/// Where and how to call the provider.
#[derive(Clone, Debug)]
pub struct AiConfig {
    /// Ends in `/v1`, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    pub chat_model: String,
    pub transcribe_model: String,
    pub connect_timeout: Duration,
    /// Request sent → first event of a stream.
    pub first_chunk_timeout: Duration,
    /// Longest gap between two events of a stream.
    pub chunk_timeout: Duration,
    /// A whole non-streamed call (JSON completion, transcription).
    pub request_timeout: Duration,
    /// Retries after the first attempt (before any chunk arrived).
    pub max_retries: u32,
    /// First backoff; doubled per retry, at most [`MAX_BACKOFF`].
    pub backoff: Duration,
}

/// Longest wait between two attempts, whatever `retry-after` says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Default for AiConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: None,
            chat_model: "@cf/meta/llama-3.1-8b-instruct".into(),
            transcribe_model: "@cf/openai/whisper-tiny-en".into(),
            connect_timeout: Duration::from_secs(5),
            first_chunk_timeout: Duration::from_secs(30),
            chunk_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(60),
            max_retries: 3,
            backoff: Duration::from_millis(250),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// Tokens as the provider counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// A non-streamed JSON answer.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonCompletion {
    /// The message content parsed as JSON.
    pub value: serde_json::Value,
    /// The message content as sent.
    pub content: String,
    pub usage: Option<Usage>,
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcription {
    pub text: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    /// A non-2xx answer, with the provider's error body.
    #[error("the AI answered {status}: {message}")]
    Status { status: u16, message: String, kind: Option<String>, code: Option<String>, retry_after: Option<Duration> },
    #[error("the AI did not answer in time ({phase})")]
    Timeout { phase: &'static str },
    #[error("could not reach the AI: {0}")]
    Connect(String),
    #[error("the AI's stream broke: {0}")]
    StreamBroken(String),
    #[error("the AI's answer could not be read: {0}")]
    Decode(String),
    #[error("the AI client is misconfigured: {0}")]
    Config(String),
}

impl AiError {
    /// Whether another attempt may succeed (before any chunk was used).
    pub fn is_retryable(&self) -> bool {
        match self {
            AiError::Status { status, .. } => *status == 429 || *status >= 500,
            AiError::Timeout { .. } | AiError::Connect(_) => true,
            AiError::StreamBroken(_) | AiError::Decode(_) | AiError::Config(_) => false,
        }
    }

    /// A short stable label for records and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            AiError::Status { status: 429, .. } => "rate_limited",
            AiError::Status { status, .. } if *status >= 500 => "server_error",
            AiError::Status { .. } => "client_error",
            AiError::Timeout { .. } => "timeout",
            AiError::Connect(_) => "connect",
            AiError::StreamBroken(_) => "stream_broken",
            AiError::Decode(_) => "decode",
            AiError::Config(_) => "config",
        }
    }
}

/// The JSON in a model's message: the whole content (code fences stripped)
/// if it parses, else the first `{…}` object in it. Models wrap JSON in prose
/// or fences even in JSON mode, and some add a second object or a remark
/// after it, so the object is found by parsing from each `{`, not by
/// matching the last `}`.
pub fn json_in(content: &str) -> Option<serde_json::Value> {
    let unfenced = strip_fences(content.trim());
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(unfenced) {
        return Some(value);
    }
    unfenced.match_indices('{').find_map(|(start, _)| {
        let mut values = serde_json::Deserializer::from_str(&unfenced[start..]).into_iter::<serde_json::Value>();
        values.next()?.ok().filter(serde_json::Value::is_object)
    })
}

/// The inside of a ```` ```json … ``` ```` block, or the text as is.
fn strip_fences(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else { return text };
    // The info string ("json") runs to the end of the first line.
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_in_fences_and_prose() {
        assert_eq!(json_in(r#"{"a":1}"#), Some(serde_json::json!({"a": 1})));
        assert_eq!(json_in("```json\n{\"a\": [1]}\n```"), Some(serde_json::json!({"a": [1]})));
        assert_eq!(
            json_in("Here you go: {\"skills\": [\"Rust\"]}. Good luck"),
            Some(serde_json::json!({"skills": ["Rust"]}))
        );
        assert_eq!(json_in("no json here"), None);
        assert_eq!(
            json_in("{\"skills\": [\"Go\"]} and also {\"other\": 1}"),
            Some(serde_json::json!({"skills": ["Go"]})),
            "the first object, not the span to the last brace"
        );
        assert_eq!(json_in("Skills {not json} then {\"a\": 2}"), Some(serde_json::json!({"a": 2})));
        assert_eq!(json_in("```\n{\"a\": \"}\"}\n```"), Some(serde_json::json!({"a": "}"})));
    }

    #[test]
    fn only_rate_limits_server_errors_and_transport_failures_are_retried() {
        let status =
            |status| AiError::Status { status, message: String::new(), kind: None, code: None, retry_after: None };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(AiError::Timeout { phase: "first_chunk" }.is_retryable());
        assert!(!AiError::StreamBroken("cut".into()).is_retryable());
        assert_eq!(status(429).outcome(), "rate_limited");
        assert_eq!(status(401).outcome(), "client_error");
    }
}
