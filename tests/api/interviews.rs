//! Interview rooms end to end: the HTTP routes and both sockets against the
//! real service with its built-in AI simulator, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use eventuall::auth::Role;
use eventuall::clock::ManualClock;
use eventuall::server::Application;
use eventuall::timers::{Dispatch, Timers};
use eventuall_media::sim::AiFault;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Socket, TestApp, TestDb, config_with, serve_built, spawn_app_on, token};

/// Each behaviour as a SQLite and a PostgreSQL test; a behaviour owns its
/// fresh database and hands it back (after stopping its app) to be dropped.
macro_rules! interview_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::TestDb::sqlite().await).await.drop_db().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::TestDb::postgres().await).await.drop_db().await;
            })*
        }
    };
}

fn alice() -> String {
    token("alice", Role::Participant, None)
}

fn bob() -> String {
    token("bob", Role::Participant, None)
}

/// Flags of a fast AI: the simulator streams without delays.
const FAST_AI: [&str; 2] = ["--ai-sim-chunk-delay", "0s"];

async fn app_with(db: TestDb, extra: &[&str]) -> TestApp {
    let mut flags = FAST_AI.to_vec();
    flags.extend_from_slice(extra);
    spawn_app_on(db, &flags).await
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post_json("/api/interviews", Some(token), &body).await;
    assert_eq!(response.status(), 201, "create answers 201");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    body["interview"].clone()
}

async fn connect(app: &TestApp, interview_id: &str, token: &str) -> Socket {
    let url = app.ws_url(&format!("/parties/interview/{interview_id}?token={token}&_pk=tab"));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("interview socket connects");
    socket
}

