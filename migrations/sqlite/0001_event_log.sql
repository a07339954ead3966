-- The event log: the system of record. Every other table is derived from it
-- (projections) or supports delivering it (checkpoints, timers, commands).

-- One row per domain event, in commit order. `global_position` is assigned by
-- SQLite's single writer, so it is also commit order: subscribers that read
-- `global_position > checkpoint` can never skip an event.
create table events (
    global_position integer primary key autoincrement,
    stream_id       text    not null,
    stream_version  integer not null check (stream_version >= 1),
    event_id        blob    not null unique,
    event_type      text    not null,
    event_version   text    not null,
    payload         text    not null,
    metadata        text    not null,
    -- milliseconds since the Unix epoch, set by the writer at commit
    recorded_at     integer not null,
    -- sha-256 over this event and the previous event's hash in the stream
    hash            blob    not null,
    unique (stream_id, stream_version)
) strict;

-- The head of every stream: its version and the hash the next event chains to.
-- Read and written in the append transaction.
create table streams (
    stream_id  text    primary key,
    version    integer not null,
    last_hash  blob    not null
) strict, without rowid;

-- Latest state of a stream's aggregate at `version`. `schema_tag` names the
-- state's shape; a reader with another tag ignores the row (and rebuilds).
create table snapshots (
    stream_id  text    primary key,
    version    integer not null,
    schema_tag text    not null,
    state      blob    not null,
    taken_at   integer not null
) strict, without rowid;

-- Where each catch-up subscriber has got to. Written in the same transaction
-- as the subscriber's own writes, which is what makes delivery exactly-once.
create table checkpoints (
    subscriber text    primary key,
    position   integer not null,
    updated_at integer not null
) strict, without rowid;

-- Durable timers (the Durable Object alarm): re-armed from here at start.
create table timers (
    owner   text    not null,
    name    text    not null,
    due_at  integer not null,
    payload text    not null,
    primary key (owner, name)
) strict, without rowid;

create index timers_due_at on timers (due_at);
