//! The read side of the log is the same SQL on both databases; only the
//! pool and row types differ. These macros expand that one definition into
//! each backend, so a change to a query cannot drift between them. (Snapshot
//! writes share one statement, `UPSERT_SNAPSHOT`; the SQLite appender runs it
//! through rusqlite, ADR 0009.)

/// Reads, snapshots and head look-ups for a backend whose pool for reads is
/// the field `$pool`; `EVENT_COLUMNS` and `decode_event` must be in scope.
macro_rules! shared_reads {
    ($pool:ident) => {
        pub async fn read_stream(
            &self,
            stream: &StreamId,
            from_version: u64,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            let sql = format!(
                "select {EVENT_COLUMNS} from events where stream_id = $1 and stream_version >= $2 \
                 order by stream_version limit $3"
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(stream.as_str())
                .bind(from_version as i64)
                .bind(limit as i64)
                .fetch_all(&self.$pool)
                .await?;
            rows.iter().map(decode_event).collect()
        }

        pub async fn read_all(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            let sql = format!(
                "select {EVENT_COLUMNS} from events where global_position > $1 order by global_position limit $2"
            );
            let rows = sqlx::query(AssertSqlSafe(sql)).bind(after).bind(limit as i64).fetch_all(&self.$pool).await?;
            rows.iter().map(decode_event).collect()
        }

        pub async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
            // The head is the stream's last event (ADR 0012); `max` over no
            // rows is null.
            let version: Option<i64> =
                sqlx::query_scalar("select max(stream_version) from events where stream_id = $1")
                    .bind(stream.as_str())
                    .fetch_one(&self.$pool)
                    .await?;
            Ok(version.unwrap_or(0) as u64)
        }

        pub async fn head_position(&self) -> Result<i64, StoreError> {
            let head: Option<i64> =
                sqlx::query_scalar("select max(global_position) from events").fetch_one(&self.$pool).await?;
            Ok(head.unwrap_or(0))
        }

        pub async fn load_snapshot(&self, stream: &StreamId, schema_tag: &str) -> Result<Option<Snapshot>, StoreError> {
            let row = sqlx::query("select version, state from snapshots where stream_id = $1 and schema_tag = $2")
                .bind(stream.as_str())
                .bind(schema_tag)
                .fetch_optional(&self.$pool)
                .await?;
            Ok(row.map(|r| Snapshot { version: r.get::<i64, _>(0) as u64, state: r.get(1) }))
        }

        /// Keeps the newest snapshot; a snapshot of another schema is replaced.
        pub async fn save_snapshot(
            &self,
            stream: &StreamId,
            version: u64,
            schema_tag: &str,
            state: &[u8],
        ) -> Result<(), StoreError> {
            sqlx::query($crate::store::UPSERT_SNAPSHOT)
                .bind(stream.as_str())
                .bind(version as i64)
                .bind(schema_tag)
                .bind(state)
                .bind(now_millis())
                .execute(&self.$pool)
                .await?;
            Ok(())
        }
    };
}

/// `fn decode_event(&$row) -> Result<RecordedEvent, StoreError>` for a
/// backend's row type; columns in `EVENT_COLUMNS` order.
macro_rules! decode_event_fn {
    ($row:ty) => {
        fn decode_event(row: &$row) -> Result<RecordedEvent, StoreError> {
            Ok(RecordedEvent {
                global_position: row.try_get(0)?,
                stream_id: StreamId::parse(row.try_get::<String, _>(1)?)?,
                stream_version: row.try_get::<i64, _>(2)? as u64,
                event_id: row.try_get(3)?,
                event_type: row.try_get(4)?,
                event_version: row.try_get(5)?,
                payload: row.try_get(6)?,
                metadata: parse_metadata(row.try_get::<&str, _>(7)?),
                recorded_at: row.try_get(8)?,
                hash: hash_from_bytes(row.try_get::<&[u8], _>(9)?),
            })
        }
    };
}
