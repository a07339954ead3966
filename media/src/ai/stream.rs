//! A streamed chat completion, read event by event.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Event;
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::{AiError, Usage};

/// The server-sent events of one response, transport errors as text.
pub(super) type Events = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

pub struct ChatStream {
    events: Events,
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
    pub(super) fn new(events: Events, first: Event, chunk_timeout: Duration) -> Self {
        Self {
            events,
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
    /// normally.
    pub async fn next_delta(&mut self) -> Result<Option<String>, AiError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let event = match self.first.take() {
                Some(event) => event,
                None => match tokio::time::timeout(self.chunk_timeout, self.events.next()).await {
                    Err(_) => return Err(AiError::Timeout { phase: "chunk" }),
                    Ok(Some(Ok(event))) => event,
                    Ok(Some(Err(error))) => return Err(AiError::StreamBroken(error)),
                    Ok(None) if self.finish_reason.is_some() => {
                        // Some servers end after the finish without `[DONE]`.
                        self.done = true;
                        return Ok(None);
                    }
                    Ok(None) => return Err(AiError::StreamBroken("the stream ended before the reply finished".into())),
                },
            };
            if let Some(delta) = self.read(&event)? {
                return Ok(Some(delta));
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
            let message = error["message"].as_str().unwrap_or("an error event");
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

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.finish_reason.clone()
    }

    pub fn model(&self) -> Option<String> {
        self.model.clone()
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}
