//! The actor registry: one task per live aggregate, found by key.
//!
//! This is the Durable Object of the original platform: a single writer per
//! aggregate, state in memory, inputs over a channel. An actor that has been
//! idle retires itself (the DO's hibernation); the next message for its key
//! spawns a fresh one, which rebuilds from snapshot + tail.
//!
//! Retirement races with senders: a sender may clone the channel just before
//! the actor leaves. [`Registry::send`] handles it: a send to a closed
//! channel gives the message back, the stale entry is dropped, and the
//! message goes to a newly spawned actor. Nothing is lost or handled twice.
//!
//! A socket, which sends its actor a message per frame, holds an
//! [`ActorHandle`]: the actor's channel kept between sends, so a heartbeat
//! takes no registry lock; a closed channel sends it back through the
//! registry as above.
//!
//! With several nodes (ADR 0020) a registry has a [`Gate`]: an actor starts
//! only on the node that holds its scope's lease. A refused start leaves a
//! short-lived stand-in that drops what it is sent (callers waiting on a
//! reply see the channel close and answer `unavailable`), so a burst of
//! messages costs one lease lookup, not one each. [`Registry::evict`] stops
//! an actor at once when its lease is lost.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Messages an actor may have queued before senders wait.
pub const MAILBOX: usize = 1_024;

/// How long a refused start keeps refusing before the next message asks
/// the lease again.
const REFUSED_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// Decides whether the actor for a key may start on this node.
pub type Gate = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

type Spawner<M> =
    dyn Fn(String, mpsc::Receiver<M>, Retirement<M>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

pub struct Registry<M> {
    actors: Mutex<HashMap<String, Entry<M>>>,
    spawner: Box<Spawner<M>>,
    next_generation: std::sync::atomic::AtomicU64,
    gate: std::sync::OnceLock<Gate>,
}

struct Entry<M> {
    generation: u64,
    sender: mpsc::Sender<M>,
    task: tokio::task::AbortHandle,
}

/// Given to each actor so it can leave the registry when idle.
pub struct Retirement<M> {
    registry: std::sync::Weak<Registry<M>>,
    key: String,
    generation: u64,
}

impl<M: Send + 'static> Retirement<M> {
    /// Removes the actor from the registry if its mailbox is empty; returns
    /// false (stay alive) if a message is waiting. Holding the registry lock
    /// while checking means no new sender can be handed this actor's channel
    /// after it decided to go.
    pub fn try_retire(&self, mailbox: &mut mpsc::Receiver<M>) -> bool {
        let Some(registry) = self.registry.upgrade() else { return true };
        let mut actors = registry.actors.lock().expect("registry lock");
        if !mailbox.is_empty() {
            return false;
        }
        mailbox.close();
        if actors.get(&self.key).is_some_and(|e| e.generation == self.generation) {
            actors.remove(&self.key);
        }
        true
    }
}

/// The stand-in for an actor this node may not start: drops messages until
/// it has been quiet for [`REFUSED_FOR`].
async fn refuse<M: Send + 'static>(mut mailbox: mpsc::Receiver<M>, retirement: Retirement<M>) {
    loop {
        match tokio::time::timeout(REFUSED_FOR, mailbox.recv()).await {
            Ok(Some(dropped)) => drop(dropped),
            Ok(None) => return,
            Err(_) if retirement.try_retire(&mut mailbox) => return,
            Err(_) => {}
        }
    }
}

/// `first` plus whatever else is already queued, up to `max` messages: the
/// batch an actor handles with one append and one broadcast.
pub fn drain_batch<M>(first: M, mailbox: &mut mpsc::Receiver<M>, max: usize) -> Vec<M> {
    let mut batch = vec![first];
    while batch.len() < max {
        match mailbox.try_recv() {
            Ok(msg) => batch.push(msg),
            Err(_) => break,
        }
    }
    batch
}

