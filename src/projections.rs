//! The projection runner: keeps read-model tables up to date from the log.
//!
//! Each projection is a catch-up subscription ([`CatchUp`]). For every batch
//! it maps events to row changes with the pure folds of the
//! `eventuall-projections` crate and writes them with its checkpoint in one
//! transaction, so each event is applied exactly once, even across crashes.
//! The statements are idempotent as well (insert-or-ignore, update-if-open),
//! which keeps rebuilds from position 0 safe.

use std::time::Duration;

use eventuall_domain::room::RoomEvent;
use eventuall_projections::{RowChange, presence};
use tokio::sync::watch;

use crate::store::subscription::SqlValue;
use crate::store::{CatchUp, DbTx, EventStore, RecordedEvent, StoreError};

/// Subscriber name (checkpoint key) of the room presence projection.
pub const ROOM_PRESENCE: &str = "room_presence";

/// What one step of a projection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Handled this many events.
    Progressed(usize),
    /// Nothing new in the log.
    Idle,
}

/// Handles one batch, if there is one. Tests call this directly.
pub async fn try_step(store: &EventStore, subscription: &mut CatchUp) -> Result<Step, StoreError> {
    let batch = subscription.poll().await?;
    let Some(last) = batch.last().map(|e| e.global_position) else {
        return Ok(Step::Idle);
    };
    let mut tx = DbTx::begin(store).await?;
    for event in &batch {
        apply_event(&mut tx, event).await?;
    }
    subscription.commit(tx, last).await?;
    Ok(Step::Progressed(batch.len()))
}

async fn apply_event(tx: &mut DbTx, event: &RecordedEvent) -> Result<(), StoreError> {
    if event.stream_id.category() != "room" {
        return Ok(());
    }
    let room_event: RoomEvent = match event.decode() {
        Ok(e) => e,
        Err(error) => {
            // A payload this code cannot read must not stop every read
            // model; `replay verify` reports it.
            tracing::error!(%error, "room projection skipped an undecodable event");
            return Ok(());
        }
    };
    for change in presence::changes(event.stream_id.entity_id(), &room_event) {
        write(tx, change).await?;
    }
    Ok(())
}

async fn write(tx: &mut DbTx, change: RowChange) -> Result<(), StoreError> {
    let (sql, args): (&str, Vec<SqlValue>) = match change {
        RowChange::SessionOpened { event_id, connection_id, user_id, kind, connected_at } => (
            "insert into presence_sessions (event_id, connection_id, user_id, kind, connected_at) \
             values ($1, $2, $3, $4, $5) on conflict do nothing",
            vec![event_id.into(), connection_id.into(), user_id.into(), kind.into(), connected_at.into()],
        ),
        RowChange::SessionClosed { event_id, connection_id, disconnected_at, reason } => (
            "update presence_sessions set disconnected_at = $3, close_reason = $4 \
             where event_id = $1 and connection_id = $2 and disconnected_at is null",
            vec![event_id.into(), connection_id.into(), disconnected_at.into(), reason.into()],
        ),
        RowChange::StageIntervalOpened { event_id, user_id, entered_at } => (
            "insert into stage_intervals (event_id, user_id, entered_at) values ($1, $2, $3) on conflict do nothing",
            vec![event_id.into(), user_id.into(), entered_at.into()],
        ),
        RowChange::StageIntervalClosed { event_id, user_id, exited_at } => (
            "update stage_intervals set exited_at = $3 where event_id = $1 and user_id = $2 and exited_at is null",
            vec![event_id.into(), user_id.into(), exited_at.into()],
        ),
    };
    tx.execute(sql, &args).await?;
    Ok(())
}

/// Runs the room presence projection until `shutdown` turns true.
pub async fn run(store: EventStore, mut shutdown: watch::Receiver<bool>) {
    let mut subscription = loop {
        match CatchUp::resume(&store, ROOM_PRESENCE).await {
            Ok(s) => break s,
            Err(error) => {
                tracing::error!(%error, "projection cannot start; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    // One receiver for the whole loop, marked before each step: an append
    // that lands while a step runs still wakes the next wait.
    let mut head = store.head_watch();
    while !*shutdown.borrow() {
        head.mark_unchanged();
        match try_step(&store, &mut subscription).await {
            Ok(Step::Progressed(_)) => continue,
            Ok(Step::Idle) => {}
            Err(error) => {
                tracing::error!(%error, "projection step failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        tokio::select! {
            _ = head.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
