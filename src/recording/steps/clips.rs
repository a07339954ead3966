//! `AssetReady` → `Completed`: one clip per stay on stage that overlaps the
//! recording, each created (or found by its passthrough) and awaited; a
//! clip that cannot be made is recorded as errored and fails nothing.

use std::collections::BTreeMap;

use eventuall_domain::recording::{ClipPlan, ClipStatus, RecordingSession, SessionEvent};
use eventuall_domain::room::RoomEvent;
use eventuall_media::mux::{AssetStatus, CreateClip, PlaybackPolicy};

use super::{Advance, Due, StepError, StepResult};
use crate::recording::Recording;
use crate::store::StreamId;

impl Recording {
    /// `AssetReady`: plan the clips from the room's stage history.
    pub(super) async fn request_clips(&self, due: &mut Due) -> StepResult {
        let clips = self.plan_clips(due.state()).await?;
        self.progress(due, SessionEvent::ClipsRequested { clips, at: due.now }).await
    }

    /// `Clipping`: one clip moved on per step, in order; `Completed` once
    /// every clip is ready or errored.
    pub(super) async fn advance_clips(&self, due: &mut Due) -> StepResult {
        let mux = &self.inner.mux;
        let (now, attempts, orphaned) = (due.now, due.attempts, due.orphaned);
        let session = due.state();
        let session_id = session.session_id.as_str();
        if session.all_clips_settled() {
            // Sessions recorded before the lock was released at stream
            // completion still hold it here.
            if !session.lock_released {
                self.release(session, "completed", now).await?;
            }
            return self.progress(due, SessionEvent::Completed { at: now }).await;
        }
        let mut event = None;
        for clip in session.clips.values() {
            let clip_id = clip.plan.clip_id.clone();
            match clip.status {
                ClipStatus::Requested => {
                    let passthrough = format!("{session_id}/{clip_id}");
                    let created = match mux.find_asset_by_passthrough(&passthrough).await {
                        Ok(Some(asset)) => Ok(asset),
                        Ok(None) => {
                            let request = CreateClip {
                                source_asset_id: session.asset_id.clone().unwrap_or_default(),
                                start_time: Some(clip.plan.start),
                                end_time: Some(clip.plan.end),
                                passthrough: Some(passthrough),
                                playback_policies: vec![PlaybackPolicy::Public],
                            };
                            mux.create_clip(&request).await
                        }
                        Err(e) => Err(e),
                    };
                    event = Some(match created {
                        Ok(asset) => SessionEvent::ClipCreated {
                            clip_id,
                            asset_id: asset.id,
                            playback_id: asset.playback_ids.first().map(|p| p.id.clone()),
                            at: now,
                        },
                        // A clip that cannot be made does not fail the recording.
                        Err(e) if !e.is_transient() || attempts + 1 >= self.inner.settings.max_attempts => {
                            SessionEvent::ClipErrored { clip_id, reason: e.to_string(), at: now }
                        }
                        Err(e) => return Err(StepError::Transient(e.to_string())),
                    });
                    break;
                }
                ClipStatus::Preparing => {
                    let asset_id = clip.asset_id.clone().unwrap_or_default();
                    let asset = mux.get_asset(&asset_id).await?;
                    event = Some(match asset.status {
                        AssetStatus::Ready => SessionEvent::ClipReady { clip_id, at: now },
                        AssetStatus::Errored => {
                            let reason = asset
                                .errors
                                .map(|e| e.messages.join("; "))
                                .filter(|m| !m.is_empty())
                                .unwrap_or_else(|| "clip errored".into());
                            SessionEvent::ClipErrored { clip_id, reason, at: now }
                        }
                        _ if orphaned => {
                            SessionEvent::ClipErrored { clip_id, reason: "clip never became ready".into(), at: now }
                        }
                        _ => continue,
                    });
                    break;
                }
                ClipStatus::Ready | ClipStatus::Errored => {}
            }
        }
        match event {
            Some(event) => self.progress(due, event).await,
            None => Ok(Advance::Waiting),
        }
    }

    /// One clip per stay on stage that overlaps the recording, in seconds
    /// from the recording's start, clamped to the asset's duration. Stays
    /// shorter than Mux's minimum (0.5 s) are skipped.
    async fn plan_clips(&self, session: &RecordingSession) -> anyhow::Result<Vec<ClipPlan>> {
        let (Some(started), Some(stopped)) = (session.started_at, session.stopped_at) else { return Ok(vec![]) };
        let duration = session.duration.unwrap_or(f64::MAX);
        let stream = StreamId::of("room", &session.event_id);
        let mut open: BTreeMap<String, i64> = BTreeMap::new();
        let mut intervals: Vec<(String, i64, i64)> = vec![];
        let mut from = 1;
        loop {
            let page = self.inner.store.read_stream(&stream, from, 2_000).await?;
            let done = page.len() < 2_000;
            for recorded in &page {
                from = recorded.stream_version + 1;
                if recorded.event_type != "StageEntered" && recorded.event_type != "StageExited" {
                    continue;
                }
                match recorded.decode::<RoomEvent>()? {
                    RoomEvent::StageEntered { user_id, at } => {
                        open.entry(user_id).or_insert(at);
                    }
                    RoomEvent::StageExited { user_id, at } => {
                        if let Some(entered) = open.remove(&user_id) {
                            intervals.push((user_id, entered, at));
                        }
                    }
                    _ => {}
                }
            }
            if done {
                break;
            }
        }
        intervals.extend(open.into_iter().map(|(user, entered)| (user, entered, stopped)));
        intervals.sort_by_key(|(user, entered, _)| (*entered, user.clone()));
        let mut clips = vec![];
        for (user_id, entered, exited) in intervals {
            let start = (entered.max(started) - started) as f64 / 1000.0;
            let end = ((exited.min(stopped) - started) as f64 / 1000.0).min(duration);
            if end - start > 0.5 {
                clips.push(ClipPlan { clip_id: format!("clip-{}", clips.len() + 1), user_id, start, end });
            }
        }
        Ok(clips)
    }
}
