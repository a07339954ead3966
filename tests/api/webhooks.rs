//! `POST /webhooks/livekit`: verified, deduplicated, feeding presence.

use std::time::Duration;

use eventuall::auth::Role;
use eventuall_media::sim::{SimConfig, Simulators, WebhookFault, sign_livekit_webhook};
use serde_json::{Value, json};

use crate::helpers::*;

fn participant_event(kind: &str, id: &str, room: &str, identity: &str, name: &str) -> String {
    json!({
        "event": kind,
        "id": id,
        "createdAt": "1735689610",
        "room": {"sid": "RM_1", "name": room},
        "participant": {"sid": format!("PA_{identity}"), "identity": identity, "name": name, "state": "ACTIVE"}
    })
    .to_string()
}

async fn deliver(app: &TestApp, body: String, fault: Option<WebhookFault>) -> reqwest::Response {
    let signed = sign_livekit_webhook("devkey", "secret", body, fault);
    app.http
        .post(app.url("/webhooks/livekit"))
        .header("content-type", "application/webhook+json")
        .header("authorization", signed.authorization)
        .body(signed.body)
        .send()
        .await
        .unwrap()
}

async fn snapshot(app: &TestApp, event: &str) -> Value {
    app.get(&format!("/event/{event}/snapshot"), Some(&token("r", Role::Participant, None))).await.json().await.unwrap()
}

#[tokio::test]
async fn a_livekit_participant_counts_as_one_connection_of_that_user() {
    let app = spawn_app().await;
    let joined = deliver(&app, participant_event("participant_joined", "EV_1", "show", "alice", "Alice"), None).await;
    assert_eq!(joined.status(), 200);
    let s = snapshot(&app, "show").await;
    let alice = presence_of(&s, "alice").expect("alice is present");
    assert_eq!((alice["connections"].as_u64(), alice["name"].as_str()), (Some(1), Some("Alice")));

    // Her browser tab is a second connection; leaving LiveKit closes only
    // the LiveKit one.
    let (_tab, _) = app.join("show", &token("alice", Role::Participant, None)).await;
    assert_eq!(presence_of(&snapshot(&app, "show").await, "alice").unwrap()["connections"], 2);
    let left = deliver(&app, participant_event("participant_left", "EV_2", "show", "alice", "Alice"), None).await;
    assert_eq!(left.status(), 200);
    let s = snapshot(&app, "show").await;
    assert_eq!(presence_of(&s, "alice").unwrap()["connections"], 1);
    assert_eq!(presence_of(&s, "alice").unwrap()["status"], "online");
}

#[tokio::test]
async fn a_redelivered_webhook_changes_nothing() {
    let app = spawn_app().await;
    let body = participant_event("participant_joined", "EV_dup", "dup", "bob", "Bob");
    assert_eq!(deliver(&app, body.clone(), None).await.json::<Value>().await.unwrap()["status"], "applied");
    let version = snapshot(&app, "dup").await["version"].clone();
    let again = deliver(&app, body, None).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(snapshot(&app, "dup").await["version"], version);
}

#[tokio::test]
async fn webhooks_that_do_not_verify_are_refused_and_record_nothing() {
    let app = spawn_app().await;
    for (n, fault) in
        [WebhookFault::BadSignature, WebhookFault::UnknownKey, WebhookFault::BodyHashMismatch, WebhookFault::Expired]
            .into_iter()
            .enumerate()
    {
        let body = participant_event("participant_joined", &format!("EV_bad{n}"), "guarded", "mallory", "M");
        let response = deliver(&app, body, Some(fault)).await;
        assert_eq!(response.status(), 401, "{fault:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "unauthorized");
    }
    let missing = app.http.post(app.url("/webhooks/livekit")).body("{}").send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let garbage =
        app.http.post(app.url("/webhooks/livekit")).header("authorization", "x.y.z").body("{").send().await.unwrap();
    assert_eq!(garbage.status(), 401);
    assert_eq!(snapshot(&app, "guarded").await["version"], 0, "nothing was recorded");
}

#[tokio::test]
async fn a_bearer_prefix_is_tolerated_and_other_events_are_accepted() {
    let app = spawn_app().await;
    let signed = sign_livekit_webhook(
        "devkey",
        "secret",
        json!({"event": "room_started", "id": "EV_r", "room": {"name": "calm"}}).to_string(),
        None,
    );
    let response = app
        .http
        .post(app.url("/webhooks/livekit"))
        .header("authorization", format!("Bearer {}", signed.authorization))
        .body(signed.body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ignored");
}

#[tokio::test]
async fn webhooks_sent_by_the_livekit_simulator_reach_the_room() {
    let app = spawn_app().await;
    let sims = Simulators::spawn(SimConfig::fast()).await.unwrap();
    sims.handle.livekit.set_webhook_url(Some(app.url("/webhooks/livekit")));
    sims.handle.livekit.participant_joined("simulated", "carol", "Carol");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = snapshot(&app, "simulated").await;
        if presence_of(&s, "carol").is_some_and(|p| p["connections"] == 1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the simulator's webhook did not arrive: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sims.handle.livekit.participant_left("simulated", "carol", "Carol");
    loop {
        let s = snapshot(&app, "simulated").await;
        if presence_of(&s, "carol").is_some_and(|p| p["status"] == "offline") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the leave did not arrive: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Issue #22, defect 4: present only through LiveKit (no socket, so no
/// heartbeats), a participant stays online well past the away timeout
/// (400 ms in tests, sweeps every 100 ms) until LiveKit says they left.
#[tokio::test]
async fn a_livekit_only_participant_does_not_go_away_without_heartbeats() {
    let app = spawn_app().await;
    deliver(&app, participant_event("participant_joined", "EV_lk1", "onstage", "carol", "Carol"), None).await;
    let entered = app.post_json("/event/onstage/stage/enter", Some(&moderator()), &json!({"userId": "carol"})).await;
    assert_eq!(entered.status(), 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let s = snapshot(&app, "onstage").await;
    assert_eq!(presence_of(&s, "carol").unwrap()["status"], "online", "{s}");
    assert_eq!(s["stage"][0]["userId"], "carol");
    deliver(&app, participant_event("participant_left", "EV_lk2", "onstage", "carol", "Carol"), None).await;
    assert_eq!(presence_of(&snapshot(&app, "onstage").await, "carol").unwrap()["status"], "offline");
}

/// Issue #22, defect 7: a crash after the room applied a join but before
/// the delivery was recorded (here: the record removed behind the service's
/// back) must not let LiveKit's redelivery, arriving after the leave, bring
/// the participant back. The room keeps the delivery ids it applied.
#[tokio::test]
async fn a_join_redelivered_after_the_leave_changes_nothing_even_without_its_record() {
    let app = spawn_app().await;
    deliver(&app, participant_event("participant_joined", "EV_j", "ordering", "dave", "Dave"), None).await;
    deliver(&app, participant_event("participant_left", "EV_l", "ordering", "dave", "Dave"), None).await;
    {
        let mut tx = eventuall::store::DbTx::begin(&app.state.store).await.unwrap();
        tx.execute("delete from webhook_deliveries", &[]).await.unwrap();
        tx.commit().await.unwrap();
    }
    let again = deliver(&app, participant_event("participant_joined", "EV_j", "ordering", "dave", "Dave"), None).await;
    assert_eq!(again.status(), 200);
    let s = snapshot(&app, "ordering").await;
    assert_eq!(presence_of(&s, "dave").unwrap()["status"], "offline", "{s}");
    assert_eq!(presence_of(&s, "dave").unwrap()["connections"], 0, "{s}");
}
