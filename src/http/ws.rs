//! The reader loop of every socket (event room, queue, interview,
//! user-interviews), written once: frame size limits (text over the limit
//! closes with 1009; binary over it gets a `payload_too_large` error frame
//! or a 1009 close, as the socket's protocol can say it), a per-connection
//! frame rate (a token bucket: over it, a `rate_limited` error frame at
//! most once a second and the frame dropped, or a 1008 close where the
//! protocol has no error frame), silence detection, the writer task that
//! drains the connection's [`Outlet`] queue (`party::write_frames`: pings,
//! close codes, the "too slow" switch), and a clean end.
//!
//! It is generic over the socket (any `Stream` of messages that is also a
//! `Sink`), so it runs as well over an in-memory pair in tests as over
//! axum's `WebSocket`. What a frame means is the [`Frames`] handler's
//! business; the loop only cares that frames arrive in order, one at a
//! time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::party::{CLOSE_TOO_BIG, Pending, SILENCE_LIMIT, close_message, write_frames};
use crate::outlet::{Outbound, Outlet};

/// WebSocket close code for a policy violation (too many frames on a
/// protocol with no error frame).
pub const CLOSE_POLICY: u16 = 1008;

/// Which socket of the contract (a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    EventRoom,
    Queue,
    Interview,
    UserInterviews,
}

impl SocketKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventRoom => "event_room",
            Self::Queue => "queue",
            Self::Interview => "interview",
            Self::UserInterviews => "user_interviews",
        }
    }
}

/// The frame limits of one kind of socket.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub kind: SocketKind,
    pub max_text: usize,
    pub max_binary: usize,
    /// What a binary frame over `max_binary` gets.
    pub oversize_binary: Violation,
    /// Frames one connection may send.
    pub rate: FrameRate,
    /// What a frame over the rate gets.
    pub over_rate: Violation,
    /// How long the peer may leave one frame untaken before the socket is
    /// dropped (a client that stopped reading; `party::write_frames`).
    pub write_timeout: Duration,
}

/// `EVENTUALL_WRITE_TIMEOUT`'s default, for sockets built without a config.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl FrameLimits {
    /// A socket of JSON frames with `error` frames (event room, interview,
    /// user-interviews): violations are answered and the socket stays open.
    pub fn json(kind: SocketKind, max_text: usize, max_binary: usize, rate: FrameRate) -> Self {
        let refuse = Violation::ErrorFrame;
        Self {
            kind,
            max_text,
            max_binary,
            oversize_binary: refuse,
            rate,
            over_rate: refuse,
            write_timeout: WRITE_TIMEOUT,
        }
    }

    /// A socket whose protocol has no error frame (y-websocket): a
    /// violation closes it, and the client reconnects and resyncs rather
    /// than lose an update silently.
    pub fn binary_protocol(kind: SocketKind, max_text: usize, max_binary: usize, rate: FrameRate) -> Self {
        Self {
            kind,
            max_text,
            max_binary,
            oversize_binary: Violation::Close,
            rate,
            over_rate: Violation::Close,
            write_timeout: WRITE_TIMEOUT,
        }
    }

    /// The same limits with the configured write timeout.
    pub fn writes_within(self, write_timeout: Duration) -> Self {
        Self { write_timeout, ..self }
    }
}

/// How a socket answers a frame it refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    ErrorFrame,
    Close,
}

/// A connection's frame budget: `burst` frames at once, refilled at
/// `per_second`. Heartbeats come every few seconds and y-websocket sends an
/// awareness update per cursor move, so the default (50/s, bursts of 100)
/// only stops floods.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameRate {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for FrameRate {
    fn default() -> Self {
        Self { per_second: 50.0, burst: 100.0 }
    }
}

/// The token bucket of one connection.
#[derive(Debug)]
pub struct Bucket {
    rate: FrameRate,
    tokens: f64,
    refilled_at: Instant,
    /// When the last `rate_limited` frame went out (one per second at most,
    /// so refusing a flood does not become a flood of answers).
    warned_at: Option<Instant>,
}

