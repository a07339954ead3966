//! Event rooms over HTTP and WebSocket.

use std::time::Duration;

use eventuall::auth::Role;
use eventuall::store::StreamId;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn a_new_socket_gets_a_snapshot_showing_itself_online() {
    let app = spawn_app().await;
    let (_socket, snapshot) = app.join("launch", &token("alice", Role::Participant, None)).await;
    assert_eq!(snapshot["eventId"], "launch");
    assert!(snapshot["version"].as_u64().unwrap() >= 1);
    let alice = presence_of(&snapshot, "alice").expect("alice listed");
    assert_eq!(alice["status"], "online");
    assert_eq!(alice["connections"], 1);
    assert_eq!(alice["name"], "alice name");
    assert_eq!(snapshot["recording"], serde_json::Value::Null);
}

#[tokio::test]
async fn sockets_without_a_valid_token_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let cases = [
        ("/parties/event/launch".to_owned(), 401),
        ("/parties/event/launch?token=garbage".to_owned(), 401),
        (format!("/parties/event/launch?token={}", token("a", Role::Participant, Some(&["other"]))), 403),
        (format!("/parties/event/bad%20id?token={}", token("a", Role::Participant, None)), 400),
    ];
    for (path, status) in cases {
        let error = tokio_tungstenite::connect_async(app.ws_url(&path)).await.expect_err("refused");
        match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status().as_u16(), status, "{path}");
                let body: serde_json::Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or(b"{}")).unwrap();
                assert!(body["error"]["code"].is_string(), "{path}: JSON error body");
            }
            other => panic!("{path}: expected an HTTP refusal, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn three_tabs_are_one_user_with_three_connections_until_the_last_closes() {
    let app = spawn_app().await;
    let alice = token("alice", Role::Participant, None);
    let (mut watcher, _) = app.join("tabs", &token("watcher", Role::Participant, None)).await;
    let (tab1, _) = app.join("tabs", &alice).await;
    let (tab2, _) = app.join("tabs", &alice).await;
    let (mut tab3, _) = app.join("tabs", &alice).await;
    snapshot_where(&mut watcher, |s| presence_of(s, "alice").is_some_and(|p| p["connections"] == 3)).await;
    drop(tab1);
    drop(tab2);
    let two_closed =
        snapshot_where(&mut watcher, |s| presence_of(s, "alice").is_some_and(|p| p["connections"] == 1)).await;
    // Present while a tab is open: `online`, or `away` when a loaded machine let
    // the 400 ms away bound pass first (snapshots are coalesced, so the watcher
    // may see only the later one); never `offline`.
    let status = &presence_of(&two_closed, "alice").unwrap()["status"];
    assert!(status == "online" || status == "away", "one tab left keeps alice present: {status}");
    tab3.close(None).await.unwrap();
    let offline =
        snapshot_where(&mut watcher, |s| presence_of(s, "alice").is_some_and(|p| p["status"] == "offline")).await;
    assert_eq!(presence_of(&offline, "alice").unwrap()["connections"], 0, "offline users stay listed");
}

