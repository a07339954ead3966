//! `replay rebuild`: a projection rebuilt from position 0 into shadow tables,
//! then swapped in atomically, while the service keeps serving the old ones.
//!
//! 1. Create `{table}__rebuild` for each of the projection's tables, shaped
//!    like the live table (PostgreSQL: `like … including all`; SQLite: the
//!    live table's own DDL from `sqlite_master`), so a rebuild always matches
//!    the migrated schema.
//! 2. Run the projection's own batch code ([`Projection::apply_batch`]) into
//!    the shadow tables from position 0 to the head, in large transactions.
//! 3. In one transaction: lock the projection's checkpoint, apply whatever
//!    was appended meanwhile, rename live → `__old`, shadow → live, drop the
//!    old tables, and set the checkpoint to the last position applied. The
//!    service's runner notices its checkpoint moved and continues from there
//!    ([`crate::projections::try_step_projection`]).
//!
//! On SQLite the swap holds the write lock for the tail only; readers keep
//! reading the old tables (WAL) until it commits. On PostgreSQL, `alter table`
//! waits for running readers of the table and blocks new ones for the
//! rename's duration (milliseconds).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Progress, ReplayError};
use crate::projections::{Projection, SHADOW_SUFFIX, Tables, locked_checkpoint};
use crate::store::raw::{BATCH, Batches, Filter, RawBatch};
use crate::store::subscription::save_checkpoint;
use crate::store::{DbTx, EventStore, RecordedEvent, StoreError, StreamId};

/// What a rebuild did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    pub projection: String,
    /// Events read (all categories; the projection skips what it ignores).
    pub events: u64,
    /// The checkpoint set at the swap.
    pub position: i64,
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl RebuildReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Rebuilds `projection` and swaps it in.
pub async fn rebuild(
    store: &EventStore,
    projection: Projection,
    progress: &Progress,
) -> Result<RebuildReport, ReplayError> {
    let started = Instant::now();
    create_shadows(store, projection).await?;
    let head = store.head_position().await?;
    progress.start(head.max(0) as u64, projection.name());
    let mut position = 0;
    let mut events = 0u64;
    let mut batches = Batches::start(store, Filter::All, 0, head, BATCH);
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        let Some(last) = batch.last_position() else { continue };
        let read = recorded(projection, &batch);
        if !read.is_empty() {
            let mut tx = DbTx::begin(store).await?;
            projection.apply_batch(&mut tx, &read, Tables::Shadow).await?;
            tx.commit().await?;
        }
        position = last;
        events += batch.len() as u64;
        progress.set(last as u64);
    }
    let (position, tail) = swap(store, projection, position).await?;
    progress.finish();
    Ok(RebuildReport {
        projection: projection.name().to_owned(),
        events: events + tail,
        position,
        elapsed: started.elapsed(),
    })
}

/// The events of `batch` that `projection` reads, in the form projections
/// read; the rest (most: heartbeats) it would skip undecoded, so they are
/// not converted at all. Rows with a malformed stream id are skipped
/// (`replay verify` reports them).
fn recorded(projection: Projection, batch: &RawBatch) -> Vec<RecordedEvent> {
    batch
        .iter()
        .filter(|raw| projection.reads(raw.category(), raw.event_type))
        .filter_map(|raw| {
            Some(RecordedEvent {
                global_position: raw.global_position,
                stream_id: StreamId::parse(raw.stream_id).ok()?,
                stream_version: raw.stream_version.max(0) as u64,
                event_id: raw.event_id,
                event_type: raw.event_type.to_owned(),
                event_version: raw.event_version.to_owned(),
                metadata: serde_json::from_str(raw.metadata).unwrap_or_default(),
                payload: raw.payload.to_owned(),
                recorded_at: raw.recorded_at,
                hash: {
                    let mut hash = [0u8; 32];
                    if raw.hash.len() == 32 {
                        hash.copy_from_slice(raw.hash);
                    }
                    hash
                },
            })
        })
        .collect()
}

