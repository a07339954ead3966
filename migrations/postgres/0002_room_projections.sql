-- Read models of event rooms, kept by the `room_presence` projection from
-- the `room-*` streams (see projections/src/presence.rs). Both can be
-- dropped and rebuilt from the log at any time.

-- One row per connection (browser socket or LiveKit participant) to a room.
create table presence_sessions (
    event_id        text   not null,
    connection_id   text   not null,
    user_id         text   not null,
    -- 'websocket' or 'livekit'
    kind            text   not null,
    connected_at    bigint not null,
    -- null while connected
    disconnected_at bigint,
    -- 'closed', 'lost' (service restarted), 'left_livekit', 'too_slow'
    close_reason    text,
    primary key (event_id, connection_id)
);
create index presence_sessions_by_user on presence_sessions (event_id, user_id);

-- One row per stay on stage.
create table stage_intervals (
    event_id   text   not null,
    user_id    text   not null,
    entered_at bigint not null,
    -- null while on stage
    exited_at  bigint,
    primary key (event_id, user_id, entered_at)
);
