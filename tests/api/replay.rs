//! Replay against the running service: time travel shows what the live room
//! showed, and the projection status and analytics routes.

use std::time::Duration;

use eventuall::auth::Role;
use eventuall::replay::registry::Registry;
use eventuall::replay::state::{At, state_at};
use eventuall::store::StreamId;
use serde_json::{Value, json};

use crate::helpers::*;

/// The snapshot frame without its `type`: the room state as clients saw it.
fn state_of(mut frame: Value) -> Value {
    frame.as_object_mut().expect("object").remove("type");
    frame
}

#[tokio::test]
async fn state_at_a_past_version_is_what_the_live_room_showed_then() {
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let stream = StreamId::of("room", "travel");
    let (_alice, _) = app.join("travel", &token("alice", Role::Participant, None)).await;
    let mut shown = Vec::new();
    for (path, user) in [("enter", "alice"), ("enter", "bob"), ("exit", "alice")] {
        let response =
            app.post_json(&format!("/event/travel/stage/{path}"), Some(&moderator()), &json!({"userId": user})).await;
        assert_eq!(response.status(), 200);
        shown.push(state_of(response.json().await.unwrap()));
    }
    let (_bob, _) = app.join("travel", &token("bob", Role::Participant, None)).await;
    for snapshot in shown {
        let version = snapshot["version"].as_u64().unwrap();
        let event = store.read_stream(&stream, version, 1).await.unwrap().remove(0);
        let by_position =
            state_at(&store, Registry::standard(), &stream, At::Position(event.global_position)).await.unwrap();
        assert_eq!(by_position.state, snapshot, "state at version {version}");
        // By time: everything stored up to that event's time (events stored
        // in the same millisecond come along), nothing stored before it.
        let by_time = state_at(&store, Registry::standard(), &stream, At::Time(event.recorded_at)).await.unwrap();
        assert!(by_time.version >= version);
        let before = state_at(&store, Registry::standard(), &stream, At::Time(event.recorded_at - 1)).await.unwrap();
        assert!(before.version < version);
    }
}

#[tokio::test]
async fn projection_status_is_for_moderators() {
    let app = spawn_app().await;
    let (_socket, _) = app.join("status", &token("alice", Role::Participant, None)).await;
    assert_eq!(app.get("/admin/projections", None).await.status(), 401);
    let participant = token("alice", Role::Participant, None);
    assert_eq!(app.get("/admin/projections", Some(&participant)).await.status(), 403);
    let response = app.get("/admin/projections", Some(&moderator())).await;
    assert_eq!(response.status(), 200);
    let statuses: Value = response.json().await.unwrap();
    let names: Vec<&str> = statuses.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["room_presence", "analytics", "interviews"]);
    for s in statuses.as_array().unwrap() {
        assert_eq!(s["lag"], s["head"].as_i64().unwrap() - s["position"].as_i64().unwrap());
    }
}

#[tokio::test]
async fn analytics_are_served_to_tokens_of_the_event() {
    let app = spawn_app().await;
    let (_socket, _) = app.join("stats", &token("alice", Role::Participant, None)).await;
    let scoped = token("viewer", Role::Participant, Some(&["stats"]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let analytics: Value = loop {
        let response = app.get("/analytics/events/stats", Some(&scoped)).await;
        if response.status() == 200 {
            break response.json().await.unwrap();
        }
        assert_eq!(response.status(), 404, "not found until the projection catches up");
        assert!(tokio::time::Instant::now() < deadline, "analytics within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(analytics["eventId"], "stats");
    assert_eq!(analytics["attendance"]["uniqueUsers"], 1);
    assert_eq!(analytics["attendance"]["presentUsers"], 1);
    let elsewhere = token("viewer", Role::Participant, Some(&["other"]));
    assert_eq!(app.get("/analytics/events/stats", Some(&elsewhere)).await.status(), 403);
    assert_eq!(app.get("/analytics/events/stats", None).await.status(), 401);
}