impl<M: Send + 'static> Registry<M> {
    /// `spawn(key, mailbox, retirement)` runs one actor until it retires.
    pub fn new<F, Fut>(spawn: F) -> Arc<Self>
    where
        F: Fn(String, mpsc::Receiver<M>, Retirement<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Arc::new(Self {
            actors: Mutex::new(HashMap::new()),
            spawner: Box::new(move |k, rx, r| Box::pin(spawn(k, rx, r))),
            next_generation: Default::default(),
            gate: std::sync::OnceLock::new(),
        })
    }

    /// Installs the gate (once, at start-up, before any actor starts).
    pub fn set_gate(&self, gate: Gate) {
        let _ = self.gate.set(gate);
    }

    /// Stops the actor for `key` now (its lease was lost): whatever it was
    /// doing is abandoned, its sockets close, and the next message for the
    /// key asks the gate again.
    pub fn evict(&self, key: &str) {
        if let Some(entry) = self.actors.lock().expect("registry lock").remove(key) {
            entry.task.abort();
        }
    }

    fn sender(self: &Arc<Self>, key: &str) -> (u64, mpsc::Sender<M>) {
        let mut actors = self.actors.lock().expect("registry lock");
        if let Some(entry) = actors.get(key).filter(|e| !e.sender.is_closed()) {
            return (entry.generation, entry.sender.clone());
        }
        let generation = self.next_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, mailbox) = mpsc::channel(MAILBOX);
        let retirement = Retirement { registry: Arc::downgrade(self), key: key.to_owned(), generation };
        let task = match self.gate.get().cloned() {
            None => tokio::spawn((self.spawner)(key.to_owned(), mailbox, retirement)),
            Some(gate) => {
                let registry = self.clone();
                let key = key.to_owned();
                tokio::spawn(async move {
                    if gate(key.clone()).await {
                        let actor = (registry.spawner)(key, mailbox, retirement);
                        drop(registry);
                        actor.await;
                    } else {
                        drop(registry);
                        refuse(mailbox, retirement).await;
                    }
                })
            }
        };
        actors.insert(key.to_owned(), Entry { generation, sender: sender.clone(), task: task.abort_handle() });
        (generation, sender)
    }

    /// Delivers `message` to the actor for `key`, spawning it if needed.
    pub async fn send(self: &Arc<Self>, key: &str, message: M) {
        self.deliver(key, message).await;
    }

    /// A handle on the actor for `key` for a sender with many messages for
    /// it (a socket): it keeps the actor's channel between sends, so a
    /// heartbeat costs no registry lookup (issue #21).
    pub fn handle(self: &Arc<Self>, key: &str) -> ActorHandle<M> {
        ActorHandle { registry: self.clone(), key: key.to_owned(), cached: None }
    }

    /// [`Registry::send`], handing back the channel it delivered on.
    async fn deliver(self: &Arc<Self>, key: &str, mut message: M) -> (u64, mpsc::Sender<M>) {
        loop {
            let (generation, sender) = self.sender(key);
            match sender.send(message).await {
                Ok(()) => return (generation, sender),
                Err(mpsc::error::SendError(returned)) => {
                    message = returned;
                    self.forget(key, generation);
                }
            }
        }
    }

    /// Drops the entry for `key` if it is still the actor of `generation`
    /// (whose channel turned out closed).
    fn forget(&self, key: &str, generation: u64) {
        let mut actors = self.actors.lock().expect("registry lock");
        if actors.get(key).is_some_and(|e| e.generation == generation) {
            actors.remove(key);
        }
    }

    /// Number of live actors (for metrics and tests).
    pub fn live(&self) -> usize {
        self.actors.lock().expect("registry lock").len()
    }

    pub fn is_live(&self, key: &str) -> bool {
        self.actors.lock().expect("registry lock").get(key).is_some_and(|e| !e.sender.is_closed())
    }
}

