//! Catch-up subscriptions: read the log from a stored checkpoint, then tail it.
//!
//! A subscriber reads batches in global order, does its work inside a
//! [`DbTx`], and commits its new checkpoint **in that same transaction**
//! ([`CatchUp::commit`]). Either both the work and the checkpoint are stored
//! or neither is, so after a crash the subscriber resumes exactly after the
//! last batch it finished: every event is handled exactly once.
//!
//! Waiting for new events is a hint, not a guarantee: the store's head watch
//! wakes subscribers when this process commits, and a poll interval catches
//! appends by other processes (other nodes on PostgreSQL, the CLI on SQLite).

use std::time::Duration;

use sqlx::{AssertSqlSafe, Postgres, Sqlite, Transaction};
use tokio::sync::watch;

use super::{Backend, EventStore, RecordedEvent, StoreError, now_millis};

/// How often a waiting subscriber looks for appends made by other processes.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Events per read: large enough to amortise a transaction per batch.
pub const DEFAULT_BATCH: usize = 1_000;

/// A transaction on whichever database the store runs on, for subscribers'
/// writes. SQL is written once with `$n` placeholders, which both accept.
pub enum DbTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A bind value for [`DbTx`] statements.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// A null of the column's type. PostgreSQL prepares a statement with
    /// the types of its first binds and each connection caches it by its
    /// text: a null bound as one type there makes the same statement refuse
    /// a value of the column's type later on that connection ("incorrect
    /// binary data format"), so a null must carry its type too.
    Null(SqlType),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// The type of a [`SqlValue`], which a null keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlType {
    Int,
    Float,
    Text,
    Bytes,
}

/// A Rust type that binds as one SQL type, so `None::<T>` binds as a null
/// of that type.
pub trait SqlTyped {
    const SQL_TYPE: SqlType;
}

impl SqlTyped for i64 {
    const SQL_TYPE: SqlType = SqlType::Int;
}
impl SqlTyped for f64 {
    const SQL_TYPE: SqlType = SqlType::Float;
}
impl SqlTyped for &str {
    const SQL_TYPE: SqlType = SqlType::Text;
}
impl SqlTyped for String {
    const SQL_TYPE: SqlType = SqlType::Text;
}
impl SqlTyped for Vec<u8> {
    const SQL_TYPE: SqlType = SqlType::Bytes;
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}
impl<T: Into<SqlValue> + SqlTyped> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null(T::SQL_TYPE), Into::into)
    }
}

/// A row type both databases can decode (tuples of `i64`, `String`,
/// `Option<…>`, `f64`, …): what [`EventStore::query_as`] and
/// [`DbTx::fetch_all_as`] return, so callers name no database.
pub trait FromAnyRow:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin
{
}

impl<T> FromAnyRow for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin
{
}

/// A borrowed, typed bind for multi-row statements: a null is bound with
/// its column's type, which PostgreSQL needs in a `values` list (an
/// untyped null binds as an integer and is refused for a text column).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SqlRef<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                SqlValue::Null(SqlType::Int) => query.bind(None::<i64>),
                SqlValue::Null(SqlType::Float) => query.bind(None::<f64>),
                SqlValue::Null(SqlType::Text) => query.bind(None::<&str>),
                SqlValue::Null(SqlType::Bytes) => query.bind(None::<&[u8]>),
                SqlValue::Int(v) => query.bind(*v),
                SqlValue::Float(v) => query.bind(*v),
                SqlValue::Text(v) => query.bind(v.as_str()),
                SqlValue::Bytes(v) => query.bind(v.as_slice()),
            };
        }
        query
    }};
}

macro_rules! bind_refs {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                SqlRef::Text(v) => query.bind(*v),
                SqlRef::OptText(v) => query.bind(*v),
                SqlRef::Int(v) => query.bind(*v),
                SqlRef::OptInt(v) => query.bind(*v),
            };
        }
        query
    }};
}

