//! Durability of SQLite commits, made off the writer's path: the WAL is
//! synced by a thread of its own while the writer goes on with the next
//! batch.
//!
//! The SQLite writer commits with `synchronous = NORMAL`: a commit writes its
//! WAL frames and returns without `fsync`. The frames are then in the page
//! cache, safe from `kill -9` but not yet from power loss, so no append is
//! answered yet. The group-commit writer asks this module for a sync and
//! answers the batch once a sync that *started after its commit* has
//! finished: the WAL is a log, so syncing it makes every frame written
//! before the sync durable, and SQLite's recovery keeps exactly the prefix of
//! complete transactions. One sync covers every batch committed while the
//! previous one ran, so the disk's flush latency no longer adds to each
//! batch: it overlaps the writing of the next. (This is what a database
//! server's WAL flusher does; `synchronous = FULL` syncs inside the commit,
//! which made the writer wait out every flush.)
//!
//! A failed sync is final: after one, the kernel may have dropped the dirty
//! pages and a later sync could succeed without them, so every batch not yet
//! known durable is answered with the error and the store takes no more
//! appends.
//!
//! Checkpoints (copying WAL frames back into the database file, with two
//! syncs) are moved off the writer the same way: a second thread checkpoints
//! passively a few times a second while appends come in, so the writer's own
//! automatic checkpoint, kept as the backstop that lets the WAL start over,
//! finds little left to copy. See `docs/adr/0008-wal-sync-off-the-writer.md`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// What the sync thread has achieved so far.
#[derive(Clone, Debug, Default)]
struct Synced {
    /// Every commit up to this generation is durable.
    through: u64,
    /// Set once a sync failed; nothing after `through` will ever be durable.
    failure: Option<Arc<str>>,
}

/// Pause between two background checkpoints while appends come in: long
/// enough that each copies many frames at once, short enough that the WAL
/// stays far below the writer's backstop.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Requests {
    /// Generation of the newest commit that asked for a sync.
    newest: u64,
    closed: bool,
}

/// Handle on the sync thread of one SQLite database's WAL.
pub(crate) struct WalSync {
    requests: Arc<(Mutex<Requests>, Condvar)>,
    synced: watch::Receiver<Synced>,
}

/// The reason an append was committed but could not be made durable.
#[derive(Debug, Clone)]
pub(crate) struct SyncFailed(pub Arc<str>);

impl WalSync {
    /// Starts the sync thread for the WAL of the database at `database`,
    /// and its checkpoint thread.
    pub fn start(database: &Path) -> std::io::Result<Self> {
        let wal = wal_of(database);
        let sync = Self::sync_only(wal)?;
        let requests = sync.requests.clone();
        let database = database.to_owned();
        std::thread::Builder::new()
            .name("eventuall-wal-checkpoint".into())
            .spawn(move || checkpoint_loop(&database, &requests))?;
        Ok(sync)
    }

    /// The sync thread alone, for the WAL file at `wal`.
    pub(super) fn sync_only(wal: PathBuf) -> std::io::Result<Self> {
        let requests = Arc::new((Mutex::new(Requests::default()), Condvar::new()));
        let (report, synced) = watch::channel(Synced::default());
        let thread_requests = requests.clone();
        std::thread::Builder::new()
            .name("eventuall-wal-sync".into())
            .spawn(move || sync_loop(&wal, &thread_requests, &report))?;
        Ok(Self { requests, synced })
    }

    /// Asks for a sync covering every commit made so far (call it after the
    /// commit returned); the answer is the generation to wait for.
    pub fn request(&self) -> u64 {
        let (lock, wake) = &*self.requests;
        let mut requests = lock.lock().expect("wal sync lock");
        requests.newest += 1;
        // Both threads wait on this: the sync for work, the checkpointer for
        // a first commit since its last checkpoint.
        wake.notify_all();
        requests.newest
    }

    /// Waits until `generation` is durable.
    pub async fn durable(&self, generation: u64) -> Result<(), SyncFailed> {
        let mut synced = self.synced.clone();
        let state = synced
            .wait_for(|s| s.through >= generation || s.failure.is_some())
            .await
            .map_err(|_| SyncFailed("the WAL sync thread stopped".into()))?;
        match &state.failure {
            Some(reason) if state.through < generation => Err(SyncFailed(reason.clone())),
            _ => Ok(()),
        }
    }

