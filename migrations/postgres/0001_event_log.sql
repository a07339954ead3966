-- The event log: the system of record. Every other table is derived from it
-- (projections) or supports delivering it (checkpoints, timers, commands).

-- One row per domain event. Appends take a transaction-scoped advisory lock
-- before they draw positions, and PostgreSQL makes a transaction visible
-- before it releases its locks: so positions become visible in order and a
-- subscriber reading `global_position > checkpoint` never skips an event
-- (see docs/adr/0002-global-order-on-postgres.md). Positions may have gaps
-- (rolled-back transactions); readers never wait for them.
create table events (
    global_position bigint generated always as identity primary key,
    stream_id       text   not null,
    stream_version  bigint not null check (stream_version >= 1),
    event_id        uuid   not null unique,
    event_type      text   not null,
    event_version   text   not null,
    -- `json`, not `jsonb`: keeps the exact bytes the hash chain covers
    payload         json   not null,
    metadata        json   not null,
    -- milliseconds since the Unix epoch, set by the writer at commit
    recorded_at     bigint not null,
    -- sha-256 over this event and the previous event's hash in the stream
    hash            bytea  not null,
    unique (stream_id, stream_version)
);

-- The head of every stream: its version and the hash the next event chains to.
create table streams (
    stream_id text   primary key,
    version   bigint not null,
    last_hash bytea  not null
);

-- Latest state of a stream's aggregate at `version`. `schema_tag` names the
-- state's shape; a reader with another tag ignores the row (and rebuilds).
create table snapshots (
    stream_id  text   primary key,
    version    bigint not null,
    schema_tag text   not null,
    state      bytea  not null,
    taken_at   bigint not null
);

-- Where each catch-up subscriber has got to, written in the same transaction
-- as the subscriber's own writes: exactly-once delivery for read models.
create table checkpoints (
    subscriber text   primary key,
    position   bigint not null,
    updated_at bigint not null
);

-- Durable timers (the Durable Object alarm): re-armed from here at start.
create table timers (
    owner   text   not null,
    name    text   not null,
    due_at  bigint not null,
    payload text   not null,
    primary key (owner, name)
);

create index timers_due_at on timers (due_at);
