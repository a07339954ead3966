//! Read models fed from the log by the projection runner.

use std::time::Duration;

use eventuall::auth::Role;
use eventuall::store::DbTx;
use serde_json::json;

use crate::helpers::*;

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut tx = DbTx::begin(&app.state.store).await.unwrap();
    let n = tx.query_i64(sql, &[]).await.unwrap().unwrap_or(0);
    tx.commit().await.unwrap();
    n
}

async fn eventually(app: &TestApp, sql: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = count(app, sql).await;
        if n == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sql}: {n}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn presence_sessions_and_stage_intervals_follow_the_room() {
    let app = spawn_app().await;
    let (mut first, _) = app.join("proj", &token("alice", Role::Participant, None)).await;
    let (_second, _) = app.join("proj", &token("alice", Role::Participant, None)).await;
    app.post_json("/event/proj/stage/enter", Some(&moderator()), &json!({"userId": "alice"})).await;
    app.post_json("/event/proj/stage/exit", Some(&moderator()), &json!({"userId": "alice"})).await;
    app.post_json("/event/proj/stage/enter", Some(&moderator()), &json!({"userId": "alice"})).await;
    first.close(None).await.unwrap();

    eventually(&app, "select count(*) from presence_sessions where event_id = 'proj' and user_id = 'alice'", 2).await;
    eventually(
        &app,
        "select count(*) from presence_sessions where event_id = 'proj' and disconnected_at is not null \
         and close_reason = 'closed'",
        1,
    )
    .await;
    eventually(&app, "select count(*) from stage_intervals where event_id = 'proj' and exited_at is not null", 1).await;
    eventually(&app, "select count(*) from stage_intervals where event_id = 'proj' and exited_at is null", 1).await;
    // Heartbeats are events but change no row.
    let (mut bob, _) = app.join("proj", &token("bob", Role::Participant, None)).await;
    for _ in 0..5 {
        send_text(&mut bob, r#"{"type":"heartbeat"}"#).await;
    }
    eventually(&app, "select count(*) from presence_sessions where event_id = 'proj'", 3).await;
}

#[tokio::test]
async fn the_projection_checkpoint_reaches_the_head_of_the_log() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.post_json(&format!("/event/p{i}/stage/enter"), Some(&moderator()), &json!({"userId": "x"})).await;
    }
    let head = app.state.store.head_position().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let position =
            eventuall::store::subscription::load_checkpoint(&app.state.store, "room_presence").await.unwrap();
        if position >= head {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "projection stuck at {position} of {head}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(count(&app, "select count(*) from stage_intervals").await, 5);
}
