//! `Stopping` → `AssetReady`: the egress stopped, the live stream completed
//! (which frees the room), the recorded asset ready to cut.

use eventuall_domain::recording::SessionEvent;
use eventuall_domain::room::RecordingStatus;
use eventuall_media::mux::{AssetStatus, LiveStreamStatus, MuxError};

use super::{Advance, Due, StepError, StepResult};
use crate::recording::Recording;

impl Recording {
    /// `Stopping`: show "stopping", then stop the egress.
    pub(super) async fn stop_egress(&self, due: &mut Due) -> StepResult {
        let session = due.state();
        let started = session.started_at.unwrap_or(session.requested_at);
        self.set_room(session, Some((RecordingStatus::Stopping, started)), due.now).await;
        let egress_id = session.egress_id.clone().unwrap_or_default();
        self.inner.egress.stop_egress(&egress_id).await?;
        self.progress(due, SessionEvent::EgressStopped { egress_id: Some(egress_id), error: None, at: due.now }).await
    }

    /// `EgressStopped`: complete the stream and wait until Mux has.
    pub(super) async fn complete_stream(&self, due: &mut Due) -> StepResult {
        let mux = &self.inner.mux;
        let stream_id = due.state().stream_id.clone().unwrap_or_default();
        // Ends the recording now rather than after the reconnect window (60 s
        // on Mux), so the room is free sooner. `complete` is idempotent:
        // after a crash it is simply sent again.
        match mux.complete_live_stream(&stream_id).await {
            Ok(()) => {}
            Err(MuxError::NotFound) => {
                return Err(StepError::Fatal(format!("live stream {stream_id} vanished before completing")));
            }
            Err(e) => return Err(e.into()),
        }
        let stream = mux.get_live_stream(&stream_id).await?;
        if stream.status == LiveStreamStatus::Active {
            // Mux has not applied the completion yet; look again.
            return Ok(Advance::Waiting);
        }
        let asset_id = due.state().asset_id.clone().or_else(|| stream.recent_asset_ids.last().cloned());
        match asset_id {
            Some(asset_id) => self.progress(due, SessionEvent::StreamCompleted { asset_id, at: due.now }).await,
            None => Err(StepError::Fatal("the live stream recorded no asset".into())),
        }
    }

    /// `StreamCompleted`, lock still held: the lock goes as soon as the
    /// stream is complete: nothing of this session uses the room any more,
    /// and cutting clips can take minutes (ADR 0005, amendment of
    /// 2026-11-23).
    pub(super) async fn release_after_stream(&self, due: &mut Due) -> StepResult {
        self.release(due.state(), "stream completed", due.now).await?;
        self.progress(due, SessionEvent::LockReleased { at: due.now }).await
    }

    /// `StreamCompleted`: wait until Mux has the asset ready.
    pub(super) async fn await_asset(&self, due: &mut Due) -> StepResult {
        let asset_id = due.state().asset_id.clone().unwrap_or_default();
        let asset = self.inner.mux.get_asset(&asset_id).await?;
        match asset.status {
            AssetStatus::Ready => {
                let duration = asset.duration.unwrap_or(0.0);
                self.progress(due, SessionEvent::AssetReady { asset_id, duration, at: due.now }).await
            }
            AssetStatus::Errored => Err(StepError::Fatal(format!("recording asset {asset_id} errored"))),
            _ => Ok(Advance::Waiting),
        }
    }
}
