//! The HTTP side: requests, error bodies, the retry loop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde_json::{Value, json};

use super::stream::{ChatStream, events_of};
use super::{AiConfig, AiError, ChatRequest, JsonCompletion, MAX_BACKOFF, Transcription, Usage, json_in};

#[derive(Clone)]
pub struct AiClient {
    http: reqwest::Client,
    config: Arc<AiConfig>,
}

impl AiClient {
    pub fn new(config: AiConfig) -> Result<Self, AiError> {
        if !config.base_url.starts_with("http://") && !config.base_url.starts_with("https://") {
            return Err(AiError::Config(format!("the base URL {:?} is not http(s)", config.base_url)));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| AiError::Config(e.to_string()))?;
        Ok(Self { http, config: Arc::new(config) })
    }

    pub fn config(&self) -> &AiConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.config.base_url.trim_end_matches('/'))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(self.url(path));
        match &self.config.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// How long to wait before attempt `attempt + 1`.
    fn backoff(&self, attempt: u32, error: &AiError) -> Duration {
        let exponential = self.config.backoff.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let asked = match error {
            AiError::Status { retry_after: Some(after), .. } => *after,
            _ => Duration::ZERO,
        };
        exponential.max(asked).min(MAX_BACKOFF)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are
    /// used up; returns the result and the number of attempts.
    async fn with_retries<T, F, Fut>(&self, what: &'static str, mut attempt: F) -> Result<(T, u32), AiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AiError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt().await {
                Ok(value) => return Ok((value, attempts)),
                Err(error) if error.is_retryable() && attempts <= self.config.max_retries => {
                    let wait = self.backoff(attempts, &error);
                    tracing::debug!(what, attempts, %error, ?wait, "AI call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn chat_body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut body = json!({"model": self.config.chat_model, "messages": request.messages, "stream": stream});
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(max_tokens) = request.max_tokens {
            body["max_tokens"] = max_tokens.into();
        }
        if let Some(temperature) = request.temperature {
            body["temperature"] = temperature.into();
        }
        body
    }

    /// A streamed chat completion, once its first event has arrived.
    pub async fn stream_chat(&self, request: ChatRequest) -> Result<ChatStream, AiError> {
        let body = self.chat_body(&request, true);
        let first_chunk = self.config.first_chunk_timeout;
        let (stream, attempts) = self
            .with_retries("chat", || async {
                let opened = async {
                    let response = send(self.post("chat/completions").json(&body)).await?;
                    let response = event_stream(response).await?;
                    let (mut events, activity) = events_of(response.bytes_stream());
                    let first = events.next().await;
                    Ok::<_, AiError>((events, activity, first))
                };
                let (events, activity, first) = tokio::time::timeout(first_chunk, opened)
                    .await
                    .map_err(|_| AiError::Timeout { phase: "first_chunk" })??;
                let first = match first {
                    Some(Ok(event)) => event,
                    Some(Err(error)) => {
                        return Err(AiError::Connect(format!("stream failed before its first event: {error}")));
                    }
                    None => return Err(AiError::StreamBroken("the stream ended before its first event".into())),
                };
                Ok(ChatStream::new(events, activity, first, self.config.chunk_timeout))
            })
            .await?;
        Ok(stream.with_attempts(attempts))
    }

    /// A non-streamed completion asked for a JSON object.
    pub async fn complete_json(&self, request: ChatRequest) -> Result<JsonCompletion, AiError> {
        let mut body = self.chat_body(&request, false);
        body["response_format"] = json!({"type": "json_object"});
        let timeout = self.config.request_timeout;
        let (answer, attempts) = self
            .with_retries("json", || async {
                let call = async {
                    let response = send(self.post("chat/completions").json(&body)).await?;
                    response.json::<Value>().await.map_err(|e| AiError::Decode(e.to_string()))
                };
                tokio::time::timeout(timeout, call).await.map_err(|_| AiError::Timeout { phase: "request" })?
            })
            .await?;
        let content = answer["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| AiError::Decode("no choices[0].message.content".into()))?
            .to_owned();
        let value = json_in(&content).ok_or_else(|| AiError::Decode("the message holds no JSON".into()))?;
        let usage = serde_json::from_value::<Usage>(answer["usage"].clone()).ok();
        Ok(JsonCompletion { value, content, usage, attempts })
    }

    /// Transcribes one audio file (multipart `file` + `model`).
    pub async fn transcribe(&self, audio: Bytes, filename: &str, mime: &str) -> Result<Transcription, AiError> {
        let timeout = self.config.request_timeout;
        let (answer, attempts) = self
            .with_retries("transcription", || async {
                // With its length, so the form is not sent chunked (some
                // servers refuse chunked multipart uploads).
                let part = reqwest::multipart::Part::stream_with_length(audio.clone(), audio.len() as u64)
                    .file_name(filename.to_owned())
                    .mime_str(mime)
                    .map_err(|e| AiError::Config(e.to_string()))?;
                let form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("model", self.config.transcribe_model.clone())
                    .text("response_format", "json");
                let call = async {
                    let response = send(self.post("audio/transcriptions").multipart(form)).await?;
                    response.json::<Value>().await.map_err(|e| AiError::Decode(e.to_string()))
                };
                tokio::time::timeout(timeout, call).await.map_err(|_| AiError::Timeout { phase: "request" })?
            })
            .await?;
        let text = answer["text"].as_str().ok_or_else(|| AiError::Decode("no \"text\" in the answer".into()))?;
        Ok(Transcription { text: text.to_owned(), attempts })
    }
}

/// Sends a request; a non-2xx answer becomes [`AiError::Status`].
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, AiError> {
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() { AiError::Timeout { phase: "connect" } } else { AiError::Connect(e.to_string()) }
    })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = &body["error"];
    Err(AiError::Status {
        status,
        message: error["message"].as_str().unwrap_or("no error message").to_owned(),
        kind: error["type"].as_str().map(str::to_owned),
        code: error["code"].as_str().map(str::to_owned),
        retry_after,
    })
}

/// The response if it is an event stream. A 200 with a JSON body instead is
/// a provider that ignored `stream:true` or reports an error in-band.
async fn event_stream(response: reqwest::Response) -> Result<reqwest::Response, AiError> {
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.is_empty() || content_type.starts_with("text/event-stream") {
        return Ok(response);
    }
    let content_type = content_type.to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let reason = body["error"]["message"].as_str().map(str::to_owned).unwrap_or(content_type);
    Err(AiError::Decode(format!("a streamed reply came as no event stream: {reason}")))
}

/// `retry-after` in seconds (the HTTP-date form is not used by AI APIs).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}