/// Drops leftovers of an interrupted rebuild and creates empty shadow tables.
async fn create_shadows(store: &EventStore, projection: Projection) -> Result<(), StoreError> {
    let mut tx = DbTx::begin(store).await?;
    for &table in projection.tables() {
        let shadow = Tables::Shadow.name(table);
        tx.execute(&format!("drop table if exists {shadow}"), &[]).await?;
        if tx.is_postgres() {
            tx.execute(&format!("create table {shadow} (like {table} including all)"), &[]).await?;
            continue;
        }
        let ddl: Vec<(String, String, String)> = tx
            .fetch_all_as(
                "select type, name, sql from sqlite_master where tbl_name = $1 and sql is not null \
                 order by type desc",
                &[table.into()],
            )
            .await?;
        for (kind, name, sql) in ddl {
            tx.execute(&shadow_ddl(&kind, &name, &sql, &shadow), &[]).await?;
        }
    }
    tx.commit().await
}

/// The SQLite DDL of a live table or index, for its shadow. Index names must
/// be unique per database: a shadow index takes the name the live index does
/// not have (`x` ↔ `x__rebuild`), so names alternate between rebuilds.
fn shadow_ddl(kind: &str, name: &str, sql: &str, shadow: &str) -> String {
    let columns = sql.find('(').map_or("", |i| &sql[i..]);
    if kind == "table" {
        return format!("create table {shadow} {columns}");
    }
    let index = match name.strip_suffix(SHADOW_SUFFIX) {
        Some(base) => base.to_owned(),
        None => format!("{name}{SHADOW_SUFFIX}"),
    };
    let unique = if sql.trim_start().to_ascii_lowercase().starts_with("create unique") { "unique " } else { "" };
    format!("create {unique}index {index} on {shadow} {columns}")
}

/// Catches the shadow tables up to the head, swaps them in and sets the
/// checkpoint, in one transaction. Returns the checkpoint and the number of
/// tail events applied.
async fn swap(store: &EventStore, projection: Projection, mut position: i64) -> Result<(i64, u64), StoreError> {
    let mut tx = DbTx::begin(store).await?;
    // Taken first, so the service's runner (which takes it first too) waits
    // for the swap instead of writing to tables being renamed.
    locked_checkpoint(&mut tx, projection.name()).await?;
    let mut tail = 0u64;
    loop {
        let batch = store.read_all(position, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.global_position) else { break };
        projection.apply_batch(&mut tx, &batch, Tables::Shadow).await?;
        tail += batch.len() as u64;
        position = last;
    }
    for &table in projection.tables() {
        let shadow = Tables::Shadow.name(table);
        let old = format!("{table}__old");
        tx.execute(&format!("drop table if exists {old}"), &[]).await?;
        tx.execute(&format!("alter table {table} rename to {old}"), &[]).await?;
        tx.execute(&format!("alter table {shadow} rename to {table}"), &[]).await?;
        tx.execute(&format!("drop table {old}"), &[]).await?;
    }
    save_checkpoint(&mut tx, projection.name(), position).await?;
    tx.commit().await?;
    Ok((position, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_ddl_renames_tables_and_alternates_index_names() {
        assert_eq!(
            shadow_ddl("table", "t", "create table \"t\" (a text, primary key (a))", "t__rebuild"),
            "create table t__rebuild (a text, primary key (a))"
        );
        assert_eq!(
            shadow_ddl("index", "t_by_a", "create index t_by_a on t (a)", "t__rebuild"),
            "create index t_by_a__rebuild on t__rebuild (a)"
        );
        assert_eq!(
            shadow_ddl("index", "t_by_a__rebuild", "CREATE UNIQUE INDEX t_by_a__rebuild on \"t\" (a)", "t__rebuild"),
            "create unique index t_by_a on t__rebuild (a)"
        );
    }
}
