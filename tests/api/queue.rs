//! The collaborative queue's HTTP commands, and one y-websocket bound the
//! Node suite's provider cannot reach (the rest of the y-websocket side is
//! covered there, with the real provider).

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

/// A moderator's burst of 2,000 updates in one flush, far more than the
/// queue actor's batch (a bulk import, a scripted moderator), is stored and
/// relayed back in full to the client that sent it while it reads, with no
/// close. The bound itself, on both sides, is `queues::actor`'s
/// `a_full_batch_of_updates_fits_a_queue_connection_with_frames_still_waiting`.
#[tokio::test]
async fn a_burst_of_updates_larger_than_a_batch_reaches_the_client_that_sent_it() {
    use eventuall_domain::queue::test_support::TestClient;
    use eventuall_domain::queue::{QueueList, sync};
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Frame;
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;

    const BURST: usize = 2_000;
    // The frame budget would close a burst like this one (1008); lifted, so
    // what is tested is the connection's queue.
    let app = spawn_app_on(TestDb::sqlite().await, &["--max-frames-per-second", "1000000"]).await;
    let url = app.ws_url(&format!("/parties/queue/burst?token={}", moderator()));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("socket connects");
    let (mut sink, mut stream) = socket.split();
    let moderator_doc = TestClient::new(1);
    let frames: Vec<Vec<u8>> =
        (0..BURST).map(|n| sync::update_frame(&moderator_doc.push(QueueList::Pending, &format!("u{n}")))).collect();
    // All of it at once, one flush, before reading anything back.
    for frame in frames {
        sink.feed(Frame::Binary(frame.into())).await.unwrap();
    }
    sink.flush().await.unwrap();
    let mut relayed = 0;
    let read = async {
        while relayed < BURST {
            match stream.next().await {
                Some(Ok(Frame::Binary(bytes))) => {
                    if let Ok(Message::Sync(SyncMessage::Update(_))) = Message::decode_v1(&bytes) {
                        relayed += 1;
                    }
                }
                Some(Ok(Frame::Close(close))) => panic!("closed after {relayed} relayed updates: {close:?}"),
                Some(Ok(_)) => {}
                other => panic!("socket ended after {relayed} relayed updates: {other:?}"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read).await.expect("every update relayed within 60 s");
    assert_eq!(relayed, BURST);
    let view: Value = app.get("/event/burst/queue", Some(&moderator())).await.json().await.unwrap();
    assert_eq!(view["pending"].as_array().map(Vec::len), Some(BURST), "all stored: {view}");
}
