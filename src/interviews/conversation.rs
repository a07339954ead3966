//! One interview's actor: the single writer of `interview-{id}` and the hub
//! of its sockets (`/parties/interview/{id}`).
//!
//! It handles one message at a time. Anything the user does (an answer, a
//! recording, typing) is decided against the [`Interview`] aggregate,
//! appended, and only then shown to the sockets, so a refreshed page never
//! sees something the log does not have. An AI call is opened in the log
//! first (`AiCallStarted`, the state every socket sees), then run by a task
//! of [`super::calls`], whose streamed text this actor relays to every
//! socket as growing `INTERVIEW_MESSAGE`s with one id; the finished or
//! failed message is appended when the task reports.
//!
//! A call open in the log when the actor loads died with an earlier
//! process: it is closed as `interrupted` and its message stored as failed
//! (ADR 0014), so no interview stays stuck in an `ai.*` state. The hint
//! timer is kept equal to the aggregate's `hint_due` after every change and
//! at load, so a restart neither loses nor repeats a hint.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cqrs_es::Aggregate;
use eventuall_domain::interview::{
    AiCallKind, AiCallStart, DirectoryCommand, Interview, InterviewCommand, InterviewError, InterviewEvent,
    InterviewState, MAX_ANSWER_CHARS, MessageRole, MessageStatus, clean_answer,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::calls::{self, Outcome, Work};
use super::directory::broadcast;
use super::frames::{self, MessageJson};
use super::{Failure, InterviewTimer, Interviews, QuotaRefusal, TIMER_PREFIX, interview_stream, prompts};
use crate::actor::Retirement;
use crate::host::{self, Decide, ExecuteError, Hosted, Next, SNAPSHOT_EVERY, Snapshots};
use crate::outlet::{Outbound, Outlet};
use crate::store::Metadata;

/// How long after a hint came due while the AI was busy it is tried again.
const HINT_RETRY: Duration = Duration::from_secs(10);
/// Typing moves the hint only when that moves it by at least this much, so
/// a typist writes about one event a second, not one per keystroke.
const POSTPONE_STEP_MS: i64 = 1_000;
/// How long an actor for an interview that does not exist stays.
const UNOPENED_LINGER: Duration = Duration::from_secs(1);

impl Decide for Interview {
    const SNAPSHOT_TAG: &'static str = "interview-v1";

    fn decide(&mut self, command: InterviewCommand) -> Result<Vec<InterviewEvent>, InterviewError> {
        Interview::decide(self, command)
    }

    fn command_name(command: &InterviewCommand) -> &'static str {
        command.name()
    }
}

