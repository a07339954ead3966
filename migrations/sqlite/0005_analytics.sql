-- Analytics read models, kept by the `analytics` projection from the
-- `room-*` and `queue-*` streams (see projections/src/analytics.rs and
-- docs/ANALYTICS.md). Like every read model they can be dropped and rebuilt
-- from the log (`eventuall replay rebuild analytics`). Times are milliseconds
-- since the Unix epoch, taken from the events' `at` (when it happened), not
-- from when the event was stored.

-- One row per live event (room) that had at least one connection.
create table analytics_events (
    event_id              text   primary key,
    -- users with at least one open connection (online or away) right now
    present_users         bigint not null,
    -- the highest present_users ever reached, and when it was first reached
    peak_concurrent_users bigint not null,
    peak_at               bigint,
    first_activity_at     bigint,
    last_activity_at      bigint
);

-- One row per user who ever connected to a live event.
create table analytics_attendance (
    event_id         text   not null,
    user_id          text   not null,
    first_joined_at  bigint not null,
    -- end of the user's last presence span; null while present
    last_left_at     bigint,
    open_connections bigint not null,
    -- start of the current presence span; null while absent
    present_since    bigint,
    -- sum of finished presence spans (present = at least one open connection)
    present_ms       bigint not null,
    -- connections opened (tabs, reconnects, LiveKit joins)
    sessions         bigint not null,
    primary key (event_id, user_id)
);

-- One row per user who was ever on stage in a live event.
create table analytics_stage_time (
    event_id       text   not null,
    user_id        text   not null,
    -- start of the current stay on stage; null while off stage
    on_stage_since bigint,
    -- sum of finished stays
    stage_ms       bigint not null,
    stage_entries  bigint not null,
    primary key (event_id, user_id)
);

-- One row per wait in the participant queue: from entering `pending` until
-- promoted to `live` or removed from `pending`.
create table analytics_queue_waits (
    event_id  text   not null,
    user_id   text   not null,
    queued_at bigint not null,
    -- null while still waiting
    ended_at  bigint,
    -- 'promoted' or 'removed'; null while still waiting
    outcome   text,
    primary key (event_id, user_id, queued_at)
);
create index analytics_queue_waits_open on analytics_queue_waits (event_id, user_id, ended_at);

-- Hooks for the recording aggregates, which do not exist yet (see the
-- recording issues): the tables exist so that SQL users and dashboards can be
-- written against them now; nothing writes them until those aggregates and
-- their events land.
create table analytics_recording_sessions (
    event_id     text   not null,
    session_id   text   not null,
    started_at   bigint not null,
    ended_at     bigint,
    -- e.g. 'recording', 'processing', 'ready', 'failed'
    status       text   not null,
    duration_ms  bigint,
    primary key (event_id, session_id)
);

create table analytics_clips (
    event_id    text   not null,
    clip_id     text   not null,
    session_id  text,
    -- the participant the clip follows, if any
    user_id     text,
    starts_at   bigint not null,
    ends_at     bigint not null,
    created_at  bigint not null,
    primary key (event_id, clip_id)
);
