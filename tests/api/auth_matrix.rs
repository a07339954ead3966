//! The auth matrix (issue #22): every HTTP route and WebSocket that takes a
//! JWT × every kind of bad credential → the contract's status and code,
//! never a 2xx. Each route is also called with a good token, which must
//! pass auth: a refusal is then the token's doing, not a missing route.

use std::time::Duration;

use eventuall::auth::Role;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{SECRET, TestApp, spawn_app, token};

const EVENT: &str = "matrix";

/// Who a route lets in, besides holding a valid token.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Access {
    /// Any valid token.
    AnyUser,
    /// A token whose `events` claim covers the event (or has none).
    EventReader,
    /// A moderator covering the event.
    EventModerator,
    /// A moderator (lists filtered by the token's events).
    Moderator,
    /// A moderator whose token is not scoped to events.
    Administrator,
    /// The user who owns the interview.
    InterviewOwner,
}

/// A bad credential and what every route answers to it.
#[derive(Clone, Copy, Debug)]
enum Bad {
    NoToken,
    Garbage,
    AlgNone,
    WrongKey,
    Expired,
    NotYetValid,
    MissingSub,
    /// A participant on a moderators' route.
    WrongRole,
    /// A moderator of another event on an event's route.
    OtherEvent,
    /// Another user on an interview's route.
    OtherUser,
}

impl Bad {
    const ALL: [Bad; 10] = [
        Bad::NoToken,
        Bad::Garbage,
        Bad::AlgNone,
        Bad::WrongKey,
        Bad::Expired,
        Bad::NotYetValid,
        Bad::MissingSub,
        Bad::WrongRole,
        Bad::OtherEvent,
        Bad::OtherUser,
    ];

    /// The token, or `None` to send none; `None` overall when the case
    /// does not apply to routes of `access`.
    fn token(self, access: Access) -> Option<Option<String>> {
        let now = eventuall::store::now_millis() / 1000;
        let claims = |extra: Value| {
            let mut claims = json!({"sub": "alice", "exp": now + 3600, "role": "moderator"});
            claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            claims
        };
        let signed = |claims: Value, secret: &str| {
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
        };
        Some(match self {
            Bad::NoToken => None,
            Bad::Garbage => Some("not-a-jwt".to_owned()),
            Bad::AlgNone => {
                use base64::Engine;
                let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
                Some(format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(claims(json!({})))))
            }
            Bad::WrongKey => Some(signed(claims(json!({})), "not-the-secret")),
            Bad::Expired => Some(signed(claims(json!({"exp": now - 3600})), SECRET)),
            Bad::NotYetValid => Some(signed(claims(json!({"nbf": now + 3600})), SECRET)),
            Bad::MissingSub => {
                let mut c = claims(json!({}));
                c.as_object_mut().unwrap().remove("sub");
                Some(signed(c, SECRET))
            }
            Bad::WrongRole => match access {
                Access::EventModerator | Access::Moderator | Access::Administrator => {
                    Some(token("alice", Role::Participant, Some(&[EVENT])))
                }
                _ => return None,
            },
            Bad::OtherEvent => match access {
                Access::EventReader | Access::EventModerator | Access::Administrator => {
                    Some(token("alice", Role::Moderator, Some(&["elsewhere"])))
                }
                _ => return None,
            },
            Bad::OtherUser => match access {
                Access::InterviewOwner => Some(token("mallory", Role::Participant, None)),
                _ => return None,
            },
        })
    }

    fn expected(self) -> (u16, &'static str) {
        match self {
            Bad::WrongRole | Bad::OtherEvent | Bad::OtherUser => (403, "forbidden"),
            _ => (401, "unauthorized"),
        }
    }
}

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    access: Access,
}

fn route(method: Method, path: impl Into<String>, body: Option<Value>, access: Access) -> Route {
    Route { method, path: path.into(), body, access }
}

fn http_routes(interview: &str) -> Vec<Route> {
    use Access::*;
    let user = json!({"userId": "bob"});
    vec![
        route(Method::GET, "/auth/token", None, AnyUser),
        route(Method::POST, "/auth/token", None, AnyUser),
        route(Method::GET, format!("/event/{EVENT}/snapshot"), None, EventReader),
        route(Method::POST, format!("/event/{EVENT}/stage/enter"), Some(user.clone()), EventModerator),
        route(Method::POST, format!("/event/{EVENT}/stage/exit"), Some(user.clone()), EventModerator),
        route(Method::GET, format!("/event/{EVENT}/queue"), None, EventReader),
        route(Method::POST, format!("/event/{EVENT}/queue/add"), Some(user.clone()), EventModerator),
        route(
            Method::POST,
            format!("/event/{EVENT}/queue/move"),
            Some(json!({"userId": "bob", "list": "pending", "index": 0})),
            EventModerator,
        ),
        route(Method::POST, format!("/event/{EVENT}/queue/promote"), Some(user.clone()), EventModerator),
        route(Method::POST, format!("/event/{EVENT}/queue/remove"), Some(user), EventModerator),
        route(Method::POST, format!("/cloudcaster/{EVENT}/start"), Some(json!({})), EventModerator),
        route(Method::POST, format!("/cloudcaster/{EVENT}/stop"), Some(json!({})), EventModerator),
        route(Method::GET, format!("/cloudcaster/{EVENT}/status"), None, EventReader),
        route(Method::GET, format!("/cloudcaster/{EVENT}/clips"), None, EventReader),
        route(Method::GET, "/cloudcaster/dead-letters", None, Moderator),
        route(Method::POST, "/cloudcaster/dead-letters/no-such-command/retry", Some(json!({})), Moderator),
        route(Method::GET, "/admin/projections", None, Administrator),
        route(Method::GET, format!("/admin/streams/room-{EVENT}/history"), None, Administrator),
        route(Method::GET, format!("/admin/streams/room-{EVENT}/state"), None, Administrator),
        route(Method::GET, format!("/analytics/events/{EVENT}"), None, EventReader),
        route(Method::GET, "/analytics/ai", None, AnyUser),
        route(Method::GET, "/api/interviews", None, AnyUser),
        route(Method::POST, "/api/interviews", Some(json!({"title": "Matrix"})), AnyUser),
        route(Method::GET, format!("/api/interviews/{interview}"), None, InterviewOwner),
        route(Method::PATCH, format!("/api/interviews/{interview}"), Some(json!({"title": "Renamed"})), InterviewOwner),
        route(Method::DELETE, format!("/api/interviews/{interview}"), None, InterviewOwner),
    ]
}

