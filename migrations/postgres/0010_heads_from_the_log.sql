-- Stream heads are read from the log itself; the `streams` table goes.
--
-- A stream's head (its version and the hash the next event chains to) is
-- its last event: the top entry of the `(stream_id, stream_version)` index
-- the events table keeps anyway. The `streams` table repeated it, and
-- keeping it cost an upsert per stream per batch inside the append lock:
-- measured, about as much server time as a third of the batch's inserts
-- (docs/BENCHMARKS.md). Appends still cannot lose a race: the fast path's
-- insert collides on `(stream_id, stream_version)` when its head was stale
-- (migration 0008), and the checked path reads heads under the append lock.
--
-- Payloads and metadata now arrive as `json[]`: the caller's cast validates
-- them while the call's arguments are evaluated, before the body takes the
-- lock.
-- See docs/adr/0012-stream-heads-from-the-log.md.
drop function eventlog_append(bigint, text[], bigint[], uuid[], text[], text[], text[], text[], bigint[],
                              bytea[], text[], bigint[], bytea[], text[], bigint[], text[], bytea[], bigint[]);

drop table streams;

create function eventlog_append(
    append_lock   bigint,
    stream_ids    text[],
    versions      bigint[],
    event_ids     uuid[],
    event_types   text[],
    type_versions text[],
    payloads      json[],
    metadata      json[],
    recorded_at   bigint[],
    hashes        bytea[],
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
        select u.s, u.v, u.id, u.t, u.tv, u.p, u.m, u.r, u.h
        from unnest(stream_ids, versions, event_ids, event_types, type_versions, payloads,
                    metadata, recorded_at, hashes)
             with ordinality as u(s, v, id, t, tv, p, m, r, h, n)
        order by u.n
        returning e.global_position, e.event_id;
    insert into snapshots as sn (stream_id, version, schema_tag, state, taken_at)
    select * from unnest(snapshot_ids, snapshot_versions, snapshot_tags, snapshot_states, snapshot_taken_at)
    on conflict (stream_id) do update set version = excluded.version, schema_tag = excluded.schema_tag,
        state = excluded.state, taken_at = excluded.taken_at
    where excluded.version >= sn.version or excluded.schema_tag <> sn.schema_tag;
end
$$;
