//! A streamed chat completion, read event by event: the SSE framing (via
//! `eventsource-stream`), the chunk timer, and what counts as a finished
//! reply.
//!
//! The chunk timer measures silence on the wire, not the gap between data
//! events: every read from the connection (a data event, part of one, or a
//! `: keep-alive` comment, which the SSE parser swallows) resets it. A
//! provider that is still thinking and says so with comments is alive; one
//! that sends nothing for `chunk_timeout` is not.
//!
//! UTF-8: the parser decodes bytes with a carry-over buffer, so a character
//! split across two TCP reads is joined before any text is handed out.

use std::fmt::Display;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::time::Instant;

use super::{AiError, Usage};

/// The server-sent events of one response, transport errors as text.
pub(super) type Events = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// When the connection last delivered bytes; shared between the byte
/// stream (which touches it) and the [`ChatStream`] (which reads it).
#[derive(Clone)]
pub(super) struct Activity(Arc<Mutex<Instant>>);

impl Activity {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Parses a response body as server-sent events, noting every read in the
/// returned [`Activity`].
pub(super) fn events_of<S, E>(bytes: S) -> (Events, Activity)
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let activity = Activity::new();
    let touched = activity.clone();
    let events = bytes.inspect(move |_| touched.touch()).eventsource().map(|event| event.map_err(|e| e.to_string()));
    (Box::pin(events), activity)
}

pub struct ChatStream {
    events: Events,
    activity: Activity,
    /// The first event, read while opening the stream.
    first: Option<Event>,
    chunk_timeout: Duration,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    model: Option<String>,
    attempts: u32,
    done: bool,
}

impl ChatStream {
    pub(super) fn new(events: Events, activity: Activity, first: Event, chunk_timeout: Duration) -> Self {
        Self {
            events,
            activity,
            first: Some(first),
            chunk_timeout,
            usage: None,
            finish_reason: None,
            model: None,
            attempts: 1,
            done: false,
        }
    }