fn sockets(interview: &str) -> Vec<(String, Access)> {
    vec![
        (format!("/parties/event/{EVENT}"), Access::EventReader),
        (format!("/parties/queue/{EVENT}"), Access::EventReader),
        (format!("/parties/interview/{interview}"), Access::InterviewOwner),
        ("/parties/user-interviews/alice".to_owned(), Access::InterviewOwner),
    ]
}

/// A token that passes every check of `access` (alice owns the interview).
fn good(access: Access) -> String {
    match access {
        Access::AnyUser | Access::InterviewOwner => token("alice", Role::Participant, None),
        Access::EventReader => token("alice", Role::Participant, Some(&[EVENT])),
        Access::EventModerator | Access::Moderator => token("alice", Role::Moderator, Some(&[EVENT])),
        Access::Administrator => token("alice", Role::Moderator, None),
    }
}

async fn call(app: &TestApp, route: &Route, token: Option<&str>) -> reqwest::Response {
    let mut request = app.http.request(route.method.clone(), app.url(&route.path));
    if let Some(body) = &route.body {
        request = request.json(body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request sent")
}

/// The status an upgrade request gets (101 when the socket opens).
async fn upgrade_status(app: &TestApp, path: &str, token: Option<&str>) -> u16 {
    let url = match token {
        Some(token) => app.ws_url(&format!("{path}?token={token}&_pk=matrix")),
        None => app.ws_url(&format!("{path}?_pk=matrix")),
    };
    match tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((_socket, response))) => response.status().as_u16(),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => response.status().as_u16(),
        Ok(Err(other)) => panic!("{path}: {other}"),
        Err(_) => panic!("{path}: no answer to the upgrade in 5 s"),
    }
}

#[tokio::test]
async fn every_route_and_socket_refuses_every_bad_credential() {
    let app = spawn_app().await;
    let created = app.post_json("/api/interviews", Some(&good(Access::AnyUser)), &json!({"title": "Owned"})).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let interview = created["interview"]["id"].as_str().expect("interview id").to_owned();

    let mut cases = 0;
    for route in http_routes(&interview) {
        for bad in Bad::ALL {
            let Some(token) = bad.token(route.access) else { continue };
            let response = call(&app, &route, token.as_deref()).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let (want_status, want_code) = bad.expected();
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (want_status, Some(want_code)),
                "{} {} with {bad:?}: {body}",
                route.method,
                route.path
            );
            cases += 1;
        }
    }
    for (path, access) in sockets(&interview) {
        for bad in Bad::ALL {
            let Some(token) = bad.token(access) else { continue };
            let status = upgrade_status(&app, &path, token.as_deref()).await;
            assert_eq!(status, bad.expected().0, "socket {path} with {bad:?}");
            cases += 1;
        }
    }
    assert!(cases > 200, "{cases} cases");

    // The same routes and sockets let a good token through auth (the
    // DELETE last: it removes the interview the others use).
    for route in http_routes(&interview) {
        let status = call(&app, &route, Some(&good(route.access))).await.status().as_u16();
        let not_found_is_right = route.path.ends_with("/no-such-command/retry");
        assert!(
            ![401, 403, 405].contains(&status) && (status != 404 || not_found_is_right),
            "{} {} with a good token: {status}",
            route.method,
            route.path
        );
    }
    for (path, access) in sockets("no-longer-matters") {
        if access == Access::InterviewOwner && path.contains("/interview/") {
            continue; // deleted above; its socket was proven open below
        }
        assert_eq!(upgrade_status(&app, &path, Some(&good(access))).await, 101, "socket {path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_interview_socket_opens_for_its_owner() {
    let app = spawn_app().await;
    let alice = good(Access::InterviewOwner);
    let created: Value =
        app.post_json("/api/interviews", Some(&alice), &json!({"title": "Mine"})).await.json().await.unwrap();
    let id = created["interview"]["id"].as_str().unwrap();
    assert_eq!(upgrade_status(&app, &format!("/parties/interview/{id}"), Some(&alice)).await, 101);
    app.stop().await;
}
