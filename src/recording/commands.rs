//! The durable command queue of `POST /cloudcaster/{eventId}/start|stop`.
//!
//! A command is a row; the worker takes the oldest due one, applies it to
//! the coordinator and session aggregates, and marks it `done`, `refused`
//! (it can never succeed: a start while another session records), or, on an
//! error, schedules a retry with exponential backoff. After
//! `max_attempts` it becomes a dead letter (`dead`), listed by
//! `GET /cloudcaster/dead-letters` and put back by `…/{id}/retry`.
//!
//! The session id of a start is its command id, so re-running a start after
//! a crash finds the lock and session it already made.

use eventuall_domain::recording::{CoordinatorCommand, CoordinatorError, SessionCommand};
use uuid::Uuid;

use super::{Recording, Step, db};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    Start,
    Stop,
}

impl CommandKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("a recording is already active or queued for this event")]
    AlreadyRecording,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// How a command attempt ended.
enum Outcome {
    Done,
    Refused(String),
    Retry(String),
}

impl Recording {
    /// Queues a start or stop; answers its command id (for a start, also the
    /// session id). A start while a session holds the room, or while another
    /// start is queued, is refused at once.
    pub async fn enqueue(&self, event_id: &str, kind: CommandKind, requested_by: &str) -> Result<String, EnqueueError> {
        let store = &self.inner.store;
        let now = self.now();
        if kind == CommandKind::Start {
            let (coordinator, _) = self.coordinator(event_id).await?;
            if coordinator.active_at(now).is_some() || db::pending_count(store, event_id, "start").await? > 0 {
                return Err(EnqueueError::AlreadyRecording);
            }
        }
        let command_id = Uuid::now_v7().to_string();
        db::insert_command(store, &command_id, event_id, kind.as_str(), requested_by, now).await?;
        self.poke();
        Ok(command_id)
    }

    /// Processes the oldest due command, if any.
    pub async fn commands_try_step(&self) -> anyhow::Result<Step> {
        if !self.inner.lease.hold().await {
            return Ok(Step::Idle);
        }
        let store = &self.inner.store;
        let Some(command) = db::next_due_command(store, self.now()).await? else { return Ok(Step::Idle) };
        let outcome = match self.apply_command(&command).await {
            Ok(outcome) => outcome,
            Err(error) => Outcome::Retry(format!("{error:#}")),
        };
        let now = self.now();
        let settings = &self.inner.settings;
        let id = &command.command_id;
        match outcome {
            Outcome::Done => {
                db::update_command(store, id, "done", command.attempts + 1, now, None, now).await?;
            }
            Outcome::Refused(why) => {
                tracing::info!(command_id = %id, %why, "recording command refused");
                db::update_command(store, id, "refused", command.attempts + 1, now, Some(&why), now).await?;
            }
            Outcome::Retry(why) => {
                let attempts = command.attempts + 1;
                if attempts >= settings.max_attempts {
                    tracing::error!(command_id = %id, attempts, %why, "recording command dead-lettered");
                    db::update_command(store, id, "dead", attempts, now, Some(&why), now).await?;
                    if command.kind == CommandKind::Start.as_str()
                        && let Err(error) = self.compensate_dead_start(&command, &why).await
                    {
                        // The dead letter stays listed; retrying it compensates
                        // (its session is failed) or finishes the start.
                        tracing::error!(command_id = %id, error = %format!("{error:#}"), "could not undo a dead start");
                    }
                } else {
                    let due = now + settings.backoff_ms(attempts);
                    tracing::warn!(command_id = %id, attempts, %why, "recording command will be retried");
                    db::update_command(store, id, "pending", attempts, due, Some(&why), now).await?;
                }
            }
        }
        Ok(Step::Progressed)
    }

