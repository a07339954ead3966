//! One interview's conversation: the single writer of `interview-{id}`.
//!
//! The state the webapp shows ("thinking", "transcribing") is derived from
//! the AI call in progress, so it cannot disagree with the log: `idle` when
//! no call is open, else the call's state. A call opens with
//! `AiCallStarted` and closes with `AiCallCompleted` or `AiCallFailed`; at
//! most one is open. An answer and the reply call it starts are one
//! decision (two events, one append), so no second answer can slip in
//! between them.
//!
//! Hints: when an AI question is written, a hint is scheduled
//! `hint_after_ms` later; typing or recording moves it later, an answer
//! cancels it, and firing it opens a hint call. A hint call clears the
//! schedule, so each question gets at most one hint.
//!
//! Time and configuration arrive in commands; nothing here reads a clock.

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::{MAX_ANSWER_CHARS, clean_skills};

/// What the interview is doing: the seed's `WsInterviewStateT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InterviewState {
    #[default]
    #[serde(rename = "idle")]
    Idle,
    #[serde(rename = "ai.extracting.skills")]
    ExtractingSkills,
    #[serde(rename = "ai.generating.message")]
    GeneratingMessage,
    #[serde(rename = "ai.transcribing.text")]
    TranscribingText,
    #[serde(rename = "ai.generating.hint")]
    GeneratingHint,
}

impl InterviewState {
    pub const ALL: [InterviewState; 5] = [
        InterviewState::Idle,
        InterviewState::ExtractingSkills,
        InterviewState::GeneratingMessage,
        InterviewState::TranscribingText,
        InterviewState::GeneratingHint,
    ];

    /// The wire name (`idle`, `ai.generating.message`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            InterviewState::Idle => "idle",
            InterviewState::ExtractingSkills => "ai.extracting.skills",
            InterviewState::GeneratingMessage => "ai.generating.message",
            InterviewState::TranscribingText => "ai.transcribing.text",
            InterviewState::GeneratingHint => "ai.generating.hint",
        }
    }
}

/// What an AI call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AiCallKind {
    /// Skills from the job description (JSON output).
    ExtractSkills,
    /// The next interview question (streamed), after an answer or to begin.
    Question,
    /// An audio answer to text.
    Transcribe,
    /// A hint for the last question (streamed).
    Hint,
}

impl AiCallKind {
    pub fn state(self) -> InterviewState {
        match self {
            AiCallKind::ExtractSkills => InterviewState::ExtractingSkills,
            AiCallKind::Question => InterviewState::GeneratingMessage,
            AiCallKind::Transcribe => InterviewState::TranscribingText,
            AiCallKind::Hint => InterviewState::GeneratingHint,
        }
    }

    /// The message a call of this kind writes, if any.
    pub fn writes(self) -> Option<MessageType> {
        match self {
            AiCallKind::Question => Some(MessageType::Question),
            AiCallKind::Hint => Some(MessageType::Hint),
            AiCallKind::ExtractSkills | AiCallKind::Transcribe => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AiCallKind::ExtractSkills => "extract_skills",
            AiCallKind::Question => "question",
            AiCallKind::Transcribe => "transcribe",
            AiCallKind::Hint => "hint",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Ai,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Question,
    Answer,
    Hint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Streaming,
    Complete,
    Failed,
}

/// How the user gave an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerSource {
    Typed,
    Audio,
}

/// A stored message (the streamed partial text of an open call is not one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub role: MessageRole,
    pub message_type: MessageType,
    pub content: String,
    pub created_at: i64,
    pub status: MessageStatus,
}

/// Tokens an AI call used, as the provider reported them (0 when it did not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// An AI call about to start: chosen by the caller (ids, model, prompt).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiCallStart {
    pub call_id: String,
    pub kind: AiCallKind,
    pub model: String,
    /// The message the call writes (questions and hints), known up front so
    /// that streamed partial frames and the final message share one id.
    pub message_id: Option<String>,
    /// Size of what the AI is sent: prompt characters, or audio bytes.
    pub input_size: u64,
    /// Version of the prompt template, so an audit can rebuild the prompt.
    pub prompt_version: u32,
}

