//! `Recording`: long-lived. The health timer watches the egress and the
//! stream, the 12 h cap timer asks for a stop; a stop moves it on.

use eventuall_domain::recording::{MAX_RECORDING_MS, Phase, RecordingSession, SessionCommand};
use eventuall_domain::room::RecordingStatus;
use eventuall_media::livekit::{proto, status};
use eventuall_media::mux::LiveStreamStatus;

use super::{Advance, Due, StepError, StepResult, egress_ended};
use crate::recording::{Recording, SagaTimer, timer_owner};

impl Recording {
    /// A step of a recording session only checks its timers: a crash
    /// between `RecordingStarted` and arming them would leave it unwatched,
    /// so a missing cap timer is re-armed here.
    pub(super) async fn watch_recording(&self, due: &mut Due) -> StepResult {
        if self.inner.timers.get(&timer_owner(due.id()), SagaTimer::Cap.name()).await?.is_none() {
            let started = due.state().started_at.unwrap_or(due.now);
            self.arm_recording_timers(due.id(), due.now, started + MAX_RECORDING_MS).await?;
            self.set_room(due.state(), Some((RecordingStatus::Recording, started)), due.now).await;
        }
        Ok(Advance::Waiting)
    }

    pub(in crate::recording) async fn on_timer(&self, session_id: &str, timer: SagaTimer) -> anyhow::Result<()> {
        let _guard = self.inner.step_lock.lock().await;
        let mut session = self.load_session(session_id).await?;
        if session.state.phase != Phase::Recording {
            return Ok(());
        }
        let now = self.now();
        match timer {
            SagaTimer::Cap => {
                let command = SessionCommand::RequestStop { reason: "12 h maximum reached".into(), at: now };
                self.execute_session(&mut session, command, "RequestStop").await?;
            }
            SagaTimer::Health => {
                match self.health(&session.state).await {
                    Ok(()) => {}
                    Err(StepError::Fatal(reason)) => {
                        tracing::warn!(session_id, %reason, "recording health check failed; compensating");
                        self.fail(&mut session, reason).await?;
                        return Ok(());
                    }
                    // Cannot tell right now; look again at the next check.
                    Err(e) => tracing::warn!(session_id, error = ?e, "recording health check inconclusive"),
                }
                let due = now + self.inner.settings.health_every.as_millis() as i64;
                self.inner.timers.arm(&timer_owner(session_id), SagaTimer::Health.name(), due, "").await?;
            }
        }
        Ok(())
    }

    async fn health(&self, session: &RecordingSession) -> Result<(), StepError> {
        let egress_id = session.egress_id.clone().unwrap_or_default();
        match self.inner.egress.get_egress(&egress_id).await? {
            None => return Err(StepError::Fatal(format!("egress {egress_id} vanished"))),
            Some(info) if status(&info) != proto::EgressStatus::EgressActive => {
                return Err(StepError::Fatal(egress_ended(&info)));
            }
            Some(_) => {}
        }
        let stream = self.inner.mux.get_live_stream(session.stream_id.as_deref().unwrap_or_default()).await?;
        // A stream whose encoder dropped stays `active` for its reconnect
        // window, and a reconnection inside it continues the same asset:
        // that is no failure. Past the window the stream goes `idle`, and a
        // later reconnection starts a new asset: the recording was cut.
        if stream.status != LiveStreamStatus::Active {
            return Err(StepError::Fatal(format!("live stream is {:?} while recording", stream.status)));
        }
        if let (Some(recording), Some(live)) = (&session.asset_id, &stream.active_asset_id)
            && recording != live
        {
            return Err(StepError::Fatal(format!(
                "the live stream was interrupted past its reconnect window: asset {recording} ended, {live} began"
            )));
        }
        Ok(())
    }
}