/// The next JSON text frame (fails after 10 s).
async fn frame(socket: &mut Socket) -> Value {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("frame ok");
        match next {
            Message::Text(text) => return serde_json::from_str(&text).expect("frames are JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads frames until one satisfies `accept`; returns every frame read.
async fn frames_until(socket: &mut Socket, accept: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..2_000 {
        let next = frame(socket).await;
        let done = accept(&next);
        seen.push(next);
        if done {
            return seen;
        }
    }
    panic!("no matching frame in {seen:#?}");
}

fn is_state(frame: &Value, state: &str) -> bool {
    frame["type"] == "INTERVIEW_STATE" && frame["state"] == state
}

fn is_complete(frame: &Value, message_type: &str) -> bool {
    frame["type"] == "INTERVIEW_MESSAGE" && frame["messageType"] == message_type && frame["status"] == "complete"
}

/// The code of the next `error` frame (other frames, e.g. a late state, are
/// skipped).
async fn error_code(socket: &mut Socket) -> String {
    let seen = frames_until(socket, |f| f["type"] == "error").await;
    seen.last().unwrap()["code"].as_str().unwrap().to_owned()
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.expect("send");
}

async fn details(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get(&format!("/api/interviews/{id}"), Some(token)).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits (over HTTP) until the first question is stored and the interview
/// idle, then opens a socket, whose first frame must be the state `idle`.
async fn first_question(app: &TestApp, id: &str) -> (Socket, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let question = loop {
        let body = details(app, &alice(), id).await;
        let question =
            body["messages"].as_array().and_then(|m| m.iter().find(|m| is_complete_message(m, "question")).cloned());
        if let Some(question) = question
            && body["interview"]["state"] == "idle"
        {
            break question;
        }
        assert!(tokio::time::Instant::now() < deadline, "no first question: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut socket = connect(app, id, &alice()).await;
    let first = frame(&mut socket).await;
    assert!(is_state(&first, "idle"), "the state is the first frame: {first}");
    (socket, question)
}

fn is_complete_message(message: &Value, message_type: &str) -> bool {
    message["messageType"] == message_type && message["status"] == "complete"
}

async fn a_whole_interview_runs_from_the_job_description_to_a_reply(db: TestDb) -> TestDb {
    let app = app_with(db, &[]).await;
    let created = create(
        &app,
        &alice(),
        json!({"title": "Backend engineer", "jobDescription": "We build services in Rust and PostgreSQL."}),
    )
    .await;
    assert_eq!(created["userId"], "alice");
    assert_eq!(created["title"], "Backend engineer");
    assert_eq!(created["state"], "ai.extracting.skills", "skills are extracted first: {created}");
    let id = created["id"].as_str().unwrap().to_owned();

    let (mut socket, question) = first_question(&app, &id).await;
    assert_eq!(question["role"], "ai");
    assert_eq!(question["interviewId"], id.as_str());
    assert_eq!(question["userId"], "alice");
    let skills = details(&app, &alice(), &id).await["interview"]["skills"].clone();
    let skills: Vec<&str> = skills.as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    assert!(skills.contains(&"Rust") && skills.contains(&"PostgreSQL"), "skills extracted: {skills:?}");

    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "I have built three services in Rust."})).await;
    let seen = frames_until(&mut socket, |f| is_complete(f, "question")).await;
    let answer = seen.iter().find(|f| f["type"] == "INTERVIEW_MESSAGE" && f["role"] == "user").expect("answer echoed");
    assert_eq!(answer["messageType"], "answer");
    assert_eq!(answer["content"], "I have built three services in Rust.");
    assert!(seen.iter().any(|f| is_state(f, "ai.generating.message")), "thinking is shown: {seen:#?}");
    // Streamed frames share the reply's id, grow, and end complete.
    let reply = seen.last().unwrap();
    let streamed: Vec<&Value> = seen
        .iter()
        .filter(|f| f["type"] == "INTERVIEW_MESSAGE" && f["id"] == reply["id"] && f["status"] == "streaming")
        .collect();
    assert!(streamed.len() >= 2, "the reply was streamed: {seen:#?}");
    let mut last_len = 0;
    for partial in &streamed {
        let content = partial["content"].as_str().unwrap();
        assert!(content.len() >= last_len, "partial frames carry the whole text so far");
        assert!(reply["content"].as_str().unwrap().starts_with(content));
        last_len = content.len();
    }
    frames_until(&mut socket, |f| is_state(f, "idle")).await;

    let body = details(&app, &alice(), &id).await;
    let messages = body["messages"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> =
        messages.iter().map(|m| (m["role"].as_str().unwrap(), m["messageType"].as_str().unwrap())).collect();
    assert_eq!(kinds, vec![("ai", "question"), ("user", "answer"), ("ai", "question")]);
    assert!(messages.iter().all(|m| m["status"] == "complete"));
    assert_eq!(body["interview"]["messageCount"], 3);
    assert_eq!(body["interview"]["state"], "idle");

    let list: Value = app.get("/api/interviews", Some(&alice())).await.json().await.unwrap();
    assert_eq!(list["success"], true);
    let listed = &list["interviews"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["messageCount"], 3, "the list read model caught up: {listed}");
    assert_eq!(listed["state"], "idle");
    app.stop().await
}

async fn get_all_messages_replays_them_oldest_first_on_that_connection_only(db: TestDb) -> TestDb {
    let app = app_with(db, &[]).await;
    let id = create(&app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut first_tab, question) = first_question(&app, &id).await;
    let mut second_tab = connect(&app, &id, &alice()).await;
    assert!(is_state(&frame(&mut second_tab).await, "idle"));
    send(&mut second_tab, json!({"type": "GET_ALL_MESSAGES"})).await;
    let replayed = frame(&mut second_tab).await;
    assert_eq!(replayed["id"], question["id"]);
    assert_eq!(replayed["status"], "complete");
    // The first tab sees what either tab does, but not the other's replay.
    send(&mut second_tab, json!({"type": "USER_MESSAGE", "content": "From tab two"})).await;
    let seen = frames_until(&mut first_tab, |f| f["type"] == "INTERVIEW_MESSAGE" && f["role"] == "user").await;
    assert!(seen.iter().all(|f| f["id"] != question["id"]), "no replay leaked to the first tab: {seen:#?}");
    frames_until(&mut first_tab, |f| is_complete(f, "question")).await;
    app.stop().await
}

async fn someone_elses_interview_is_forbidden_and_an_unknown_one_is_not_found(db: TestDb) -> TestDb {
    let app = app_with(db, &[]).await;
    let id = create(&app, &alice(), json!({"title": "Mine"})).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/api/interviews/{id}"), Some(&bob())).await.status(), 403);
    assert_eq!(app.get("/api/interviews/no-such-interview", Some(&alice())).await.status(), 404);
    assert_eq!(app.get(&format!("/api/interviews/{id}"), None).await.status(), 401);
    let refused = tokio_tungstenite::connect_async(app.ws_url(&format!("/parties/interview/{id}?token={}", bob())))
        .await
        .expect_err("bob is refused before the upgrade");
    assert!(refused.to_string().contains("403"), "{refused}");
    let refused = tokio_tungstenite::connect_async(app.ws_url(&format!("/parties/interview/{id}?token=garbage")))
        .await
        .expect_err("a bad token is refused");
    assert!(refused.to_string().contains("401"), "{refused}");
    let refused =
        tokio_tungstenite::connect_async(app.ws_url(&format!("/parties/user-interviews/alice?token={}", bob())))
            .await
            .expect_err("bob cannot listen to alice");
    assert!(refused.to_string().contains("403"), "{refused}");
    let list: Value = app.get("/api/interviews", Some(&bob())).await.json().await.unwrap();
    assert_eq!(list["interviews"], json!([]), "bob lists nothing of alice's");
    app.stop().await
}

async fn the_user_socket_hears_creates_renames_and_deletes(db: TestDb) -> TestDb {
    let app = app_with(db, &[]).await;
    let url = app.ws_url(&format!("/parties/user-interviews/alice?token={}", alice()));
    let (mut user_socket, _) = tokio_tungstenite::connect_async(url).await.expect("user socket connects");
    let id = create(&app, &alice(), json!({"title": "Old"})).await["id"].as_str().unwrap().to_owned();
    assert_eq!(frame(&mut user_socket).await, json!({"type": "INTERVIEW_CREATED", "interviewId": id}));
    let response = app
        .http
        .patch(app.url(&format!("/api/interviews/{id}")))
        .bearer_auth(alice())
        .json(&json!({"title": "New"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["interview"]["title"], "New");
    assert_eq!(frame(&mut user_socket).await, json!({"type": "INTERVIEW_UPDATED", "interviewId": id}));
    let blank = app
        .http
        .patch(app.url(&format!("/api/interviews/{id}")))
        .bearer_auth(alice())
        .json(&json!({"title": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(blank.status(), 400);
    let deleted = app.http.delete(app.url(&format!("/api/interviews/{id}"))).bearer_auth(alice()).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let heard = frames_until(&mut user_socket, |f| f["type"] == "INTERVIEW_DELETED").await;
    assert_eq!(heard.last().unwrap()["interviewId"], id.as_str());
    assert_eq!(app.get(&format!("/api/interviews/{id}"), Some(&alice())).await.status(), 404);
    let list: Value = app.get("/api/interviews", Some(&alice())).await.json().await.unwrap();
    assert_eq!(list["interviews"], json!([]), "a deleted interview leaves the list");
    app.stop().await
}

async fn bad_frames_get_the_contract_errors_and_lose_nothing(db: TestDb) -> TestDb {
    let app = app_with(db, &["--max-audio-bytes", "2048"]).await;
    let id = create(&app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(&app, &id).await;
    socket.send(Message::text("not json")).await.unwrap();
    assert_eq!(error_code(&mut socket).await, "invalid_json");
    send(&mut socket, json!({"type": "DANCE"})).await;
    assert_eq!(error_code(&mut socket).await, "unknown_message_type");
    send(&mut socket, json!({"type": "USER_MESSAGE"})).await;
    assert_eq!(error_code(&mut socket).await, "invalid_request");
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "   "})).await;
    assert_eq!(error_code(&mut socket).await, "invalid_request");
    socket.send(Message::binary(vec![0u8; 2049])).await.unwrap();
    assert_eq!(error_code(&mut socket).await, "payload_too_large");
    let body = details(&app, &alice(), &id).await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "nothing bad was stored: {body}");
    // A text frame over the frame limit (1 KiB in tests) closes with 1009.
    socket
        .send(Message::text(format!("{{\"type\":\"USER_MESSAGE\",\"content\":\"{}\"}}", "x".repeat(2000))))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(Some(close)))) => {
                assert_eq!(u16::from(close.code), 1009);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a 1009 close, got {other:?}"),
        }
    }
    app.stop().await
}

async fn an_answer_while_the_ai_streams_is_refused_with_conflict(db: TestDb) -> TestDb {
    // 12 chunks 40 ms apart: the reply takes about half a second.
    let app = spawn_app_on(db, &["--ai-sim-chunk-delay", "40ms"]).await;
    let id = create(&app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(&app, &id).await;
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "first"})).await;
    frames_until(&mut socket, |f| is_state(f, "ai.generating.message")).await;
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "second"})).await;
    let seen = frames_until(&mut socket, |f| f["type"] == "error").await;
    assert_eq!(seen.last().unwrap()["code"], "conflict");
    frames_until(&mut socket, |f| is_state(f, "idle")).await;
    let body = details(&app, &alice(), &id).await;
    let answers: Vec<&Value> = body["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user").collect();
    assert_eq!(answers.len(), 1, "the refused answer was not stored");
    assert_eq!(answers[0]["content"], "first");
    app.stop().await
}

