-- Stream heads are read from the log itself: a stream's head is its last
-- event, the top entry of the `(stream_id, stream_version)` index. The
-- `streams` table only repeated it, at the price of an upsert per stream
-- per batch. See docs/adr/0012-stream-heads-from-the-log.md.
drop table streams;