pub enum InterviewMsg {
    /// Opens the interview (after its directory entry exists) and starts
    /// its first AI call.
    Open {
        user_id: String,
        job_description: String,
        skills: Vec<String>,
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    View {
        reply: oneshot::Sender<View>,
    },
    /// A socket of the owner; `INTERVIEW_STATE` is its first frame.
    Connect {
        connection_id: String,
        outlet: Outlet,
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    Disconnect {
        connection_id: String,
    },
    GetAllMessages {
        connection_id: String,
    },
    Answer {
        connection_id: String,
        content: String,
    },
    Audio {
        connection_id: String,
        audio: Bytes,
    },
    /// `USER_TYPING` or `USER_RECORDING`.
    Activity {
        connection_id: String,
    },
    /// The directory entry changed (renamed).
    Updated,
    Delete {
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    AiText {
        call_id: String,
        delta: String,
    },
    AiDone {
        call_id: String,
        outcome: Outcome,
    },
    HintDue {
        done: oneshot::Sender<()>,
    },
}

/// The conversation as the HTTP API shows it.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub owner: Option<String>,
    pub deleted: bool,
    pub state: InterviewState,
    pub skills: Vec<String>,
    pub updated_at: i64,
    pub stored_messages: u64,
    /// Stored messages, oldest first, then the one being streamed, if any.
    pub messages: Vec<MessageJson>,
}

/// The text streamed so far by the open call.
struct Partial {
    call_id: String,
    message: MessageJson,
}

struct ConversationActor {
    interviews: Interviews,
    interview_id: String,
    hosted: Hosted<Interview>,
    subscribers: HashMap<String, Outlet>,
    partial: Option<Partial>,
    /// The transcription whose reply is already paid for (an audio answer
    /// reserves both calls up front, so a transcribed answer is never lost
    /// to the quota).
    prepaid_reply: Option<String>,
    /// The hint timer as this actor last set it.
    hint_armed: Option<i64>,
}

pub(super) async fn run(
    interviews: Interviews,
    interview_id: String,
    mut mailbox: mpsc::Receiver<InterviewMsg>,
    retirement: Retirement<InterviewMsg>,
) {
    let hosted = match Hosted::load(
        interviews.store().clone(),
        interview_stream(&interview_id),
        Snapshots::InAppendEvery(SNAPSHOT_EVERY),
    )
    .await
    {
        Ok(hosted) => hosted,
        Err(error) => {
            tracing::error!(interview = %interview_id, %error, "interview could not be loaded");
            return;
        }
    };
    let mut actor = ConversationActor {
        interviews,
        interview_id,
        hosted,
        subscribers: HashMap::new(),
        partial: None,
        prepaid_reply: None,
        hint_armed: None,
    };
    actor.recover().await;
    let evict_after = actor.interviews.settings().evict_after;
    loop {
        let idle = actor.subscribers.is_empty() && actor.hosted.state.call.is_none();
        let linger = if actor.hosted.state.is_open() { evict_after } else { UNOPENED_LINGER };
        match host::next(&mut mailbox, idle.then_some(linger)).await {
            Next::Message(msg) => actor.handle(msg).await,
            Next::Idle if retirement.try_retire(&mut mailbox) => break,
            Next::Idle => {}
            Next::Closed => break,
        }
    }
    actor.hosted.save_snapshot().await;
    // Leaving memory is the last use for now: the archive timer counts from
    // here (one timer write per visit, not one per message).
    if actor.state().is_open() {
        actor.interviews.arm_archive(&actor.interview_id).await;
    }
}

impl ConversationActor {
    fn state(&self) -> &Interview {
        &self.hosted.state
    }

    fn owner(&self) -> &str {
        self.state().owner.as_deref().unwrap_or_default()
    }

    fn now(&self) -> i64 {
        self.interviews.now()
    }

    /// After a load: close a call that died with the process, begin an
    /// interview whose first call never started, re-arm the hint.
    async fn recover(&mut self) {
        if !self.state().is_open() {
            return;
        }
        if self.state().call.is_some() {
            tracing::warn!(interview = %self.interview_id, "closing an AI call interrupted by a restart");
            let command = InterviewCommand::RecoverInterruptedCall { at: self.now() };
            let _ = self.execute(command, Metadata::by("system:interview")).await;
        }
        if !self.state().deleted && self.state().ai_calls == 0 {
            self.begin().await;
        }
        self.sync_hint_timer().await;
    }

    async fn handle(&mut self, msg: InterviewMsg) {
        match msg {
            InterviewMsg::Open { user_id, job_description, skills, reply } => {
                let command =
                    InterviewCommand::Open { user_id: user_id.clone(), job_description, skills, at: self.now() };
                let opened = self.execute(command, Metadata::by(&user_id)).await;
                let answer = opened.map(|_| ());
                if answer.is_ok() && self.state().ai_calls == 0 {
                    self.begin().await;
                }
                let _ = reply.send(answer);
            }
            InterviewMsg::View { reply } => {
                let _ = reply.send(self.view());
            }
            InterviewMsg::Connect { connection_id, outlet, reply } => {
                if !self.state().is_open() || self.state().deleted {
                    let _ = reply.send(Err(Failure::NotFound));
                    return;
                }
                // The state is the first frame of every (re)connect: a
                // refreshed page shows "thinking" before anything else.
                let _ = outlet.try_send(Outbound::Text(frames::state(self.state().state())));
                self.subscribers.insert(connection_id, outlet);
                let _ = reply.send(Ok(()));
            }
            InterviewMsg::Disconnect { connection_id } => {
                self.subscribers.remove(&connection_id);
            }
            InterviewMsg::GetAllMessages { connection_id } => {
                for message in self.view().messages {
                    self.send_to(&connection_id, frames::message(&message));
                }
            }
            InterviewMsg::Answer { connection_id, content } => self.answer(&connection_id, content).await,
            InterviewMsg::Audio { connection_id, audio } => self.audio(&connection_id, audio).await,
            InterviewMsg::Activity { connection_id } => self.activity(&connection_id).await,
            InterviewMsg::Updated => {
                let frame = frames::updated(&self.interview_id);
                broadcast(&mut self.subscribers, &frame);
            }
            InterviewMsg::Delete { reply } => {
                let owner = self.owner().to_owned();
                let answer = self.execute(InterviewCommand::Delete { at: self.now() }, Metadata::by(owner)).await;
                if answer.is_ok() {
                    let frame = frames::updated(&self.interview_id);
                    broadcast(&mut self.subscribers, &frame);
                    for (_, outlet) in self.subscribers.drain() {
                        let _ = outlet.try_send(Outbound::Close(1000, "interview deleted"));
                    }
                }
                let _ = reply.send(answer.map(|_| ()));
            }
            InterviewMsg::AiText { call_id, delta } => {
                let Some(partial) = self.partial.as_mut().filter(|p| p.call_id == call_id) else { return };
                partial.message.content.push_str(&delta);
                let frame = frames::message(&partial.message);
                broadcast(&mut self.subscribers, &frame);
            }
            InterviewMsg::AiDone { call_id, outcome } => self.finish(call_id, outcome).await,
            InterviewMsg::HintDue { done } => {
                self.hint_due().await;
                let _ = done.send(());
            }
        }
    }

    fn view(&self) -> View {
        let state = self.state();
        let owner = self.owner();
        let mut messages: Vec<MessageJson> =
            state.messages.iter().map(|m| MessageJson::stored(&self.interview_id, owner, m)).collect();
        if let Some(partial) = &self.partial {
            messages.push(partial.message.clone());
        }
        View {
            owner: state.owner.clone(),
            deleted: state.deleted,
            state: state.state(),
            skills: state.skills.clone(),
            updated_at: state.updated_at,
            stored_messages: state.messages.len() as u64,
            messages,
        }
    }

    fn send_to(&mut self, connection_id: &str, frame: crate::outlet::Text) {
        let Some(outlet) = self.subscribers.get(connection_id) else { return };
        match outlet.try_send(Outbound::Text(frame)) {
            Ok(()) => {}
            Err(crate::outlet::Refused::Full) => {
                outlet.drop_slow();
                self.subscribers.remove(connection_id);
            }
            Err(crate::outlet::Refused::Gone) => {
                self.subscribers.remove(connection_id);
            }
        }
    }

    fn refuse(&mut self, connection_id: &str, failure: &Failure) {
        let frame = match failure {
            Failure::RateLimited(quota) => {
                metrics::counter!(crate::metrics::RATE_LIMITED, "limit" => "ai").increment(1);
                frames::rate_limit(quota)
            }
            Failure::Busy(_) => frames::error("conflict", &failure.to_string()),
            Failure::Invalid(message) => frames::error("invalid_request", message),
            Failure::NotFound => frames::error("not_found", &failure.to_string()),
            Failure::Forbidden => frames::error("forbidden", &failure.to_string()),
            Failure::Unavailable => frames::error("unavailable", &failure.to_string()),
        };
        self.send_to(connection_id, frame);
    }

    /// Decides, appends and applies `command`, then shows its effects: the
    /// new state, new messages, the hint timer.
    async fn execute(&mut self, command: InterviewCommand, metadata: Metadata) -> Result<Vec<InterviewEvent>, Failure> {
        let before = self.state().state();
        let events = match self.hosted.execute(command, metadata).await {
            Ok(events) => events,
            Err(ExecuteError::Refused(InterviewError::Busy(state))) => return Err(Failure::Busy(state)),
            Err(ExecuteError::Refused(InterviewError::NotOpened | InterviewError::Deleted)) => {
                return Err(Failure::NotFound);
            }
            Err(ExecuteError::Refused(error)) => return Err(Failure::Invalid(error.to_string())),
            Err(ExecuteError::Store(_)) => return Err(Failure::Unavailable),
        };
        let owner = self.owner().to_owned();
        for event in &events {
            match event {
                InterviewEvent::AiCallStarted { call, at } => {
                    if let (Some(message_id), Some(message_type)) = (&call.message_id, call.kind.writes()) {
                        self.partial = Some(Partial {
                            call_id: call.call_id.clone(),
                            message: MessageJson {
                                id: message_id.clone(),
                                interview_id: self.interview_id.clone(),
                                user_id: owner.clone(),
                                role: MessageRole::Ai,
                                message_type,
                                content: String::new(),
                                created_at: *at,
                                status: MessageStatus::Streaming,
                            },
                        });
                    }
                }
                InterviewEvent::UserAnswered { message_id, .. }
                | InterviewEvent::AiMessageWritten { message_id, .. }
                | InterviewEvent::AiMessageFailed { message_id, .. } => {
                    if self.partial.as_ref().is_some_and(|p| p.message.id == *message_id) {
                        self.partial = None;
                    }
                    if let Some(message) = self.state().message(message_id) {
                        let frame = frames::message(&MessageJson::stored(&self.interview_id, &owner, message));
                        broadcast(&mut self.subscribers, &frame);
                    }
                }
                InterviewEvent::SkillsExtracted { .. } => {
                    let frame = frames::updated(&self.interview_id);
                    broadcast(&mut self.subscribers, &frame);
                }
                _ => {}
            }
        }
        if self.state().call.is_none() {
            self.partial = None;
        }
        let after = self.state().state();
        if after != before {
            let frame = frames::state(after);
            broadcast(&mut self.subscribers, &frame);
        }
        self.sync_hint_timer().await;
        Ok(events)
    }

    /// Keeps the durable hint timer where the aggregate says the hint is due.
    async fn sync_hint_timer(&mut self) {
        let due = self.state().hint_due;
        if due == self.hint_armed {
            return;
        }
        let owner = format!("{TIMER_PREFIX}{}", self.interview_id);
        let timers = self.interviews.timers();
        let result = match due {
            Some(due) => timers.arm(&owner, InterviewTimer::Hint.name(), due, "").await,
            None => timers.cancel(&owner, InterviewTimer::Hint.name()).await,
        };
        match result {
            Ok(()) => self.hint_armed = due,
            Err(error) => tracing::error!(interview = %self.interview_id, %error, "could not set the hint timer"),
        }
    }

    /// Reserves `calls` AI requests of the owner's quota.
    async fn reserve(&self, calls: u32) -> Result<(), Failure> {
        let limit = self.interviews.settings().rate_limit;
        let command = DirectoryCommand::ReserveAi {
            interview_id: self.interview_id.clone(),
            calls,
            limit: limit.requests,
            window_ms: limit.window.as_millis() as i64,
            at: self.now(),
        };
        self.interviews.directory_command(self.owner(), command).await.map(|_| ())
    }

    fn call_start(&self, kind: AiCallKind, input_size: u64) -> (AiCallStart, Uuid) {
        let call_id = Uuid::now_v7();
        let ai = self.interviews.ai().config();
        let model = if kind == AiCallKind::Transcribe { &ai.transcribe_model } else { &ai.chat_model };
        let start = AiCallStart {
            call_id: call_id.to_string(),
            kind,
            model: model.clone(),
            message_id: kind.writes().map(|_| Uuid::now_v7().to_string()),
            input_size,
            prompt_version: prompts::PROMPT_VERSION,
        };
        (start, call_id)
    }

    /// The first AI call: skills from the job description if there are
    /// none yet, else the first question.
    async fn begin(&mut self) {
        let state = self.state();
        let kind = if state.skills.is_empty() && !state.job_description.trim().is_empty() {
            AiCallKind::ExtractSkills
        } else {
            AiCallKind::Question
        };
        if let Err(failure) = self.reserve(1).await {
            tracing::info!(interview = %self.interview_id, %failure, "first AI call not started");
            return;
        }
        self.start(kind, Metadata::by("system:interview")).await;
    }

    /// Opens a call of `kind` on the idle interview and runs it (the quota
    /// is reserved by the caller).
    async fn start(&mut self, kind: AiCallKind, metadata: Metadata) {
        let (work, size) = match kind {
            AiCallKind::ExtractSkills => {
                let request = prompts::extract_skills(self.state());
                let size = prompts::size(&request);
                (Work::Skills(request), size)
            }
            AiCallKind::Question => {
                let request = prompts::question(self.state());
                let size = prompts::size(&request);
                (Work::Chat(request), size)
            }
            AiCallKind::Hint => {
                let request = prompts::hint(self.state());
                let size = prompts::size(&request);
                (Work::Chat(request), size)
            }
            AiCallKind::Transcribe => unreachable!("transcriptions start from audio"),
        };
        let (call, id) = self.call_start(kind, size);
        let call_id = call.call_id.clone();
        let command = InterviewCommand::StartAiCall { call, at: self.now() };
        match self.execute(command, metadata.correlated(id)).await {
            Ok(_) => calls::spawn(self.interviews.clone(), self.interview_id.clone(), call_id, work),
            Err(failure) => tracing::warn!(interview = %self.interview_id, ?kind, %failure, "AI call not started"),
        }
    }

    async fn answer(&mut self, connection_id: &str, content: String) {
        let Some(content) = clean_answer(&content) else {
            let message = format!("an answer has 1 to {MAX_ANSWER_CHARS} characters");
            self.refuse(connection_id, &Failure::Invalid(message));
            return;
        };
        let state = self.state().state();
        if state != InterviewState::Idle {
            self.refuse(connection_id, &Failure::Busy(state));
            return;
        }
        if let Err(failure) = self.reserve(1).await {
            self.refuse(connection_id, &failure);
            return;
        }
        let message_id = Uuid::now_v7().to_string();
        let at = self.now();
        // The reply's prompt includes the answer it replies to.
        let mut answered = self.state().clone();
        answered.apply(InterviewEvent::UserAnswered {
            message_id: message_id.clone(),
            content: content.clone(),
            source: eventuall_domain::interview::AnswerSource::Typed,
            at,
        });
        let request = prompts::question(&answered);
        let (reply, id) = self.call_start(AiCallKind::Question, prompts::size(&request));
        let call_id = reply.call_id.clone();
        let command = InterviewCommand::Answer { message_id, content, reply, at };
        let owner = self.owner().to_owned();
        match self.execute(command, Metadata::by(owner).correlated(id)).await {
            Ok(_) => calls::spawn(self.interviews.clone(), self.interview_id.clone(), call_id, Work::Chat(request)),
            Err(failure) => self.refuse(connection_id, &failure),
        }
    }

    async fn audio(&mut self, connection_id: &str, audio: Bytes) {
        let state = self.state().state();
        if state != InterviewState::Idle {
            self.refuse(connection_id, &Failure::Busy(state));
            return;
        }
        if audio.is_empty() {
            self.refuse(connection_id, &Failure::Invalid("an audio answer must not be empty".into()));
            return;
        }
        // Transcription and the reply to the transcribed answer.
        if let Err(failure) = self.reserve(2).await {
            self.refuse(connection_id, &failure);
            return;
        }
        let (call, id) = self.call_start(AiCallKind::Transcribe, audio.len() as u64);
        let call_id = call.call_id.clone();
        let owner = self.owner().to_owned();
        let command = InterviewCommand::StartAiCall { call, at: self.now() };
        match self.execute(command, Metadata::by(owner).correlated(id)).await {
            Ok(_) => {
                self.prepaid_reply = Some(call_id.clone());
                calls::spawn(self.interviews.clone(), self.interview_id.clone(), call_id, Work::Transcribe(audio));
            }
            Err(failure) => self.refuse(connection_id, &failure),
        }
    }

    async fn activity(&mut self, connection_id: &str) {
        let Some(due) = self.state().hint_due else { return };
        let hint_after = self.interviews.settings().hint_after.as_millis() as i64;
        let now = self.now();
        if now + hint_after < due + POSTPONE_STEP_MS {
            return;
        }
        let owner = self.owner().to_owned();
        if let Err(failure) = self
            .execute(InterviewCommand::PostponeHint { due_at: now + hint_after, at: now }, Metadata::by(owner))
            .await
        {
            self.refuse(connection_id, &failure);
        }
    }

    async fn hint_due(&mut self) {
        let Some(due) = self.state().hint_due else { return };
        let now = self.now();
        if due > now || self.state().deleted {
            // Fired early (moved meanwhile): the timer is re-armed at `due`.
            self.hint_armed = None;
            self.sync_hint_timer().await;
            return;
        }
        if self.state().state() != InterviewState::Idle {
            let owner = format!("{TIMER_PREFIX}{}", self.interview_id);
            let retry = now + HINT_RETRY.as_millis() as i64;
            if let Err(error) = self.interviews.timers().arm(&owner, InterviewTimer::Hint.name(), retry, "").await {
                tracing::error!(interview = %self.interview_id, %error, "could not re-arm the hint timer");
            }
            self.hint_armed = Some(retry);
            return;
        }
        match self.reserve(1).await {
            Ok(()) => self.start(AiCallKind::Hint, Metadata::by("system:hint")).await,
            Err(Failure::RateLimited(QuotaRefusal { .. })) => {
                let command = InterviewCommand::SkipHint { reason: "rate_limited".into(), at: now };
                let _ = self.execute(command, Metadata::by("system:hint")).await;
            }
            Err(failure) => tracing::warn!(interview = %self.interview_id, %failure, "hint not started"),
        }
    }

    /// An AI call's task reported its outcome.
    async fn finish(&mut self, call_id: String, outcome: Outcome) {
        let Some(call) = self.state().call.clone().filter(|c| c.call_id == call_id) else {
            tracing::warn!(interview = %self.interview_id, %call_id, "outcome of a call that is not open dropped");
            return;
        };
        let at = self.now();
        let system = Metadata::by("system:ai").correlated(Uuid::parse_str(&call_id).unwrap_or_default());
        match outcome {
            Outcome::Message { content, usage, finish_reason } => {
                let hint_after_ms = self.interviews.settings().hint_after.as_millis() as i64;
                let command =
                    InterviewCommand::CompleteMessage { call_id, content, usage, finish_reason, hint_after_ms, at };
                let _ = self.execute(command, system).await;
            }
            Outcome::Skills { skills, usage } => {
                let command = InterviewCommand::CompleteSkills { call_id, skills, usage, at };
                if self.execute(command, system).await.is_ok() {
                    let set = DirectoryCommand::SetSkills {
                        interview_id: self.interview_id.clone(),
                        skills: self.state().skills.clone(),
                        at,
                    };
                    if let Err(failure) = self.interviews.directory_command(self.owner(), set).await {
                        tracing::warn!(interview = %self.interview_id, %failure, "skills not copied to the directory");
                    }
                    match self.reserve(1).await {
                        Ok(()) => self.start(AiCallKind::Question, Metadata::by("system:interview")).await,
                        Err(failure) => {
                            tracing::info!(interview = %self.interview_id, %failure, "first question not asked")
                        }
                    }
                }
            }
            Outcome::Transcript { text } => {
                let prepaid = self.prepaid_reply.take().is_some_and(|id| id == call.call_id);
                if !prepaid && let Err(failure) = self.reserve(1).await {
                    let command = InterviewCommand::FailAiCall {
                        call_id,
                        outcome: "rate_limited".into(),
                        reason: failure.to_string(),
                        partial: String::new(),
                        at,
                    };
                    let _ = self.execute(command, system).await;
                    return;
                }
                let message_id = Uuid::now_v7().to_string();
                let mut answered = self.state().clone();
                answered.apply(InterviewEvent::UserAnswered {
                    message_id: message_id.clone(),
                    content: text.trim().to_owned(),
                    source: eventuall_domain::interview::AnswerSource::Audio,
                    at,
                });
                let request = prompts::question(&answered);
                let (reply, _) = self.call_start(AiCallKind::Question, prompts::size(&request));
                let reply_id = reply.call_id.clone();
                let command = InterviewCommand::CompleteTranscription {
                    call_id,
                    message_id,
                    text,
                    usage: Default::default(),
                    reply,
                    at,
                };
                if let Ok(events) = self.execute(command, system).await
                    && events.iter().any(|e| matches!(e, InterviewEvent::AiCallStarted { .. }))
                {
                    calls::spawn(self.interviews.clone(), self.interview_id.clone(), reply_id, Work::Chat(request));
                }
            }
            Outcome::Failed { outcome, reason, partial } => {
                tracing::warn!(interview = %self.interview_id, kind = ?call.kind, outcome, %reason, "AI call failed");
                if call.kind == AiCallKind::Transcribe {
                    self.prepaid_reply = None;
                }
                let command = InterviewCommand::FailAiCall { call_id, outcome: outcome.into(), reason, partial, at };
                let _ = self.execute(command, system).await;
            }
        }
    }
}
