//! A connection's outbound side: a bounded frame queue, a one-frame slot
//! for the newest snapshot, and a "drop" switch.
//!
//! Actors push frames with [`Outlet::try_send`] and never wait: a full queue
//! means the client reads too slowly, and the actor calls
//! [`Outlet::drop_slow`]. That signal cannot travel through the full queue,
//! so it is a separate cancellation token that both the socket's reader and
//! writer watch: the writer sends a 1013 close, the reader stops, and the
//! client (partysocket, y-websocket) reconnects and resyncs.
//!
//! A room's snapshot is its whole state, so one that has not gone out yet is
//! worthless once a newer one exists: [`Outlet::replace_latest`] puts a
//! snapshot in a slot of one, replacing whatever was waiting there. A client
//! that stops reading therefore holds at most one waiting snapshot (plus the
//! one its writer is stuck on), however fast its room changes; the writer's
//! timeout (`EVENTUALL_WRITE_TIMEOUT`, `http/party.rs`) then drops it. With
//! the queue alone, such a client held up to 256 snapshots of a large room
//! (256 × 520 KB in a room of 5,000) until it was dropped.

use std::sync::{Arc, Mutex, PoisonError};

/// A text frame as the socket writes it: reference-counted bytes, so a
/// room's snapshot is rendered once and shared by every connection's outlet
/// and written without a copy (issue #21).
pub use axum::extract::ws::Utf8Bytes as Text;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Frames a connection may have queued before it counts as too slow,
/// unless its socket kind asks for more ([`Outlet::with_capacity`]).
pub const CONNECTION_QUEUE: usize = 256;

/// A frame for one connection.
#[derive(Clone, Debug)]
pub enum Outbound {
    Text(Text),
    Binary(bytes::Bytes),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
}

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The client reads too slowly.
    Full,
    /// The socket is already gone.
    Gone,
}

#[derive(Clone, Debug)]
pub struct Outlet {
    frames: mpsc::Sender<Outbound>,
    latest: Arc<Latest>,
    dropped: CancellationToken,
}

/// The slot of one: the newest text frame not yet taken by the writer.
#[derive(Debug, Default)]
pub struct Latest {
    frame: Mutex<Option<Text>>,
    filled: Notify,
}

impl Latest {
    /// The waiting frame, if any, leaving the slot empty.
    pub fn take(&self) -> Option<Text> {
        self.frame.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Returns once a frame was put in the slot since the last wake-up (the
    /// slot may have been emptied since: check with [`Latest::take`]).
    pub async fn filled(&self) {
        self.filled.notified().await;
    }

    fn put(&self, frame: Text) {
        *self.frame.lock().unwrap_or_else(PoisonError::into_inner) = Some(frame);
        // One stored permit at most: a writer not yet waiting still wakes.
        self.filled.notify_one();
    }
}

impl Outlet {
    pub fn new() -> (Self, mpsc::Receiver<Outbound>) {
        Self::with_capacity(CONNECTION_QUEUE)
    }

    /// An outlet whose queue holds `frames`: for an actor that sends one
    /// connection many frames at once. The frames are shared with every
    /// other connection's outlet, and the channel allocates its slots as
    /// they fill, so a larger bound costs a reading client nothing.
    pub fn with_capacity(frames: usize) -> (Self, mpsc::Receiver<Outbound>) {
        let (frames, queue) = mpsc::channel(frames);
        (Self { frames, latest: Arc::default(), dropped: CancellationToken::new() }, queue)
    }

    /// Puts `frame` in the slot of one, replacing a frame still waiting
    /// there (a snapshot superseded by a newer one). Never full; refused
    /// only once the socket is gone.
    pub fn replace_latest(&self, frame: Text) -> Result<(), Refused> {
        if self.frames.is_closed() || self.dropped.is_cancelled() {
            return Err(Refused::Gone);
        }
        self.latest.put(frame);
        Ok(())
    }

    /// The slot, for the socket's writer.
    pub fn latest(&self) -> Arc<Latest> {
        self.latest.clone()
    }

    /// Queues a frame without waiting.
    pub fn try_send(&self, frame: Outbound) -> Result<(), Refused> {
        self.frames.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Refused::Full,
            mpsc::error::TrySendError::Closed(_) => Refused::Gone,
        })
    }

    /// Queues a frame, waiting for room (for the socket's own replies).
    pub async fn send(&self, frame: Outbound) {
        let _ = self.frames.send(frame).await;
    }

    /// Tells the socket tasks to close the connection as too slow.
    pub fn drop_slow(&self) {
        self.dropped.cancel();
    }

    /// Cancelled once the connection was dropped as too slow.
    pub fn dropped(&self) -> CancellationToken {
        self.dropped.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many snapshots an unread connection is given, it holds one:
    /// the newest.
    #[test]
    fn an_unread_connection_holds_only_the_newest_snapshot() {
        let (outlet, mut queue) = Outlet::new();
        for version in 0..10_000 {
            outlet.replace_latest(Text::from(format!("snapshot {version}"))).expect("accepted");
        }
        assert_eq!(outlet.latest().take().as_ref().map(Text::as_str), Some("snapshot 9999"));
        assert_eq!(outlet.latest().take(), None, "taken once");
        assert!(queue.try_recv().is_err(), "nothing went through the queue");
    }

    #[test]
    fn a_gone_connection_refuses_snapshots() {
        let (outlet, queue) = Outlet::new();
        drop(queue);
        assert_eq!(outlet.replace_latest(Text::from("s")), Err(Refused::Gone));
        let (outlet, _queue) = Outlet::new();
        outlet.drop_slow();
        assert_eq!(outlet.replace_latest(Text::from("s")), Err(Refused::Gone));
    }
}