/// The AI call in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiCall {
    pub call_id: String,
    pub kind: AiCallKind,
    pub model: String,
    pub message_id: Option<String>,
    pub started_at: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interview {
    /// The owner's user id; `None` until the interview is opened.
    pub owner: Option<String>,
    pub job_description: String,
    pub skills: Vec<String>,
    pub messages: Vec<Message>,
    pub call: Option<AiCall>,
    /// When the pending hint is due, if one is scheduled.
    pub hint_due: Option<i64>,
    pub deleted: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// AI calls ever started (0: the interview has not begun yet).
    #[serde(default)]
    pub ai_calls: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum InterviewCommand {
    Open {
        user_id: String,
        job_description: String,
        skills: Vec<String>,
        at: i64,
    },
    /// Opens an AI call on an idle interview (the first question, skills,
    /// a due hint).
    StartAiCall {
        call: AiCallStart,
        at: i64,
    },
    /// A typed answer and the reply call it starts.
    Answer {
        message_id: String,
        content: String,
        reply: AiCallStart,
        at: i64,
    },
    /// A transcription finished: the text becomes the answer and `reply`
    /// starts at once.
    CompleteTranscription {
        call_id: String,
        message_id: String,
        text: String,
        usage: TokenUsage,
        reply: AiCallStart,
        at: i64,
    },
    /// A question or hint call finished with `content`.
    CompleteMessage {
        call_id: String,
        content: String,
        usage: TokenUsage,
        finish_reason: Option<String>,
        /// Delay of the hint a question schedules.
        hint_after_ms: i64,
        at: i64,
    },
    CompleteSkills {
        call_id: String,
        skills: Vec<String>,
        usage: TokenUsage,
        at: i64,
    },
    /// A call failed; `partial` is what was streamed before it broke.
    FailAiCall {
        call_id: String,
        outcome: String,
        reason: String,
        partial: String,
        at: i64,
    },
    /// After a restart: a call open in the log died with the process.
    RecoverInterruptedCall {
        at: i64,
    },
    /// Typing or recording: the pending hint moves to `due_at`.
    PostponeHint {
        due_at: i64,
        at: i64,
    },
    /// A due hint that will not be given (e.g. the AI quota is used up).
    SkipHint {
        reason: String,
        at: i64,
    },
    Delete {
        at: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InterviewEvent {
    InterviewOpened {
        user_id: String,
        job_description: String,
        skills: Vec<String>,
        at: i64,
    },
    AiCallStarted {
        call: AiCallStart,
        at: i64,
    },
    AiCallCompleted {
        call_id: String,
        kind: AiCallKind,
        model: String,
        latency_ms: i64,
        usage: TokenUsage,
        finish_reason: Option<String>,
        at: i64,
    },
    AiCallFailed {
        call_id: String,
        kind: AiCallKind,
        model: String,
        latency_ms: i64,
        /// A short stable label: `rate_limited`, `timeout`, `stream_broken`,
        /// `interrupted`, …
        outcome: String,
        reason: String,
        at: i64,
    },
    UserAnswered {
        message_id: String,
        content: String,
        source: AnswerSource,
        at: i64,
    },
    AiMessageWritten {
        message_id: String,
        message_type: MessageType,
        content: String,
        /// When its call started: the message's `createdAt`.
        created_at: i64,
        at: i64,
    },
    AiMessageFailed {
        message_id: String,
        message_type: MessageType,
        /// What was streamed before the failure (may be empty).
        content: String,
        created_at: i64,
        at: i64,
    },
    SkillsExtracted {
        skills: Vec<String>,
        at: i64,
    },
    HintScheduled {
        due_at: i64,
        at: i64,
    },
    HintPostponed {
        due_at: i64,
        at: i64,
    },
    HintSkipped {
        reason: String,
        at: i64,
    },
    InterviewDeleted {
        at: i64,
    },
}

impl DomainEvent for InterviewEvent {
    fn event_type(&self) -> String {
        match self {
            InterviewEvent::InterviewOpened { .. } => "InterviewOpened",
            InterviewEvent::AiCallStarted { .. } => "AiCallStarted",
            InterviewEvent::AiCallCompleted { .. } => "AiCallCompleted",
            InterviewEvent::AiCallFailed { .. } => "AiCallFailed",
            InterviewEvent::UserAnswered { .. } => "UserAnswered",
            InterviewEvent::AiMessageWritten { .. } => "AiMessageWritten",
            InterviewEvent::AiMessageFailed { .. } => "AiMessageFailed",
            InterviewEvent::SkillsExtracted { .. } => "SkillsExtracted",
            InterviewEvent::HintScheduled { .. } => "HintScheduled",
            InterviewEvent::HintPostponed { .. } => "HintPostponed",
            InterviewEvent::HintSkipped { .. } => "HintSkipped",
            InterviewEvent::InterviewDeleted { .. } => "InterviewDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl InterviewEvent {
    pub fn at(&self) -> i64 {
        match self {
            InterviewEvent::InterviewOpened { at, .. }
            | InterviewEvent::AiCallStarted { at, .. }
            | InterviewEvent::AiCallCompleted { at, .. }
            | InterviewEvent::AiCallFailed { at, .. }
            | InterviewEvent::UserAnswered { at, .. }
            | InterviewEvent::AiMessageWritten { at, .. }
            | InterviewEvent::AiMessageFailed { at, .. }
            | InterviewEvent::SkillsExtracted { at, .. }
            | InterviewEvent::HintScheduled { at, .. }
            | InterviewEvent::HintPostponed { at, .. }
            | InterviewEvent::HintSkipped { at, .. }
            | InterviewEvent::InterviewDeleted { at } => *at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterviewError {
    #[error("this interview does not exist")]
    NotOpened,
    #[error("this interview was opened already, differently")]
    AlreadyOpened,
    #[error("this interview was deleted")]
    Deleted,
    #[error("the AI is busy ({}); wait until it is idle", .0.as_str())]
    Busy(InterviewState),
    #[error("no AI call {0} is in progress")]
    NoSuchCall(String),
    #[error("an answer must not be empty")]
    EmptyAnswer,
    #[error("an answer may have at most {MAX_ANSWER_CHARS} characters")]
    AnswerTooLong,
    #[error("no hint is due")]
    HintNotDue,
    #[error("{0}")]
    InvalidCall(&'static str),
}

impl InterviewCommand {
    /// The command's name, for the audit metadata of its events.
    pub fn name(&self) -> &'static str {
        match self {
            InterviewCommand::Open { .. } => "Open",
            InterviewCommand::StartAiCall { .. } => "StartAiCall",
            InterviewCommand::Answer { .. } => "Answer",
            InterviewCommand::CompleteTranscription { .. } => "CompleteTranscription",
            InterviewCommand::CompleteMessage { .. } => "CompleteMessage",
            InterviewCommand::CompleteSkills { .. } => "CompleteSkills",
            InterviewCommand::FailAiCall { .. } => "FailAiCall",
            InterviewCommand::RecoverInterruptedCall { .. } => "RecoverInterruptedCall",
            InterviewCommand::PostponeHint { .. } => "PostponeHint",
            InterviewCommand::SkipHint { .. } => "SkipHint",
            InterviewCommand::Delete { .. } => "Delete",
        }
    }
}

impl Interview {
    pub fn state(&self) -> InterviewState {
        self.call.as_ref().map_or(InterviewState::Idle, |c| c.kind.state())
    }

    pub fn is_open(&self) -> bool {
        self.owner.is_some()
    }

    pub fn message(&self, id: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.id == id)
    }

    fn require_open(&self) -> Result<(), InterviewError> {
        match (&self.owner, self.deleted) {
            (None, _) => Err(InterviewError::NotOpened),
            (Some(_), true) => Err(InterviewError::Deleted),
            (Some(_), false) => Ok(()),
        }
    }

    fn require_idle(&self) -> Result<(), InterviewError> {
        self.require_open()?;
        match self.state() {
            InterviewState::Idle => Ok(()),
            busy => Err(InterviewError::Busy(busy)),
        }
    }

    fn open_call(&self, call_id: &str) -> Result<&AiCall, InterviewError> {
        self.call.as_ref().filter(|c| c.call_id == call_id).ok_or_else(|| InterviewError::NoSuchCall(call_id.into()))
    }

    fn check_start(call: &AiCallStart) -> Result<(), InterviewError> {
        if call.kind.writes().is_some() != call.message_id.is_some() {
            return Err(InterviewError::InvalidCall("questions and hints need a message id, other calls none"));
        }
        Ok(())
    }

    fn completed(call: &AiCall, usage: TokenUsage, finish_reason: Option<String>, at: i64) -> InterviewEvent {
        InterviewEvent::AiCallCompleted {
            call_id: call.call_id.clone(),
            kind: call.kind,
            model: call.model.clone(),
            latency_ms: (at - call.started_at).max(0),
            usage,
            finish_reason,
            at,
        }
    }

    fn failed(call: &AiCall, outcome: String, reason: String, partial: String, at: i64) -> Vec<InterviewEvent> {
        let mut events = vec![InterviewEvent::AiCallFailed {
            call_id: call.call_id.clone(),
            kind: call.kind,
            model: call.model.clone(),
            latency_ms: (at - call.started_at).max(0),
            outcome,
            reason,
            at,
        }];
        if let (Some(message_id), Some(message_type)) = (&call.message_id, call.kind.writes()) {
            events.push(InterviewEvent::AiMessageFailed {
                message_id: message_id.clone(),
                message_type,
                content: partial,
                created_at: call.started_at,
                at,
            });
        }
        events
    }

    /// The events `command` yields against this state, not yet applied.
    pub fn decide(&self, command: InterviewCommand) -> Result<Vec<InterviewEvent>, InterviewError> {
        Ok(match command {
            InterviewCommand::Open { user_id, job_description, skills, at } => {
                let skills = clean_skills(&skills).unwrap_or_default();
                match &self.owner {
                    // A retried open changes nothing.
                    Some(owner)
                        if *owner == user_id && self.job_description == job_description && self.skills == skills =>
                    {
                        vec![]
                    }
                    Some(_) => return Err(InterviewError::AlreadyOpened),
                    None => vec![InterviewEvent::InterviewOpened { user_id, job_description, skills, at }],
                }
            }
            InterviewCommand::StartAiCall { call, at } => {
                self.require_idle()?;
                Self::check_start(&call)?;
                if call.kind == AiCallKind::Hint && self.hint_due.is_none_or(|due| due > at) {
                    return Err(InterviewError::HintNotDue);
                }
                vec![InterviewEvent::AiCallStarted { call, at }]
            }
            InterviewCommand::Answer { message_id, content, reply, at } => {
                self.require_idle()?;
                Self::check_start(&reply)?;
                let content = content.trim().to_owned();
                if content.is_empty() {
                    return Err(InterviewError::EmptyAnswer);
                }
                if content.chars().count() > MAX_ANSWER_CHARS {
                    return Err(InterviewError::AnswerTooLong);
                }
                vec![
                    InterviewEvent::UserAnswered { message_id, content, source: AnswerSource::Typed, at },
                    InterviewEvent::AiCallStarted { call: reply, at },
                ]
            }
            InterviewCommand::CompleteTranscription { call_id, message_id, text, usage, reply, at } => {
                let call = self.open_call(&call_id)?;
                if call.kind != AiCallKind::Transcribe {
                    return Err(InterviewError::InvalidCall("not a transcription"));
                }
                Self::check_start(&reply)?;
                let text = text.trim().to_owned();
                if text.is_empty() {
                    return Ok(Self::failed(
                        call,
                        "empty_transcript".into(),
                        "no speech was recognised".into(),
                        String::new(),
                        at,
                    ));
                }
                vec![
                    Self::completed(call, usage, None, at),
                    InterviewEvent::UserAnswered { message_id, content: text, source: AnswerSource::Audio, at },
                    InterviewEvent::AiCallStarted { call: reply, at },
                ]
            }
            InterviewCommand::CompleteMessage { call_id, content, usage, finish_reason, hint_after_ms, at } => {
                let call = self.open_call(&call_id)?;
                let (Some(message_id), Some(message_type)) = (&call.message_id, call.kind.writes()) else {
                    return Err(InterviewError::InvalidCall("this call writes no message"));
                };
                if content.trim().is_empty() {
                    return Ok(Self::failed(
                        call,
                        "empty_reply".into(),
                        "the AI answered nothing".into(),
                        String::new(),
                        at,
                    ));
                }
                let mut events = vec![
                    Self::completed(call, usage, finish_reason, at),
                    InterviewEvent::AiMessageWritten {
                        message_id: message_id.clone(),
                        message_type,
                        content,
                        created_at: call.started_at,
                        at,
                    },
                ];
                if message_type == MessageType::Question {
                    events.push(InterviewEvent::HintScheduled { due_at: at + hint_after_ms, at });
                }
                events
            }
            InterviewCommand::CompleteSkills { call_id, skills, usage, at } => {
                let call = self.open_call(&call_id)?;
                if call.kind != AiCallKind::ExtractSkills {
                    return Err(InterviewError::InvalidCall("not a skills extraction"));
                }
                let skills = clean_skills(&skills).unwrap_or_default();
                vec![Self::completed(call, usage, None, at), InterviewEvent::SkillsExtracted { skills, at }]
            }
            InterviewCommand::FailAiCall { call_id, outcome, reason, partial, at } => {
                let call = self.open_call(&call_id)?;
                Self::failed(call, outcome, reason, partial, at)
            }
            InterviewCommand::RecoverInterruptedCall { at } => match &self.call {
                None => vec![],
                Some(call) => Self::failed(
                    call,
                    "interrupted".into(),
                    "the service restarted during the call".into(),
                    String::new(),
                    at,
                ),
            },
            InterviewCommand::PostponeHint { due_at, at } => match self.hint_due {
                Some(due) if due_at > due => vec![InterviewEvent::HintPostponed { due_at, at }],
                _ => vec![],
            },
            InterviewCommand::SkipHint { reason, at } => match self.hint_due {
                Some(_) => vec![InterviewEvent::HintSkipped { reason, at }],
                None => vec![],
            },
            InterviewCommand::Delete { at } => {
                self.require_open().or_else(|e| if e == InterviewError::Deleted { Ok(()) } else { Err(e) })?;
                if self.deleted { vec![] } else { vec![InterviewEvent::InterviewDeleted { at }] }
            }
        })
    }
}

impl Aggregate for Interview {
    crate::decided::decided_aggregate!("interview", InterviewCommand, InterviewEvent, InterviewError);

    fn apply(&mut self, event: InterviewEvent) {
        self.updated_at = self.updated_at.max(event.at());
        match event {
            InterviewEvent::InterviewOpened { user_id, job_description, skills, at } => {
                self.owner = Some(user_id);
                self.job_description = job_description;
                self.skills = skills;
                self.created_at = at;
            }
            InterviewEvent::AiCallStarted { call, at } => {
                // Any call supersedes the pending hint: a new question
                // schedules its own, a hint call is the hint.
                self.hint_due = None;
                self.ai_calls += 1;
                self.call = Some(AiCall {
                    call_id: call.call_id,
                    kind: call.kind,
                    model: call.model,
                    message_id: call.message_id,
                    started_at: at,
                });
            }
            InterviewEvent::AiCallCompleted { .. } | InterviewEvent::AiCallFailed { .. } => {
                self.call = None;
            }
            InterviewEvent::UserAnswered { message_id, content, at, .. } => {
                self.hint_due = None;
                self.messages.push(Message {
                    id: message_id,
                    role: MessageRole::User,
                    message_type: MessageType::Answer,
                    content,
                    created_at: at,
                    status: MessageStatus::Complete,
                });
            }
            InterviewEvent::AiMessageWritten { message_id, message_type, content, created_at, .. } => {
                self.messages.push(Message {
                    id: message_id,
                    role: MessageRole::Ai,
                    message_type,
                    content,
                    created_at,
                    status: MessageStatus::Complete,
                });
            }
            InterviewEvent::AiMessageFailed { message_id, message_type, content, created_at, .. } => {
                self.messages.push(Message {
                    id: message_id,
                    role: MessageRole::Ai,
                    message_type,
                    content,
                    created_at,
                    status: MessageStatus::Failed,
                });
            }
            InterviewEvent::SkillsExtracted { skills, .. } => {
                self.skills = skills;
            }
            InterviewEvent::HintScheduled { due_at, .. } | InterviewEvent::HintPostponed { due_at, .. } => {
                self.hint_due = Some(due_at);
            }
            InterviewEvent::HintSkipped { .. } => {
                self.hint_due = None;
            }
            InterviewEvent::InterviewDeleted { .. } => {
                self.deleted = true;
                self.hint_due = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