    async fn apply_command(&self, command: &db::CommandRow) -> anyhow::Result<Outcome> {
        let now = self.now();
        let event_id = command.event_id.as_str();
        match command.kind.as_str() {
            "start" => {
                let session_id = command.command_id.as_str();
                // A retried dead letter whose session was already failed (or
                // a start re-run after its session ended) must not lock the
                // room again for a session nobody drives.
                let (session, _) = self.session(session_id).await?;
                if session.phase.is_terminal() {
                    return Ok(Outcome::Refused(format!("session {session_id} already ended {:?}", session.phase)));
                }
                let acquire = CoordinatorCommand::Acquire { session_id: session_id.to_owned(), at: now };
                match self.execute_coordinator(event_id, acquire, session_id).await? {
                    Ok(_) => {}
                    Err(CoordinatorError::AlreadyRecording { session_id: other }) => {
                        return Ok(Outcome::Refused(format!("session {other} is already recording")));
                    }
                }
                super::stall_point("lock-acquired").await;
                let request = SessionCommand::Request {
                    session_id: session_id.to_owned(),
                    event_id: event_id.to_owned(),
                    requested_by: command.requested_by.clone(),
                    at: now,
                };
                self.execute_session(session_id, request, "StartRecording").await?;
                db::activate_session(&self.inner.store, session_id, event_id, now).await?;
                Ok(Outcome::Done)
            }
            "stop" => {
                let (coordinator, _) = self.coordinator(event_id).await?;
                // The start may still be queued behind us: retry, and
                // dead-letter if it never comes.
                let Some(lock) = coordinator.active else {
                    return Ok(Outcome::Retry("no active recording to stop".into()));
                };
                let stop =
                    SessionCommand::RequestStop { reason: format!("stopped by {}", command.requested_by), at: now };
                self.execute_session(&lock.session_id, stop, "StopRecording").await?;
                db::set_session_retry(&self.inner.store, &lock.session_id, 0, now, None).await?;
                Ok(Outcome::Done)
            }
            other => Ok(Outcome::Refused(format!("unknown command kind {other:?}"))),
        }
    }

    /// Undoes a start that will not be retried, so that its lock does not
    /// hold the room until the 12 h expiry (ADR 0005, amendment of
    /// 2026-11-23). The session ends `failed` with the reason either way.
    ///
    /// - Driven by the saga already (an attempt activated it, then failed
    ///   to mark the command done): it may have created a stream or an
    ///   egress, so it is failed and the saga compensates as for any failure.
    /// - Never driven: nothing outside exists (only the saga calls Mux and
    ///   LiveKit, and only for active sessions), so the lock is released and
    ///   the compensation recorded at once, with nothing to stop or delete.
    async fn compensate_dead_start(&self, command: &db::CommandRow, why: &str) -> anyhow::Result<()> {
        let session_id = command.command_id.as_str();
        let event_id = command.event_id.as_str();
        let reason = format!("the start command was dead-lettered: {why}");
        let (session, _) = self.session(session_id).await?;
        if session.phase.is_terminal() {
            return Ok(());
        }
        if db::is_session_active(&self.inner.store, session_id).await? {
            tracing::warn!(session_id, %reason, "failing a session whose start was dead-lettered");
            self.fail(session_id, reason).await?;
            self.poke();
            return Ok(());
        }
        let (coordinator, _) = self.coordinator(event_id).await?;
        let holds_lock = coordinator.active.as_ref().is_some_and(|lock| lock.session_id == session_id);
        if !holds_lock && session.phase == eventuall_domain::recording::Phase::New {
            // It never got as far as the lock: there is nothing to undo.
            return Ok(());
        }
        let now = self.now();
        if holds_lock {
            let release =
                CoordinatorCommand::Release { session_id: session_id.to_owned(), reason: reason.clone(), at: now };
            let _ = self.execute_coordinator(event_id, release, session_id).await?;
        }
        tracing::warn!(session_id, %reason, "released the lock of a dead-lettered start");
        use eventuall_domain::recording::SessionEvent as E;
        let record = |event| SessionCommand::Record(event);
        let commands = vec![
            SessionCommand::Request {
                session_id: session_id.to_owned(),
                event_id: event_id.to_owned(),
                requested_by: command.requested_by.clone(),
                at: now,
            },
            record(E::FailureDetected { reason: reason.clone(), at: now }),
            record(E::EgressStopped { egress_id: None, error: None, at: now }),
            record(E::StreamDeleted { stream_id: None, error: None, at: now }),
            record(E::LockReleased { at: now }),
            record(E::Failed { reason, at: now }),
        ];
        self.execute_session_all(session_id, commands, "CompensateDeadStart").await?;
        Ok(())
    }

    pub async fn dead_letters(&self) -> Result<Vec<db::CommandRow>, crate::store::StoreError> {
        db::commands_with_status(&self.inner.store, "dead").await
    }

    /// Puts a dead letter back in the queue; false if there is no such one.
    pub async fn retry_dead_letter(&self, command_id: &str) -> Result<bool, crate::store::StoreError> {
        let retried = db::retry_dead(&self.inner.store, command_id, self.now()).await?;
        if retried {
            self.poke();
        }
        Ok(retried)
    }
}
