-- The durability barrier of the group-commit writers.
--
-- A writer connection commits its appends with `synchronous_commit = off`
-- (set on the connection, src/store/postgres.rs), so the commit, and with
-- it the release of the append lock, no longer waits for the WAL flush: the
-- next batch can draw positions while this one's WAL is still being
-- flushed. The batch is answered only after this function has returned on
-- the same connection: it commits, synchronously, a transaction that wrote
-- a WAL record, so PostgreSQL flushes the WAL up to its commit record, which
-- lies after the batch's. (A transaction that wrote nothing before its
-- commit record is committed asynchronously whatever `synchronous_commit`
-- says, even if it has an id; so the function writes a transactional
-- logical message: the smallest record, which needs no table and no
-- privilege, and which only a logical decoder would ever read.) Several writers' flushes coalesce into one
-- (PostgreSQL's own group flush). On the same connection, because a session
-- cannot outlive a server restart: if the server lost the unflushed batch,
-- this call fails instead of vouching for it.
-- See docs/adr/0011-postgres-flush-after-the-append-lock.md.
create function eventlog_flush() returns void
language plpgsql as $$
begin
    perform set_config('synchronous_commit', 'on', true);
    perform pg_logical_emit_message(true, 'eventuall.flush', '');
end
$$;
