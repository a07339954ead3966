//! `GET /metrics` (issue #18): the Prometheus text format, with the series
//! an operator needs, named by Prometheus conventions.

use std::time::Duration;

use eventuall::auth::Role;
use serde_json::json;

use crate::helpers::{moderator, send_text, spawn_app, token};

/// The value of the first series of `name` whose labels contain `labels`.
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']) && line.contains(labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_show_requests_sockets_appends_actors_and_lag() {
    let app = spawn_app().await;
    let (mut socket, _) = app.join("metered", &token("alice", Role::Participant, None)).await;
    send_text(&mut socket, r#"{"type":"heartbeat"}"#).await;
    let entered = app.post_json("/event/metered/stage/enter", Some(&moderator()), &json!({"userId": "alice"})).await;
    assert_eq!(entered.status(), 200);
    assert_eq!(app.get("/no/such/route", None).await.status(), 404);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), 200, "scrapers need no token");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();

    let requests = "eventuall_http_requests_total";
    let stage = r#"route="/event/{event_id}/stage/enter",method="POST",status="200""#;
    assert_eq!(value(&text, requests, stage), Some(1.0), "by route template, not raw path:\n{text}");
    assert_eq!(value(&text, requests, r#"route="unmatched",method="GET",status="404""#), Some(1.0), "{text}");
    assert!(!text.contains("/event/metered/"), "raw paths would be one series per room");
    assert!(
        value(&text, "eventuall_http_request_duration_seconds_count", r#"route="/event/{event_id}/stage/enter""#)
            .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(value(&text, "eventuall_websocket_connections", r#"kind="event_room""#), Some(1.0), "{text}");
    // Connect, heartbeat, stage entry: at least three events appended.
    assert!(value(&text, "eventuall_eventlog_events_appended_total", "").is_some_and(|n| n >= 3.0), "{text}");
    assert!(value(&text, "eventuall_eventlog_commit_duration_seconds_count", "").is_some_and(|n| n >= 1.0));
    assert!(value(&text, "eventuall_eventlog_batch_events_bucket", r#"le="+Inf""#).is_some_and(|n| n >= 1.0));
    assert_eq!(value(&text, "eventuall_live_actors", r#"kind="room""#), Some(1.0));
    assert!(value(&text, "eventuall_projection_lag_events", r#"projection="room_presence""#).is_some());
    assert_eq!(value(&text, "eventuall_timers_due", ""), Some(0.0));
    assert_eq!(value(&text, "eventuall_recording_dead_letters", ""), Some(0.0));

    // Conventions: one prefix, counters end in _total, nothing else does.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split(' ').skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(name.starts_with("eventuall_"), "{line}");
        assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        if kind == "histogram" {
            assert!(name.ends_with("_seconds") || name.ends_with("_events"), "a unit in the name: {line}");
        }
    }
    drop(socket);
    app.stop().await;
}
