//! The analytics of one live event, read from the `analytics_*` tables that
//! the `analytics` projection keeps (see `docs/ANALYTICS.md`); served by
//! `GET /analytics/events/{eventId}`.
//!
//! Attendance, stage time, queue waits, recording sessions and clips per
//! participant. Figures are as of the projection's checkpoint (`position`): presence and
//! stays still open count from the moment they close.

use serde::Serialize;

use crate::projections::ANALYTICS;
use crate::store::subscription::load_checkpoint;
use crate::store::{EventStore, StoreError};

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventAnalytics {
    pub event_id: String,
    /// The log position these figures include.
    pub position: i64,
    pub attendance: AttendanceSummary,
    pub stage: Vec<StageSummary>,
    pub queue: QueueSummary,
    pub recordings: RecordingSummary,
    pub clips: ClipSummary,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSummary {
    pub sessions: i64,
    pub completed: i64,
    pub failed: i64,
    /// Sum of `durationMs` of sessions whose recording has stopped.
    pub total_recorded_ms: i64,
    /// In order of request.
    pub list: Vec<RecordingSessionRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSessionRow {
    pub session_id: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub asset_duration_ms: Option<i64>,
    pub ended_at: Option<i64>,
    /// `requested`, `recording`, `processing`, `completed` or `failed`.
    pub outcome: String,
    pub failure_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClipSummary {
    pub total: i64,
    pub ready: i64,
    pub errored: i64,
    pub per_participant: Vec<ParticipantClips>,
    /// By session, then start.
    pub list: Vec<ClipInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantClips {
    pub user_id: String,
    pub clips: i64,
    pub ready: i64,
    pub errored: i64,
    /// Sum of `endMs - startMs` of all their clips.
    pub total_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClipInfo {
    pub clip_id: String,
    pub session_id: String,
    pub user_id: String,
    /// Milliseconds from the recording's start.
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration_ms: i64,
    /// `requested`, `created`, `ready` or `errored`.
    pub status: String,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttendanceSummary {
    pub unique_users: i64,
    pub present_users: i64,
    pub peak_concurrent_users: i64,
    pub peak_at: Option<i64>,
    /// Sum of finished presence spans of all users.
    pub total_present_ms: i64,
    /// `total_present_ms / unique_users` (0 without users).
    pub average_present_ms: f64,
    pub users: Vec<UserAttendance>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAttendance {
    pub user_id: String,
    pub first_joined_at: i64,
    pub last_left_at: Option<i64>,
    pub present_ms: i64,
    pub sessions: i64,
    pub present: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageSummary {
    pub user_id: String,
    pub stage_ms: i64,
    pub entries: i64,
    pub on_stage_since: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSummary {
    pub promoted: i64,
    pub removed: i64,
    pub waiting: i64,
    /// Over promoted waits only (0 when none).
    pub average_wait_ms: f64,
    pub max_wait_ms: Option<i64>,
    pub waits: Vec<QueueWaitRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueWaitRow {
    pub user_id: String,
    pub queued_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    pub wait_ms: Option<i64>,
}

async fn fetch<T>(store: &EventStore, sql: &str, event_id: &str) -> Result<Vec<T>, StoreError>
where
    T: crate::store::subscription::FromAnyRow,
{
    store.query_as(sql, &[event_id.into()]).await
}

/// Everything known about `event_id`; `None` if it never had a connection,
/// a stay on stage, a queue entry nor a recording.
pub async fn event_analytics(store: &EventStore, event_id: &str) -> Result<Option<EventAnalytics>, StoreError> {
    let position = load_checkpoint(store, ANALYTICS).await?;
    let totals: Vec<(i64, i64, Option<i64>)> = fetch(
        store,
        "select present_users, peak_concurrent_users, peak_at from analytics_events where event_id = $1",
        event_id,
    )
    .await?;
    let users: Vec<(String, i64, Option<i64>, i64, i64, i64)> = fetch(
        store,
        "select user_id, first_joined_at, last_left_at, present_ms, sessions, open_connections \
         from analytics_attendance where event_id = $1 order by user_id",
        event_id,
    )
    .await?;
    let stage: Vec<(String, i64, i64, Option<i64>)> = fetch(
        store,
        "select user_id, stage_ms, stage_entries, on_stage_since from analytics_stage_time \
         where event_id = $1 order by user_id",
        event_id,
    )
    .await?;
    let waits: Vec<(String, i64, Option<i64>, Option<String>)> = fetch(
        store,
        "select user_id, queued_at, ended_at, outcome from analytics_queue_waits \
         where event_id = $1 order by queued_at, user_id",
        event_id,
    )
    .await?;
    type SessionRow =
        (String, String, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, String, Option<String>);
    let sessions: Vec<SessionRow> = fetch(
        store,
        "select session_id, requested_by, requested_at, recording_started_at, recording_stopped_at, duration_ms, \
         asset_duration_ms, ended_at, outcome, failure_reason from analytics_recording_sessions \
         where event_id = $1 order by requested_at, session_id",
        event_id,
    )
    .await?;
    let clips: Vec<(String, String, String, i64, i64, String, Option<String>)> = fetch(
        store,
        "select clip_id, session_id, user_id, start_ms, end_ms, status, error from analytics_clips \
         where event_id = $1 order by session_id, start_ms, clip_id",
        event_id,
    )
    .await?;
    if totals.is_empty() && waits.is_empty() && stage.is_empty() && sessions.is_empty() {
        return Ok(None);
    }
    let sessions: Vec<RecordingSessionRow> = sessions
        .into_iter()
        .map(
            |(
                session_id,
                requested_by,
                requested_at,
                started_at,
                stopped_at,
                duration_ms,
                asset_duration_ms,
                ended_at,
                outcome,
                failure_reason,
            )| RecordingSessionRow {
                session_id,
                requested_by,
                requested_at,
                started_at,
                stopped_at,
                duration_ms,
                asset_duration_ms,
                ended_at,
                outcome,
                failure_reason,
            },
        )
        .collect();
    let clips: Vec<ClipInfo> = clips
        .into_iter()
        .map(|(clip_id, session_id, user_id, start_ms, end_ms, status, error)| ClipInfo {
            clip_id,
            session_id,
            user_id,
            start_ms,
            end_ms,
            duration_ms: end_ms - start_ms,
            status,
            error,
        })
        .collect();
    let mut per_participant: std::collections::BTreeMap<&str, ParticipantClips> = std::collections::BTreeMap::new();
    for clip in &clips {
        let entry = per_participant.entry(clip.user_id.as_str()).or_insert_with(|| ParticipantClips {
            user_id: clip.user_id.clone(),
            clips: 0,
            ready: 0,
            errored: 0,
            total_ms: 0,
        });
        entry.clips += 1;
        entry.ready += i64::from(clip.status == "ready");
        entry.errored += i64::from(clip.status == "errored");
        entry.total_ms += clip.duration_ms;
    }
    let per_participant: Vec<ParticipantClips> = per_participant.into_values().collect();
    let recordings = RecordingSummary {
        sessions: sessions.len() as i64,
        completed: sessions.iter().filter(|s| s.outcome == "completed").count() as i64,
        failed: sessions.iter().filter(|s| s.outcome == "failed").count() as i64,
        total_recorded_ms: sessions.iter().filter_map(|s| s.duration_ms).sum(),
        list: sessions,
    };
    let clips = ClipSummary {
        total: clips.len() as i64,
        ready: clips.iter().filter(|c| c.status == "ready").count() as i64,
        errored: clips.iter().filter(|c| c.status == "errored").count() as i64,
        per_participant,
        list: clips,
    };
    let (present_users, peak_concurrent_users, peak_at) = totals.first().copied().unwrap_or((0, 0, None));
    let users: Vec<UserAttendance> = users
        .into_iter()
        .map(|(user_id, first_joined_at, last_left_at, present_ms, sessions, open)| UserAttendance {
            user_id,
            first_joined_at,
            last_left_at,
            present_ms,
            sessions,
            present: open > 0,
        })
        .collect();
    let total_present_ms: i64 = users.iter().map(|u| u.present_ms).sum();
    let unique_users = users.len() as i64;
    let waits: Vec<QueueWaitRow> = waits
        .into_iter()
        .map(|(user_id, queued_at, ended_at, outcome)| QueueWaitRow {
            wait_ms: ended_at.map(|e| e - queued_at),
            user_id,
            queued_at,
            ended_at,
            outcome,
        })
        .collect();
    let promoted: Vec<i64> =
        waits.iter().filter(|w| w.outcome.as_deref() == Some("promoted")).filter_map(|w| w.wait_ms).collect();
    Ok(Some(EventAnalytics {
        event_id: event_id.to_owned(),
        position,
        attendance: AttendanceSummary {
            unique_users,
            present_users,
            peak_concurrent_users,
            peak_at,
            total_present_ms,
            average_present_ms: if unique_users > 0 { total_present_ms as f64 / unique_users as f64 } else { 0.0 },
            users,
        },
        stage: stage
            .into_iter()
            .map(|(user_id, stage_ms, entries, on_stage_since)| StageSummary {
                user_id,
                stage_ms,
                entries,
                on_stage_since,
            })
            .collect(),
        queue: QueueSummary {
            promoted: promoted.len() as i64,
            removed: waits.iter().filter(|w| w.outcome.as_deref() == Some("removed")).count() as i64,
            waiting: waits.iter().filter(|w| w.ended_at.is_none()).count() as i64,
            average_wait_ms: if promoted.is_empty() {
                0.0
            } else {
                promoted.iter().sum::<i64>() as f64 / promoted.len() as f64
            },
            max_wait_ms: promoted.iter().copied().max(),
            waits,
        },
        recordings,
        clips,
    }))
}
