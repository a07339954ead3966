//! PartyKit-compatible WebSocket routes: `/parties/{party}/{room}`.
//!
//! Unmodified `partysocket` clients connect here: the room is the raw path
//! segment, `_pk` is the client's connection id (it may repeat across
//! reconnects and even across two live sockets; each socket is still its own
//! connection), any other query parameters are accepted, and a requested
//! subprotocol is echoed. The token (`?token=`) is checked before the
//! upgrade, so a refused client gets a plain 401/403.
//!
//! Each socket has a reader (the loop of `http/ws.rs`, shared by every
//! socket: size and rate limits, silence) and a writer task fed by a
//! bounded queue; the room actor pushes snapshots into that queue and drops
//! the connection if it is full. Protocol pings keep intermediaries from
//! closing idle sockets and detect dead peers. `admit` (token and upgrade
//! checks) and the writer live here and serve the queue socket too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use eventuall_domain::EventId;
use eventuall_domain::room::CloseReason;
use futures::SinkExt;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::extract::event_id;
use super::openapi as oa;
use super::ws::{self, FrameLimits, Frames, SocketKind, error_frame};
use super::{ApiError, AppState};
use crate::actor::ActorHandle;
use crate::auth::Caller;
use crate::outlet::{Latest, Outbound, Outlet};
use crate::rooms::RoomMsg;
use crate::rooms::actor::new_connection_id;

/// Protocol ping interval: below the 30–60 s idle timeouts of common proxies.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A socket silent this long (no frame, no pong) is considered dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Hard cap handed to the WebSocket codec; frames between the configured
/// limit and this cap get a clean 1009 close from us.
const CODEC_MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// WebSocket close code for a message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code for a client dropped for reading too slowly ("try again later").
pub const CLOSE_TOO_SLOW: u16 = 1013;
/// Most bytes the codec reads per call. tungstenite zero-fills this much of
/// its input buffer before every read, so it is resident memory per socket:
/// the 128 KiB default made an idle connection cost ~155 KiB of server RSS
/// (`eventuall-bench rooms --phase memory`). Clients send tiny frames;
/// larger ones still arrive whole, the buffer grows to fit them.
const READ_BUFFER: usize = 4 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/parties/event/{event_id}", get(event_socket))
}

/// Verifies `?token=` for `event_id`: 401 for a missing or bad token, 403
/// for a token scoped to other events.
fn authorize_socket(app: &AppState, params: &HashMap<String, String>, event_id: &EventId) -> Result<Caller, ApiError> {
    let token = params.get("token").ok_or(ApiError::Unauthorized)?;
    let caller = app.auth.verify(token)?;
    caller.may_access(event_id.as_str())?;
    Ok(caller)
}

/// Echoes the client's requested subprotocols (partysocket's `protocols`).
pub fn accept_protocols(upgrade: WebSocketUpgrade, headers: &HeaderMap) -> WebSocketUpgrade {
    let requested: Vec<String> = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .filter(|p| !p.is_empty())
        .collect();
    upgrade.protocols(requested).max_message_size(CODEC_MAX_MESSAGE).read_buffer_size(READ_BUFFER)
}

/// The checks every party socket makes before its upgrade: a valid event
/// id (400), a token for it (401 / 403), and an actual WebSocket request.
// The refusal is a ready response, built once per refused upgrade; boxing
// it would only move the allocation.
#[allow(clippy::result_large_err)]
pub fn admit(
    app: &AppState,
    raw_event_id: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<(EventId, Caller, WebSocketUpgrade), Response> {
    let event_id = event_id(raw_event_id).map_err(IntoResponse::into_response)?;
    let caller = authorize_socket(app, params, &event_id).map_err(IntoResponse::into_response)?;
    let upgrade =
        upgrade.map_err(|_| ApiError::InvalidRequest("expected a WebSocket upgrade".into()).into_response())?;
    Ok((event_id, caller, accept_protocols(upgrade, headers)))
}

/// WebSocket (partysocket-compatible): server frames are `EventRoomServerMessage`,
/// client frames `EventRoomClientMessage` (JSON text; a binary frame gets `unsupported_frame`).
/// Text frames over the frame limit close with 1009.
#[utoipa::path(get, path = "/parties/event/{event_id}", tag = "rooms", params(oa::EventPath, oa::PartyQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), oa::E400, oa::E401, oa::E403))]
async fn event_socket(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (event_id, caller, upgrade) = match admit(&app, &raw, &params, &headers, upgrade) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let client_id = params.get("_pk").cloned();
    upgrade.on_upgrade(move |socket| serve_event_socket(app, event_id, caller, client_id, socket))
}

/// A heartbeat as clients write it.
const HEARTBEAT_FRAME: &str = r#"{"type":"heartbeat"}"#;

/// Messages a client may send on an event room socket.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ClientMessage {
    Heartbeat,
}

