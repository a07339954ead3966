-- The append fast path without `on conflict do nothing`.
--
-- `on conflict` makes every row a speculative insertion: each unique index
-- (position, event id, stream + version) is probed before the heap insert and
-- the insertion is confirmed after, for every row of every batch, to handle a
-- collision that the fast path almost never meets. A plain insert raises
-- unique_violation (SQLSTATE 23505) on a collision instead, which rolls the
-- whole call back just as EV409 did, and the caller goes down its checked
-- path either way (src/store/postgres.rs). Same signature, same lock
-- (docs/adr/0002-global-order-on-postgres.md), same answer.
create or replace function eventlog_append(
    append_lock   bigint,
    stream_ids    text[],
    versions      bigint[],
    event_ids     uuid[],
    event_types   text[],
    type_versions text[],
    payloads      text[],
    metadata      text[],
    recorded_at   bigint[],
    hashes        bytea[],
    head_ids      text[],
    head_versions bigint[],
    head_hashes   bytea[],
    snapshot_ids      text[],
    snapshot_versions bigint[],
    snapshot_tags     text[],
    snapshot_states   bytea[],
    snapshot_taken_at bigint[]
) returns table (out_position bigint, out_event_id uuid)
language plpgsql as $$
begin
    perform pg_advisory_xact_lock(append_lock);
    return query
        insert into events as e (stream_id, stream_version, event_id, event_type, event_version,
                                 payload, metadata, recorded_at, hash)
        select u.s, u.v, u.id, u.t, u.tv, u.p::json, u.m::json, u.r, u.h
        from unnest(stream_ids, versions, event_ids, event_types, type_versions, payloads,
                    metadata, recorded_at, hashes)
             with ordinality as u(s, v, id, t, tv, p, m, r, h, n)
        order by u.n
        returning e.global_position, e.event_id;
    insert into streams as s (stream_id, version, last_hash)
    select * from unnest(head_ids, head_versions, head_hashes)
    on conflict (stream_id) do update set version = excluded.version, last_hash = excluded.last_hash;
    insert into snapshots as sn (stream_id, version, schema_tag, state, taken_at)
    select * from unnest(snapshot_ids, snapshot_versions, snapshot_tags, snapshot_states, snapshot_taken_at)
    on conflict (stream_id) do update set version = excluded.version, schema_tag = excluded.schema_tag,
        state = excluded.state, taken_at = excluded.taken_at
    where excluded.version >= sn.version or excluded.schema_tag <> sn.schema_tag;
end
$$;
