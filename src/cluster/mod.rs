//! Several nodes on one PostgreSQL (ADR 0020): every live aggregate scope
//! is owned by one node at a time, through a lease row in the database.
//!
//! A scope is what one node hosts together: an event (its room and queue
//! actors; the recording saga has its own single-worker lease) or a user
//! (the user's interview directory and interviews, which call each other
//! in process). A lease is `(scope, holder, node, url, epoch, expires_at)`:
//! the holder is this process (`{node}/{uuid}`, so a restarted node waits
//! for its previous life's leases like anyone else), the epoch grows at
//! every change of holder, and `expires_at` is in the database's clock so
//! that nodes need no synchronised clocks.
//!
//! - [`Cluster::owner`] answers who serves a scope, taking the lease when it
//!   is free or expired; the routes ([`route`]) forward a request to the
//!   owner when it is another node.
//! - [`Cluster::run`] renews every lease this process holds in one statement
//!   every third of the lease time, evicts the actors of a scope whose lease
//!   was lost (so a node that lost a lease stops writing at once), gives
//!   back scopes with no live actor, and releases everything on shutdown.
//! - [`Cluster::holds`] is the store's write guard: an append to a scoped
//!   stream is refused unless this process holds the lease and its local
//!   copy has not run out (a paused process resumes with its leases
//!   expired). The expected version refuses what gets past it: a zombie's
//!   late append meets the version the new owner wrote.
//!
//! With SQLite, or with no `EVENTUALL_NODE_ID`, there is no cluster and
//! every path below is skipped.

pub mod hosts;
pub mod route;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::{EventStore, StoreError, StreamId};

/// The database clock in milliseconds (lease expiry is compared in one
/// clock, whatever the nodes' clocks say).
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// What one node hosts together.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// An event's room and queue.
    Event(String),
    /// A user's interview directory and interviews.
    User(String),
}

impl Scope {
    /// The lease row's key: `event:{id}` or `user:{id}`.
    pub fn key(&self) -> String {
        match self {
            Self::Event(id) => format!("event:{id}"),
            Self::User(id) => format!("user:{id}"),
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        let (kind, id) = key.split_once(':')?;
        match kind {
            "event" => Some(Self::Event(id.to_owned())),
            "user" => Some(Self::User(id.to_owned())),
            _ => None,
        }
    }

    /// The scope a stream belongs to, for the categories whose single
    /// writer is a scoped actor. Interview streams are written by actors of
    /// their user's scope, but the stream id does not name the user: the
    /// routes and the timer gate keep them on the owner, and the expected
    /// version fences them.
    pub fn of_stream(stream: &StreamId) -> Option<Self> {
        match stream.category() {
            "room" | "queue" => Some(Self::Event(stream.entity_id().to_owned())),
            "user_interviews" => Some(Self::User(stream.entity_id().to_owned())),
            _ => None,
        }
    }
}

/// Who serves a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This process holds the lease.
    Here,
    /// Another live node does, reachable at `url`.
    There { node: String, url: String },
}

/// What the cluster needs of the actor hosts: whether a scope still has
/// live actors, and how to stop them when its lease is lost.
pub trait ScopeHosts: Send + Sync {
    fn is_live(&self, scope: &Scope) -> bool;
    fn evict(&self, scope: &Scope);
}

/// Where and how this node takes part.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: String,
    /// How the other nodes reach this one (`http://host:port`).
    pub url: String,
    /// How long a lease lasts without renewal: the bound on a takeover
    /// after the owner dies.
    pub lease_ttl: Duration,
}

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    settings: ClusterSettings,
    /// `{node}/{uuid}`: this process, not just this node.
    holder: String,
    held: Mutex<HashMap<String, Held>>,
    hosts: OnceLock<Arc<dyn ScopeHosts>>,
    /// Forwards requests and room commands to owners.
    pub(crate) http: reqwest::Client,
}

#[derive(Clone, Copy)]
struct Held {
    /// This process writes for the scope until then: the lease time less a
    /// margin, measured from before the statement that took or renewed it.
    valid_until: Instant,
    /// When this process took it (a lease taken during a renewal round is
    /// not lost for missing from that round's answer).
    taken_at: Instant,
    last_used: Instant,
    epoch: i64,
    /// The row's `expires_at` as last written by this process: giving an
    /// idle lease back deletes the row only if nobody wrote it since.
    expires_at: i64,
}

