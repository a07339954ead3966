-- Recording analytics, kept by the `analytics` projection from the
-- `recording-*` streams (projections/src/analytics.rs, docs/ANALYTICS.md).
-- 0005 created these two tables as placeholders before the recording
-- aggregates existed; nothing ever wrote them, so they are replaced by the
-- shapes the recording events can fill. A deployment that recorded before
-- this migration gets its past sessions with
-- `eventuall replay rebuild analytics`.

drop table analytics_recording_sessions;
drop table analytics_clips;

-- One row per recording session, under the live event that requested it.
create table analytics_recording_sessions (
    event_id             text   not null,
    session_id           text   not null,
    requested_by         text   not null,
    requested_at         bigint not null,
    -- `RecordingStarted`; null if it never started recording
    recording_started_at bigint,
    -- the first `EgressStopped` after the start: the recorder stopped
    recording_stopped_at bigint,
    -- recording_stopped_at - recording_started_at; null until both exist
    duration_ms          bigint,
    -- the asset's duration as the media service measured it
    asset_duration_ms    bigint,
    -- when it completed or failed; null while in progress
    ended_at             bigint,
    -- 'requested', 'recording', 'processing', 'completed' or 'failed'
    outcome              text   not null,
    -- the first failure detected (or the failure's reason)
    failure_reason       text,
    primary key (event_id, session_id)
);
create index analytics_recording_sessions_by_session on analytics_recording_sessions (session_id);

-- One row per clip: one participant's stay on stage cut from a recording.
create table analytics_clips (
    event_id     text   not null,
    clip_id      text   not null,
    session_id   text   not null,
    -- the participant the clip follows
    user_id      text   not null,
    -- milliseconds from the recording's start
    start_ms     bigint not null,
    end_ms       bigint not null,
    -- when the clips were requested, and when this one became ready or errored
    requested_at bigint not null,
    finished_at  bigint,
    -- 'requested', 'created', 'ready' or 'errored'
    status       text   not null,
    error        text,
    primary key (event_id, clip_id)
);
create index analytics_clips_by_session on analytics_clips (session_id, clip_id);
