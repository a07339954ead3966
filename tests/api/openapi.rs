//! `GET /openapi.json` (issue #18): every route the code declares is in the
//! document, and the document names no route the code lacks. The routes are
//! read from the source of `src/http/*.rs` and `src/cluster/route.rs` (`.route("PATH", get(h).post(h2))`),
//! so a new route without an `#[utoipa::path]` fails here.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::spawn_app;

const SOURCES: &[(&str, &str)] = &[
    ("admin.rs", include_str!("../../src/http/admin.rs")),
    ("console.rs", include_str!("../../src/http/console.rs")),
    ("interviews.rs", include_str!("../../src/http/interviews.rs")),
    ("mod.rs", include_str!("../../src/http/mod.rs")),
    ("openapi.rs", include_str!("../../src/http/openapi.rs")),
    ("party.rs", include_str!("../../src/http/party.rs")),
    ("queue.rs", include_str!("../../src/http/queue.rs")),
    ("recording.rs", include_str!("../../src/http/recording.rs")),
    ("rooms.rs", include_str!("../../src/http/rooms.rs")),
    ("webhooks.rs", include_str!("../../src/http/webhooks.rs")),
    ("ws.rs", include_str!("../../src/http/ws.rs")),
    ("error.rs", include_str!("../../src/http/error.rs")),
    ("extract.rs", include_str!("../../src/http/extract.rs")),
    ("cluster/route.rs", include_str!("../../src/cluster/route.rs")),
];

/// Routes nodes call on each other (ADR 0020): not part of the public
/// contract, so not in the document; listed here one by one so that the
/// exemption cannot hide a public route.
const NODE_TO_NODE: &[(&str, &str)] = &[("POST", "/internal/rooms/{event_id}/command")];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

/// The text between the `(` at `open` and its matching `)`.
fn balanced(text: &str, open: usize) -> &str {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses after {}", &text[open..(open + 80).min(text.len())]);
}

/// `(METHOD, path)` of every `.route("PATH", method(h)[.method(h)…])` in `source`.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    let mut from = 0;
    while let Some(at) = source[from..].find(".route(") {
        let open = from + at + ".route".len();
        let args = balanced(source, open);
        from = open + args.len();
        let Some(rest) = args.trim_start().strip_prefix('"') else { continue };
        let (path, handlers) = rest.split_once('"').expect("a closed path literal");
        let mut found = 0;
        for (i, _) in handlers.char_indices() {
            let before = handlers[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            for method in METHODS {
                if handlers[i..].starts_with(&format!("{method}(")) {
                    routes.push((method.to_uppercase(), path.to_owned()));
                    found += 1;
                }
            }
        }
        assert!(found > 0, "no method for route {path}");
    }
    routes
}

#[test]
fn the_route_scanner_reads_chained_methods() {
    let source = r#"Router::new().route("/a/{id}", get(one).patch(two).delete(three))
        .route("/b", post(four))"#;
    assert_eq!(
        routes_in(source),
        [("GET", "/a/{id}"), ("PATCH", "/a/{id}"), ("DELETE", "/a/{id}"), ("POST", "/b")]
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
}

fn source_routes() -> BTreeSet<(String, String)> {
    let mut all = BTreeSet::new();
    for (file, source) in SOURCES {
        for route in routes_in(source) {
            assert!(all.insert(route.clone()), "{file}: {route:?} declared twice");
        }
    }
    all
}

#[tokio::test]
async fn the_document_covers_every_route_of_the_code() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status(), 200, "no token needed");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);

    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.to_uppercase(), path.clone()));
            let id = operation["operationId"].as_str().expect("an operationId").to_owned();
            assert!(operation_ids.insert(id.clone()), "operationId {id} is not unique");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|status| status.starts_with('2') || status == "101"),
                "{method} {path} documents no success answer"
            );
            for (status, answer) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &answer["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
                }
            }
        }
    }
    let mut in_code = source_routes();
    for (method, path) in NODE_TO_NODE {
        assert!(in_code.remove(&(method.to_string(), path.to_string())), "{method} {path} is no longer in the code");
    }
    assert!(in_code.len() >= 30, "the scanner found too few routes: {in_code:?}");
    let missing: Vec<_> = in_code.difference(&documented).collect();
    assert!(missing.is_empty(), "routes missing from /openapi.json: {missing:?}");
    let extra: Vec<_> = documented.difference(&in_code).collect();
    assert!(extra.is_empty(), "documented routes the code lacks: {extra:?}");

    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ErrorBody",
        "EventRoomServerMessage",
        "EventRoomClientMessage",
        "InterviewServerMessage",
        "InterviewClientMessage",
        "UserInterviewsServerMessage",
        "RoomSnapshot",
        "Interview",
        "Message",
    ] {
        assert!(schemas.contains_key(name), "components.schemas lacks {name}");
    }
    for union in ["EventRoomServerMessage", "InterviewServerMessage", "UserInterviewsServerMessage"] {
        assert!(schemas[union]["oneOf"].is_array(), "{union} is a oneOf union: {}", schemas[union]);
    }
    let error_codes: Vec<&str> =
        schemas["ErrorCode"]["enum"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let error_rs = include_str!("../../src/http/error.rs");
    for line in error_rs.lines().filter(|l| l.contains("=> \"")) {
        let code = line.split('"').nth(1).unwrap();
        assert!(error_codes.contains(&code), "error code {code} of error.rs is not in ErrorCode");
    }
}