/// What a text frame on an event room socket asks for (also the entry of
/// the `room_frame` fuzz target, `crate::fuzzing`).
pub(crate) fn classify(text: &str) -> Result<ClientMessage, Outbound> {
    // The frame every client sends every few seconds, as partysocket and the
    // webapp write it: known without building a JSON tree (the general
    // path below gives the same answer; the `room_frame` fuzz target
    // checks that).
    if text == HEARTBEAT_FRAME {
        return Ok(ClientMessage::Heartbeat);
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| error_frame("invalid_json", "frames must be JSON text"))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(error_frame("invalid_request", "a message needs a string \"type\""));
    };
    match kind {
        "heartbeat" => Ok(ClientMessage::Heartbeat),
        other => Err(error_frame("unknown_message_type", &format!("unknown message type {other:?}"))),
    }
}

async fn serve_event_socket(
    app: AppState,
    event_id: EventId,
    caller: Caller,
    client_id: Option<String>,
    mut socket: WebSocket,
) {
    let connection_id = new_connection_id();
    let (outbound, queue) = Outlet::new();
    let (reply, joined) = oneshot::channel();
    let room = event_id.as_str().to_owned();
    app.rooms
        .send(
            &room,
            RoomMsg::Connect {
                connection_id: connection_id.clone(),
                client_id,
                user_id: caller.user_id().to_owned(),
                name: caller.display_name().to_owned(),
                outbound: outbound.clone(),
                reply,
            },
        )
        .await;
    if !matches!(joined.await, Ok(Ok(()))) {
        ws::close_now(&mut socket, 1011, "room unavailable").await;
        return;
    }
    let limits = FrameLimits::json(
        SocketKind::EventRoom,
        app.limits.max_frame_bytes,
        app.limits.max_frame_bytes,
        app.limits.frame_rate,
    )
    .writes_within(app.limits.write_timeout);
    let mut frames = RoomFrames { room: app.rooms.handle(&room), connection_id };
    ws::serve(socket, outbound, queue, limits, &mut frames).await;
}

/// What an event room socket's frames mean: heartbeats, or errors.
struct RoomFrames {
    room: ActorHandle<RoomMsg>,
    connection_id: String,
}

impl Frames for RoomFrames {
    async fn text(&mut self, text: Utf8Bytes, outlet: &Outlet) {
        match classify(&text) {
            Ok(ClientMessage::Heartbeat) => {
                let heartbeat = RoomMsg::Heartbeat { connection_id: self.connection_id.clone() };
                self.room.send(heartbeat).await;
            }
            Err(error) => {
                let _ = outlet.try_send(error);
            }
        }
    }

    async fn binary(&mut self, _: Bytes, outlet: &Outlet) {
        let _ = outlet.try_send(error_frame("unsupported_frame", "event rooms speak JSON text frames"));
    }

    /// Dropped by its writer (it stopped reading) or by the room: too slow.
    async fn closed(&mut self, too_slow: bool) {
        let reason = if too_slow { CloseReason::TooSlow } else { CloseReason::Closed };
        let connection_id = std::mem::take(&mut self.connection_id);
        self.room.send(RoomMsg::Disconnect { connection_id, reason }).await;
    }
}

pub fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

/// What a socket's writer sends: the ordered queue and the slot for the
/// newest snapshot (`outlet.rs`).
pub struct Pending {
    pub queue: mpsc::Receiver<Outbound>,
    pub latest: Arc<Latest>,
}

/// What the writer does next.
enum Next {
    Send(Message),
    /// Send this close frame, then stop.
    Close(Message),
    /// Nothing to send (the slot was emptied since it was filled).
    Nothing,
}

