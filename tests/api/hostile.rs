//! Hostile clients (issue #22): a slowloris request head, a connection past
//! the cap, a WebSocket client that never reads. Each bound is checked on
//! both sides where the test can see both: still served before it, gone
//! after it, and everyone else unaffected.

use std::time::Duration;

use eventuall::auth::{Authenticator, Claims, Role};
use eventuall::store::StreamId;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::helpers::{SECRET, TestDb, moderator, presence_of, snapshot_where, spawn_app_on, token};

/// Whether the server has neither sent anything on `stream` nor closed it:
/// a short read finds nothing.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte)).await.is_err()
}

/// Reads `stream` until the server closes it (end of file or reset), or
/// `deadline`. Returns what the server sent, or `None` if still open.
async fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// One `GET /healthz` on a fresh connection; the status line's code.
async fn healthz_on_fresh_connection(addr: std::net::SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").await.ok()?;
    let answer = read_until_closed(&mut stream, Instant::now() + Duration::from_secs(2)).await?;
    let status = String::from_utf8_lossy(&answer).split(' ').nth(1)?.parse().ok()?;
    Some(status)
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_at_the_header_timeout_not_before() {
    let app = spawn_app_on(TestDb::sqlite().await, &["--header-timeout", "300ms"]).await;
    let mut dribbler = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    dribbler.write_all(b"GET /healthz HT").await.unwrap();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();

    tokio::time::sleep_until(opened + Duration::from_millis(150)).await;
    assert!(still_open(&mut dribbler).await, "half a request line is still waited for at 150 ms");
    assert!(still_open(&mut silent).await, "a connection that sent nothing is still open at 150 ms");

    let deadline = opened + Duration::from_secs(1);
    let sent = read_until_closed(&mut dribbler, deadline).await.expect("half a request line is closed by 1 s");
    let closed_after = opened.elapsed();
    assert!(closed_after >= Duration::from_millis(250), "closed at {closed_after:?}, before the 300 ms timeout");
    // hyper may say 408 before closing; it must not have served the request.
    assert!(sent.is_empty() || sent.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&sent));
    assert!(read_until_closed(&mut silent, deadline).await.is_some(), "a silent connection is closed by 1 s");
    app.stop().await;
}

