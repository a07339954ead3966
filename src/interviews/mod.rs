//! AI interview rooms (the second seed's `Interview` and `UserInterviews`
//! Durable Objects).
//!
//! [`Interviews`] is the service's handle. It runs two kinds of actors on
//! the shared runtime ([`crate::actor`]), each the single writer of its
//! stream and built on [`crate::host::Hosted`]:
//!
//! - [`directory`]: one per user, `user_interviews-{userId}`: the list of
//!   interviews and the AI quota, plus the user socket's subscribers
//!   (`INTERVIEW_CREATED` / `UPDATED` / `DELETED`).
//! - [`conversation`]: one per interview, `interview-{id}`: messages, the
//!   state machine, hints, the AI call in flight and the interview socket's
//!   subscribers (`INTERVIEW_STATE`, streamed `INTERVIEW_MESSAGE`s).
//!
//! An AI call runs in a task of its own ([`calls`]) and reports back to its
//! interview's actor, which alone writes: partial text is relayed as it
//! arrives, only the finished or failed message is stored. The wire frames
//! are in [`frames`], the prompts in [`prompts`].
//!
//! Creating an interview writes the directory first, then opens the
//! interview's stream. A crash between the two leaves a listed interview
//! with an empty stream; the next read opens it from the directory entry
//! ([`Interviews::authorize`]), so the user never sees a dead entry.

pub mod calls;
pub mod conversation;
pub mod directory;
pub mod frames;
pub mod prompts;
pub mod provider;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use eventuall_domain::interview::{
    DirectoryCommand, DirectoryError, Interview, InterviewEntry, InterviewState, StreamKey, UserInterviews,
};
use eventuall_media::ai::AiClient;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::actor::{ActorHandle, Registry};
use crate::clock::SharedClock;
use crate::store::{EventStore, StreamId};
use crate::timers::{Timer, Timers};
pub use conversation::InterviewMsg;
pub use directory::DirectoryMsg;
pub use frames::{InterviewJson, MessageJson};

/// An interview's durable timers (owner `interview-{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterviewTimer {
    /// The AI writes a hint when a question went unanswered.
    Hint,
    /// The interview is archived when nobody used it for
    /// `EVENTUALL_ARCHIVE_AFTER`; armed when its actor leaves memory.
    Archive,
}

impl InterviewTimer {
    pub const fn name(self) -> &'static str {
        match self {
            InterviewTimer::Hint => "hint",
            InterviewTimer::Archive => "archive",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [InterviewTimer::Hint, InterviewTimer::Archive].into_iter().find(|t| t.name() == name)
    }
}

/// What an archive timer found when it came due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveDue {
    /// Archived now (the events moved; 0 when an earlier run had moved them).
    Archived { events: u64 },
    /// Used since the timer was armed: armed again at `due`.
    NotYet { due: i64 },
    /// Its actor is in memory; it arms the timer again when it leaves.
    InUse,
    /// No such interview in the list.
    Unknown,
}
/// Timer owners of interviews start with this.
pub const TIMER_PREFIX: &str = "interview-";

/// The seed's per-user AI rate limit: `requests` per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

impl RateLimit {
    /// Parses `100/24h`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (requests, window) = raw.split_once('/').ok_or("a rate limit is written like 100/24h")?;
        let requests: u32 = requests.trim().parse().map_err(|_| format!("{requests:?} is not a request count"))?;
        let window = humantime::parse_duration(window.trim()).map_err(|e| format!("{window:?}: {e}"))?;
        if requests == 0 || window.is_zero() {
            return Err("a rate limit needs at least one request and a window longer than zero".into());
        }
        Ok(Self { requests, window })
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

/// Configuration of interview rooms.
#[derive(Clone, Debug)]
pub struct InterviewSettings {
    /// Quiet time after a question before the AI writes a hint.
    pub hint_after: Duration,
    pub rate_limit: RateLimit,
    /// Largest audio answer (one binary frame).
    pub max_audio_bytes: usize,
    /// An interview or directory with no socket and no AI call for this long
    /// leaves memory.
    pub evict_after: Duration,
    /// An interview unused this long moves to the archive tier.
    pub archive_after: Duration,
}

/// Why a request about an interview was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no such interview")]
    NotFound,
    #[error("this interview belongs to someone else")]
    Forbidden,
    #[error("{0}")]
    Invalid(String),
    #[error("the AI is busy ({}); wait until it is idle", .0.as_str())]
    Busy(InterviewState),
    #[error("the AI request limit of {} is used up", .0.limit)]
    RateLimited(QuotaRefusal),
    #[error("the interview service is unavailable, try again")]
    Unavailable,
}