/// How one write ended.
enum Written {
    Sent,
    /// The socket failed, or the connection was dropped meanwhile.
    Gone,
    /// The peer took none of it within the write timeout.
    Stalled,
}

/// Writes queued frames, the newest snapshot and pings until the queue
/// closes, a close is sent, or the connection is dropped as too slow. A
/// frame the peer does not take within `write_timeout` (it stopped reading:
/// the TCP window is shut and the kernel's buffers are full) drops the
/// connection: its reader stops, and the socket with its buffers is freed
/// rather than held as long as the peer keeps the TCP connection open.
///
/// Frames that are already waiting go out together: each is fed to the
/// codec's buffer and the batch is flushed once, so a socket that is sent
/// several frames while it writes pays one `send` for them, not one each
/// (issue #21: ten moderators' updates reach every queue client in bursts).
pub async fn write_frames<S: futures::Sink<Message> + Unpin>(
    mut sink: S,
    mut pending: Pending,
    dropped: CancellationToken,
    write_timeout: Duration,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    // The slot and the queue take turns, so neither starves the other when
    // a room changes faster than the client reads; the slot goes first, so
    // the snapshot of a join is the socket's first frame.
    let mut turns = Turns { slot_first: true };
    loop {
        let next = match turns.ready(&mut pending) {
            Some(next) => next,
            None => tokio::select! {
                biased;
                _ = dropped.cancelled() => Next::Close(close_message(CLOSE_TOO_SLOW, "too slow")),
                frame = pending.queue.recv() => Next::from_queue(frame),
                _ = pending.latest.filled() => match pending.latest.take() {
                    Some(text) => Next::Send(Message::Text(text)),
                    None => Next::Nothing,
                },
                _ = ping.tick() => Next::Send(Message::Ping(Default::default())),
            },
        };
        let (batch, close) = match next {
            Next::Nothing => continue,
            Next::Close(message) => (Vec::new(), Some(message)),
            Next::Send(message) => turns.gather(message, &mut pending),
        };
        if !batch.is_empty() {
            match write_within(&mut sink, batch, write_timeout, &dropped).await {
                Written::Sent => {}
                Written::Gone => return,
                Written::Stalled => {
                    metrics::counter!(crate::metrics::SOCKETS_STALLED).increment(1);
                    tracing::debug!(?write_timeout, "peer stopped reading: socket dropped");
                    dropped.cancel();
                    return;
                }
            }
        }
        if let Some(message) = close {
            // A peer that stopped reading will not take the close frame
            // either: try for a moment, then just drop the socket. After a
            // close from the peer the codec refuses ours; closing the sink
            // still flushes the answer it queued to the peer's.
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                let _ = sink.send(message).await;
                let _ = sink.close().await;
            })
            .await;
            return;
        }
    }
}

/// Most frames, and most bytes, one flush takes: enough to fold a burst
/// into one `send`, little enough that the codec's buffer stays small and a
/// slow peer's write timeout still bounds one batch.
const BATCH_FRAMES: usize = 64;
const BATCH_BYTES: usize = 64 * 1024;

/// Whose turn it is between the snapshot slot and the ordered queue.
struct Turns {
    slot_first: bool,
}

impl Turns {
    /// The next frame that is already waiting, without waiting for one:
    /// the side whose turn it is first, then the other.
    fn ready(&mut self, pending: &mut Pending) -> Option<Next> {
        for _ in 0..2 {
            let slot = self.slot_first;
            self.slot_first = !slot;
            if slot {
                if let Some(text) = pending.latest.take() {
                    return Some(Next::Send(Message::Text(text)));
                }
            } else {
                match pending.queue.try_recv() {
                    Ok(frame) => return Some(Next::from_queue(Some(frame))),
                    Err(mpsc::error::TryRecvError::Disconnected) => return Some(Next::from_queue(None)),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
        }
        None
    }

    /// `first` and the frames waiting behind it, up to one batch, and the
    /// close frame that ended it, if one did.
    fn gather(&mut self, first: Message, pending: &mut Pending) -> (Vec<Message>, Option<Message>) {
        let mut bytes = frame_len(&first);
        let mut batch = vec![first];
        while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
            match self.ready(pending) {
                Some(Next::Send(message)) => {
                    bytes += frame_len(&message);
                    batch.push(message);
                }
                Some(Next::Close(message)) => return (batch, Some(message)),
                Some(Next::Nothing) | None => break,
            }
        }
        (batch, None)
    }
}

/// A frame's payload size, for the batch bound.
fn frame_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(_) => 0,
    }
}

