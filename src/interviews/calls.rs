//! One AI call, run in a task of its own so the interview's actor keeps
//! serving its sockets meanwhile. The task only talks to the provider and
//! reports back to the actor ([`InterviewMsg::AiText`] for each piece of
//! streamed text, [`InterviewMsg::AiDone`] once); the actor alone decides
//! and writes. Retries, timeouts and the wire format live in
//! `eventuall_media::ai`.

use bytes::Bytes;
use eventuall_domain::interview::TokenUsage;
use eventuall_media::ai::{AiError, ChatRequest, Usage};

use super::{InterviewMsg, Interviews};

/// What the call is asked to do.
pub enum Work {
    /// A streamed question or hint.
    Chat(ChatRequest),
    /// Skills from the job description (JSON output).
    Skills(ChatRequest),
    Transcribe(Bytes),
}

/// How a call ended.
#[derive(Debug)]
pub enum Outcome {
    Message { content: String, usage: TokenUsage, finish_reason: Option<String> },
    Skills { skills: Vec<String>, usage: TokenUsage },
    Transcript { text: String },
    Failed { outcome: &'static str, reason: String, partial: String },
}

fn usage(usage: Option<Usage>) -> TokenUsage {
    usage.map_or_else(TokenUsage::default, |u| TokenUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
    })
}

fn failed(error: &AiError, partial: String) -> Outcome {
    Outcome::Failed { outcome: error.outcome(), reason: error.to_string(), partial }
}

/// Starts `work` as call `call_id` of `interview_id`.
pub fn spawn(interviews: Interviews, interview_id: String, call_id: String, work: Work) {
    tokio::spawn(async move {
        let kind = match &work {
            Work::Chat(_) => "chat",
            Work::Skills(_) => "skills",
            Work::Transcribe(_) => "transcription",
        };
        let started = std::time::Instant::now();
        let outcome = run(&interviews, &interview_id, &call_id, work).await;
        let result = match &outcome {
            Outcome::Failed { outcome, .. } => *outcome,
            _ => "completed",
        };
        metrics::histogram!(crate::metrics::AI_DURATION, "kind" => kind).record(started.elapsed().as_secs_f64());
        metrics::counter!(crate::metrics::AI_CALLS, "kind" => kind, "outcome" => result).increment(1);
        interviews.to_interview(&interview_id, InterviewMsg::AiDone { call_id, outcome }).await;
    });
}

async fn run(interviews: &Interviews, interview_id: &str, call_id: &str, work: Work) -> Outcome {
    let ai = interviews.ai();
    match work {
        Work::Chat(request) => {
            let mut stream = match ai.stream_chat(request).await {
                Ok(stream) => stream,
                Err(error) => return failed(&error, String::new()),
            };
            let mut content = String::new();
            loop {
                match stream.next_delta().await {
                    Ok(Some(delta)) => {
                        content.push_str(&delta);
                        let msg = InterviewMsg::AiText { call_id: call_id.to_owned(), delta };
                        interviews.to_interview(interview_id, msg).await;
                    }
                    Ok(None) => {
                        return Outcome::Message {
                            content,
                            usage: usage(stream.usage()),
                            finish_reason: stream.finish_reason(),
                        };
                    }
                    Err(error) => return failed(&error, content),
                }
            }
        }
        Work::Skills(request) => match ai.complete_json(request).await {
            Ok(completion) => Outcome::Skills { skills: skills_of(&completion.value), usage: usage(completion.usage) },
            Err(error) => failed(&error, String::new()),
        },
        Work::Transcribe(audio) => {
            let (filename, mime) = audio_format(&audio);
            match ai.transcribe(audio, filename, mime).await {
                Ok(transcription) => Outcome::Transcript { text: transcription.text },
                Err(error) => failed(&error, String::new()),
            }
        }
    }
}

/// The skills of a `{"skills": [...]}` answer; models also answer a bare
/// array or a list of objects with a `name`, so those are read too.
pub fn skills_of(value: &serde_json::Value) -> Vec<String> {
    let list = value.get("skills").unwrap_or(value);
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().or_else(|| item.get("name").and_then(|n| n.as_str())))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A filename and MIME type for audio bytes, from their magic numbers:
/// providers pick the decoder by the file's extension. Browsers'
/// MediaRecorder produces WebM/Opus, the default.
pub fn audio_format(audio: &[u8]) -> (&'static str, &'static str) {
    match audio {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => ("answer.wav", "audio/wav"),
        [b'O', b'g', b'g', b'S', ..] => ("answer.ogg", "audio/ogg"),
        [b'f', b'L', b'a', b'C', ..] => ("answer.flac", "audio/flac"),
        [b'I', b'D', b'3', ..] | [0xFF, 0xFB | 0xF3 | 0xF2, ..] => ("answer.mp3", "audio/mpeg"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => ("answer.m4a", "audio/mp4"),
        _ => ("answer.webm", "audio/webm"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn skills_are_read_from_the_shapes_models_answer() {
        assert_eq!(skills_of(&json!({"skills": ["Rust", "SQL"]})), vec!["Rust", "SQL"]);
        assert_eq!(skills_of(&json!(["Go"])), vec!["Go"]);
        assert_eq!(skills_of(&json!({"skills": [{"name": "K8s"}, 3]})), vec!["K8s"]);
        assert!(skills_of(&json!({"other": 1})).is_empty());
    }

    #[test]
    fn audio_formats_are_told_by_their_magic_numbers() {
        assert_eq!(audio_format(b"RIFF\0\0\0\0WAVEfmt ").0, "answer.wav");
        assert_eq!(audio_format(&[0x1A, 0x45, 0xDF, 0xA3, 0]).0, "answer.webm");
        assert_eq!(audio_format(b"OggS\0").0, "answer.ogg");
        assert_eq!(audio_format(b"").0, "answer.webm");
    }
}