    /// Set once a sync failed: the writer stops taking appends.
    pub fn failure(&self) -> Option<SyncFailed> {
        self.synced.borrow().failure.clone().map(SyncFailed)
    }
}

impl Drop for WalSync {
    /// Lets the thread finish the syncs already asked for, then stop.
    fn drop(&mut self) {
        let (lock, wake) = &*self.requests;
        lock.lock().expect("wal sync lock").closed = true;
        wake.notify_all();
    }
}

/// SQLite's name for the WAL of `database`.
fn wal_of(database: &Path) -> PathBuf {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

fn sync_loop(wal_path: &std::path::Path, requests: &(Mutex<Requests>, Condvar), report: &watch::Sender<Synced>) {
    let (lock, wake) = requests;
    let mut through = 0;
    loop {
        let target = {
            let mut pending = lock.lock().expect("wal sync lock");
            while pending.newest == through && !pending.closed {
                pending = wake.wait(pending).expect("wal sync lock");
            }
            if pending.newest == through {
                return; // closed, and nothing is left to sync
            }
            pending.newest
        };
        // Opened per sync, by path: `fsync` acts on the file, whichever
        // descriptor names it, and a fresh open cannot hold on to a WAL file
        // that SQLite has since replaced.
        let started = std::time::Instant::now();
        match std::fs::File::open(wal_path).and_then(|wal| wal.sync_data()) {
            Ok(()) => {
                metrics::histogram!(crate::metrics::WAL_SYNC_DURATION).record(started.elapsed().as_secs_f64());
                through = target;
                report.send_modify(|s| s.through = through);
            }
            Err(error) => {
                tracing::error!(%error, path = %wal_path.display(), "syncing the SQLite WAL failed; the store takes no more appends");
                let reason: Arc<str> = format!("the event log could not be made durable: {error}").into();
                report.send_modify(|s| s.failure = Some(reason));
                return;
            }
        }
    }
}

/// Checkpoints passively every [`CHECKPOINT_EVERY`] while commits come in,
/// on a connection of its own. A passive checkpoint never waits for the
/// writer or readers and never blocks them; it copies what it can.
fn checkpoint_loop(database: &Path, requests: &(Mutex<Requests>, Condvar)) {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = match rusqlite::Connection::open_with_flags(database, flags) {
        Ok(connection) => connection,
        Err(error) => {
            // The writer's own automatic checkpoints still keep the WAL short.
            tracing::warn!(%error, "no background checkpoints: the database could not be opened");
            return;
        }
    };
    let (lock, wake) = requests;
    let mut checkpointed = 0;
    loop {
        {
            let mut pending = lock.lock().expect("wal sync lock");
            while pending.newest == checkpointed && !pending.closed {
                pending = wake.wait(pending).expect("wal sync lock");
            }
            if pending.closed {
                return;
            }
        }
        // Let commits gather, so that one checkpoint copies many frames.
        std::thread::sleep(CHECKPOINT_EVERY);
        checkpointed = lock.lock().expect("wal sync lock").newest;
        if let Err(error) = connection.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
            tracing::debug!(%error, "background checkpoint skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_is_durable_only_after_a_sync_that_started_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("log-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let sync = WalSync::sync_only(wal).unwrap();
        let first = sync.request();
        let second = sync.request();
        assert!(second > first);
        sync.durable(second).await.unwrap();
        sync.durable(first).await.unwrap();
        assert!(sync.failure().is_none());
    }

    #[tokio::test]
    async fn a_failed_sync_fails_every_later_commit_and_stays_failed() {
        let dir = tempfile::tempdir().unwrap();
        // No such file: the open before the sync fails like a failed fsync.
        let sync = WalSync::sync_only(dir.path().join("missing-wal")).unwrap();
        let generation = sync.request();
        let error = sync.durable(generation).await.unwrap_err();
        assert!(error.0.contains("could not be made durable"), "{}", error.0);
        assert!(sync.failure().is_some());
        let later = sync.request();
        assert!(sync.durable(later).await.is_err(), "no commit after a failed sync may be called durable");
    }
}