async fn the_ai_quota_refuses_the_request_past_the_limit_and_stores_nothing(db: TestDb) -> TestDb {
    // Two requests a day: the first question and one reply.
    let app = app_with(db, &["--ai-rate-limit", "2/24h"]).await;
    let id = create(&app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(&app, &id).await;
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "one"})).await;
    frames_until(&mut socket, |f| is_complete(f, "question")).await;
    frames_until(&mut socket, |f| is_state(f, "idle")).await;
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "two"})).await;
    let refusal = frames_until(&mut socket, |f| f["type"] == "RATELIMIT").await.pop().unwrap();
    assert_eq!(refusal["limit"], 2);
    assert_eq!(refusal["remaining"], 0);
    assert!(refusal["resetAt"].as_i64().unwrap() > eventuall::store::now_millis());
    let body = details(&app, &alice(), &id).await;
    let contents: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["one"], "the answer over the limit was not stored");
    let refused = app.post_json("/api/interviews", Some(&alice()), &json!({"title": "Another"})).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0 && retry_after <= 86_400, "Retry-After in seconds: {retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another user has a quota of their own.
    create(&app, &bob(), json!({"title": "Bob's"})).await;
    let db = app.stop().await;
    // The quota survives a restart.
    let app = app_with(db, &["--ai-rate-limit", "2/24h"]).await;
    let refused = app.post_json("/api/interviews", Some(&alice()), &json!({"title": "Again"})).await;
    assert_eq!(refused.status(), 429, "the used quota survived the restart");
    app.stop().await
}