/// What the bucket says about a frame arriving now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Refused; `answer` says whether to send the `rate_limited` frame.
    Refuse {
        answer: bool,
    },
}

impl Bucket {
    pub fn new(rate: FrameRate, now: Instant) -> Self {
        Self { rate, tokens: rate.burst, refilled_at: now, warned_at: None }
    }

    pub fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Admit;
        }
        let answer = self.warned_at.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if answer {
            self.warned_at = Some(now);
        }
        Admission::Refuse { answer }
    }
}

/// The silence limit of one socket on one timer: each frame only notes
/// when it came, and the timer, set for [`SILENCE_LIMIT`] after the last
/// frame it knew of, moves on to the newer deadline when it fires early.
struct Silence {
    last_heard: Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Silence {
    fn new(now: Instant) -> Self {
        Self { last_heard: now, timer: Box::pin(tokio::time::sleep_until(now + SILENCE_LIMIT)) }
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// Returns once [`SILENCE_LIMIT`] has passed without a frame.
    async fn elapsed(&mut self) {
        loop {
            self.timer.as_mut().await;
            let deadline = self.last_heard + SILENCE_LIMIT;
            if Instant::now() >= deadline {
                return;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

/// What a socket does with the frames it receives.
pub trait Frames: Send {
    fn text(&mut self, text: Utf8Bytes, outlet: &Outlet) -> impl Future<Output = ()> + Send;
    fn binary(&mut self, bytes: Bytes, outlet: &Outlet) -> impl Future<Output = ()> + Send;
    /// The socket has stopped reading: the peer closed or went silent, or
    /// it was dropped as too slow (`too_slow`). Tells the actor, which lets
    /// go of the connection's outlet, so the writer can send its close
    /// frame and end.
    fn closed(&mut self, too_slow: bool) -> impl Future<Output = ()> + Send;
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
    let writer = tokio::spawn(write_frames(
        sink,
        Pending { queue, latest: outlet.latest() },
        dropped.clone(),
        limits.write_timeout,
    ));
    let mut bucket = Bucket::new(limits.rate, Instant::now());
    let kind = limits.kind.as_str();
    metrics::counter!(crate::metrics::SOCKETS_OPENED, "kind" => kind).increment(1);
    let open = metrics::gauge!(crate::metrics::SOCKETS_OPEN, "kind" => kind);
    open.increment(1.0);
    // One timer and one cancellation waiter for the socket's life, not one
    // each per frame: registering and dropping them around every read was
    // a measurable share of a heartbeat's cost (issue #21).
    let mut silence = Silence::new(Instant::now());
    let dropped_wait = dropped.cancelled();
    tokio::pin!(dropped_wait);
    loop {
        let frame = tokio::select! {
            // A dropped connection stops even while frames keep coming.
            biased;
            () = &mut dropped_wait => break,
            next = stream.next() => match next {
                Some(Ok(frame)) => frame,
                Some(Err(_)) | None => break,
            },
            () = silence.elapsed() => break,
        };
        let now = Instant::now();
        silence.heard(now);
        if matches!(frame, Message::Text(_) | Message::Binary(_))
            && let Admission::Refuse { answer } = bucket.admit(now)
        {
            metrics::counter!(crate::metrics::RATE_LIMITED, "limit" => "frames").increment(1);
            match limits.over_rate {
                Violation::Close => {
                    outlet.send(Outbound::Close(CLOSE_POLICY, "too many frames")).await;
                    break;
                }
                Violation::ErrorFrame if answer => {
                    let message = format!("at most {} frames per second", limits.rate.per_second);
                    let _ = outlet.try_send(error_frame("rate_limited", &message));
                }
                Violation::ErrorFrame => {}
            }
            continue;
        }
        match frame {
            Message::Text(text) if text.len() > limits.max_text => {
                outlet.send(Outbound::Close(CLOSE_TOO_BIG, "message too big")).await;
                break;
            }
            Message::Text(text) => handler.text(text, &outlet).await,
            Message::Binary(bytes) if bytes.len() > limits.max_binary => match limits.oversize_binary {
                Violation::ErrorFrame => {
                    let message = format!("binary frames may have at most {} bytes", limits.max_binary);
                    let _ = outlet.try_send(error_frame("payload_too_large", &message));
                }
                Violation::Close => {
                    outlet.send(Outbound::Close(CLOSE_TOO_BIG, "message too big")).await;
                    break;
                }
            },
            Message::Binary(bytes) => handler.binary(bytes, &outlet).await,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    open.decrement(1.0);
    drop(outlet);
    // The actor is told before the writer is waited for: it holds the
    // other end of the writer's queue, so until it lets go the writer
    // cannot end, and a closed socket went on being sent every frame for
    // the two seconds below (issue #21).
    handler.closed(dropped.is_cancelled()).await;
    // The writer flushes a close frame; it ends once the actor has let go
    // of the queue, and a write the peer never takes ends at the write
    // timeout.
    if tokio::time::timeout(WRITER_GRACE, writer).await.is_err() {
        tracing::debug!("socket writer did not finish in time");
    }
}

/// How long a socket whose reading ended waits for its writer to finish.
const WRITER_GRACE: Duration = Duration::from_secs(2);

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

    /// Echoes text frames back and counts binary ones; when the socket
    /// closes it drops `actor`, the outlet an actor would hold.
    #[derive(Default)]
    struct Echo {
        binaries: usize,
        actor: Option<Outlet>,
        closed: Option<bool>,
    }

    impl Frames for Echo {
        async fn text(&mut self, text: Utf8Bytes, outlet: &Outlet) {
            let _ = outlet.try_send(Outbound::Text(text.as_str().into()));
        }
        async fn binary(&mut self, _: Bytes, _: &Outlet) {
            self.binaries += 1;
        }
        async fn closed(&mut self, too_slow: bool) {
            self.closed = Some(too_slow);
            self.actor = None;
        }
    }

    /// On the paused clock: a socket whose peer closes ends as soon as its
    /// actor lets go of the outlet, with the close frame sent. Before, the
    /// actor was told only after the writer had been waited for, so every
    /// close took the writer's whole grace while the actor's frames went on
    /// to a closed socket.
    #[tokio::test(start_paused = true)]
    async fn a_socket_the_peer_closes_ends_once_its_actor_lets_go() {
        let (client, incoming) = fmpsc::unbounded();
        let (outgoing, mut written) = fmpsc::unbounded();
        let (outlet, queue) = Outlet::new();
        let mut echo = Echo { actor: Some(outlet.clone()), ..Echo::default() };
        client.unbounded_send(Ok(Message::Close(None))).unwrap();
        let started = Instant::now();
        serve(
            PairSocket { incoming, outgoing },
            outlet,
            queue,
            FrameLimits::json(SocketKind::EventRoom, 64, 64, FrameRate::default()),
            &mut echo,
        )
        .await;
        assert_eq!(echo.closed, Some(false), "the actor was told, not as too slow");
        assert!(started.elapsed() < WRITER_GRACE, "ended after {:?}", started.elapsed());
        let mut last = None;
        while let Ok(frame) = written.try_recv() {
            last = Some(frame);
        }
        assert!(matches!(&last, Some(Message::Close(Some(close))) if close.code == 1000), "{last:?}");
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
        let limits = FrameLimits::json(SocketKind::EventRoom, 4, 3, FrameRate::default());
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

    /// The bucket on both sides of its bounds, on a clock the test moves:
    /// a full burst passes, the next frame is refused; one frame's worth of
    /// refill (1 s at 1/s) less a millisecond is not enough, exactly it is.
    #[test]
    fn the_frame_budget_refuses_past_the_burst_and_refills_at_the_rate() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut bucket = Bucket::new(FrameRate { per_second: 1.0, burst: 3.0 }, start);
        for _ in 0..3 {
            assert_eq!(bucket.admit(at(0)), Admission::Admit);
        }
        assert_eq!(bucket.admit(at(0)), Admission::Refuse { answer: true });
        assert_eq!(bucket.admit(at(999)), Admission::Refuse { answer: false }, "answered once a second");
        assert_eq!(bucket.admit(at(1_000)), Admission::Admit, "refilled one frame after 1 s");
        assert_eq!(bucket.admit(at(1_000)), Admission::Refuse { answer: true }, "a second later it answers again");
        // A long quiet refills the burst, never more.
        for _ in 0..3 {
            assert_eq!(bucket.admit(at(60_000)), Admission::Admit);
        }
        assert!(matches!(bucket.admit(at(60_000)), Admission::Refuse { .. }));
    }

    async fn run(limits: FrameLimits, frames: Vec<Message>) -> (Echo, Vec<Message>) {
        let (client, incoming) = fmpsc::unbounded();
        let (outgoing, mut written) = fmpsc::unbounded();
        for frame in frames {
            client.unbounded_send(Ok(frame)).unwrap();
        }
        drop(client);
        let (outlet, queue) = Outlet::new();
        let mut echo = Echo::default();
        serve(PairSocket { incoming, outgoing }, outlet, queue, limits, &mut echo).await;
        let mut out = Vec::new();
        while let Ok(frame) = written.try_recv() {
            out.push(frame);
        }
        (echo, out)
    }

    /// On the paused clock: the silence limit counts from the last frame.
    /// A frame at 30 s keeps the socket open past 60 s; it closes at 90 s,
    /// not a millisecond before.
    #[tokio::test(start_paused = true)]
    async fn a_socket_closes_at_the_silence_limit_after_its_last_frame() {
        let (client, incoming) = fmpsc::unbounded();
        let (outgoing, _written) = fmpsc::unbounded();
        let (outlet, queue) = Outlet::new();
        let limits = FrameLimits::json(SocketKind::EventRoom, 64, 64, FrameRate::default());
        let served = tokio::spawn(async move {
            let mut echo = Echo::default();
            serve(PairSocket { incoming, outgoing }, outlet, queue, limits, &mut echo).await;
            echo.binaries
        });
        let step = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
        step(30_000).await;
        client.unbounded_send(Ok(Message::Binary(Bytes::from_static(b"x")))).unwrap();
        step(60_000 - 1).await;
        tokio::task::yield_now().await;
        assert!(!served.is_finished(), "open at 89.999 s: 59.999 s after the last frame");
        step(2).await;
        let handled = tokio::time::timeout(Duration::from_secs(3), served).await.expect("closed at 90 s").unwrap();
        assert_eq!(handled, 1);
        drop(client);
    }

    #[tokio::test]
    async fn a_flood_gets_one_rate_limited_frame_and_the_rest_is_dropped() {
        let rate = FrameRate { per_second: 1.0, burst: 2.0 };
        let flood = (0..10).map(|i| Message::Text(format!("m{i}").into())).collect();
        let (_, out) = run(FrameLimits::json(SocketKind::EventRoom, 64, 64, rate), flood).await;
        let texts: Vec<String> = out.iter().filter_map(text_of).collect();
        assert_eq!(texts[..2], ["m0".to_owned(), "m1".to_owned()], "the burst is handled");
        let errors: Vec<serde_json::Value> =
            texts[2..].iter().map(|t| serde_json::from_str(t).expect("an error frame")).collect();
        assert_eq!(errors.len(), 1, "one answer for the whole flood: {texts:?}");
        assert_eq!(errors[0]["code"], "rate_limited");
    }

    #[tokio::test]
    async fn a_flood_on_a_protocol_without_error_frames_closes_with_1008() {
        let rate = FrameRate { per_second: 1.0, burst: 2.0 };
        let flood = (0..5).map(|_| Message::Binary(Bytes::from_static(b"x"))).collect();
        let (echo, out) = run(FrameLimits::binary_protocol(SocketKind::Queue, 64, 64, rate), flood).await;
        assert_eq!(echo.binaries, 2);
        assert!(matches!(out.last(), Some(Message::Close(Some(close))) if close.code == CLOSE_POLICY), "{out:?}");
    }
}
