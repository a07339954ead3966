//! The saga worker's lease: on PostgreSQL, where several service processes
//! share one database, only the holder runs the process manager and the
//! command worker, so one process at a time calls Mux and LiveKit for the
//! saga (two would poll twice as often and race each other's reconciling
//! `GET`s against each other's creates).
//!
//! The lease is a session-level `pg_try_advisory_lock` on a connection of
//! its own, outside the pool: PostgreSQL releases it when that session ends,
//! so a crashed or partitioned holder loses it without any expiry to tune.
//! Others try to take it again every `retry_every`. SQLite needs none: one
//! process owns the file.
//!
//! Expected-version appends still guard every step, so a holder that lost
//! its connection and has not noticed yet cannot corrupt a session; the
//! lease only keeps the external calls single.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;

use crate::store::EventStore;

/// The advisory lock key of the recording worker (`"evtrec"` in ASCII): any
/// constant no other part of the service uses.
const LEASE_KEY: i64 = 0x6576_7472_6563;

pub(super) struct Lease {
    state: Mutex<State>,
    retry_every: Duration,
}

// One per process: the size of the PostgreSQL variant does not matter.
#[allow(clippy::large_enum_variant)]
enum State {
    /// SQLite: one process by construction.
    NotNeeded,
    Postgres {
        options: PgConnectOptions,
        /// The session that holds the advisory lock, while held.
        held: Option<PgConnection>,
        /// No new attempt before this.
        next_try: Option<Instant>,
    },
}

impl Lease {
    pub(super) fn for_store(store: &EventStore, retry_every: Duration) -> Self {
        let state = match store.postgres_connect_options() {
            None => State::NotNeeded,
            Some(options) => State::Postgres { options, held: None, next_try: None },
        };
        Self { state: Mutex::new(state), retry_every }
    }

    /// True if this process may run the saga now: the lease is held and
    /// its session is alive, or it was free and is now taken.
    pub(super) async fn hold(&self) -> bool {
        let mut state = self.state.lock().await;
        let State::Postgres { options, held, next_try } = &mut *state else { return true };
        if let Some(conn) = held {
            if conn.ping().await.is_ok() {
                return true;
            }
            tracing::warn!("lost the recording worker lease (its database session ended)");
            *held = None;
        }
        let now = Instant::now();
        if next_try.is_some_and(|at| now < at) {
            return false;
        }
        *next_try = Some(now + self.retry_every);
        let mut conn = match PgConnection::connect_with(options).await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "could not connect to take the recording worker lease");
                return false;
            }
        };
        let taken =
            sqlx::query_scalar::<_, bool>("select pg_try_advisory_lock($1)").bind(LEASE_KEY).fetch_one(&mut conn).await;
        match taken {
            Ok(true) => {
                tracing::info!("took the recording worker lease: this process runs the recording saga");
                *held = Some(conn);
                true
            }
            // Another process runs the saga; this connection just closes.
            Ok(false) => false,
            Err(error) => {
                tracing::warn!(%error, "could not take the recording worker lease");
                false
            }
        }
    }

    /// Gives the lease up (graceful shutdown), so that another process
    /// takes over at its next try instead of after this one's exit.
    pub(super) async fn release(&self) {
        let mut state = self.state.lock().await;
        if let State::Postgres { held, .. } = &mut *state
            && let Some(conn) = held.take()
            && let Err(error) = conn.close().await
        {
            tracing::warn!(%error, "closing the recording worker lease connection");
        }
    }
}
