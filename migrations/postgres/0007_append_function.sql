-- The append fast path in one round trip: the group-commit writer calls this
-- once per batch, outside an explicit transaction, so the call is its own
-- transaction (lock, insert, heads, commit). The caller has already checked
-- every request against the stream heads it remembers; this function only
-- guards that check. Any row whose event id or (stream, version) is already
-- stored means the caller's view was stale: the whole call is rolled back with
-- SQLSTATE EV409 and the caller retries down its checked path, which reads
-- heads and stored ids under the same lock.
--
-- The lock is the same transaction-scoped advisory lock as the checked path's
-- (docs/adr/0002-global-order-on-postgres.md): positions are drawn only while
-- it is held and it is released after commit, so positions become visible in
-- order.
create function eventlog_append(
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
declare
    inserted bigint;
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
        on conflict do nothing
        returning e.global_position, e.event_id;
    get diagnostics inserted = row_count;
    if inserted <> cardinality(event_ids) then
        raise exception 'append collides with stored events' using errcode = 'EV409';
    end if;
    insert into streams as s (stream_id, version, last_hash)
    select * from unnest(head_ids, head_versions, head_hashes)
    on conflict (stream_id) do update set version = excluded.version, last_hash = excluded.last_hash;
    -- Snapshots attached to appends: same rule as a standalone save (the
    -- newest version wins; another schema tag replaces).
    insert into snapshots as sn (stream_id, version, schema_tag, state, taken_at)
    select * from unnest(snapshot_ids, snapshot_versions, snapshot_tags, snapshot_states, snapshot_taken_at)
    on conflict (stream_id) do update set version = excluded.version, schema_tag = excluded.schema_tag,
        state = excluded.state, taken_at = excluded.taken_at
    where excluded.version >= sn.version or excluded.schema_tag <> sn.schema_tag;
end
$$;
