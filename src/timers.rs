//! Durable timers: the replacement for Durable Object alarms.
//!
//! A timer is a row `(owner, name, due_at, payload)`; arming the same
//! `(owner, name)` again moves it. The timer loop fires due timers by handing
//! them to a dispatcher (which delivers them to the owning actor) and deletes
//! each one afterwards unless it was re-armed meanwhile. Timers live in the
//! database, so they fire after a restart too: at least once, possibly late,
//! never lost. Owners must therefore treat a firing as "check now", not as
//! "exactly this moment".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::store::{EventStore, StoreError};

/// Longest sleep between looks at the table: picks up timers armed by other
/// processes (other nodes on PostgreSQL).
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// Timers fired per round.
const FIRE_BATCH: i64 = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    pub owner: String,
    pub name: String,
    pub due_at: i64,
    pub payload: String,
}

/// What became of a timer handed to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// The owner handled it: the row goes (unless re-armed meanwhile).
    Handled,
    /// Another node owns the timer's aggregate (ADR 0020): the row stays
    /// for that node's timer loop, and this node looks again next round.
    Elsewhere,
}

pub type Dispatch = Arc<dyn Fn(Timer) -> Pin<Box<dyn Future<Output = Fired> + Send>> + Send + Sync>;

pub struct Timers {
    store: EventStore,
    clock: SharedClock,
    wake: Notify,
}

impl Timers {
    pub fn new(store: EventStore, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self { store, clock, wake: Notify::new() })
    }

    /// Arms (or moves) the timer `(owner, name)` to fire at `due_at`.
    pub async fn arm(&self, owner: &str, name: &str, due_at: i64, payload: &str) -> Result<(), StoreError> {
        let sql = "insert into timers (owner, name, due_at, payload) values ($1, $2, $3, $4) \
                   on conflict (owner, name) do update set due_at = excluded.due_at, payload = excluded.payload";
        self.store.execute(sql, &[owner.into(), name.into(), due_at.into(), payload.into()]).await?;
        self.wake.notify_one();
        Ok(())
    }

    pub async fn cancel(&self, owner: &str, name: &str) -> Result<(), StoreError> {
        let sql = "delete from timers where owner = $1 and name = $2";
        self.store.execute(sql, &[owner.into(), name.into()]).await?;
        Ok(())
    }

    /// The armed timer `(owner, name)`, if any.
    pub async fn get(&self, owner: &str, name: &str) -> Result<Option<Timer>, StoreError> {
        let sql = "select owner, name, due_at, payload from timers where owner = $1 and name = $2";
        let rows: Vec<TimerRow> = self.store.query_as(sql, &[owner.into(), name.into()]).await?;
        Ok(rows.into_iter().next().map(Timer::from))
    }

    async fn due(&self, now: i64) -> Result<Vec<Timer>, StoreError> {
        let sql = "select owner, name, due_at, payload from timers where due_at <= $1 order by due_at limit $2";
        let rows: Vec<TimerRow> = self.store.query_as(sql, &[now.into(), FIRE_BATCH.into()]).await?;
        Ok(rows.into_iter().map(Timer::from).collect())
    }

    /// How many timers are due at `now` (fired ones are deleted).
    pub async fn due_count(&self, now: i64) -> Result<i64, StoreError> {
        let rows: Vec<(i64,)> =
            self.store.query_as("select count(*) from timers where due_at <= $1", &[now.into()]).await?;
        Ok(rows.first().map_or(0, |row| row.0))
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let rows: Vec<(Option<i64>,)> = self.store.query_as("select min(due_at) from timers", &[]).await?;
        Ok(rows.first().and_then(|row| row.0))
    }

    /// Deletes a fired timer unless it was re-armed (its due time moved).
    async fn complete(&self, timer: &Timer) -> Result<(), StoreError> {
        let sql = "delete from timers where owner = $1 and name = $2 and due_at = $3";
        self.store
            .execute(sql, &[timer.owner.as_str().into(), timer.name.as_str().into(), timer.due_at.into()])
            .await?;
        Ok(())
    }

    /// Fires every timer due now that this node owns; returns how many
    /// fired. One step of the loop, callable directly by tests with a
    /// manual clock.
    pub async fn fire_due(&self, dispatch: &Dispatch) -> Result<usize, StoreError> {
        Ok(self.fire_round(dispatch).await?.0)
    }

    /// `(fired, left for other nodes)`.
    async fn fire_round(&self, dispatch: &Dispatch) -> Result<(usize, usize), StoreError> {
        let mut fired = 0;
        let mut elsewhere = std::collections::HashSet::new();
        loop {
            let due = self.due(self.clock.now_millis()).await?;
            let mut progressed = false;
            for timer in due {
                let id = (timer.owner.clone(), timer.name.clone(), timer.due_at);
                if elsewhere.contains(&id) {
                    continue;
                }
                match dispatch(timer.clone()).await {
                    Fired::Handled => {
                        self.complete(&timer).await?;
                        fired += 1;
                        progressed = true;
                    }
                    Fired::Elsewhere => {
                        elsewhere.insert(id);
                    }
                }
            }
            if !progressed {
                return Ok((fired, elsewhere.len()));
            }
        }
    }

    /// Fires timers until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, dispatch: Dispatch, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let left_elsewhere = match self.fire_round(&dispatch).await {
                Ok((_, elsewhere)) => elsewhere,
                Err(error) => {
                    tracing::error!(%error, "firing timers failed; retrying");
                    0
                }
            };
            let sleep = match self.next_due().await {
                // Due timers other nodes own stay due: look again at the
                // rescan pace, not in a loop.
                _ if left_elsewhere > 0 => RESCAN_EVERY,
                Ok(Some(due)) => Duration::from_millis(
                    (due - self.clock.now_millis()).clamp(0, RESCAN_EVERY.as_millis() as i64) as u64,
                ),
                _ => RESCAN_EVERY,
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

type TimerRow = (String, String, i64, String);

impl From<TimerRow> for Timer {
    fn from((owner, name, due_at, payload): TimerRow) -> Self {
        Self { owner, name, due_at, payload }
    }
}
