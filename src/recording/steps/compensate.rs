//! `Compensating` → `Failed`: stop the egress, delete the stream, release
//! the lock, one per step. A step that keeps failing is recorded as
//! abandoned (with its error), so that compensation always ends.

use eventuall_domain::recording::{Phase, SessionEvent};
use eventuall_media::livekit::EgressError;
use eventuall_media::mux::MuxError;

use super::{Due, StepResult};
use crate::recording::Recording;

impl Recording {
    pub(super) async fn compensate(&self, due: &mut Due) -> StepResult {
        let give_up = due.attempts + 1 >= self.inner.settings.max_attempts;
        let now = due.now;
        let session = due.state();
        if !session.egress_stopped {
            let egress = &self.inner.egress;
            let egress_id = match &session.egress_id {
                Some(id) => Some(id.clone()),
                // A start whose response was lost may have created one.
                None if session.page_url.is_some() => {
                    match egress.find_active_egress_by_url(session.page_url.as_deref().unwrap_or_default()).await {
                        Ok(found) => found.map(|info| info.egress_id),
                        Err(e) if give_up => return self.abandon_egress(due, None, e.to_string()).await,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => None,
            };
            if let Some(id) = &egress_id {
                match egress.stop_egress(id).await {
                    Ok(_) | Err(EgressError::NotFound(_)) => {}
                    Err(e) if give_up => return self.abandon_egress(due, egress_id, e.to_string()).await,
                    Err(e) => return Err(e.into()),
                }
            }
            return self.progress(due, SessionEvent::EgressStopped { egress_id, error: None, at: now }).await;
        }
        if !session.stream_deleted {
            let mux = &self.inner.mux;
            let stream_id = match &session.stream_id {
                Some(id) => Some(id.clone()),
                None if session.phase != Phase::Requested => {
                    match mux.find_live_stream_by_passthrough(due.id()).await {
                        Ok(found) => found.map(|s| s.id),
                        Err(e) if give_up => return self.abandon_stream(due, None, e.to_string()).await,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => None,
            };
            if let Some(id) = &stream_id {
                match mux.delete_live_stream(id).await {
                    Ok(()) | Err(MuxError::NotFound) => {}
                    Err(e) if give_up => return self.abandon_stream(due, stream_id, e.to_string()).await,
                    Err(e) => return Err(e.into()),
                }
            }
            return self.progress(due, SessionEvent::StreamDeleted { stream_id, error: None, at: now }).await;
        }
        if !session.lock_released {
            self.release(session, "failed", now).await?;
            return self.progress(due, SessionEvent::LockReleased { at: now }).await;
        }
        let reason = session.failure.clone().unwrap_or_else(|| "failed".into());
        self.progress(due, SessionEvent::Failed { reason, at: now }).await
    }

    async fn abandon_egress(&self, due: &mut Due, egress_id: Option<String>, error: String) -> StepResult {
        tracing::error!(session_id = due.id(), ?egress_id, %error, "could not stop the egress; giving up on it");
        self.progress(due, SessionEvent::EgressStopped { egress_id, error: Some(error), at: due.now }).await
    }

    async fn abandon_stream(&self, due: &mut Due, stream_id: Option<String>, error: String) -> StepResult {
        tracing::error!(session_id = due.id(), ?stream_id, %error, "could not delete the live stream; giving up on it");
        self.progress(due, SessionEvent::StreamDeleted { stream_id, error: Some(error), at: due.now }).await
    }
}