/// A lease as stored (for tests, the console and `SCALING.md`'s figures).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaseRow {
    pub scope: String,
    pub node: String,
    pub url: String,
    pub epoch: i64,
}

impl Cluster {
    pub fn new(store: EventStore, settings: ClusterSettings) -> Result<Self, StoreError> {
        if !store.is_postgres() {
            return Err(StoreError::Unsupported("several nodes need PostgreSQL (EVENTUALL_NODE_ID is set)"));
        }
        let holder = format!("{}/{}", settings.node_id, uuid::Uuid::new_v4().simple());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|_| StoreError::Unsupported("could not build the cluster's HTTP client"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                settings,
                holder,
                held: Mutex::new(HashMap::new()),
                hosts: OnceLock::new(),
                http,
            }),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.inner.settings.node_id
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Installs the actor hosts (once, at start-up).
    pub fn set_hosts(&self, hosts: Arc<dyn ScopeHosts>) {
        let _ = self.inner.hosts.set(hosts);
    }

    fn margin(&self) -> Duration {
        self.inner.settings.lease_ttl / 5
    }

    /// True while this process may write for `scope`.
    pub fn holds(&self, scope: &Scope) -> bool {
        let held = self.inner.held.lock().expect("lease table lock");
        held.get(&scope.key()).is_some_and(|h| h.valid_until > Instant::now())
    }

    /// The store's write guard: false for a scoped stream whose lease this
    /// process does not hold.
    pub fn may_write(&self, stream: &StreamId) -> bool {
        Scope::of_stream(stream).is_none_or(|scope| self.holds(&scope))
    }

    /// Who serves `scope`, taking its lease when nobody holds a live one.
    pub async fn owner(&self, scope: &Scope) -> Result<Owner, StoreError> {
        let key = scope.key();
        {
            let mut held = self.inner.held.lock().expect("lease table lock");
            if let Some(entry) = held.get_mut(&key).filter(|h| h.valid_until > Instant::now()) {
                entry.last_used = Instant::now();
                return Ok(Owner::Here);
            }
        }
        // Take the lease when it is free, expired or already this
        // process's; otherwise read who has it. A lease that ends between
        // the two statements is taken on the next round.
        for _ in 0..3 {
            let started = Instant::now();
            let take = format!(
                "insert into cluster_leases (scope, holder, node, url, epoch, expires_at) \
                 values ($1, $2, $3, $4, 1, {DB_NOW_MS} + $5) \
                 on conflict (scope) do update set holder = excluded.holder, node = excluded.node, \
                   url = excluded.url, expires_at = excluded.expires_at, \
                   epoch = cluster_leases.epoch + case when cluster_leases.holder = excluded.holder then 0 else 1 end \
                 where cluster_leases.holder = excluded.holder or cluster_leases.expires_at < {DB_NOW_MS} \
                 returning epoch, expires_at"
            );
            let settings = &self.inner.settings;
            let taken: Vec<(i64, i64)> = self
                .inner
                .store
                .query_as(
                    &take,
                    &[
                        key.as_str().into(),
                        self.inner.holder.as_str().into(),
                        settings.node_id.as_str().into(),
                        settings.url.as_str().into(),
                        (settings.lease_ttl.as_millis() as i64).into(),
                    ],
                )
                .await?;
            if let Some(&(epoch, expires_at)) = taken.first() {
                let now = Instant::now();
                let valid_until = started + settings.lease_ttl - self.margin();
                self.inner
                    .held
                    .lock()
                    .expect("lease table lock")
                    .insert(key.clone(), Held { valid_until, taken_at: started, last_used: now, epoch, expires_at });
                metrics::counter!(crate::metrics::CLUSTER_LEASES_TAKEN).increment(1);
                tracing::info!(scope = %key, epoch, "lease taken");
                return Ok(Owner::Here);
            }
            let sql = "select node, url from cluster_leases where scope = $1";
            let rows: Vec<(String, String)> = self.inner.store.query_as(sql, &[key.as_str().into()]).await?;
            if let Some((node, url)) = rows.into_iter().next() {
                return Ok(Owner::There { node, url });
            }
        }
        Err(StoreError::Unsupported("the lease of a scope changed hands three times in a row"))
    }

    /// The epoch under which this process holds `scope`, if it does.
    pub fn epoch(&self, scope: &Scope) -> Option<i64> {
        self.inner.held.lock().expect("lease table lock").get(&scope.key()).map(|h| h.epoch)
    }