/// The webhook route reads its raw body itself; over the limit it still
/// answers the documented JSON 413.
#[tokio::test]
async fn an_oversized_webhook_gets_the_json_413() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/webhooks/livekit"))
        .header("authorization", "not-a-jwt")
        .header("content-type", "application/webhook+json")
        .body("x".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
}

/// The `schema` of parameter `name` of `GET path` in the document.
fn param_schema<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    let parameters = doc["paths"][path]["get"]["parameters"].as_array().expect("parameters");
    let param = parameters.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{path} has no {name}"));
    &param["schema"]
}

/// Every byte outside `[A-Za-z0-9_.~-]` percent-encoded, for a path segment.
fn segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'~' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path ids' documented patterns are what the server accepts: ids drawn
/// from each pattern are answered (not 400), ids outside it get 400. Before
/// the patterns were documented, schemathesis' generated ids were mostly
/// refused, so its fuzzing seldom got past the id check.
#[tokio::test]
async fn ids_drawn_from_the_documented_patterns_are_accepted() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let app = spawn_app().await;
    let token = crate::helpers::moderator();
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let cases = [
        ("/event/{event_id}/snapshot", "event_id", "/event/{}/snapshot", 200, 128),
        ("/admin/streams/{stream_id}/history", "stream_id", "/admin/streams/{}/history", 404, 200),
    ];
    let mut runner = TestRunner::deterministic();
    for (path, name, template, expected, max_len) in cases {
        let schema = param_schema(&doc, path, name);
        let pattern = schema["pattern"].as_str().unwrap_or_else(|| panic!("{path}: {name} has no pattern: {schema}"));
        if let Some(documented) = schema.get("maxLength") {
            assert_eq!(documented, max_len, "{path}: maxLength");
        }
        let unanchored = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')).expect("an anchored pattern");
        let ids = proptest::string::string_regex(unanchored).expect("a pattern proptest reads");
        for _ in 0..40 {
            let id = ids.new_tree(&mut runner).unwrap().current();
            if id.len() > max_len {
                continue;
            }
            let status = app.get(&template.replace("{}", &segment(&id)), Some(&token)).await.status();
            assert_eq!(status.as_u16(), expected, "{path}: {id:?} matches {pattern} and was refused");
        }
    }
    // Outside the patterns: 400.
    for id in ["a b", "é", &"x".repeat(129)] {
        let status = app.get(&format!("/event/{}/snapshot", segment(id)), Some(&token)).await.status();
        assert_eq!(status.as_u16(), 400, "event id {id:?}");
    }
    for id in ["room", "-launch", "room-", "room-a b", &format!("room-{}", "x".repeat(196))] {
        let status = app.get(&format!("/admin/streams/{}/history", segment(id)), Some(&token)).await.status();
        assert_eq!(status.as_u16(), 400, "stream id {id:?}");
    }
    app.stop().await;
}
