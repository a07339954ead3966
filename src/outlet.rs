//! A connection's outbound side: a bounded frame queue plus a "drop" switch.
//!
//! Actors push frames with [`Outlet::try_send`] and never wait: a full queue
//! means the client reads too slowly, and the actor calls
//! [`Outlet::drop_slow`]. That signal cannot travel through the full queue,
//! so it is a separate cancellation token that both the socket's reader and
//! writer watch: the writer sends a 1013 close, the reader stops, and the
//! client (partysocket, y-websocket) reconnects and resyncs.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames a connection may have queued before it counts as too slow.
pub const CONNECTION_QUEUE: usize = 256;

/// A frame for one connection.
#[derive(Clone, Debug)]
pub enum Outbound {
    Text(Arc<str>),
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
    dropped: CancellationToken,
}

impl Outlet {
    pub fn new() -> (Self, mpsc::Receiver<Outbound>) {
        let (frames, queue) = mpsc::channel(CONNECTION_QUEUE);
        (Self { frames, dropped: CancellationToken::new() }, queue)
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
