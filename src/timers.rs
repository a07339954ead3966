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

use sqlx::Row;
use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::store::{Backend, EventStore, StoreError};

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

pub type Dispatch = Arc<dyn Fn(Timer) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

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
        match self.store.backend() {
            Backend::Sqlite(b) => {
                sqlx::query(sql).bind(owner).bind(name).bind(due_at).bind(payload).execute(b.pool()).await?;
            }
            Backend::Postgres(b) => {
                sqlx::query(sql).bind(owner).bind(name).bind(due_at).bind(payload).execute(b.pool()).await?;
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    pub async fn cancel(&self, owner: &str, name: &str) -> Result<(), StoreError> {
        let sql = "delete from timers where owner = $1 and name = $2";
        match self.store.backend() {
            Backend::Sqlite(b) => sqlx::query(sql).bind(owner).bind(name).execute(b.pool()).await?.rows_affected(),
            Backend::Postgres(b) => sqlx::query(sql).bind(owner).bind(name).execute(b.pool()).await?.rows_affected(),
        };
        Ok(())
    }

    /// The armed timer `(owner, name)`, if any.
    pub async fn get(&self, owner: &str, name: &str) -> Result<Option<Timer>, StoreError> {
        let sql = "select owner, name, due_at, payload from timers where owner = $1 and name = $2";
        let timers = match self.store.backend() {
            Backend::Sqlite(b) => {
                sqlx::query(sql).bind(owner).bind(name).fetch_all(b.pool()).await?.iter().map(row_to_timer).collect()
            }
            Backend::Postgres(b) => sqlx::query(sql)
                .bind(owner)
                .bind(name)
                .fetch_all(b.pool())
                .await?
                .iter()
                .map(row_to_timer)
                .collect::<Vec<_>>(),
        };
        Ok(timers.into_iter().next())
    }

    async fn due(&self, now: i64) -> Result<Vec<Timer>, StoreError> {
        let sql = "select owner, name, due_at, payload from timers where due_at <= $1 order by due_at limit $2";
        Ok(match self.store.backend() {
            Backend::Sqlite(b) => sqlx::query(sql)
                .bind(now)
                .bind(FIRE_BATCH)
                .fetch_all(b.pool())
                .await?
                .iter()
                .map(row_to_timer)
                .collect(),
            Backend::Postgres(b) => sqlx::query(sql)
                .bind(now)
                .bind(FIRE_BATCH)
                .fetch_all(b.pool())
                .await?
                .iter()
                .map(row_to_timer)
                .collect(),
        })
    }

    /// How many timers are due at `now` (fired ones are deleted).
    pub async fn due_count(&self, now: i64) -> Result<i64, StoreError> {
        let sql = "select count(*) from timers where due_at <= $1";
        Ok(match self.store.backend() {
            Backend::Sqlite(b) => sqlx::query_scalar(sql).bind(now).fetch_one(b.pool()).await?,
            Backend::Postgres(b) => sqlx::query_scalar(sql).bind(now).fetch_one(b.pool()).await?,
        })
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let sql = "select min(due_at) from timers";
        Ok(match self.store.backend() {
            Backend::Sqlite(b) => sqlx::query_scalar(sql).fetch_one(b.pool()).await?,
            Backend::Postgres(b) => sqlx::query_scalar(sql).fetch_one(b.pool()).await?,
        })
    }

    /// Deletes a fired timer unless it was re-armed (its due time moved).
    async fn complete(&self, timer: &Timer) -> Result<(), StoreError> {
        let sql = "delete from timers where owner = $1 and name = $2 and due_at = $3";
        match self.store.backend() {
            Backend::Sqlite(b) => sqlx::query(sql)
                .bind(&timer.owner)
                .bind(&timer.name)
                .bind(timer.due_at)
                .execute(b.pool())
                .await?
                .rows_affected(),
            Backend::Postgres(b) => sqlx::query(sql)
                .bind(&timer.owner)
                .bind(&timer.name)
                .bind(timer.due_at)
                .execute(b.pool())
                .await?
                .rows_affected(),
        };
        Ok(())
    }

    /// Fires every timer due now; returns how many fired. One step of the
    /// loop, callable directly by tests with a manual clock.
    pub async fn fire_due(&self, dispatch: &Dispatch) -> Result<usize, StoreError> {
        let mut fired = 0;
        loop {
            let due = self.due(self.clock.now_millis()).await?;
            if due.is_empty() {
                return Ok(fired);
            }
            for timer in due {
                dispatch(timer.clone()).await;
                self.complete(&timer).await?;
                fired += 1;
            }
        }
    }

    /// Fires timers until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, dispatch: Dispatch, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if let Err(error) = self.fire_due(&dispatch).await {
                tracing::error!(%error, "firing timers failed; retrying");
            }
            let sleep = match self.next_due().await {
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

fn row_to_timer<R: Row>(row: &R) -> Timer
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Timer { owner: row.get(0), name: row.get(1), due_at: row.get(2), payload: row.get(3) }
}
