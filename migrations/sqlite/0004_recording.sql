-- The recording saga's operational tables (see src/recording/). The saga's
-- history itself is in the event log (`coordinator-*`, `recording-*`); these
-- rows only say what work is waiting.

-- Durable commands from `POST /cloudcaster/{eventId}/start|stop`, processed
-- by the command worker with retries and exponential backoff; a command that
-- keeps failing becomes a dead letter (status 'dead') until retried by hand.
create table recording_commands (
    command_id      text   primary key,
    event_id        text   not null,
    -- 'start' or 'stop'
    kind            text   not null,
    requested_by    text   not null,
    -- 'pending', 'done', 'refused' (will never succeed), 'dead'
    status          text   not null,
    attempts        bigint not null default 0,
    next_attempt_at bigint not null,
    last_error      text,
    created_at      bigint not null,
    updated_at      bigint not null
);
create index recording_commands_due on recording_commands (status, next_attempt_at);

-- Sessions the process manager still drives (deleted once terminal), with
-- the retry state of the step in progress.
create table recording_sessions_active (
    session_id      text   primary key,
    event_id        text   not null,
    attempts        bigint not null default 0,
    next_attempt_at bigint not null,
    last_error      text
);
