//! Every error code the OpenAPI document lists is reachable (issue #18): a
//! table of requests, one or more per code, each provoking its code against
//! the real service. It fails when a code of `ErrorCode` in `/openapi.json`
//! has no row, when a row answers another code or status, or when a row's
//! HTTP status is not among the documented answers of its operation.

use std::collections::BTreeSet;
use std::time::Duration;

use eventuall::auth::Role;
use eventuall::store::{ExpectedVersion, Metadata, NewEvent, StreamId};
use futures::SinkExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestApp, TestDb, moderator, next_json, spawn_app_on, token};

/// What a row sends.
enum Ask {
    /// An HTTP request; `route` is the document's path template of `path`.
    Http { method: Method, route: &'static str, path: &'static str, token: Option<String>, body: Body },
    /// A frame on an event room socket, answered by an `error` frame.
    RoomFrame { event: &'static str, frame: Message },
}

enum Body {
    None,
    Json(Value),
    /// Sent as `application/json` without being JSON.
    Raw(&'static str),
}

/// What has to be true of the service before the row is sent.
#[derive(Clone, Copy, PartialEq)]
enum Given {
    Nothing,
    /// The user `quota` has spent the AI quota (one request a day here).
    AiQuotaUsedUp,
    /// `room-corrupt` holds an event whose payload does not decode, as a
    /// broken upcaster or a hand-edited log would leave it.
    UndecodableEvent,
    /// The store has shut down (the service is stopping): appends fail.
    StoreClosed,
}

struct Row {
    code: &'static str,
    /// The HTTP status (frames: none).
    status: Option<u16>,
    given: Given,
    ask: Ask,
}

fn http(method: Method, route: &'static str, path: &'static str, token: Option<String>, body: Body) -> Ask {
    Ask::Http { method, route, path, token, body }
}

fn participant() -> String {
    token("pat", Role::Participant, None)
}

fn rows() -> Vec<Row> {
    use Given::*;
    let stage = "/event/{event_id}/stage/enter";
    let enter = "/event/codes/stage/enter";
    vec![
        Row {
            code: "invalid_json",
            status: Some(400),
            given: Nothing,
            ask: http(Method::POST, stage, enter, Some(moderator()), Body::Raw(r#"{"userId":"#)),
        },
        Row {
            code: "invalid_request",
            status: Some(400),
            given: Nothing,
            ask: http(Method::POST, stage, enter, Some(moderator()), Body::Json(json!({"userId": ""}))),
        },
        Row {
            code: "invalid_request",
            status: Some(400),
            given: Nothing,
            ask: http(
                Method::GET,
                "/event/{event_id}/snapshot",
                "/event/no%20spaces/snapshot",
                Some(moderator()),
                Body::None,
            ),
        },
        Row {
            code: "invalid_json",
            status: None,
            given: Nothing,
            ask: Ask::RoomFrame { event: "codes", frame: Message::text("{not json") },
        },
        Row {
            code: "unknown_message_type",
            status: None,
            given: Nothing,
            ask: Ask::RoomFrame { event: "codes", frame: Message::text(r#"{"type":"dance"}"#) },
        },
        Row {
            code: "unsupported_frame",
            status: None,
            given: Nothing,
            ask: Ask::RoomFrame { event: "codes", frame: Message::binary(vec![1u8, 2, 3]) },
        },
        Row {
            code: "unauthorized",
            status: Some(401),
            given: Nothing,
            ask: http(Method::GET, "/event/{event_id}/snapshot", "/event/codes/snapshot", None, Body::None),
        },
        Row {
            code: "unauthorized",
            status: Some(401),
            given: Nothing,
            ask: http(Method::GET, "/admin/projections", "/admin/projections", Some("not-a-jwt".into()), Body::None),
        },
        Row {
            code: "forbidden",
            status: Some(403),
            given: Nothing,
            ask: http(Method::POST, stage, enter, Some(participant()), Body::Json(json!({"userId": "pat"}))),
        },
        Row {
            code: "not_found",
            status: Some(404),
            given: Nothing,
            ask: http(
                Method::GET,
                "/admin/streams/{stream_id}/history",
                "/admin/streams/room-nothing-here/history",
                Some(moderator()),
                Body::None,
            ),
        },
        Row {
            code: "conflict",
            status: Some(409),
            given: Nothing,
            ask: http(
                Method::POST,
                "/cloudcaster/{event_id}/stop",
                "/cloudcaster/codes/stop",
                Some(moderator()),
                Body::None,
            ),
        },
        Row {
            code: "payload_too_large",
            status: Some(413),
            given: Nothing,
            // Over the 4 KiB body limit of the test configuration.
            ask: http(
                Method::POST,
                stage,
                enter,
                Some(moderator()),
                Body::Json(json!({"userId": "x".repeat(8 * 1024)})),
            ),
        },
        Row {
            code: "rate_limited",
            status: Some(429),
            given: AiQuotaUsedUp,
            ask: http(
                Method::POST,
                "/api/interviews",
                "/api/interviews",
                Some(token("quota", Role::Participant, None)),
                Body::Json(json!({"title": "One too many"})),
            ),
        },
        Row {
            code: "internal",
            status: Some(500),
            given: UndecodableEvent,
            ask: http(
                Method::GET,
                "/admin/streams/{stream_id}/state",
                "/admin/streams/room-corrupt/state",
                Some(moderator()),
                Body::None,
            ),
        },
        Row {
            code: "unavailable",
            status: Some(503),
            given: StoreClosed,
            ask: http(Method::POST, stage, enter, Some(moderator()), Body::Json(json!({"userId": "late"}))),
        },
    ]
}

/// One request a day of AI, so that a second interview is refused; the
/// simulator streams without delays.
const FLAGS: [&str; 4] = ["--ai-rate-limit", "1/24h", "--ai-sim-chunk-delay", "0s"];

async fn prepare(app: &TestApp, given: Given) {
    match given {
        Given::Nothing => {}
        Given::AiQuotaUsedUp => {
            let quota = token("quota", Role::Participant, None);
            let body = json!({"title": "The one allowed", "skills": ["Rust"]});
            let created = app.post_json("/api/interviews", Some(&quota), &body).await;
            assert_eq!(created.status(), 201, "the first interview is allowed");
            let id = created.json::<Value>().await.unwrap()["interview"]["id"].as_str().unwrap().to_owned();
            // Its first question is the one AI request of the day: once it
            // is stored, the quota is spent.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let details: Value =
                    app.get(&format!("/api/interviews/{id}"), Some(&quota)).await.json().await.unwrap();
                if details["messages"].as_array().is_some_and(|m| !m.is_empty()) {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "no first question: {details}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Given::UndecodableEvent => {
            let stream = StreamId::parse("room-corrupt").unwrap();
            let event = NewEvent::new("StageEntered", "1", r#"{"unexpected":true}"#.into(), Metadata::default());
            app.state.store.append(&stream, ExpectedVersion::NoStream, vec![event]).await.unwrap();
        }
        Given::StoreClosed => app.state.store.shutdown().await,
    }
}

/// The code (and HTTP status) the service answers `ask` with.
async fn answer(app: &TestApp, ask: &Ask) -> (Option<u16>, Value) {
    match ask {
        Ask::Http { method, path, token, body, .. } => {
            let mut request = app.http.request(method.clone(), app.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request = match body {
                Body::None => request,
                Body::Json(value) => request.json(value),
                Body::Raw(text) => request.header("content-type", "application/json").body(*text),
            };
            let response = request.send().await.expect("request sent");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("error bodies are JSON");
            (Some(status), body["error"].clone())
        }
        Ask::RoomFrame { event, frame } => {
            let (mut socket, _) = app.join(event, &participant()).await;
            socket.send(frame.clone()).await.expect("frame sent");
            let error = loop {
                let frame = next_json(&mut socket).await;
                if frame["type"] == "error" {
                    break frame;
                }
            };
            (None, error)
        }
    }
}

/// The `ErrorCode` enum of the served document.
async fn documented_codes(app: &TestApp) -> (Value, BTreeSet<String>) {
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (doc, codes)
}

#[tokio::test]
async fn every_documented_error_code_is_reachable() {
    let shared = spawn_app_on(TestDb::sqlite().await, &FLAGS).await;
    // A closed store breaks the service for every later row: its rows get a
    // service of their own.
    let closing = spawn_app_on(TestDb::sqlite().await, &FLAGS).await;
    let (doc, documented) = documented_codes(&shared).await;
    let rows = rows();

    let covered: BTreeSet<String> = rows.iter().map(|r| r.code.to_owned()).collect();
    let missing: Vec<&String> = documented.difference(&covered).collect();
    assert!(missing.is_empty(), "documented error codes without a row: {missing:?}");
    let undocumented: Vec<&String> = covered.difference(&documented).collect();
    assert!(undocumented.is_empty(), "rows for codes the document does not list: {undocumented:?}");

    let mut prepared = Vec::new();
    for row in &rows {
        let app = if row.given == Given::StoreClosed { &closing } else { &shared };
        if !prepared.contains(&row.given) {
            prepare(app, row.given).await;
            prepared.push(row.given);
        }
        let (status, error) = answer(app, &row.ask).await;
        let what = match &row.ask {
            Ask::Http { method, path, .. } => format!("{method} {path}"),
            Ask::RoomFrame { frame, .. } => format!("room frame {frame:?}"),
        };
        assert_eq!(error["code"], row.code, "{what}: {error}");
        assert_eq!(status, row.status, "{what}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: every error says why");
        if let (Ask::Http { method, route, .. }, Some(status)) = (&row.ask, status) {
            let operation = &doc["paths"][*route][method.as_str().to_lowercase()];
            assert!(operation.is_object(), "{route} is not in the document");
            let answers = &operation["responses"];
            assert!(
                answers.get(status.to_string()).is_some(),
                "{what}: {status} is not a documented answer of {route}"
            );
        }
        if row.code == "internal" {
            assert_eq!(message, "internal error", "no internal detail is sent");
        }
    }
    shared.stop().await;
    closing.stop().await;
}
