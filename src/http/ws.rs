//! The reader loop of a party socket, written once for the interview and
//! user-interviews sockets: frame size limits (text over the limit closes
//! with 1009, binary over it gets a `payload_too_large` error frame and the
//! socket stays open), silence detection, the writer task that drains the
//! connection's [`Outlet`] queue (`party::write_frames`: pings, close
//! codes, the "too slow" switch), and a clean end.
//!
//! It is generic over the socket (any `Stream` of messages that is also a
//! `Sink`), so it runs as well over an in-memory pair in tests as over
//! axum's `WebSocket`. What a frame means is the [`Frames`] handler's
//! business; the loop only cares that frames arrive in order, one at a
//! time.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::party::{CLOSE_TOO_BIG, SILENCE_LIMIT, close_message, write_frames};
use crate::outlet::{Outbound, Outlet};

/// The frame limits of one kind of socket.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub max_text: usize,
    pub max_binary: usize,
}

/// What a socket does with the frames it receives.
pub trait Frames: Send {
    fn text(&mut self, text: Utf8Bytes, outlet: &Outlet) -> impl Future<Output = ()> + Send;
    fn binary(&mut self, bytes: Bytes, outlet: &Outlet) -> impl Future<Output = ()> + Send;
}

/// The contract's `error` frame.
pub fn error_frame(code: &str, message: &str) -> Outbound {
    Outbound::Text(serde_json::json!({"type": "error", "code": code, "message": message}).to_string().into())
}

/// Serves `socket` until the peer closes, goes silent, or is dropped as too
/// slow; `queue` is the receiving end of `outlet`, whose frames the writer
/// sends. Returns when both halves are done.
pub async fn serve<S, E, H>(
    socket: S,
    outlet: Outlet,
    queue: mpsc::Receiver<Outbound>,
    limits: FrameLimits,
    handler: &mut H,
) where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Send + 'static,
    <S as Sink<Message>>::Error: Send,
    E: Send,
    H: Frames,
{
    let (sink, mut stream) = socket.split();
    let dropped = outlet.dropped();
    let writer = tokio::spawn(write_frames(sink, queue, dropped.clone()));
    loop {
        let frame = tokio::select! {
            next = tokio::time::timeout(SILENCE_LIMIT, stream.next()) => match next {
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
            },
            _ = dropped.cancelled() => break,
        };
        match frame {
            Message::Text(text) if text.len() > limits.max_text => {
                outlet.send(Outbound::Close(CLOSE_TOO_BIG, "message too big")).await;
                break;
            }
            Message::Text(text) => handler.text(text, &outlet).await,
            Message::Binary(bytes) if bytes.len() > limits.max_binary => {
                let message = format!("binary frames may have at most {} bytes", limits.max_binary);
                let _ = outlet.try_send(error_frame("payload_too_large", &message));
            }
            Message::Binary(bytes) => handler.binary(bytes, &outlet).await,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    drop(outlet);
    // The writer flushes a close frame; it ends once the actor lets go of
    // the queue too.
    if tokio::time::timeout(Duration::from_secs(2), writer).await.is_err() {
        tracing::debug!("socket writer did not finish in time");
    }
}

/// Sends one close frame on a socket that is refused after its upgrade.
pub async fn close_now<S: Sink<Message> + Unpin>(socket: &mut S, code: u16, reason: &'static str) {
    let _ = socket.send(close_message(code, reason)).await;
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures::channel::mpsc as fmpsc;

    use super::*;

    /// A socket made of two channels: what the "client" sends arrives as
    /// frames, what the server writes goes to `written`.
    struct PairSocket {
        incoming: fmpsc::UnboundedReceiver<Result<Message, ()>>,
        outgoing: fmpsc::UnboundedSender<Message>,
    }

    impl Stream for PairSocket {
        type Item = Result<Message, ()>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Pin::new(&mut self.incoming).poll_next(cx)
        }
    }

    impl Sink<Message> for PairSocket {
        type Error = fmpsc::SendError;
        fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing).poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            Pin::new(&mut self.outgoing).start_send(item)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing).poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing).poll_close(cx)
        }
    }

    /// Echoes text frames back and counts binary ones.
    #[derive(Default)]
    struct Echo {
        binaries: usize,
    }

    impl Frames for Echo {
        async fn text(&mut self, text: Utf8Bytes, outlet: &Outlet) {
            let _ = outlet.try_send(Outbound::Text(text.as_str().into()));
        }
        async fn binary(&mut self, _: Bytes, _: &Outlet) {
            self.binaries += 1;
        }
    }

    fn text_of(message: &Message) -> Option<String> {
        match message {
            Message::Text(text) => Some(text.to_string()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn frames_at_the_limits_pass_and_frames_over_them_are_refused() {
        let (client, incoming) = fmpsc::unbounded();
        let (outgoing, mut written) = fmpsc::unbounded();
        let socket = PairSocket { incoming, outgoing };
        let limits = FrameLimits { max_text: 4, max_binary: 3 };
        client.unbounded_send(Ok(Message::Text("abcd".into()))).unwrap();
        client.unbounded_send(Ok(Message::Binary(Bytes::from_static(b"abc")))).unwrap();
        client.unbounded_send(Ok(Message::Binary(Bytes::from_static(b"abcd")))).unwrap();
        client.unbounded_send(Ok(Message::Text("abcde".into()))).unwrap();
        let (outlet, queue) = Outlet::new();
        let mut echo = Echo::default();
        serve(socket, outlet, queue, limits, &mut echo).await;
        assert_eq!(echo.binaries, 1, "the 3-byte frame passed, the 4-byte one did not");
        let mut frames = Vec::new();
        while let Ok(frame) = written.try_recv() {
            frames.push(frame);
        }
        assert_eq!(text_of(&frames[0]).as_deref(), Some("abcd"), "a text frame at the limit is handled");
        let error: serde_json::Value = serde_json::from_str(&text_of(&frames[1]).unwrap()).unwrap();
        assert_eq!(error["code"], "payload_too_large");
        assert!(
            matches!(&frames[2], Message::Close(Some(close)) if close.code == CLOSE_TOO_BIG),
            "a text frame over the limit closes with 1009: {:?}",
            frames[2]
        );
    }
}
