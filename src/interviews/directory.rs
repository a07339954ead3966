//! A user's directory actor: the single writer of `user_interviews-{userId}`
//! and the hub of that user's sockets (`/parties/user-interviews/{userId}`).
//!
//! Every AI call of every interview of the user reserves its request here
//! ([`DirectoryMsg::Command`] with `ReserveAi`), one at a time, so the quota
//! holds across tabs and interviews.

use std::collections::HashMap;

use eventuall_domain::interview::{DirectoryCommand, DirectoryEvent, InterviewEntry, UserInterviews};
use tokio::sync::{mpsc, oneshot};

use super::{Failure, Interviews, QuotaRefusal, directory_stream, frames};
use crate::actor::Retirement;
use crate::host::{self, Decide, ExecuteError, Hosted, Next, SNAPSHOT_EVERY, Snapshots};
use crate::outlet::{Outbound, Outlet};
use crate::store::Metadata;

impl Decide for UserInterviews {
    const SNAPSHOT_TAG: &'static str = "user_interviews-v1";

    fn decide(&mut self, command: DirectoryCommand) -> Result<Vec<DirectoryEvent>, Self::Error> {
        UserInterviews::decide(self, command)
    }

    fn command_name(command: &DirectoryCommand) -> &'static str {
        command.name()
    }
}

pub enum DirectoryMsg {
    /// Answers the entry the command touched (after its events are stored).
    Command {
        command: DirectoryCommand,
        reply: oneshot::Sender<Result<Option<InterviewEntry>, Failure>>,
    },
    Entry {
        interview_id: String,
        reply: oneshot::Sender<Option<InterviewEntry>>,
    },
    /// The quota as it stands now (`remaining` of `limit`).
    Quota {
        reply: oneshot::Sender<QuotaRefusal>,
    },
    Connect {
        connection_id: String,
        outlet: Outlet,
    },
    Disconnect {
        connection_id: String,
    },
}

struct DirectoryActor {
    interviews: Interviews,
    user_id: String,
    hosted: Hosted<UserInterviews>,
    subscribers: HashMap<String, Outlet>,
}

pub(super) async fn run(
    interviews: Interviews,
    user_id: String,
    mut mailbox: mpsc::Receiver<DirectoryMsg>,
    retirement: Retirement<DirectoryMsg>,
) {
    let hosted = match Hosted::load(
        interviews.store().clone(),
        directory_stream(&user_id),
        Snapshots::InAppendEvery(SNAPSHOT_EVERY),
    )
    .await
    {
        Ok(hosted) => hosted,
        Err(error) => {
            tracing::error!(user = %user_id, %error, "interview directory could not be loaded");
            return;
        }
    };
    let evict_after = interviews.settings().evict_after;
    let mut actor = DirectoryActor { interviews, user_id, hosted, subscribers: HashMap::new() };
    loop {
        match host::next(&mut mailbox, actor.subscribers.is_empty().then_some(evict_after)).await {
            Next::Message(msg) => actor.handle(msg).await,
            Next::Idle if retirement.try_retire(&mut mailbox) => break,
            Next::Idle => {}
            Next::Closed => break,
        }
    }
    actor.hosted.save_snapshot().await;
}

impl DirectoryActor {
    async fn handle(&mut self, msg: DirectoryMsg) {
        match msg {
            DirectoryMsg::Command { command, reply } => {
                let interview_id = match &command {
                    DirectoryCommand::Create { interview_id, .. }
                    | DirectoryCommand::Rename { interview_id, .. }
                    | DirectoryCommand::SetSkills { interview_id, .. }
                    | DirectoryCommand::Archive { interview_id, .. }
                    | DirectoryCommand::Delete { interview_id, .. }
                    | DirectoryCommand::ReserveAi { interview_id, .. } => interview_id.clone(),
                };
                let metadata = Metadata::by(&self.user_id);
                let answer = match self.hosted.execute(command, metadata).await {
                    Ok(events) => {
                        for event in &events {
                            self.announce(event);
                        }
                        Ok(self.hosted.state.interviews.get(&interview_id).cloned())
                    }
                    Err(ExecuteError::Refused(error)) => Err(Failure::from(error)),
                    Err(ExecuteError::Store(_)) => Err(Failure::Unavailable),
                };
                let _ = reply.send(answer);
            }
            DirectoryMsg::Entry { interview_id, reply } => {
                let _ = reply.send(self.hosted.state.entry(&interview_id).cloned());
            }
            DirectoryMsg::Quota { reply } => {
                let limit = self.interviews.settings().rate_limit;
                let window_ms = limit.window.as_millis() as i64;
                let now = self.interviews.now();
                let quota = self.hosted.state.quota;
                let _ = reply.send(QuotaRefusal {
                    limit: limit.requests,
                    remaining: limit.requests.saturating_sub(quota.used_at(now, window_ms)),
                    reset_at: quota.resets_at(now, window_ms),
                });
            }
            DirectoryMsg::Connect { connection_id, outlet } => {
                self.subscribers.insert(connection_id, outlet);
            }
            DirectoryMsg::Disconnect { connection_id } => {
                self.subscribers.remove(&connection_id);
            }
        }
    }

    /// Tells the user's sockets what changed.
    fn announce(&mut self, event: &DirectoryEvent) {
        let frame = match event {
            DirectoryEvent::InterviewCreated { interview_id, .. } => frames::created(interview_id),
            DirectoryEvent::InterviewDeleted { interview_id, .. } => frames::deleted(interview_id),
            DirectoryEvent::InterviewRenamed { interview_id, .. }
            | DirectoryEvent::SkillsSet { interview_id, .. }
            | DirectoryEvent::InterviewArchived { interview_id, .. } => frames::updated(interview_id),
            DirectoryEvent::AiQuotaReserved { .. } => return,
        };
        broadcast(&mut self.subscribers, &frame);
    }
}

/// Queues `frame` for every subscriber; drops those that are gone or too
/// slow (a full queue), telling the slow ones' sockets to close.
pub(super) fn broadcast(subscribers: &mut HashMap<String, Outlet>, frame: &crate::outlet::Text) {
    subscribers.retain(|_, outlet| match outlet.try_send(Outbound::Text(frame.clone())) {
        Ok(()) => true,
        Err(crate::outlet::Refused::Full) => {
            outlet.drop_slow();
            false
        }
        Err(crate::outlet::Refused::Gone) => false,
    });
}