async fn two_tabs_answering_two_interviews_at_once_cannot_overshoot_the_quota(db: TestDb) -> TestDb {
    // Three requests: the two first questions, then one reply of two.
    let app = app_with(db, &["--ai-rate-limit", "3/24h"]).await;
    let a = create(&app, &alice(), json!({"title": "A", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let b = create(&app, &alice(), json!({"title": "B", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut tab_a, _) = first_question(&app, &a).await;
    let (mut tab_b, _) = first_question(&app, &b).await;
    let (ra, rb) = tokio::join!(
        send(&mut tab_a, json!({"type": "USER_MESSAGE", "content": "a"})),
        send(&mut tab_b, json!({"type": "USER_MESSAGE", "content": "b"}))
    );
    let _ = (ra, rb);
    let outcome = |seen: Vec<Value>| seen.last().unwrap()["type"].as_str().unwrap().to_owned();
    let ending = |f: &Value| f["type"] == "RATELIMIT" || is_complete(f, "question");
    let (seen_a, seen_b) = tokio::join!(frames_until(&mut tab_a, ending), frames_until(&mut tab_b, ending));
    let mut outcomes = vec![outcome(seen_a), outcome(seen_b)];
    outcomes.sort();
    assert_eq!(outcomes, vec!["INTERVIEW_MESSAGE", "RATELIMIT"], "exactly one of the two answers got a reply");
    app.stop().await
}

struct ClockRig {
    app: TestApp,
    clock: Arc<ManualClock>,
    timers: Arc<Timers>,
    dispatch: Dispatch,
}

const HINT_AFTER_MS: i64 = 180_000;

async fn clock_rig(db: TestDb) -> ClockRig {
    let clock = ManualClock::starting_at(1_700_000_000_000);
    let flags = ["--ai-sim-chunk-delay", "0s", "--hint-after", "3m"];
    let app = Application::build_with_clock(config_with(&db.url, &flags), clock.clone()).await.expect("app builds");
    let timers = app.timers();
    let dispatch = Application::timer_dispatch(app.state());
    ClockRig { app: serve_built(db, app), clock, timers, dispatch }
}

impl ClockRig {
    async fn after(&self, millis: i64) -> usize {
        self.clock.advance(millis);
        self.timers.fire_due(&self.dispatch).await.expect("timers fire")
    }
}

fn hints(body: &Value) -> usize {
    body["messages"].as_array().unwrap().iter().filter(|m| m["messageType"] == "hint").count()
}

async fn a_hint_comes_three_minutes_after_the_question_once_and_typing_postpones_it(db: TestDb) -> TestDb {
    let rig = clock_rig(db).await;
    let app = &rig.app;
    let id = create(app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(app, &id).await;
    // One millisecond before the bound: nothing.
    rig.after(HINT_AFTER_MS - 1).await;
    assert_eq!(hints(&details(app, &alice(), &id).await), 0, "no hint before 3 minutes");
    // Typing now moves the hint to 3 minutes from now.
    send(&mut socket, json!({"type": "USER_TYPING"})).await;
    // The typing frame is handled before the next HTTP read of the actor.
    assert_eq!(details(app, &alice(), &id).await["interview"]["state"], "idle");
    rig.after(1).await;
    assert_eq!(hints(&details(app, &alice(), &id).await), 0, "typing postponed the hint past the old bound");
    rig.after(HINT_AFTER_MS - 2).await;
    assert_eq!(hints(&details(app, &alice(), &id).await), 0, "still a millisecond early");
    rig.after(1).await;
    let seen = frames_until(&mut socket, |f| is_complete(f, "hint")).await;
    assert!(seen.iter().any(|f| is_state(f, "ai.generating.hint")), "the hint state is shown");
    assert!(seen.last().unwrap()["content"].as_str().unwrap().starts_with("Hint:"));
    frames_until(&mut socket, |f| is_state(f, "idle")).await;
    // Once per question: much later, no second hint.
    rig.after(10 * HINT_AFTER_MS).await;
    assert_eq!(hints(&details(app, &alice(), &id).await), 1, "one hint per question");
    rig.app.stop().await
}

async fn an_answer_cancels_the_pending_hint(db: TestDb) -> TestDb {
    let rig = clock_rig(db).await;
    let app = &rig.app;
    let id = create(app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(app, &id).await;
    rig.after(60_000).await;
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "an answer"})).await;
    frames_until(&mut socket, |f| is_complete(f, "question")).await;
    frames_until(&mut socket, |f| is_state(f, "idle")).await;
    // The first question's hint would have been due now; the reply's is not.
    rig.after(HINT_AFTER_MS - 60_000).await;
    assert_eq!(hints(&details(app, &alice(), &id).await), 0);
    rig.app.stop().await
}

async fn a_pending_hint_survives_a_restart_and_fires_once(db: TestDb) -> TestDb {
    let rig = clock_rig(db).await;
    let id =
        create(&rig.app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    drop(first_question(&rig.app, &id).await);
    let clock = rig.clock.clone();
    let db = rig.app.stop().await;
    let flags = ["--ai-sim-chunk-delay", "0s", "--hint-after", "3m"];
    let app = Application::build_with_clock(config_with(&db.url, &flags), clock.clone()).await.expect("app builds");
    let timers = app.timers();
    let dispatch = Application::timer_dispatch(app.state());
    let rig = ClockRig { app: serve_built(db, app), clock, timers, dispatch };
    assert_eq!(rig.after(HINT_AFTER_MS - 1).await, 0, "not due yet after the restart");
    assert_eq!(rig.after(1).await, 1, "the durable timer fired after the restart");
    let mut socket = connect(&rig.app, &id, &alice()).await;
    send(&mut socket, json!({"type": "GET_ALL_MESSAGES"})).await;
    frames_until(&mut socket, |f| is_complete(f, "hint")).await;
    assert_eq!(rig.after(HINT_AFTER_MS).await, 0, "no second firing");
    assert_eq!(hints(&details(&rig.app, &alice(), &id).await), 1);
    rig.app.stop().await
}

async fn an_audio_answer_is_transcribed_then_answered(db: TestDb) -> TestDb {
    let app = app_with(db, &[]).await;
    let id = create(&app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(&app, &id).await;
    send(&mut socket, json!({"type": "USER_RECORDING"})).await;
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    wav.extend_from_slice(&[0u8; 1000]);
    socket.send(Message::binary(wav)).await.unwrap();
    let seen = frames_until(&mut socket, |f| is_complete(f, "question")).await;
    assert!(seen.iter().any(|f| is_state(f, "ai.transcribing.text")), "transcribing is shown: {seen:#?}");
    let answer = seen.iter().find(|f| f["role"] == "user").expect("the transcript is the answer");
    assert!(answer["content"].as_str().unwrap().starts_with("Simulated transcript of"), "{answer}");
    app.stop().await
}

async fn replay_reads_the_interview_streams(db: TestDb) -> TestDb {
    let app = app_with(db, &[]).await;
    let id = create(&app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    drop(first_question(&app, &id).await);
    let store = app.state.store.clone();
    let registry = eventuall::replay::registry::Registry::standard();
    let stream = eventuall::store::StreamId::parse(format!("interview-{id}")).unwrap();
    let state = eventuall::replay::state::state_at(&store, registry, &stream, "999999999".parse().unwrap())
        .await
        .expect("state of an interview stream");
    assert_eq!(state.state["state"], "idle");
    assert_eq!(state.state["owner"], "alice");
    assert_eq!(state.state["messages"].as_array().unwrap().len(), 1);
    app.stop().await
}

async fn a_broken_ai_stream_ends_in_a_failed_message_and_the_interview_goes_on(db: TestDb) -> TestDb {
    let built = Application::build(config_with(&db.url, &FAST_AI)).await.expect("app builds");
    let faults = built.ai_simulator().expect("the built-in AI simulator").faults().clone();
    let app = serve_built(db, built);
    let id = create(&app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(&app, &id).await;
    faults.arm(AiFault::CutAfter { chunks: 3 }, 1);
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "first try"})).await;
    let seen = frames_until(&mut socket, |f| f["type"] == "INTERVIEW_MESSAGE" && f["status"] == "failed").await;
    let failed = seen.last().unwrap();
    assert_eq!(failed["messageType"], "question");
    assert!(!failed["content"].as_str().unwrap().is_empty(), "the streamed part is kept: {failed}");
    frames_until(&mut socket, |f| is_state(f, "idle")).await;
    // The interview is not stuck: the next answer gets a reply.
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "second try"})).await;
    frames_until(&mut socket, |f| is_complete(f, "question")).await;
    frames_until(&mut socket, |f| is_state(f, "idle")).await;
    let body = details(&app, &alice(), &id).await;
    let statuses: Vec<&str> =
        body["messages"].as_array().unwrap().iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["complete", "complete", "failed", "complete", "complete"]);
    // Every AI call is recorded, the failure with its outcome.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let usage = loop {
        let usage: Value = app.get("/analytics/ai", Some(&alice())).await.json().await.unwrap();
        if usage["models"][0]["calls"] == 3 && usage["models"][0]["running"] == 0 {
            break usage;
        }
        assert!(tokio::time::Instant::now() < deadline, "AI calls not projected: {usage}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(usage["models"][0]["completed"], 2);
    assert_eq!(usage["failures"], json!({"stream_broken": 1}));
    assert!(usage["models"][0]["completionTokens"].as_i64().unwrap() > 0);
    assert_eq!(app.get("/analytics/ai?userId=alice", Some(&bob())).await.status(), 403);
    app.stop().await
}

interview_tests!(
    a_whole_interview_runs_from_the_job_description_to_a_reply,
    get_all_messages_replays_them_oldest_first_on_that_connection_only,
    someone_elses_interview_is_forbidden_and_an_unknown_one_is_not_found,
    the_user_socket_hears_creates_renames_and_deletes,
    bad_frames_get_the_contract_errors_and_lose_nothing,
    an_answer_while_the_ai_streams_is_refused_with_conflict,
    the_ai_quota_refuses_the_request_past_the_limit_and_stores_nothing,
    two_tabs_answering_two_interviews_at_once_cannot_overshoot_the_quota,
    a_hint_comes_three_minutes_after_the_question_once_and_typing_postpones_it,
    an_answer_cancels_the_pending_hint,
    a_pending_hint_survives_a_restart_and_fires_once,
    an_audio_answer_is_transcribed_then_answered,
    replay_reads_the_interview_streams,
    a_broken_ai_stream_ends_in_a_failed_message_and_the_interview_goes_on,
    an_idle_interview_is_archived_by_its_timer_and_reads_back_on_the_next_connect,
);

const ARCHIVE_AFTER_MS: i64 = 30 * 24 * 3_600_000;

async fn an_idle_interview_is_archived_by_its_timer_and_reads_back_on_the_next_connect(db: TestDb) -> TestDb {
    let clock = ManualClock::starting_at(1_700_000_000_000);
    let archive_url = db.archive_url.clone();
    // No hint within the test's 30 days: only the archive timer fires.
    let flags =
        ["--ai-sim-chunk-delay", "0s", "--hint-after", "400d", "--archive-after", "30d", "--archive-url", &archive_url];
    let app = Application::build_with_clock(config_with(&db.url, &flags), clock.clone()).await.expect("app builds");
    let timers = app.timers();
    let dispatch = Application::timer_dispatch(app.state());
    let rig = ClockRig { app: serve_built(db, app), clock, timers, dispatch };
    let app = &rig.app;
    let id = create(app, &alice(), json!({"title": "T", "skills": ["Go"]})).await["id"].as_str().unwrap().to_owned();
    let (mut socket, _) = first_question(app, &id).await;
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "my answer"})).await;
    frames_until(&mut socket, |f| is_complete(f, "question")).await;
    frames_until(&mut socket, |f| is_state(f, "idle")).await;
    drop(socket);
    let before = details(app, &alice(), &id).await;
    // The actor leaves memory (evict after 300 ms) and arms the timer.
    let interviews = app.state.interviews.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while interviews.is_live(&id) {
        assert!(tokio::time::Instant::now() < deadline, "the interview actor never left memory");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stream = eventuall::interviews::interview_stream(&id);
    let store = app.state.store.clone();
    let owner = format!("interview-{id}");
    let armed = loop {
        if let Some(timer) = rig.timers.get(&owner, "archive").await.unwrap() {
            break timer;
        }
        assert!(tokio::time::Instant::now() < deadline, "no archive timer armed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(armed.due_at, eventuall::clock::Clock::now_millis(&*rig.clock) + ARCHIVE_AFTER_MS);

    // A millisecond early: nothing moves.
    assert_eq!(rig.after(ARCHIVE_AFTER_MS - 1).await, 0);
    assert!(store.segments_of(&stream).await.unwrap().is_empty(), "not archived before 30 days");
    // At the bound: archived, and the list says so.
    assert_eq!(rig.after(1).await, 1);
    let segments = store.segments_of(&stream).await.unwrap();
    assert_eq!(segments.len(), 1, "archived at 30 days");
    let hot: Vec<(i64,)> =
        store.query_as("select count(*) from events where stream_id = $1", &[stream.as_str().into()]).await.unwrap();
    assert_eq!(hot[0].0, 1, "only the newest event stays hot");
    let list: Value = app.get("/api/interviews", Some(&alice())).await.json().await.unwrap();
    assert_eq!(list["interviews"][0]["archived"], true, "{list}");

    // The next visit reads it back: same messages, the client cannot tell.
    let mut socket = connect(app, &id, &alice()).await;
    assert!(is_state(&frame(&mut socket).await, "idle"));
    send(&mut socket, json!({"type": "GET_ALL_MESSAGES"})).await;
    let replayed = frames_until(&mut socket, |f| f["type"] == "INTERVIEW_MESSAGE" && f["content"] == "my answer").await;
    assert!(replayed.iter().any(|f| is_complete(f, "question")), "the first question came back");
    let after = details(app, &alice(), &id).await;
    assert_eq!(after["messages"], before["messages"], "every message as before archiving");
    // And it goes on: a new answer is appended to the hot tail.
    send(&mut socket, json!({"type": "USER_MESSAGE", "content": "after the archive"})).await;
    frames_until(&mut socket, |f| is_complete(f, "question")).await;
    let grown = details(app, &alice(), &id).await;
    assert_eq!(grown["messages"].as_array().unwrap().len(), before["messages"].as_array().unwrap().len() + 2);
    rig.app.stop().await
}