/// The way to one key's actor for a sender with many messages for it.
///
/// It delivers on the channel it last used while that channel is open; an
/// actor that retired or was evicted closed its channel, so the next send
/// finds it closed, gets the message back and goes through the registry,
/// which starts a fresh actor (or asks the gate). Messages are delivered
/// exactly as [`Registry::send`] would: none lost, none twice.
pub struct ActorHandle<M> {
    registry: Arc<Registry<M>>,
    key: String,
    cached: Option<(u64, mpsc::Sender<M>)>,
}

impl<M: Send + 'static> ActorHandle<M> {
    pub async fn send(&mut self, mut message: M) {
        if let Some((generation, sender)) = &self.cached {
            match sender.send(message).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    message = returned;
                    self.registry.forget(&self.key, *generation);
                }
            }
        }
        self.cached = Some(self.registry.deliver(&self.key, message).await);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// An actor that counts messages and retires after `idle` of silence.
    fn counting_registry(spawned: Arc<AtomicUsize>, idle: Duration) -> Arc<Registry<oneshot::Sender<usize>>> {
        Registry::new(move |_key, mut mailbox: mpsc::Receiver<oneshot::Sender<usize>>, retirement| {
            spawned.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut handled = 0;
                loop {
                    match tokio::time::timeout(idle, mailbox.recv()).await {
                        Ok(Some(reply)) => {
                            handled += 1;
                            let _ = reply.send(handled);
                        }
                        Ok(None) => return,
                        Err(_) if retirement.try_retire(&mut mailbox) => return,
                        Err(_) => {}
                    }
                }
            }
        })
    }

    #[tokio::test]
    async fn one_actor_serves_every_message_for_its_key() {
        let spawned = Arc::new(AtomicUsize::new(0));
        let registry = counting_registry(spawned.clone(), Duration::from_secs(60));
        for expected in 1..=3 {
            let (tx, rx) = oneshot::channel();
            registry.send("a", tx).await;
            assert_eq!(rx.await.unwrap(), expected);
        }
        assert_eq!(spawned.load(Ordering::SeqCst), 1);
    }

    /// A handle keeps delivering to its actor, and after the actor retired
    /// or was evicted its next message starts a fresh one: nothing lost.
    #[tokio::test(start_paused = true)]
    async fn a_handle_follows_its_key_across_retirement_and_eviction() {
        let spawned = Arc::new(AtomicUsize::new(0));
        let registry = counting_registry(spawned.clone(), Duration::from_secs(1));
        let mut handle = registry.handle("a");
        async fn ask(handle: &mut ActorHandle<oneshot::Sender<usize>>) -> usize {
            let (tx, rx) = oneshot::channel();
            handle.send(tx).await;
            rx.await.expect("answered")
        }
        assert_eq!(ask(&mut handle).await, 1);
        assert_eq!(ask(&mut handle).await, 2, "the same actor, through the kept channel");
        assert_eq!(spawned.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!registry.is_live("a"), "retired while the handle held its channel");
        assert_eq!(ask(&mut handle).await, 1, "a fresh actor");
        assert_eq!(spawned.load(Ordering::SeqCst), 2);
        registry.evict("a");
        tokio::task::yield_now().await;
        assert_eq!(ask(&mut handle).await, 1, "after an eviction, another fresh actor");
        assert_eq!(spawned.load(Ordering::SeqCst), 3);
        assert_eq!(ask(&mut handle).await, 2);
        assert_eq!(registry.live(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_actor_retires_and_the_next_message_spawns_a_new_one() {
        let spawned = Arc::new(AtomicUsize::new(0));
        let registry = counting_registry(spawned.clone(), Duration::from_secs(1));
        let (tx, rx) = oneshot::channel();
        registry.send("a", tx).await;
        assert_eq!(rx.await.unwrap(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!registry.is_live("a"));
        let (tx, rx) = oneshot::channel();
        registry.send("a", tx).await;
        assert_eq!(rx.await.unwrap(), 1, "a fresh actor starts counting again");
        assert_eq!(spawned.load(Ordering::SeqCst), 2);
    }
}
