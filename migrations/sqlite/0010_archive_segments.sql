-- The archive tier (ADR 0017): a stream's older events moved to object
-- storage as immutable segment files. A row here is written in the same
-- transaction that deletes the segment's events from `events`, so every
-- event is in exactly one of the two places at every commit.
create table archive_segments (
    stream_id      text    not null,
    first_version  integer not null,
    last_version   integer not null,
    -- the global positions of the segment's first and last event: whole-log
    -- readers merge segments and hot rows by position
    first_position integer not null,
    last_position  integer not null,
    event_count    integer not null,
    -- the object's URL (`file:///…`, `s3://bucket/…`)
    location       text    not null,
    -- sha-256 of the object's bytes, checked on every read and by `verify`
    content_hash   blob    not null,
    bytes          integer not null,
    -- the stream's snapshot moved with this segment, if any
    has_snapshot   integer not null,
    archived_at    integer not null,
    primary key (stream_id, first_version)
) strict, without rowid;

create index archive_segments_by_position on archive_segments (last_position);
