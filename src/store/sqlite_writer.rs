//! The SQLite appending connection: one `rusqlite` connection owned by a
//! thread of its own, which runs each batch's whole transaction as one job.
//!
//! Through sqlx every statement was a hop to sqlx's worker thread and back,
//! with each bound value copied into an owned argument list first; a batch
//! of 256 one-event appends cost hundreds of hand-offs and allocations, and
//! the writer waited on each. Here the group-commit writer hands the thread
//! one closure per batch (plan, inserts, heads, commit), statements come from
//! rusqlite's prepared-statement cache and bind borrowed values, and the
//! async side waits once. See `docs/adr/0009-sqlite-writer-thread.md`.
//!
//! Only the append path runs here. Migrations, reads, projections and timers
//! keep sqlx's pool; SQLite's write lock (with the busy timeout) orders the
//! pool's writes and this connection's.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::StoreError;

/// How the appending connection commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitSync {
    /// `synchronous = NORMAL`: the WAL is synced beside the writer
    /// ([`super::wal_sync`]), which the answers wait for.
    Deferred,
    /// `synchronous = FULL`: durable when the commit returns.
    AtCommit,
}

/// Tuning of the appending connection.
pub(crate) struct WriterSettings {
    pub sync: CommitSync,
    pub busy_timeout: Duration,
    pub cache_kib: u32,
    pub autocheckpoint_pages: u32,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle on the writer thread; the thread ends when the last handle drops.
pub(crate) struct SqliteWriter {
    jobs: mpsc::Sender<Job>,
}

impl SqliteWriter {
    /// Opens the database file at `path` on a new thread and keeps the
    /// connection there.
    pub fn open(path: &Path, settings: WriterSettings) -> Result<Self, StoreError> {
        let connection = open_connection(path, &settings)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("eventuall-sqlite-writer".into())
            .spawn(move || {
                let mut connection = connection;
                for job in queue {
                    job(&mut connection);
                }
            })
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the connection and waits for its result.
    pub async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, result) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let _ = answer.send(job(connection));
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        // A job that panicked drops its sender: the caller hears `Closed`,
        // and the thread is gone, so every later append does too.
        result.await.map_err(|_| StoreError::Closed)?
    }
}

fn open_connection(path: &Path, settings: &WriterSettings) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(settings.busy_timeout)?;
    let synchronous = match settings.sync {
        CommitSync::Deferred => "normal",
        CommitSync::AtCommit => "full",
    };
    // A statement journal in a temp file cost a write syscall per page; the
    // page cache holds every active stream's index leaf, so a batch does not
    // re-read them; the autocheckpoint is a backstop behind the background
    // checkpoints of `wal_sync`, and lets the WAL start over.
    connection.execute_batch(&format!(
        "pragma synchronous = {synchronous};
         pragma foreign_keys = on;
         pragma temp_store = memory;
         pragma cache_size = -{cache};
         pragma wal_autocheckpoint = {pages};",
        cache = settings.cache_kib,
        pages = settings.autocheckpoint_pages,
    ))?;
    // One statement per fixed shape is reused for every batch.
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}