/// The quota that refused a request (the `RATELIMIT` frame's fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaRefusal {
    pub limit: u32,
    pub remaining: u32,
    pub reset_at: i64,
}

impl From<DirectoryError> for Failure {
    fn from(error: DirectoryError) -> Self {
        match error {
            DirectoryError::Unknown(_) => Failure::NotFound,
            DirectoryError::RateLimited { limit, remaining, reset_at } => {
                Failure::RateLimited(QuotaRefusal { limit, remaining, reset_at })
            }
            other => Failure::Invalid(other.to_string()),
        }
    }
}

/// What `POST /api/interviews` asks for.
#[derive(Clone, Debug)]
pub struct NewInterview {
    pub title: String,
    pub job_description: String,
    pub skills: Vec<String>,
}

#[derive(Clone)]
pub struct Interviews {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    timers: Arc<Timers>,
    clock: SharedClock,
    ai: AiClient,
    settings: InterviewSettings,
    conversations: std::sync::OnceLock<Arc<Registry<InterviewMsg>>>,
    directories: std::sync::OnceLock<Arc<Registry<DirectoryMsg>>>,
}

/// The stream of an interview.
pub fn interview_stream(interview_id: &str) -> StreamId {
    StreamId::of(<Interview as cqrs_es::Aggregate>::TYPE, interview_id)
}

/// The stream of a user's directory.
pub fn directory_stream(user_id: &str) -> StreamId {
    StreamId::of(<UserInterviews as cqrs_es::Aggregate>::TYPE, user_id)
}

impl Interviews {
    pub fn new(
        store: EventStore,
        timers: Arc<Timers>,
        clock: SharedClock,
        ai: AiClient,
        settings: InterviewSettings,
    ) -> Self {
        let interviews = Self {
            inner: Arc::new(Inner {
                store,
                timers,
                clock,
                ai,
                settings,
                conversations: std::sync::OnceLock::new(),
                directories: std::sync::OnceLock::new(),
            }),
        };
        let weak = Arc::downgrade(&interviews.inner);
        let conversations = Registry::new(move |interview_id: String, mailbox, retirement| {
            let weak = weak.clone();
            async move {
                let Some(inner) = weak.upgrade() else { return };
                conversation::run(Interviews { inner }, interview_id, mailbox, retirement).await;
            }
        });
        let weak = Arc::downgrade(&interviews.inner);
        let directories = Registry::new(move |user_id: String, mailbox, retirement| {
            let weak = weak.clone();
            async move {
                let Some(inner) = weak.upgrade() else { return };
                directory::run(Interviews { inner }, user_id, mailbox, retirement).await;
            }
        });
        let _ = interviews.inner.conversations.set(conversations);
        let _ = interviews.inner.directories.set(directories);
        interviews
    }

    /// The directory actors, one per user (the cluster gates and evicts
    /// them: a user is the scope of their directory and interviews).
    pub fn directories(&self) -> &Arc<Registry<DirectoryMsg>> {
        self.inner.directories.get().expect("set in new")
    }

    /// The interview actors.
    pub fn conversations(&self) -> &Arc<Registry<InterviewMsg>> {
        self.inner.conversations.get().expect("set in new")
    }