    pub(super) fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The next piece of text (never empty); `None` once the reply ended
    /// normally (a `finish_reason`, then `[DONE]` or the end of the body).
    pub async fn next_delta(&mut self) -> Result<Option<String>, AiError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let event = match self.first.take() {
                Some(event) => event,
                None => match self.next_event().await? {
                    Some(Ok(event)) => event,
                    Some(Err(error)) => return Err(AiError::StreamBroken(error)),
                    None if self.finish_reason.is_some() => {
                        // Some servers end after the finish without `[DONE]`.
                        self.done = true;
                        return Ok(None);
                    }
                    None => return Err(AiError::StreamBroken("the stream ended before the reply finished".into())),
                },
            };
            if let Some(delta) = self.read(&event)? {
                return Ok(Some(delta));
            }
        }
    }

    /// The next event, unless the wire stays silent for `chunk_timeout`.
    async fn next_event(&mut self) -> Result<Option<Result<Event, String>>, AiError> {
        loop {
            let deadline = self.activity.last() + self.chunk_timeout;
            // `next()` on a stream is cancel-safe: a timed-out wait loses
            // nothing, the parser keeps what it has read.
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(event) => return Ok(event),
                // Bytes arrived meanwhile (a keep-alive comment, or part of
                // an event): the timer starts again from them.
                Err(_) if self.activity.last() + self.chunk_timeout > Instant::now() => continue,
                Err(_) => return Err(AiError::Timeout { phase: "chunk" }),
            }
        }
    }

    /// Takes one event in; returns its text, if it carries any.
    fn read(&mut self, event: &Event) -> Result<Option<String>, AiError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        if data == "[DONE]" {
            if self.finish_reason.is_none() {
                return Err(AiError::StreamBroken("[DONE] before the reply finished".into()));
            }
            self.done = true;
            return Ok(None);
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| AiError::Decode(format!("a chunk is not JSON: {e}")))?;
        if let Some(error) = chunk.get("error") {
            let message = error["message"].as_str().or(error.as_str()).unwrap_or("an error event");
            return Err(AiError::StreamBroken(message.to_owned()));
        }
        if let Some(model) = chunk["model"].as_str() {
            self.model = Some(model.to_owned());
        }
        if let Ok(usage) = serde_json::from_value::<Usage>(chunk["usage"].clone()) {
            self.usage = Some(usage);
        }
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(choice["delta"]["content"].as_str().filter(|c| !c.is_empty()).map(str::to_owned))
    }

    /// Token counts, from the `include_usage` chunk (once the stream ended).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.finish_reason.clone()
    }

    /// The model that answered, as the chunks name it.
    pub fn model(&self) -> Option<String> {
        self.model.clone()
    }

    /// Attempts it took to open the stream (1 without retries).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    const ROLE: &str =
        r#"data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#;
    const STOP: &str = r#"data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;

    fn content(text: &str) -> String {
        let chunk = serde_json::json!({"model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
        format!("data: {chunk}\n\n")
    }

    /// A stream over `reads`, each a piece of the body with the pause
    /// before it.
    async fn open(reads: Vec<(Duration, Vec<u8>)>, chunk_timeout: Duration) -> ChatStream {
        let bytes = futures::stream::iter(reads).then(|(pause, read)| async move {
            tokio::time::sleep(pause).await;
            Ok::<_, Infallible>(Bytes::from(read))
        });
        let (mut events, activity) = events_of(bytes);
        let first = events.next().await.expect("a first event").expect("no transport error");
        ChatStream::new(events, activity, first, chunk_timeout)
    }

    async fn collect(stream: &mut ChatStream) -> Result<String, AiError> {
        let mut text = String::new();
        while let Some(delta) = stream.next_delta().await? {
            text.push_str(&delta);
        }
        Ok(text)
    }

    fn now(read: impl Into<Vec<u8>>) -> (Duration, Vec<u8>) {
        (Duration::ZERO, read.into())
    }

    #[tokio::test]
    async fn a_character_split_across_two_reads_is_joined() {
        let body = format!("{ROLE}\n\n{}{}{STOP}\n\ndata: [DONE]\n\n", content("Grüße 🦀"), content(" déjà"));
        let bytes = body.as_bytes();
        // Cut inside "ü" (2 bytes) and inside the crab (4 bytes).
        let u = body.find('ü').unwrap() + 1;
        let crab = body.find('🦀').unwrap() + 2;
        let reads = vec![now(&bytes[..u]), now(&bytes[u..crab]), now(&bytes[crab..])];
        let mut stream = open(reads, Duration::from_secs(1)).await;
        assert_eq!(collect(&mut stream).await.unwrap(), "Grüße 🦀 déjà");
        assert_eq!(stream.finish_reason().as_deref(), Some("stop"));
        assert_eq!(stream.model().as_deref(), Some("m"));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_comments_reset_the_chunk_timer() {
        let mut reads = vec![now(format!("{ROLE}\n\n"))];
        // 1 s of comments every 200 ms against a 300 ms chunk timeout.
        reads.extend((0..5).map(|_| (Duration::from_millis(200), b": keep-alive\n\n".to_vec())));
        reads.push((Duration::from_millis(200), content("late").into_bytes()));
        reads.push(now(format!("{STOP}\n\ndata: [DONE]\n\n")));
        let mut stream = open(reads, Duration::from_millis(300)).await;
        assert_eq!(collect(&mut stream).await.unwrap(), "late");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_chunk_timeout_is_a_chunk_timeout() {
        let reads = vec![now(format!("{ROLE}\n\n{}", content("a"))), (Duration::from_millis(301), content("b").into())];
        let mut stream = open(reads, Duration::from_millis(300)).await;
        assert_eq!(stream.next_delta().await, Ok(Some("a".into())));
        assert_eq!(stream.next_delta().await, Err(AiError::Timeout { phase: "chunk" }));
    }

    #[tokio::test]
    async fn an_end_without_a_finish_or_an_error_event_is_a_broken_stream() {
        let mut cut = open(vec![now(format!("{ROLE}\n\n{}", content("a")))], Duration::from_secs(1)).await;
        assert!(matches!(collect(&mut cut).await, Err(AiError::StreamBroken(_))));
        let error = format!("{ROLE}\n\n{}data: {{\"error\":{{\"message\":\"overloaded\"}}}}\n\n", content("a"));
        let mut failed = open(vec![now(error)], Duration::from_secs(1)).await;
        assert_eq!(collect(&mut failed).await, Err(AiError::StreamBroken("overloaded".into())));
        let early = format!("{ROLE}\n\ndata: [DONE]\n\n");
        let mut early = open(vec![now(early)], Duration::from_secs(1)).await;
        assert!(matches!(collect(&mut early).await, Err(AiError::StreamBroken(_))));
    }

    #[tokio::test]
    async fn a_finish_without_done_ends_normally_and_usage_is_kept() {
        let usage =
            r#"data: {"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let body = format!("{ROLE}\n\n{}{STOP}\n\n{usage}\n\n", content("hi"));
        let mut stream = open(vec![now(body)], Duration::from_secs(1)).await;
        assert_eq!(collect(&mut stream).await.unwrap(), "hi");
        assert_eq!(stream.usage(), Some(Usage { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }));
    }
}
