//! The ops console (issue #18): the page, and the timeline and time-travel
//! routes it reads.

use eventuall::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{moderator, spawn_app, token};

#[tokio::test]
async fn the_console_page_is_served_by_the_binary() {
    let app = spawn_app().await;
    let response = app.get("/console", None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("<title>Eventuall console</title>"));
    for route in ["/admin/projections", "/cloudcaster/dead-letters", "/admin/streams/", "/metrics"] {
        assert!(page.contains(route), "the page reads {route}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_streams_timeline_and_its_state_at_any_event() {
    let app = spawn_app().await;
    let (_socket, _) = app.join("timeline", &token("alice", Role::Participant, None)).await;
    let entered = app.post_json("/event/timeline/stage/enter", Some(&moderator()), &json!({"userId": "alice"})).await;
    assert_eq!(entered.status(), 200);

    let history: Value =
        app.get("/admin/streams/room-timeline/history", Some(&moderator())).await.json().await.unwrap();
    assert_eq!(history["streamId"], "room-timeline");
    assert_eq!(history["truncated"], false);
    let entries = history["entries"].as_array().unwrap();
    let types: Vec<&str> = entries.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(types, ["ConnectionOpened", "StageEntered"], "{history}");
    assert_eq!(entries[1]["actor"], "mod");

    // Time travel: at the first event alice is present and not on stage.
    let first = entries[0]["globalPosition"].as_i64().unwrap();
    let then: Value = app
        .get(&format!("/admin/streams/room-timeline/state?at={first}"), Some(&moderator()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(then["version"], 1);
    assert_eq!(then["state"]["presence"][0]["userId"], "alice", "{then}");
    assert_eq!(then["state"]["stage"], json!([]));
    let now: Value = app.get("/admin/streams/room-timeline/state", Some(&moderator())).await.json().await.unwrap();
    assert_eq!(now["version"], 2);
    assert_eq!(now["state"]["stage"][0]["userId"], "alice");

    // Refusals: unknown stream 404, bad id or time 400, and the auth rules of
    // /admin (an unscoped moderator).
    let status = |path: &'static str, who: Option<String>| {
        let app = &app;
        async move { app.get(path, who.as_deref()).await.status().as_u16() }
    };
    assert_eq!(status("/admin/streams/room-nosuch/history", Some(moderator())).await, 404);
    assert_eq!(status("/admin/streams/room-nosuch/state", Some(moderator())).await, 404);
    assert_eq!(status("/admin/streams/no%20dash/history", Some(moderator())).await, 400);
    let bad_time = app.get("/admin/streams/room-timeline/state?at=yesterday", Some(&moderator())).await;
    assert_eq!(bad_time.status(), 400);
    let body: Value = bad_time.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    let message = body["error"]["message"].as_str().unwrap();
    // An HTTP caller is told the query parameter's forms, not the CLI's flag.
    assert!(message.starts_with("`at` must be"), "{message}");
    assert!(!message.contains("--at"), "{message}");
    assert_eq!(status("/admin/streams/room-timeline/history", None).await, 401);
    let participant = token("alice", Role::Participant, None);
    assert_eq!(status("/admin/streams/room-timeline/history", Some(participant)).await, 403);
    let scoped = token("mod", Role::Moderator, Some(&["timeline"]));
    assert_eq!(status("/admin/streams/room-timeline/state", Some(scoped)).await, 403);
    app.stop().await;
}