impl DbTx {
    /// Begins a write transaction (SQLite: `BEGIN IMMEDIATE`, so it waits for
    /// the write lock instead of failing when it first writes).
    pub async fn begin(store: &EventStore) -> Result<Self, StoreError> {
        Ok(match store.backend() {
            Backend::Sqlite(b) => Self::Sqlite(b.pool().begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres(b) => Self::Postgres(b.pool().begin().await?),
        })
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &[SqlValue]) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), args).execute(&mut **tx).await?.rows_affected()
            }
            Self::Postgres(tx) => {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), args).execute(&mut **tx).await?.rows_affected()
            }
        })
    }

    /// Runs a statement with borrowed, typed binds (the projections'
    /// multi-row writes: nothing is copied per bind).
    pub async fn execute_typed(&mut self, sql: &str, binds: &[SqlRef<'_>]) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => {
                bind_refs!(sqlx::query(AssertSqlSafe(sql)), binds).execute(&mut **tx).await?.rows_affected()
            }
            Self::Postgres(tx) => {
                bind_refs!(sqlx::query(AssertSqlSafe(sql)), binds).execute(&mut **tx).await?.rows_affected()
            }
        })
    }

    /// Runs a query with borrowed, typed binds and maps each row with
    /// `FromRow` (the projections' multi-key reads).
    pub async fn fetch_all_typed<T: FromAnyRow>(
        &mut self,
        sql: &str,
        binds: &[SqlRef<'_>],
    ) -> Result<Vec<T>, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => {
                bind_refs!(sqlx::query_as::<_, T>(AssertSqlSafe(sql)), binds).fetch_all(&mut **tx).await?
            }
            Self::Postgres(tx) => {
                bind_refs!(sqlx::query_as::<_, T>(AssertSqlSafe(sql)), binds).fetch_all(&mut **tx).await?
            }
        })
    }

    /// Runs a query that yields at most one integer (e.g. a count).
    pub async fn query_i64(&mut self, sql: &str, args: &[SqlValue]) -> Result<Option<i64>, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => bind_all!(sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(sql)), args)
                .fetch_optional(&mut **tx)
                .await?
                .flatten(),
            Self::Postgres(tx) => bind_all!(sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(sql)), args)
                .fetch_optional(&mut **tx)
                .await?
                .flatten(),
        })
    }

    /// Runs a query that yields at most one text value (e.g. a JSON document).
    pub async fn query_text(&mut self, sql: &str, args: &[SqlValue]) -> Result<Option<String>, StoreError> {
        Ok(match self {
            Self::Sqlite(tx) => bind_all!(sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql)), args)
                .fetch_optional(&mut **tx)
                .await?
                .flatten(),
            Self::Postgres(tx) => bind_all!(sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql)), args)
                .fetch_optional(&mut **tx)
                .await?
                .flatten(),
        })
    }

    /// Runs a query and maps each row with `FromRow` (tuples work on both
    /// databases when every column type does).
    pub async fn fetch_all_as<T>(&mut self, sql: &str, args: &[SqlValue]) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        Ok(match self {
            Self::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(sql)), args).fetch_all(&mut **tx).await?
            }
            Self::Postgres(tx) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(sql)), args).fetch_all(&mut **tx).await?
            }
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(tx) => tx.commit().await?,
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

impl EventStore {
    /// How to open a session of its own on the store's PostgreSQL (advisory
    /// locks held by a connection); `None` on SQLite, one process by
    /// construction.
    pub fn postgres_connect_options(&self) -> Option<sqlx::postgres::PgConnectOptions> {
        match self.backend() {
            Backend::Sqlite(_) => None,
            Backend::Postgres(b) => Some((*b.pool().connect_options()).clone()),
        }
    }

    /// Runs one statement on the pool of either database, in its own
    /// transaction: the service's small tables (timers, the recording
    /// command queue), written once with `$n` placeholders. Returns the
    /// number of rows changed.
    pub async fn execute(&self, sql: &str, args: &[SqlValue]) -> Result<u64, StoreError> {
        Ok(match self.backend() {
            Backend::Sqlite(b) => {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), args).execute(b.pool()).await?.rows_affected()
            }
            Backend::Postgres(b) => {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), args).execute(b.pool()).await?.rows_affected()
            }
        })
    }

    /// Runs a read-only query on the readers' pool of either database and
    /// maps each row with `FromRow`: read models' queries, written once with
    /// `$n` placeholders.
    pub async fn query_as<T>(&self, sql: &str, args: &[SqlValue]) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        Ok(match self.backend() {
            Backend::Sqlite(b) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(sql)), args).fetch_all(b.pool()).await?
            }
            Backend::Postgres(b) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(sql)), args).fetch_all(b.pool()).await?
            }
        })
    }
}