    /// Every stored lease (tests and operators).
    pub async fn leases(store: &EventStore) -> Result<Vec<LeaseRow>, StoreError> {
        store.query_as("select scope, node, url, epoch from cluster_leases order by scope", &[]).await
    }

    /// One renewal round: renews all of this process's leases, evicts the
    /// actors of lost ones, gives back idle ones.
    pub async fn renew(&self) {
        let started = Instant::now();
        let ttl = self.inner.settings.lease_ttl;
        let sql = format!(
            "update cluster_leases set expires_at = {DB_NOW_MS} + $1 where holder = $2 returning scope, expires_at"
        );
        let renewed: Result<Vec<(String, i64)>, _> = self
            .inner
            .store
            .query_as(&sql, &[(ttl.as_millis() as i64).into(), self.inner.holder.as_str().into()])
            .await;
        let mut lost = Vec::new();
        let mut idle = Vec::new();
        {
            let mut held = self.inner.held.lock().expect("lease table lock");
            match &renewed {
                Ok(rows) => {
                    let renewed: HashMap<&str, i64> = rows.iter().map(|(scope, at)| (scope.as_str(), *at)).collect();
                    held.retain(|key, entry| {
                        if let Some(&expires_at) = renewed.get(key.as_str()) {
                            entry.valid_until = started + ttl - ttl / 5;
                            entry.expires_at = expires_at;
                            true
                        } else if entry.taken_at < started {
                            // Not renewed, and not taken after this round
                            // began: somebody else has it now.
                            lost.push(key.clone());
                            false
                        } else {
                            true
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "could not renew leases");
                    let now = Instant::now();
                    held.retain(|key, entry| {
                        let valid = entry.valid_until > now;
                        if !valid {
                            lost.push(key.clone());
                        }
                        valid
                    });
                }
            }
            if let Some(hosts) = self.inner.hosts.get() {
                let grace = ttl * 2;
                for (key, entry) in held.iter() {
                    let unused = entry.last_used + grace < started;
                    if unused && Scope::parse(key).is_some_and(|scope| !hosts.is_live(&scope)) {
                        idle.push((key.clone(), entry.expires_at));
                    }
                }
                for (key, _) in &idle {
                    held.remove(key);
                }
            }
        }
        if let Some(hosts) = self.inner.hosts.get() {
            for key in &lost {
                tracing::warn!(scope = %key, "lease lost; stopping its actors");
                metrics::counter!(crate::metrics::CLUSTER_LEASES_LOST).increment(1);
                if let Some(scope) = Scope::parse(key) {
                    hosts.evict(&scope);
                }
            }
        }
        for (key, expires_at) in idle {
            // Only the row as this round left it: if a request took the
            // scope again meanwhile, the row moved on and stays.
            let sql = "delete from cluster_leases where scope = $1 and holder = $2 and expires_at = $3";
            let args = [key.as_str().into(), self.inner.holder.as_str().into(), expires_at.into()];
            if let Err(error) = self.inner.store.execute(sql, &args).await {
                tracing::warn!(scope = %key, %error, "could not give back an idle lease");
            }
        }
    }

    /// Renews until `shutdown`, then gives every lease back so that other
    /// nodes take over at once instead of after the lease time.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let every = self.inner.settings.lease_ttl / 3;
        while !*shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(every) => self.renew().await,
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Gives back every lease of this process (graceful shutdown).
    pub async fn release_all(&self) {
        self.inner.held.lock().expect("lease table lock").clear();
        let sql = "delete from cluster_leases where holder = $1";
        match self.inner.store.execute(sql, &[self.inner.holder.as_str().into()]).await {
            Ok(released) => tracing::info!(released, "leases released"),
            Err(error) => tracing::warn!(%error, "could not release leases; they expire on their own"),
        }
    }

    /// Forgets a scope after an owner this node forwarded to stopped
    /// answering: nothing to do locally (the lease lives in the database),
    /// but logged so operators see takeovers coming.
    pub(crate) fn owner_unreachable(&self, scope: &Scope, node: &str) {
        metrics::counter!(crate::metrics::CLUSTER_FORWARD_FAILURES).increment(1);
        tracing::warn!(scope = %scope.key(), owner = node, "owner unreachable; its lease will expire");
    }
}