#[tokio::test]
async fn requests_and_websockets_outlive_a_short_header_timeout() {
    let app = spawn_app_on(TestDb::sqlite().await, &["--header-timeout", "300ms"]).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let (mut socket, first) = app.join("steady", &token("alice", Role::Participant, None)).await;
    assert_eq!(first["type"], "snapshot");

    // Past the header timeout: the kept-alive HTTP connection was closed
    // (the client opens another), the upgraded socket is not timed at all.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let entered = app.post_json("/event/steady/stage/enter", Some(&moderator()), &json!({"userId": "bob"})).await;
    assert_eq!(entered.status(), 200);
    let seen = snapshot_where(&mut socket, |s| s["stage"].as_array().is_some_and(|stage| !stage.is_empty())).await;
    assert_eq!(seen["stage"][0]["userId"], "bob", "the WebSocket still gets snapshots");
    app.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_answers_the_request_in_flight_and_takes_no_new_one() {
    let app = spawn_app_on(TestDb::sqlite().await, &[]).await;
    let body = json!({"userId": "drainer"}).to_string();
    let (head_of_body, rest_of_body) = body.split_at(5);
    let mut in_flight = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /event/drain/stage/enter HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{head_of_body}",
        moderator(),
        body.len()
    );
    in_flight.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.begin_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!app.has_stopped(), "the server waits for the request whose body is still arriving");
    assert!(TcpStream::connect(app.addr).await.is_err(), "no new connection is taken while draining");

    in_flight.write_all(rest_of_body.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut in_flight, Instant::now() + Duration::from_secs(5))
        .await
        .expect("the drained connection is closed after its answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("drainer"), "the answer is the new snapshot: {answer}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.has_stopped() {
        assert!(Instant::now() < deadline, "the server did not stop after draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn past_the_connection_cap_a_connection_is_closed_at_once() {
    let app = spawn_app_on(TestDb::sqlite().await, &["--max-connections", "2"]).await;
    // A WebSocket keeps its connection's place after the upgrade.
    let (mut socket, _) = app.join("capped", &token("alice", Role::Participant, None)).await;
    let idle = TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut third = TcpStream::connect(app.addr).await.unwrap();
    let sent = read_until_closed(&mut third, Instant::now() + Duration::from_secs(1))
        .await
        .expect("the third connection is closed at once");
    assert!(sent.is_empty(), "closed before any byte: {:?}", String::from_utf8_lossy(&sent));

    // The idle connection's place comes back when it closes.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if healthz_on_fresh_connection(app.addr).await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "a freed place was not given to a new connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entered = app.post_json("/event/capped/stage/enter", Some(&moderator()), &json!({"userId": "bob"})).await;
    assert_eq!(entered.status(), 200);
    let seen = snapshot_where(&mut socket, |s| s["stage"].as_array().is_some_and(|stage| !stage.is_empty())).await;
    assert_eq!(seen["stage"][0]["userId"], "bob", "the WebSocket at the cap is served throughout");
    app.stop().await;
}

/// A token whose display name is `name` (large names make large snapshots).
fn token_named(user: &str, name: &str) -> String {
    let claims = Claims {
        sub: user.into(),
        exp: eventuall::store::now_millis() / 1000 + 3600,
        name: Some(name.into()),
        role: Role::Participant,
        events: None,
    };
    Authenticator::new(SECRET).issue(&claims)
}

/// Opens an event room socket with a tiny receive buffer and never reads
/// it: the server's writes back up as soon as its own buffers are full.
async fn connect_and_never_read(addr: std::net::SocketAddr, event: &str, token: &str) -> impl Sized + use<> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/parties/event/{event}?token={token}");
    let (socket, _) = tokio_tungstenite::client_async(url, stream).await.expect("upgrade");
    socket
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_at_the_write_timeout_and_its_room_goes_on() {
    let app = spawn_app_on(TestDb::sqlite().await, &["--write-timeout", "1s"]).await;
    // Two 30 KB names: every snapshot is over 60 KB, so 120 changes (7 MB)
    // are more than the kernel buffers between us. Fewer changes than the
    // 256-frame queue: the writer's timeout drops it, not a full queue.
    let big_name = "n".repeat(30_000);
    let (mut reader, _) = app.join("hoard", &token_named("reader", &big_name)).await;
    let _stuck = connect_and_never_read(app.addr, "hoard", &token_named("sloth", &big_name)).await;
    snapshot_where(&mut reader, |s| presence_of(s, "sloth").is_some()).await;

    // The reader drains on its own task and reports the newest version.
    let (newest, newest_seen) = tokio::sync::watch::channel(0u64);
    let drain = tokio::spawn(async move {
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(20), reader.next()).await {
            if let Ok(snapshot) = serde_json::from_str::<Value>(frame.to_text().unwrap_or_default()) {
                newest.send_replace(snapshot["version"].as_u64().unwrap_or_default());
            }
        }
    });
    let mut last_version = 0;
    for i in 0..120 {
        let path = if i % 2 == 0 { "/event/hoard/stage/enter" } else { "/event/hoard/stage/exit" };
        let answer = app.post_json(path, Some(&moderator()), &json!({"userId": "bob"})).await;
        assert_eq!(answer.status(), 200, "the room keeps answering");
        last_version = answer.json::<Value>().await.unwrap()["version"].as_u64().unwrap();
    }
    let changed = Instant::now();

    let mut newest_seen = newest_seen;
    tokio::time::timeout(Duration::from_secs(5), newest_seen.wait_for(|v| *v >= last_version))
        .await
        .expect("the reading client gets the newest snapshot within 5 s")
        .expect("the reader is still connected");

    let stream = StreamId::parse("room-hoard").unwrap();
    let deadline = changed + Duration::from_secs(6);
    loop {
        let events = app.state.store.read_stream(&stream, 1, 100_000).await.unwrap();
        let dropped = events.iter().any(|e| e.event_type == "ConnectionClosed" && e.payload.contains("too_slow"));
        if dropped {
            break;
        }
        assert!(Instant::now() < deadline, "the client that never reads was not dropped within 1 s + 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snapshot: Value = app.get("/event/hoard/snapshot", Some(&moderator())).await.json().await.unwrap();
    assert_eq!(presence_of(&snapshot, "sloth").unwrap()["connections"], 0, "the stuck socket is gone");
    assert_eq!(presence_of(&snapshot, "reader").unwrap()["connections"], 1, "the reader is still there");
    drain.abort();
    app.stop().await;
}
