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

use super::db::{CommandKind, CommandStatus};
use super::{Recording, Step, db};

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("a recording is already active or queued for this event")]
    AlreadyRecording,
    /// A stop with nothing recording and no start queued: refused at once
    /// rather than left to stop whatever starts next (issue #22, defect 9).
    #[error("nothing is recording or queued to record for this event")]
    NothingToStop,
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
        let (coordinator, _) = self.coordinator(event_id).await?;
        // The session recording now, else the one whose start is queued.
        let current = match coordinator.active_at(now) {
            Some(lock) => Some(lock.session_id.clone()),
            None => db::pending_start(store, event_id).await?,
        };
        let target = match (kind, current) {
            (CommandKind::Start, Some(_)) => return Err(EnqueueError::AlreadyRecording),
            (CommandKind::Start, None) => None,
            (CommandKind::Stop, None) => return Err(EnqueueError::NothingToStop),
            (CommandKind::Stop, Some(session_id)) => Some(session_id),
        };
        let command_id = Uuid::now_v7().to_string();
        // The check above is a fast answer, not the guard: two starts can
        // both pass it; the index of one pending start per event refuses
        // the second insert.
        match db::insert_command(store, &command_id, event_id, kind, requested_by, target.as_deref(), now).await {
            Err(error) if db::is_unique_violation(&error) => return Err(EnqueueError::AlreadyRecording),
            other => other?,
        }
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
                db::update_command(store, id, CommandStatus::Done, command.attempts + 1, now, None, now).await?;
            }
            Outcome::Refused(why) => {
                tracing::info!(command_id = %id, %why, "recording command refused");
                db::update_command(store, id, CommandStatus::Refused, command.attempts + 1, now, Some(&why), now)
                    .await?;
            }
            Outcome::Retry(why) => {
                let attempts = command.attempts + 1;
                if attempts >= settings.max_attempts {
                    tracing::error!(command_id = %id, attempts, %why, "recording command dead-lettered");
                    db::update_command(store, id, CommandStatus::Dead, attempts, now, Some(&why), now).await?;
                    if command.kind() == Some(CommandKind::Start)
                        && let Err(error) = self.compensate_dead_start(&command, &why).await
                    {
                        // The dead letter stays listed; retrying it compensates
                        // (its session is failed) or finishes the start.
                        tracing::error!(command_id = %id, error = %format!("{error:#}"), "could not undo a dead start");
                    }
                } else {
                    let due = now + settings.backoff_ms(attempts);
                    tracing::warn!(command_id = %id, attempts, %why, "recording command will be retried");
                    db::update_command(store, id, CommandStatus::Pending, attempts, due, Some(&why), now).await?;
                }
            }
        }
        Ok(Step::Progressed)
    }

    async fn apply_command(&self, command: &db::CommandRow) -> anyhow::Result<Outcome> {
        let now = self.now();
        let event_id = command.event_id.as_str();
        match command.kind() {
            Some(CommandKind::Start) => {
                let session_id = command.command_id.as_str();
                // A retried dead letter whose session was already failed (or
                // a start re-run after its session ended) must not lock the
                // room again for a session nobody drives.
                let mut session = self.load_session(session_id).await?;
                if session.state.phase.is_terminal() {
                    let phase = session.state.phase;
                    return Ok(Outcome::Refused(format!("session {session_id} already ended {phase:?}")));
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
                self.execute_session(&mut session, request, "StartRecording").await?;
                db::activate_session(&self.inner.store, session_id, event_id, now).await?;
                Ok(Outcome::Done)
            }
            Some(CommandKind::Stop) => {
                let (coordinator, _) = self.coordinator(event_id).await?;
                let active = coordinator.active.map(|lock| lock.session_id);
                let session_id = match (active, command.target_session_id.as_deref()) {
                    (Some(active), Some(target)) if active == target => active,
                    // A stop queued before stops named their session.
                    (Some(active), None) => active,
                    (_, Some(target)) => {
                        // Its session's start is still queued (in a retry
                        // backoff): wait for it. Otherwise that session has
                        // ended, or never got the room: the stop is done as a
                        // no-op and leaves any later recording alone.
                        if db::pending_start(&self.inner.store, event_id).await?.as_deref() == Some(target) {
                            return Ok(Outcome::Retry(format!("the start of session {target} is still queued")));
                        }
                        return Ok(Outcome::Refused(format!("session {target} is not recording")));
                    }
                    (None, None) => return Ok(Outcome::Refused("nothing was recording when the stop ran".into())),
                };
                let stop =
                    SessionCommand::RequestStop { reason: format!("stopped by {}", command.requested_by), at: now };
                let mut session = self.load_session(&session_id).await?;
                self.execute_session(&mut session, stop, "StopRecording").await?;
                db::set_session_retry(&self.inner.store, &session_id, 0, now, None).await?;
                Ok(Outcome::Done)
            }
            None => Ok(Outcome::Refused(format!("unknown command kind {:?}", command.kind))),
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
        let mut session = self.load_session(session_id).await?;
        if session.state.phase.is_terminal() {
            return Ok(());
        }
        if db::is_session_active(&self.inner.store, session_id).await? {
            tracing::warn!(session_id, %reason, "failing a session whose start was dead-lettered");
            self.fail(&mut session, reason).await?;
            self.poke();
            return Ok(());
        }
        let (coordinator, _) = self.coordinator(event_id).await?;
        let holds_lock = coordinator.active.as_ref().is_some_and(|lock| lock.session_id == session_id);
        if !holds_lock && session.state.phase == eventuall_domain::recording::Phase::New {
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
        self.execute_session_all(&mut session, commands, "CompensateDeadStart").await?;
        Ok(())
    }

    pub async fn dead_letters(&self) -> Result<Vec<db::CommandRow>, crate::store::StoreError> {
        db::commands_with_status(&self.inner.store, CommandStatus::Dead).await
    }

    /// One dead letter, if `command_id` is one.
    pub async fn dead_letter(&self, command_id: &str) -> Result<Option<db::CommandRow>, crate::store::StoreError> {
        Ok(db::command(&self.inner.store, command_id).await?.filter(|row| row.status() == Some(CommandStatus::Dead)))
    }

    /// Puts a dead letter back in the queue; false if there is no such one.
    /// A dead start cannot go back while another start of its event is
    /// queued (one pending start per event): `AlreadyRecording`.
    pub async fn retry_dead_letter(&self, command_id: &str) -> Result<bool, EnqueueError> {
        let retried = match db::retry_dead(&self.inner.store, command_id, self.now()).await {
            Err(error) if db::is_unique_violation(&error) => return Err(EnqueueError::AlreadyRecording),
            other => other?,
        };
        if retried {
            self.poke();
        }
        Ok(retried)
    }
}