/// Reads a subscriber's stored checkpoint (0 when it never ran).
pub async fn load_checkpoint(store: &EventStore, subscriber: &str) -> Result<i64, StoreError> {
    let sql = "select position from checkpoints where subscriber = $1";
    let position: Option<i64> = match store.backend() {
        Backend::Sqlite(b) => sqlx::query_scalar(sql).bind(subscriber).fetch_optional(b.pool()).await?,
        Backend::Postgres(b) => sqlx::query_scalar(sql).bind(subscriber).fetch_optional(b.pool()).await?,
    };
    Ok(position.unwrap_or(0))
}

/// Writes a subscriber's checkpoint inside `tx`.
pub async fn save_checkpoint(tx: &mut DbTx, subscriber: &str, position: i64) -> Result<(), StoreError> {
    tx.execute(
        "insert into checkpoints (subscriber, position, updated_at) values ($1, $2, $3) \
         on conflict (subscriber) do update set position = excluded.position, updated_at = excluded.updated_at",
        &[subscriber.into(), position.into(), now_millis().into()],
    )
    .await?;
    Ok(())
}

/// A catch-up subscription over the whole log.
pub struct CatchUp {
    store: EventStore,
    subscriber: String,
    position: i64,
    /// The checkpoint as last stored by this subscriber; behind `position`
    /// while skipped batches are not yet saved ([`CatchUp::skip_to`]).
    saved: i64,
    head: watch::Receiver<i64>,
    batch: usize,
}

impl CatchUp {
    /// Resumes `subscriber` from its stored checkpoint.
    pub async fn resume(store: &EventStore, subscriber: &str) -> Result<Self, StoreError> {
        let position = load_checkpoint(store, subscriber).await?;
        Ok(Self::from_position(store, subscriber, position))
    }

    /// Starts `subscriber` after `position`, ignoring any stored checkpoint.
    pub fn from_position(store: &EventStore, subscriber: &str, position: i64) -> Self {
        Self {
            store: store.clone(),
            subscriber: subscriber.to_owned(),
            position,
            saved: position,
            head: store.head_watch(),
            batch: DEFAULT_BATCH,
        }
    }

    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    pub fn subscriber(&self) -> &str {
        &self.subscriber
    }

    /// The position of the last event handled (committed).
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Continues after `position` from now on: for a subscriber that found
    /// its stored checkpoint moved by someone else (a `replay rebuild`).
    pub fn seek(&mut self, position: i64) {
        self.position = position;
        self.saved = position;
    }

    /// Moves past a batch this subscriber has nothing to do with, without a
    /// transaction: the stored checkpoint stays at [`CatchUp::saved_position`]
    /// until the next [`CatchUp::commit`]. Reading those events again after a
    /// restart is harmless (they are skipped again), so a log of heartbeats
    /// costs a subscriber no write per batch.
    pub fn skip_to(&mut self, position: i64) {
        self.position = self.position.max(position);
    }

    /// The checkpoint as this subscriber last stored it.
    pub fn saved_position(&self) -> i64 {
        self.saved
    }

    /// The next batch after the checkpoint, possibly empty; does not wait.
    pub async fn poll(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        self.head.mark_unchanged();
        self.store.read_all(self.position, self.batch).await
    }

    /// The next non-empty batch after the checkpoint, waiting for appends.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            let events = self.poll().await?;
            if !events.is_empty() {
                return Ok(events);
            }
            tokio::select! {
                changed = self.head.changed() => {
                    if changed.is_err() {
                        // The store was dropped; keep polling its database.
                        tokio::time::sleep(POLL_EVERY).await;
                    }
                }
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }

    /// Stores the checkpoint `position` in `tx`, commits `tx`, and moves on.
    pub async fn commit(&mut self, mut tx: DbTx, position: i64) -> Result<(), StoreError> {
        save_checkpoint(&mut tx, &self.subscriber, position).await?;
        tx.commit().await?;
        self.position = position;
        self.saved = position;
        Ok(())
    }
}
