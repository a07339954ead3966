//! The collaborative queue's HTTP commands (the y-websocket side is covered
//! by the Node suite with the real provider).

use eventuall::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    let response = app.post_json(path, Some(token), &body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn moderators_add_move_promote_and_remove_over_http() {
    let app = spawn_app().await;
    let m = moderator();
    let (status, view) = post(&app, "/event/q1/queue/add", &m, json!({"userId": "alice", "name": "Alice"})).await;
    assert_eq!(status, 200);
    assert_eq!(view, json!({"pending": [{"userId": "alice", "name": "Alice"}], "live": []}));
    post(&app, "/event/q1/queue/add", &m, json!({"userId": "bob"})).await;
    let (_, view) =
        post(&app, "/event/q1/queue/move", &m, json!({"userId": "bob", "list": "pending", "index": 0})).await;
    assert_eq!(view["pending"], json!([{"userId": "bob", "name": "bob"}, {"userId": "alice", "name": "Alice"}]));
    let (_, view) = post(&app, "/event/q1/queue/promote", &m, json!({"userId": "alice"})).await;
    assert_eq!(view["live"], json!([{"userId": "alice", "name": "Alice"}]));
    let (_, view) = post(&app, "/event/q1/queue/remove", &m, json!({"userId": "bob"})).await;
    assert_eq!(view, json!({"pending": [], "live": [{"userId": "alice", "name": "Alice"}]}));

    let read = app.get("/event/q1/queue", Some(&token("viewer", Role::Participant, None))).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), view);

    // Every change is an event naming who did it.
    let events =
        app.state.store.read_stream(&eventuall::store::StreamId::parse("queue-q1").unwrap(), 1, 100).await.unwrap();
    let promoted = events.iter().find(|e| e.event_type == "ParticipantPromoted").expect("a promotion event");
    assert_eq!(promoted.metadata.actor.as_deref(), Some("mod"));
    assert!(promoted.payload.contains("\"alice\""));
}

#[tokio::test]
async fn queue_commands_check_roles_and_input() {
    let app = spawn_app().await;
    let m = moderator();
    let participant = token("p", Role::Participant, None);
    let (status, body) = post(&app, "/event/q2/queue/add", &participant, json!({"userId": "x"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = post(&app, "/event/q2/queue/promote", &m, json!({"userId": "nobody"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) =
        post(&app, "/event/q2/queue/move", &m, json!({"userId": "x", "list": "side", "index": 0})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")));
    post(&app, "/event/q2/queue/add", &m, json!({"userId": "x"})).await;
    let (status, body) =
        post(&app, "/event/q2/queue/move", &m, json!({"userId": "x", "list": "live", "index": 9})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")));
    let (status, _) = post(&app, "/event/q2/queue/add", &m, json!({"userId": ""})).await;
    assert_eq!(status, 400);
    let scoped = token("m2", Role::Moderator, Some(&["other"]));
    let (status, _) = post(&app, "/event/q2/queue/add", &scoped, json!({"userId": "y"})).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_never_used_queue_is_empty() {
    let app = spawn_app().await;
    let read = app.get("/event/fresh/queue", Some(&token("viewer", Role::Participant, None))).await;
    assert_eq!(read.json::<Value>().await.unwrap(), json!({"pending": [], "live": []}));
}