impl Next {
    /// What a frame taken from the queue (or its end) asks for.
    fn from_queue(frame: Option<Outbound>) -> Self {
        match frame {
            Some(Outbound::Text(text)) => Next::Send(Message::Text(text)),
            Some(Outbound::Binary(bytes)) => Next::Send(Message::Binary(bytes)),
            Some(Outbound::Close(code, reason)) => Next::Close(close_message(code, reason)),
            None => Next::Close(close_message(1000, "bye")),
        }
    }
}

/// How long a close frame may take to go out before the socket is dropped
/// without it: enough for a reading peer, short for one that is not.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Sends a batch of frames with one flush, giving up when the peer takes
/// none of it in time or the connection is dropped meanwhile.
async fn write_within<S: futures::Sink<Message> + Unpin>(
    sink: &mut S,
    batch: Vec<Message>,
    write_timeout: Duration,
    dropped: &CancellationToken,
) -> Written {
    let write = async {
        for message in batch {
            sink.feed(message).await?;
        }
        sink.flush().await
    };
    tokio::select! {
        sent = tokio::time::timeout(write_timeout, write) => match sent {
            Ok(Ok(())) => Written::Sent,
            Ok(Err(_)) => Written::Gone,
            Err(_) => Written::Stalled,
        },
        _ = dropped.cancelled() => Written::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outlet::Text;
    use proptest::prelude::*;

    /// A sink that takes nothing: a peer that stopped reading.
    struct Stuck;

    impl futures::Sink<Message> for Stuck {
        type Error = ();
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Pending
        }
        fn start_send(self: std::pin::Pin<&mut Self>, _: Message) -> Result<(), ()> {
            Ok(())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Pending
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Pending
        }
    }

    /// On the paused clock: the writer stuck on a frame gives up at the
    /// write timeout, not a millisecond before, and marks the connection
    /// dropped so its reader stops too.
    #[tokio::test(start_paused = true)]
    async fn a_writer_whose_peer_takes_nothing_gives_up_at_the_write_timeout() {
        let (outlet, queue) = Outlet::new();
        outlet.replace_latest(Text::from("snapshot")).unwrap();
        let timeout = Duration::from_secs(30);
        let writer =
            tokio::spawn(write_frames(Stuck, Pending { queue, latest: outlet.latest() }, outlet.dropped(), timeout));
        tokio::time::sleep(timeout - Duration::from_millis(1)).await;
        assert!(!writer.is_finished() && !outlet.dropped().is_cancelled(), "still waiting at 29.999 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert!(outlet.dropped().is_cancelled(), "dropped at 30 s");
        tokio::time::timeout(Duration::from_millis(1), writer).await.expect("the writer ended").unwrap();
    }

    /// Collects what the writer sends.
    fn recording_sink()
    -> (impl futures::Sink<Message, Error = ()> + Unpin, tokio::sync::mpsc::UnboundedReceiver<Message>) {
        let (sent, seen) = tokio::sync::mpsc::unbounded_channel();
        let sink = futures::sink::unfold(sent, |sent, message: Message| async move {
            sent.send(message).map_err(|_| ())?;
            Ok::<_, ()>(sent)
        });
        (Box::pin(sink), seen)
    }

    /// A sink that records its frames and, at each flush, how many frames
    /// were fed since the last one.
    #[derive(Default)]
    struct Flushes {
        fed: Vec<Message>,
        unflushed: usize,
        batches: Vec<usize>,
    }

    impl futures::Sink<Message> for Flushes {
        type Error = ();
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(mut self: std::pin::Pin<&mut Self>, message: Message) -> Result<(), ()> {
            self.fed.push(message);
            self.unflushed += 1;
            Ok(())
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            if self.unflushed > 0 {
                let batch = std::mem::take(&mut self.unflushed);
                self.batches.push(batch);
            }
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            self.poll_flush(cx)
        }
    }

    /// Frames waiting when the writer gets to them go out in one flush, in
    /// order, up to `BATCH_FRAMES`: at the bound one flush, one more frame
    /// a second.
    #[tokio::test]
    async fn waiting_frames_go_out_in_one_flush_up_to_the_batch_bound() {
        for (queued, expected) in [(BATCH_FRAMES, vec![BATCH_FRAMES]), (BATCH_FRAMES + 1, vec![BATCH_FRAMES, 1])] {
            let (outlet, queue) = Outlet::new();
            for n in 0..queued {
                outlet.try_send(Outbound::Binary(Bytes::from(vec![n as u8]))).unwrap();
            }
            drop(outlet);
            let mut sink = Flushes::default();
            write_frames(
                &mut sink,
                Pending { queue, latest: Arc::default() },
                CancellationToken::new(),
                Duration::from_secs(30),
            )
            .await;
            // The queue's end is the close frame, sent on its own.
            assert_eq!(sink.batches[..sink.batches.len() - 1], expected[..], "{queued} frames waiting");
            let bytes: Vec<u8> = sink
                .fed
                .iter()
                .filter_map(|m| match m {
                    Message::Binary(bytes) => bytes.first().copied(),
                    _ => None,
                })
                .collect();
            assert_eq!(bytes, (0..queued).map(|n| n as u8).collect::<Vec<_>>(), "in order");
            assert!(matches!(sink.fed.last(), Some(Message::Close(Some(close))) if close.code == 1000));
        }
    }

    fn text(message: &Message) -> String {
        match message {
            Message::Text(text) => text.to_string(),
            other => format!("{other:?}"),
        }
    }

    /// The snapshot waiting in the slot goes before frames already queued
    /// (a join's snapshot is the socket's first frame), then the two take
    /// turns, and a newer snapshot replaces one not yet sent.
    #[tokio::test]
    async fn the_newest_snapshot_goes_first_then_slot_and_queue_take_turns() {
        let (outlet, queue) = Outlet::new();
        outlet.replace_latest(Text::from("snapshot 1")).unwrap();
        outlet.try_send(Outbound::Text(Text::from("error a"))).unwrap();
        outlet.try_send(Outbound::Text(Text::from("error b"))).unwrap();
        let (sink, mut seen) = recording_sink();
        let pending = Pending { queue, latest: outlet.latest() };
        let writer = tokio::spawn(write_frames(sink, pending, outlet.dropped(), Duration::from_secs(30)));
        let mut first = Vec::new();
        for _ in 0..3 {
            first.push(text(&seen.recv().await.unwrap()));
        }
        assert_eq!(first, ["snapshot 1", "error a", "error b"]);
        outlet.replace_latest(Text::from("snapshot 2")).unwrap();
        outlet.replace_latest(Text::from("snapshot 3")).unwrap();
        // Give the writer a moment to pick the slot up, then close.
        let next = tokio::time::timeout(Duration::from_secs(1), seen.recv()).await.unwrap().unwrap();
        assert_eq!(text(&next), "snapshot 3", "snapshot 2 was superseded before it went out");
        drop(outlet);
        writer.await.unwrap();
        assert!(matches!(seen.recv().await, Some(Message::Close(Some(close))) if close.code == 1000));
    }

    proptest! {
        /// Any text frame is a heartbeat or an error frame with one of the
        /// contract's codes, never a panic.
        #[test]
        fn any_text_frame_is_a_heartbeat_or_a_coded_error(
            text in prop_oneof![
                ".{0,200}",
                "(heartbeat|[a-z]{0,10})".prop_map(|kind| serde_json::json!({"type": kind}).to_string()),
                any::<i64>().prop_map(|n| serde_json::json!({"type": n}).to_string()),
            ]
        ) {
            match classify(&text) {
                Ok(ClientMessage::Heartbeat) => prop_assert!(text.contains("heartbeat")),
                Err(Outbound::Text(frame)) => {
                    let frame: serde_json::Value = serde_json::from_str(&frame).unwrap();
                    let code = frame["code"].as_str().unwrap_or_default().to_owned();
                    prop_assert!(
                        ["invalid_json", "invalid_request", "unknown_message_type"].contains(&code.as_str()),
                        "{}", code
                    );
                }
                Err(other) => prop_assert!(false, "not a text frame: {:?}", other),
            }
        }
    }
}
