//! `Requested` → `Recording`: the Mux live stream (created, or found by its
//! passthrough after a lost response), then the LiveKit egress that feeds it
//! (found by its page URL the same way), until Mux sees the stream live.

use eventuall_domain::recording::{MAX_RECORDING_MS, SessionEvent};
use eventuall_domain::room::RecordingStatus;
use eventuall_media::livekit::{StartSignal, is_terminal, proto, status};
use eventuall_media::mux::{CreateLiveStream, LiveStreamStatus, NewAssetSettings, PlaybackPolicy};

use super::{Advance, Due, StepError, StepResult, egress_ended};
use crate::recording::{Recording, SagaTimer, timer_owner};

/// The RTMP ingest Mux documents; the simulator accepts it too.
const MUX_RTMP: &str = "rtmps://global-live.mux.com:443/app/";

impl Recording {
    /// `Requested`: show "starting" in the room, then ask for a stream.
    pub(super) async fn request_stream(&self, due: &mut Due) -> StepResult {
        let session = due.state();
        self.set_room(session, Some((RecordingStatus::Starting, session.requested_at)), due.now).await;
        self.progress(due, SessionEvent::StreamCreateRequested { at: due.now }).await
    }

    /// `CreatingStream`: reconcile first: a create whose response was lost
    /// (or a crash after the call) left a stream with our passthrough.
    pub(super) async fn create_stream(&self, due: &mut Due) -> StepResult {
        let mux = &self.inner.mux;
        let session_id = due.id();
        let stream = match mux.find_live_stream_by_passthrough(session_id).await? {
            Some(stream) => stream,
            None => {
                let request = CreateLiveStream {
                    passthrough: Some(session_id.to_owned()),
                    playback_policies: vec![PlaybackPolicy::Public],
                    new_asset_settings: Some(NewAssetSettings {
                        playback_policies: vec![PlaybackPolicy::Public],
                        passthrough: Some(session_id.to_owned()),
                    }),
                    ..CreateLiveStream::default()
                };
                mux.create_live_stream(&request).await?
            }
        };
        let event = SessionEvent::StreamCreated {
            stream_id: stream.id,
            stream_key: stream.stream_key,
            playback_id: stream.playback_ids.first().map(|p| p.id.clone()),
            at: due.now,
        };
        self.progress(due, event).await
    }

    /// `StreamCreated`: the stream exists and is not disabled.
    pub(super) async fn check_stream(&self, due: &mut Due) -> StepResult {
        let stream = self.inner.mux.get_live_stream(due.state().stream_id.as_deref().unwrap_or_default()).await?;
        match stream.status {
            LiveStreamStatus::Disabled => Err(StepError::Fatal("the live stream is disabled".into())),
            _ => self.progress(due, SessionEvent::StreamReady { at: due.now }).await,
        }
    }

    /// `StreamReady`: ask for the egress of our page.
    pub(super) async fn request_egress(&self, due: &mut Due) -> StepResult {
        let page_url = self.page_url(due.id());
        self.progress(due, SessionEvent::EgressStartRequested { page_url, at: due.now }).await
    }

    /// `StartingEgress`: an active egress of our page is ours (a start whose
    /// response was lost); otherwise start one into the stream.
    pub(super) async fn start_egress(&self, due: &mut Due) -> StepResult {
        let egress = &self.inner.egress;
        let session = due.state();
        let page_url = session.page_url.clone().unwrap_or_else(|| self.page_url(due.id()));
        let info = match egress.find_active_egress_by_url(&page_url).await? {
            Some(info) => info,
            None => {
                let key = session.stream_key.clone().unwrap_or_default();
                egress.start_web_egress(&page_url, &[format!("{MUX_RTMP}{key}")], StartSignal::Immediate).await?
            }
        };
        self.progress(due, SessionEvent::EgressStarted { egress_id: info.egress_id, at: due.now }).await
    }

    /// `EgressStarted`: wait until LiveKit says the egress is active.
    pub(super) async fn await_egress(&self, due: &mut Due) -> StepResult {
        let egress_id = due.state().egress_id.clone().unwrap_or_default();
        match self.inner.egress.get_egress(&egress_id).await? {
            None => Err(StepError::Fatal(format!("egress {egress_id} vanished"))),
            Some(info) if is_terminal(&info) => Err(StepError::Fatal(egress_ended(&info))),
            Some(info) if status(&info) == proto::EgressStatus::EgressActive => {
                self.progress(due, SessionEvent::EgressActive { at: due.now }).await
            }
            Some(_) => Ok(Advance::Waiting),
        }
    }

    /// `EgressActive`: wait until Mux sees the stream live, then record the
    /// start, arm the health and cap timers and show "recording".
    pub(super) async fn await_stream_live(&self, due: &mut Due) -> StepResult {
        let session = due.state();
        let stream = self.inner.mux.get_live_stream(session.stream_id.as_deref().unwrap_or_default()).await?;
        if stream.status != LiveStreamStatus::Active {
            // The egress may have died while we wait.
            let egress_id = session.egress_id.clone().unwrap_or_default();
            if let Some(info) = self.inner.egress.get_egress(&egress_id).await?
                && is_terminal(&info)
            {
                return Err(StepError::Fatal(egress_ended(&info)));
            }
            return Ok(Advance::Waiting);
        }
        let now = due.now;
        let asset_id = stream.active_asset_id.clone().or_else(|| stream.recent_asset_ids.last().cloned());
        self.record(&mut due.session, SessionEvent::RecordingStarted { asset_id, at: now }).await?;
        self.arm_recording_timers(due.id(), now, now + MAX_RECORDING_MS).await?;
        self.set_room(due.state(), Some((RecordingStatus::Recording, now)), now).await;
        Ok(Advance::Progressed)
    }

    /// The first health check one `health_every` from `now`; the 12 h cap at
    /// `cap_at`.
    pub(super) async fn arm_recording_timers(&self, session_id: &str, now: i64, cap_at: i64) -> anyhow::Result<()> {
        let owner = timer_owner(session_id);
        let health = now + self.inner.settings.health_every.as_millis() as i64;
        self.inner.timers.arm(&owner, SagaTimer::Health.name(), health, "").await?;
        self.inner.timers.arm(&owner, SagaTimer::Cap.name(), cap_at, "").await?;
        Ok(())
    }
}