    pub fn settings(&self) -> &InterviewSettings {
        &self.inner.settings
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now_millis()
    }

    pub(crate) fn store(&self) -> &EventStore {
        &self.inner.store
    }

    pub(crate) fn timers(&self) -> &Arc<Timers> {
        &self.inner.timers
    }

    pub(crate) fn ai(&self) -> &AiClient {
        &self.inner.ai
    }

    /// Sends to the actor of interview `id`, starting it if needed.
    pub async fn to_interview(&self, interview_id: &str, msg: InterviewMsg) {
        self.inner.conversations.get().expect("set in new").send(interview_id, msg).await;
    }

    /// The way to one interview's actor for a socket's many messages.
    pub fn interview_handle(&self, interview_id: &str) -> ActorHandle<InterviewMsg> {
        self.conversations().handle(interview_id)
    }

    /// Sends to the directory actor of `user_id`, starting it if needed.
    pub async fn to_directory(&self, user_id: &str, msg: DirectoryMsg) {
        self.inner.directories.get().expect("set in new").send(user_id, msg).await;
    }

    /// Wakes every interview the list shows in an `ai.*` state: loading its
    /// actor closes an AI call that died with an earlier process (the reply
    /// becomes a failed message, the interview idle), so nobody finds it
    /// stuck, even before its owner opens it again. Run at start-up, once
    /// the interviews projection has caught up. Returns how many were woken.
    pub async fn recover_interrupted(&self) -> Result<usize, crate::store::StoreError> {
        let sql = "select interview_id from interviews where state <> 'idle' and deleted = 0";
        let stuck: Vec<(String,)> = self.inner.store.query_as(sql, &[]).await?;
        for (interview_id,) in &stuck {
            let (reply, loaded) = oneshot::channel();
            self.to_interview(interview_id, InterviewMsg::View { reply }).await;
            let _ = loaded.await;
        }
        Ok(stuck.len())
    }

    pub fn live_interviews(&self) -> usize {
        self.inner.conversations.get().expect("set in new").live()
    }

    pub fn is_live(&self, interview_id: &str) -> bool {
        self.inner.conversations.get().expect("set in new").is_live(interview_id)
    }