#[tokio::test]
async fn silence_makes_a_user_away_and_a_heartbeat_brings_them_back() {
    let app = spawn_app().await;
    let (mut socket, _) = app.join("away", &token("alice", Role::Participant, None)).await;
    // away-after is 400 ms and the sweep runs every 100 ms in tests.
    snapshot_where(&mut socket, |s| presence_of(s, "alice").is_some_and(|p| p["status"] == "away")).await;
    send_text(&mut socket, r#"{"type":"heartbeat"}"#).await;
    snapshot_where(&mut socket, |s| presence_of(s, "alice").is_some_and(|p| p["status"] == "online")).await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let (mut socket, _) = app.join("frames", &token("alice", Role::Participant, None)).await;
    send_text(&mut socket, "not json").await;
    assert_eq!(next_json(&mut socket).await["code"], "invalid_json");
    send_text(&mut socket, r#"{"type":"dance"}"#).await;
    assert_eq!(next_json(&mut socket).await["code"], "unknown_message_type");
    send_text(&mut socket, r#"{"no":"type"}"#).await;
    assert_eq!(next_json(&mut socket).await["code"], "invalid_request");
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let error = next_json(&mut socket).await;
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("unsupported_frame")));
    // Still open: a heartbeat is accepted and the user stays online.
    send_text(&mut socket, r#"{"type":"heartbeat"}"#).await;
    let snapshot = app.get("/event/frames/snapshot", Some(&token("x", Role::Participant, None))).await;
    let snapshot: serde_json::Value = snapshot.json().await.unwrap();
    assert_eq!(presence_of(&snapshot, "alice").unwrap()["connections"], 1);
}

#[tokio::test]
async fn an_oversize_text_frame_closes_the_socket_with_1009() {
    let app = spawn_app().await;
    let (mut socket, _) = app.join("big", &token("alice", Role::Participant, None)).await;
    send_text(&mut socket, &format!(r#"{{"type":"heartbeat","pad":"{}"}}"#, "x".repeat(2048))).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("closes in time") {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a 1009 close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_heartbeat_is_an_appended_event() {
    let app = spawn_app().await;
    let (mut socket, _) = app.join("beats", &token("alice", Role::Participant, None)).await;
    for _ in 0..25 {
        send_text(&mut socket, r#"{"type":"heartbeat"}"#).await;
    }
    let stream = StreamId::parse("room-beats").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = app.state.store.read_stream(&stream, 1, 1000).await.unwrap();
        let beats = events.iter().filter(|e| e.event_type == "HeartbeatReceived").count();
        if beats == 25 {
            let beat = events.iter().find(|e| e.event_type == "HeartbeatReceived").unwrap();
            assert_eq!(beat.metadata.actor.as_deref(), Some("alice"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {beats} of 25 heartbeats stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn moderators_move_users_on_and_off_stage_and_everyone_sees_it() {
    let app = spawn_app().await;
    let (mut socket, _) = app.join("stage", &token("alice", Role::Participant, None)).await;
    let participant = token("alice", Role::Participant, None);
    let refused = app.post_json("/event/stage/stage/enter", Some(&participant), &json!({"userId": "alice"})).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"]["code"], "forbidden");

    let entered = app.post_json("/event/stage/stage/enter", Some(&moderator()), &json!({"userId": "bob"})).await;
    assert_eq!(entered.status(), 200);
    let entered: serde_json::Value = entered.json().await.unwrap();
    assert_eq!(entered["stage"][0]["userId"], "bob", "bob need not be connected");
    let since = entered["stage"][0]["since"].as_i64().unwrap();
    snapshot_where(&mut socket, |s| s["stage"][0]["userId"] == "bob").await;

    let again: serde_json::Value = app
        .post_json("/event/stage/stage/enter", Some(&moderator()), &json!({"userId": "bob"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["stage"][0]["since"].as_i64(), Some(since), "entering twice changes nothing");
    assert_eq!(again["version"], entered["version"]);

    let exited: serde_json::Value = app
        .post_json("/event/stage/stage/exit", Some(&moderator()), &json!({"userId": "bob"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(exited["stage"], json!([]));
    snapshot_where(&mut socket, |s| s["stage"] == json!([])).await;
    let events = app.state.store.read_stream(&StreamId::parse("room-stage").unwrap(), 1, 100).await.unwrap();
    let entry = events.iter().find(|e| e.event_type == "StageEntered").unwrap();
    assert_eq!(entry.metadata.actor.as_deref(), Some("mod"));
    assert_eq!(entry.metadata.command.as_deref(), Some("EnterStage"));
    assert!(entry.metadata.correlation_id.is_some());
}

#[tokio::test]
async fn http_errors_are_json_with_stable_codes() {
    let app = spawn_app().await;
    let reader = token("r", Role::Participant, None);
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (app.get("/event/launch/snapshot", None).await, 401, "unauthorized"),
        (app.get("/event/launch/snapshot", Some("nope")).await, 401, "unauthorized"),
        (app.get("/event/launch/snapshot", Some(&token("r", Role::Participant, Some(&["x"])))).await, 403, "forbidden"),
        (app.get("/event/bad.id/snapshot", Some(&reader)).await, 400, "invalid_request"),
        (app.get("/no/such/route", Some(&reader)).await, 404, "not_found"),
        (
            app.http
                .post(app.url("/event/launch/stage/enter"))
                .bearer_auth(moderator())
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap(),
            400,
            "invalid_json",
        ),
        (
            app.post_json("/event/launch/stage/enter", Some(&moderator()), &json!({"user": "x"})).await,
            400,
            "invalid_request",
        ),
        (
            app.post_json("/event/launch/stage/enter", Some(&moderator()), &json!({"userId": "x".repeat(5000)})).await,
            413,
            "payload_too_large",
        ),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status().as_u16(), status);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn a_never_used_room_reads_as_empty_at_version_zero() {
    let app = spawn_app().await;
    let response = app.get("/event/unused/snapshot", Some(&token("r", Role::Participant, None))).await;
    assert_eq!(response.status(), 200);
    let snapshot: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        snapshot,
        json!({"type": "snapshot", "eventId": "unused", "version": 0, "presence": [], "stage": [], "recording": null})
    );
}

#[tokio::test]
async fn an_evicted_room_is_rebuilt_with_the_same_snapshot() {
    let app = spawn_app().await;
    let reader = token("r", Role::Participant, None);
    let (mut socket, _) = app.join("evict", &token("alice", Role::Participant, None)).await;
    app.post_json("/event/evict/stage/enter", Some(&moderator()), &json!({"userId": "alice"})).await;
    socket.close(None).await.unwrap();
    let before = loop {
        let s: serde_json::Value = app.get("/event/evict/snapshot", Some(&reader)).await.json().await.unwrap();
        if presence_of(&s, "alice").is_some_and(|p| p["status"] == "offline") {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // evict-after is 300 ms in tests.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.state.rooms.is_live("evict") {
        assert!(tokio::time::Instant::now() < deadline, "room was not evicted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after: serde_json::Value = app.get("/event/evict/snapshot", Some(&reader)).await.json().await.unwrap();
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_restart_keeps_the_room_and_closes_sockets_it_lost() {
    let app = spawn_app().await;
    let reader = token("r", Role::Participant, None);
    app.post_json("/event/restart/stage/enter", Some(&moderator()), &json!({"userId": "carol"})).await;
    let (_socket, _) = app.join("restart", &token("alice", Role::Participant, None)).await;
    let db = app.stop().await;

    let app = spawn_app_on(db, &[]).await;
    let after: serde_json::Value = app.get("/event/restart/snapshot", Some(&reader)).await.json().await.unwrap();
    assert_eq!(after["stage"][0]["userId"], "carol");
    let alice = presence_of(&after, "alice").expect("alice still listed");
    assert_eq!((alice["status"].as_str(), alice["connections"].as_u64()), (Some("offline"), Some(0)));
    let events = app.state.store.read_stream(&StreamId::parse("room-restart").unwrap(), 1, 100).await.unwrap();
    let lost =
        events.iter().find(|e| e.event_type == "ConnectionClosed").expect("the lost socket is closed in the log");
    assert!(lost.payload.contains("\"lost\""));
}

#[tokio::test]
async fn a_short_lived_token_keeps_the_claims() {
    let app = spawn_app().await;
    let long = token("alice", Role::Moderator, Some(&["e1"]));
    let response = app.http.post(app.url("/auth/token")).bearer_auth(&long).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let short = body["token"].as_str().unwrap();
    let caller = eventuall::auth::Authenticator::new(SECRET).verify(short).unwrap();
    assert_eq!(caller.claims.sub, "alice");
    assert_eq!(caller.claims.role, Role::Moderator);
    assert_eq!(caller.claims.events, Some(vec!["e1".to_owned()]));
    let expires_at = body["expiresAt"].as_i64().unwrap();
    let in_five_minutes = eventuall::store::now_millis() + 300_000;
    assert!((expires_at - in_five_minutes).abs() < 5_000);
    let refused = app.http.post(app.url("/auth/token")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn cors_preflight_allows_configured_origins_only() {
    let app = spawn_app().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/event/launch/snapshot"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.headers().get("access-control-allow-origin").unwrap(), "https://app.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// A subscriber that takes nothing holds one snapshot, the newest, however
/// often its room changes (the room never waits for it); dropping it is its
/// socket writer's job (`tests/api/hostile.rs`).
#[tokio::test]
async fn a_subscriber_that_stops_reading_holds_only_the_newest_snapshot_and_the_room_goes_on() {
    use eventuall::outlet::Outlet;
    use eventuall::rooms::RoomMsg;

    let app = spawn_app().await;
    let (outlet, mut unread_queue) = Outlet::new();
    let (reply, joined) = tokio::sync::oneshot::channel();
    app.state
        .rooms
        .send(
            "slow",
            RoomMsg::Connect {
                connection_id: "slow-reader".into(),
                client_id: None,
                user_id: "sloth".into(),
                name: "Sloth".into(),
                outbound: outlet.clone(),
                reply,
            },
        )
        .await;
    joined.await.unwrap().unwrap();
    // Each stage change broadcasts a snapshot; nobody takes them.
    let mut last = Value::Null;
    for i in 0..300 {
        let path = if i % 2 == 0 { "/event/slow/stage/enter" } else { "/event/slow/stage/exit" };
        let response = app.post_json(path, Some(&moderator()), &json!({"userId": "bob"})).await;
        assert_eq!(response.status(), 200, "the room keeps answering");
        last = response.json().await.unwrap();
    }
    let waiting = outlet.latest().take().expect("a snapshot is waiting");
    let waiting: Value = serde_json::from_str(&waiting).unwrap();
    assert_eq!(waiting["version"], last["version"], "the one waiting is the newest");
    assert!(outlet.latest().take().is_none(), "and it is the only one");
    assert!(unread_queue.try_recv().is_err(), "no snapshot went into the frame queue");
    assert!(!outlet.dropped().is_cancelled(), "the room did not drop it: its writer decides");
}

/// Issue #22, defects 2 and 10: only a longer-lived token mints a short one
/// (a short token cannot renew itself), GET works as POST, and a token
/// before its `nbf` is refused rather than turned into a fresh one.
#[tokio::test]
async fn a_short_token_cannot_renew_itself_and_get_serves_it_too() {
    let app = spawn_app().await;
    let long = token("alice", Role::Moderator, Some(&["e1"]));
    let got = app.get("/auth/token", Some(&long)).await;
    assert_eq!(got.status(), 200, "GET /auth/token");
    let short = got.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    // The short token works where tokens are needed…
    assert_eq!(app.get("/event/e1/snapshot", Some(&short)).await.status(), 200);
    // …but cannot mint another, by GET or POST.
    for renewed in [
        app.get("/auth/token", Some(&short)).await,
        app.http.post(app.url("/auth/token")).bearer_auth(&short).send().await.unwrap(),
    ] {
        assert_eq!(renewed.status(), 403);
        assert_eq!(renewed.json::<serde_json::Value>().await.unwrap()["error"]["code"], "forbidden");
    }
    // Not yet valid: refused everywhere, including here.
    let now = eventuall::store::now_millis() / 1000;
    let early = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": now + 3600, "nbf": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let minted = app.http.post(app.url("/auth/token")).bearer_auth(&early).send().await.unwrap();
    assert_eq!(minted.status(), 401);
    assert_eq!(app.get("/event/e1/snapshot", Some(&early)).await.status(), 401);
}

/// Issue #22, defect 12: the scheme name is case-insensitive (RFC 7235).
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let reader = token("r", Role::Participant, None);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = app
            .http
            .get(app.url("/event/launch/snapshot"))
            .header("authorization", format!("{scheme} {reader}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

/// Issue #22, hostile clients: a socket flooding heartbeats (500 at once,
/// over the 2 × 5/s burst configured here) gets a `rate_limited` error
/// frame, has at most its burst plus the refill stored, and stays open; a
/// socket in another room meanwhile is served as usual.
#[tokio::test]
async fn a_flooding_socket_is_rate_limited_without_slowing_other_rooms() {
    let app = spawn_app_on(TestDb::sqlite().await, &["--max-frames-per-second", "5"]).await;
    let (mut flooder, _) = app.join("flooded", &token("mallory", Role::Participant, None)).await;
    let (mut neighbour, _) = app.join("calm", &token("alice", Role::Participant, None)).await;
    let started = tokio::time::Instant::now();
    for _ in 0..500 {
        flooder.feed(Message::Text(r#"{"type":"heartbeat"}"#.into())).await.unwrap();
    }
    flooder.flush().await.unwrap();
    let error = loop {
        let frame = next_json(&mut flooder).await;
        if frame["type"] == "error" {
            break frame;
        }
    };
    assert_eq!(error["code"], "rate_limited", "{error}");
    // The neighbour's room answers a moderator's change at once.
    let entered = app.post_json("/event/calm/stage/enter", Some(&moderator()), &json!({"userId": "alice"})).await;
    assert_eq!(entered.status(), 200);
    snapshot_where(&mut neighbour, |s| s["stage"][0]["userId"] == "alice").await;
    // Stored: the burst of 10 and what 5/s refilled meanwhile, not 500.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let stream = StreamId::parse("room-flooded").unwrap();
    let events = app.state.store.read_stream(&stream, 1, 1000).await.unwrap();
    let beats = events.iter().filter(|e| e.event_type == "HeartbeatReceived").count();
    assert!(beats >= 10 && (beats as f64) <= 10.0 + 5.0 * elapsed + 1.0, "{beats} heartbeats in {elapsed:.2} s");
    // Still open: a heartbeat after the refill is stored.
    tokio::time::sleep(Duration::from_millis(400)).await;
    send_text(&mut flooder, r#"{"type":"heartbeat"}"#).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let events = app.state.store.read_stream(&stream, 1, 1000).await.unwrap();
        if events.iter().filter(|e| e.event_type == "HeartbeatReceived").count() > beats {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the socket was not served after the flood");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