    /// Runs a directory command for `user_id`; answers the entry it touched.
    pub async fn directory_command(
        &self,
        user_id: &str,
        command: DirectoryCommand,
    ) -> Result<Option<InterviewEntry>, Failure> {
        let (reply, answer) = oneshot::channel();
        self.to_directory(user_id, DirectoryMsg::Command { command, reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)?
    }

    /// The directory entry of `interview_id` in `user_id`'s directory.
    pub async fn entry(&self, user_id: &str, interview_id: &str) -> Result<Option<InterviewEntry>, Failure> {
        let (reply, answer) = oneshot::channel();
        self.to_directory(user_id, DirectoryMsg::Entry { interview_id: interview_id.to_owned(), reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)
    }

    /// How many AI requests `user_id` may still make now.
    pub async fn quota(&self, user_id: &str) -> Result<QuotaRefusal, Failure> {
        let (reply, answer) = oneshot::channel();
        self.to_directory(user_id, DirectoryMsg::Quota { reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)
    }

    /// The interview's conversation as its actor sees it.
    async fn view(&self, interview_id: &str) -> Result<conversation::View, Failure> {
        let (reply, answer) = oneshot::channel();
        self.to_interview(interview_id, InterviewMsg::View { reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)
    }

    /// Creates an interview for `user_id` and starts its first AI call.
    pub async fn create(&self, user_id: &str, new: NewInterview) -> Result<InterviewJson, Failure> {
        let user = StreamKey::parse(user_id).map_err(|e| Failure::Invalid(format!("user id: {e}")))?;
        // A friendly refusal before anything is written; each AI call still
        // reserves its own request atomically in the directory.
        let quota = self.quota(user.as_str()).await?;
        if quota.remaining == 0 {
            return Err(Failure::RateLimited(quota));
        }
        let interview_id = uuid::Uuid::now_v7().to_string();
        let command = DirectoryCommand::Create {
            interview_id: interview_id.clone(),
            title: new.title,
            job_description: new.job_description,
            skills: new.skills,
            at: self.now(),
        };
        let entry = self.directory_command(user.as_str(), command).await?.ok_or(Failure::Unavailable)?;
        self.open(user.as_str(), &interview_id, &entry).await?;
        let view = self.view(&interview_id).await?;
        Ok(InterviewJson::merge(&interview_id, user.as_str(), &entry, &view))
    }

    async fn open(&self, user_id: &str, interview_id: &str, entry: &InterviewEntry) -> Result<(), Failure> {
        let (reply, answer) = oneshot::channel();
        let msg = InterviewMsg::Open {
            user_id: user_id.to_owned(),
            job_description: entry.job_description.clone(),
            skills: entry.skills.clone(),
            reply,
        };
        self.to_interview(interview_id, msg).await;
        answer.await.map_err(|_| Failure::Unavailable)?
    }

    /// Whether `user_id` owns `interview_id`: `NotFound` if nobody does,
    /// `Forbidden` if someone else does. Opens an interview its owner's
    /// directory lists but whose stream was never opened (a crash between
    /// the two writes of a create).
    pub async fn authorize(&self, user_id: &str, interview_id: &str) -> Result<InterviewEntry, Failure> {
        let id = StreamKey::parse(interview_id).map_err(|_| Failure::NotFound)?;
        let view = self.view(id.as_str()).await?;
        match view.owner.as_deref() {
            Some(owner) if owner != user_id => return Err(Failure::Forbidden),
            Some(_) if view.deleted => return Err(Failure::NotFound),
            _ => {}
        }
        if StreamKey::parse(user_id).is_err() {
            return Err(Failure::Forbidden);
        }
        let entry = self.entry(user_id, id.as_str()).await?.ok_or(Failure::NotFound)?;
        if view.owner.is_none() {
            tracing::warn!(interview = %interview_id, "listed interview had no stream; opening it");
            self.open(user_id, id.as_str(), &entry).await?;
        }
        Ok(entry)
    }

    /// `GET /api/interviews/{id}`: the interview and its messages.
    pub async fn get(&self, user_id: &str, interview_id: &str) -> Result<(InterviewJson, Vec<MessageJson>), Failure> {
        let entry = self.authorize(user_id, interview_id).await?;
        let view = self.view(interview_id).await?;
        let interview = InterviewJson::merge(interview_id, user_id, &entry, &view);
        Ok((interview, view.messages))
    }

    pub async fn rename(&self, user_id: &str, interview_id: &str, title: String) -> Result<InterviewJson, Failure> {
        self.authorize(user_id, interview_id).await?;
        let command = DirectoryCommand::Rename { interview_id: interview_id.to_owned(), title, at: self.now() };
        let entry = self.directory_command(user_id, command).await?.ok_or(Failure::NotFound)?;
        self.to_interview(interview_id, InterviewMsg::Updated).await;
        let view = self.view(interview_id).await?;
        Ok(InterviewJson::merge(interview_id, user_id, &entry, &view))
    }

    /// Deletes an interview: gone from lists and sockets; its streams stay
    /// for the audit.
    pub async fn delete(&self, user_id: &str, interview_id: &str) -> Result<(), Failure> {
        self.authorize(user_id, interview_id).await?;
        let command = DirectoryCommand::Delete { interview_id: interview_id.to_owned(), at: self.now() };
        self.directory_command(user_id, command).await?;
        let (reply, answer) = oneshot::channel();
        self.to_interview(interview_id, InterviewMsg::Delete { reply }).await;
        answer.await.map_err(|_| Failure::Unavailable)?
    }

    /// `GET /api/interviews`: the user's interviews, newest first, from the
    /// `interviews` projection once it has caught up with the log as it was
    /// when the request came (so a client reads its own writes).
    pub async fn list(&self, user_id: &str) -> Result<Vec<InterviewJson>, Failure> {
        let store = self.store();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let caught_up = crate::projections::caught_up(store, crate::projections::Projection::Interviews)
                .await
                .map_err(|_| Failure::Unavailable)?;
            if caught_up {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("interview list served behind the log");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        frames::list_rows(store, user_id).await.map_err(|error| {
            tracing::error!(%error, "reading the interview list failed");
            Failure::Unavailable
        })
    }

    /// Delivers a fired hint timer and waits until the interview handled it.
    pub async fn fire(&self, timer: Timer) {
        let Some(interview_id) = timer.owner.strip_prefix(TIMER_PREFIX) else { return };
        match InterviewTimer::parse(&timer.name) {
            Some(InterviewTimer::Hint) => {
                let (done, handled) = oneshot::channel();
                self.to_interview(interview_id, InterviewMsg::HintDue { done }).await;
                let _ = handled.await;
            }
            Some(InterviewTimer::Archive) => match self.archive_if_idle(interview_id).await {
                Ok(outcome) => tracing::debug!(interview = %interview_id, ?outcome, "archive timer"),
                // The timer row goes with this firing; the next time the
                // actor leaves memory arms it again.
                Err(error) => tracing::warn!(interview = %interview_id, %error, "interview not archived"),
            },
            None => tracing::warn!(owner = %timer.owner, name = %timer.name, "unknown interview timer dropped"),
        }
    }

    /// Arms the archive timer of `interview_id`: `archive_after` from now.
    pub(crate) async fn arm_archive(&self, interview_id: &str) {
        let owner = format!("{TIMER_PREFIX}{interview_id}");
        let due = self.now() + self.settings().archive_after.as_millis() as i64;
        if let Err(error) = self.timers().arm(&owner, InterviewTimer::Archive.name(), due, "").await {
            tracing::error!(interview = %interview_id, %error, "could not arm the archive timer");
        }
    }

    /// An archive timer came due: archives the interview's stream when it
    /// was last used at least `archive_after` ago (the list's `updatedAt`,
    /// in the service clock's time), and marks it archived in its owner's
    /// list; otherwise arms the timer again for when it will be.
    pub async fn archive_if_idle(&self, interview_id: &str) -> Result<ArchiveDue, crate::store::StoreError> {
        if self.is_live(interview_id) {
            return Ok(ArchiveDue::InUse);
        }
        let rows: Vec<(String, i64)> = self
            .store()
            .query_as("select user_id, updated_at from interviews where interview_id = $1", &[interview_id.into()])
            .await?;
        let Some((user_id, updated_at)) = rows.into_iter().next() else { return Ok(ArchiveDue::Unknown) };
        let due = updated_at + self.settings().archive_after.as_millis() as i64;
        if due > self.now() {
            let owner = format!("{TIMER_PREFIX}{interview_id}");
            self.timers().arm(&owner, InterviewTimer::Archive.name(), due, "").await?;
            return Ok(ArchiveDue::NotYet { due });
        }
        let outcome = self.store().archive_stream(&interview_stream(interview_id)).await?;
        let command = DirectoryCommand::Archive { interview_id: interview_id.to_owned(), at: self.now() };
        if let Err(failure) = self.directory_command(&user_id, command).await {
            tracing::warn!(interview = %interview_id, %failure, "archived, but the list does not say so");
        }
        Ok(ArchiveDue::Archived { events: outcome.events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_read_like_the_configuration() {
        assert_eq!(
            RateLimit::parse("100/24h").unwrap(),
            RateLimit { requests: 100, window: Duration::from_secs(86_400) }
        );
        assert_eq!(RateLimit::parse("3/90s").unwrap(), RateLimit { requests: 3, window: Duration::from_secs(90) });
        assert!(RateLimit::parse("100").is_err());
        assert!(RateLimit::parse("0/1h").is_err());
        assert!(RateLimit::parse("x/1h").is_err());
    }
}
