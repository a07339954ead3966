//! Serving any client on any node: a request for a scope another node owns
//! is forwarded there, a socket is tunnelled there frame by frame (ADR
//! 0020). The owner runs the same handlers it runs for its own clients, so
//! the protocols (partysocket presence, y-websocket sync and awareness,
//! interview recovery) are written once and a client cannot tell which
//! node it reached.
//!
//! A forwarded request carries [`FORWARDED_BY`]; the node it reaches serves
//! it itself even if the lease moved meanwhile (no forwarding loops): its
//! actor gate then refuses to start an actor it does not own, and the
//! client retries. An owner that does not answer is presumed dead: the
//! request gets `503 unavailable` and the lease expires within its time.

use axum::body::Body;
use axum::extract::ws::{CloseFrame as AxumClose, Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use super::{Cluster, Owner, Scope};
use crate::http::{ApiError, AppState};

/// Set on a request one node forwards to another: the node that names.
pub const FORWARDED_BY: &str = "x-eventuall-forwarded-by";

/// Headers a forwarded request keeps (the rest are the hop's own).
const KEPT_REQUEST_HEADERS: [&str; 5] =
    ["authorization", "content-type", "sec-websocket-protocol", "origin", "user-agent"];

/// The scope a request's path addresses, if any. The interview routes name
/// an interview, not its user, so they are scoped by the token's subject:
/// the contract lets only an interview's owner reach it.
pub fn scope_of(app: &AppState, request: &Request) -> Option<Scope> {
    let segments: Vec<&str> = request.uri().path().trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["parties", "event" | "queue", id] | ["event", id, ..] => Some(Scope::Event((*id).to_owned())),
        ["parties", "user-interviews", user] => Some(Scope::User((*user).to_owned())),
        ["parties", "interview", _] => token_subject(app, request, true).map(Scope::User),
        ["api", "interviews", ..] => token_subject(app, request, false).map(Scope::User),
        _ => None,
    }
    .filter(|scope| !matches!(scope, Scope::Event(id) | Scope::User(id) if id.is_empty()))
}

/// The subject of the request's valid token (`?token=` on a socket, the
/// bearer header otherwise); None lets the local handler answer 401.
fn token_subject(app: &AppState, request: &Request, socket: bool) -> Option<String> {
    let caller = if socket {
        let query = request.uri().query().unwrap_or("");
        let token = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token")?.1.into_owned();
        app.auth.verify(&token).ok()?
    } else {
        let header = request.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        app.auth.verify_bearer(header).ok()?
    };
    Some(caller.user_id().to_owned())
}

/// The routing layer: serves here what this node owns (or what no scope
/// names), forwards the rest to its owner.
pub async fn forward_to_owner(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = app.cluster.clone() else { return next.run(request).await };
    if request.headers().contains_key(FORWARDED_BY) {
        return next.run(request).await;
    }
    let Some(scope) = scope_of(&app, &request) else { return next.run(request).await };
    match cluster.owner(&scope).await {
        Ok(Owner::Here) => next.run(request).await,
        Ok(Owner::There { node, url }) => {
            metrics::counter!(crate::metrics::CLUSTER_FORWARDED).increment(1);
            let is_socket = request
                .headers()
                .get(axum::http::header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            let result = if is_socket {
                tunnel(&cluster, &url, request).await
            } else {
                proxy(&cluster, &app, &url, request).await
            };
            result.unwrap_or_else(|error| {
                tracing::debug!(owner = %node, %error, "forwarding failed");
                cluster.owner_unreachable(&scope, &node);
                ApiError::Unavailable(format!("the node serving this {} is not answering; retry", scope_kind(&scope)))
                    .into_response()
            })
        }
        Err(error) => ApiError::Unavailable(error.to_string()).into_response(),
    }
}

fn scope_kind(scope: &Scope) -> &'static str {
    match scope {
        Scope::Event(_) => "event",
        Scope::User(_) => "user",
    }
}

fn forwarded_headers(cluster: &Cluster, from: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in KEPT_REQUEST_HEADERS {
        if let Some(value) = from.get(name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    if let Ok(node) = HeaderValue::from_str(cluster.node_id()) {
        headers.insert(HeaderName::from_static(FORWARDED_BY), node);
    }
    headers
}

fn path_and_query(request: &Request) -> String {
    request.uri().path_and_query().map_or_else(|| request.uri().path().to_owned(), |pq| pq.as_str().to_owned())
}

/// Forwards an HTTP request and relays the owner's answer as it is.
async fn proxy(cluster: &Cluster, app: &AppState, owner_url: &str, request: Request) -> anyhow::Result<Response> {
    let url = format!("{}{}", owner_url.trim_end_matches('/'), path_and_query(&request));
    let headers = forwarded_headers(cluster, request.headers());
    let method = request.method().clone();
    let body = match axum::body::to_bytes(request.into_body(), app.limits.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => return Ok(ApiError::PayloadTooLarge.into_response()),
    };
    let answer = cluster.http().request(method, url).headers(headers).body(body).send().await?;
    let mut response = Response::builder().status(answer.status());
    for name in ["content-type", "retry-after", "location"] {
        if let Some(value) = answer.headers().get(name) {
            response = response.header(name, value.clone());
        }
    }
    let bytes = answer.bytes().await?;
    Ok(response.body(Body::from(bytes))?)
}

/// Tunnels a WebSocket to the owner: connects there first (so a refused
/// token is refused with the owner's answer, and a dead owner with 503),
/// then upgrades the client and relays frames both ways until either side
/// closes. Pings stay on their hop: each side answers its own.
async fn tunnel(cluster: &Cluster, owner_url: &str, request: Request) -> anyhow::Result<Response> {
    let ws_url = format!("{}{}", owner_url.trim_end_matches('/').replacen("http", "ws", 1), path_and_query(&request));
    let mut upstream_request = ws_url.as_str().into_client_request()?;
    upstream_request.headers_mut().extend(forwarded_headers(cluster, request.headers()));
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let (upstream, answer) = match tokio_tungstenite::connect_async(upstream_request).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(refusal)) => {
            // The owner refused the upgrade (a bad token, a bad id): the
            // client gets exactly that answer.
            let (head, body) = refusal.into_parts();
            let mut response = Response::builder().status(StatusCode::from_u16(head.status.as_u16())?);
            if let Some(value) = head.headers.get("content-type") {
                response = response.header("content-type", value.as_bytes());
            }
            return Ok(response.body(Body::from(body.unwrap_or_default()))?);
        }
        Err(error) => return Err(error.into()),
    };
    let upgrade = match answer.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()) {
        Some(protocol) => upgrade.protocols([protocol.to_owned()]),
        None => upgrade,
    };
    Ok(upgrade.on_upgrade(move |client| relay(client, upstream)))
}

type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn relay(client: WebSocket, upstream: Upstream) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    let inbound = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let Some(message) = to_upstream(message) else { continue };
            let closing = matches!(message, tungstenite::Message::Close(_));
            if upstream_tx.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = upstream_tx.close().await;
    };
    let outbound = async {
        while let Some(Ok(message)) = upstream_rx.next().await {
            let Some(message) = to_client(message) else { continue };
            let closing = matches!(message, AxumMessage::Close(_));
            if client_tx.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = client_tx.close().await;
    };
    // Either side ending ends the tunnel: a client gone closes the owner's
    // socket (its presence ends there), an owner gone (killed) closes the
    // client's, which reconnects and reaches the new owner.
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

fn to_upstream(message: AxumMessage) -> Option<tungstenite::Message> {
    Some(match message {
        AxumMessage::Text(text) => tungstenite::Message::Text(text.as_str().into()),
        AxumMessage::Binary(bytes) => tungstenite::Message::Binary(bytes),
        AxumMessage::Close(frame) => tungstenite::Message::Close(
            frame.map(|f| tungstenite::protocol::CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() }),
        ),
        AxumMessage::Ping(_) | AxumMessage::Pong(_) => return None,
    })
}

fn to_client(message: tungstenite::Message) -> Option<AxumMessage> {
    Some(match message {
        tungstenite::Message::Text(text) => AxumMessage::Text(text.as_str().into()),
        tungstenite::Message::Binary(bytes) => AxumMessage::Binary(bytes),
        tungstenite::Message::Close(frame) => {
            AxumMessage::Close(frame.map(|f| AxumClose { code: f.code.into(), reason: f.reason.as_str().into() }))
        }
        tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_) => return None,
    })
}

/// The routes nodes call on each other (today: a room command from a node
/// that does not own the room). Only tokens minted by a node (subject
/// `node:…`, signed with the shared secret) are accepted.
pub fn internal_router() -> axum::Router<AppState> {
    axum::Router::new().route("/internal/rooms/{event_id}/command", axum::routing::post(room_command))
}

/// The body of `/internal/rooms/{event_id}/command` (read before the caller
/// is known to be a node, so it is outside input: `crate::fuzzing`).
#[derive(serde::Deserialize)]
pub(crate) struct RoomCommandBody {
    pub(crate) command: eventuall_domain::room::RoomCommand,
    pub(crate) metadata: crate::store::Metadata,
}

async fn room_command(
    State(app): State<AppState>,
    crate::http::extract::EventModerator { caller, event_id }: crate::http::extract::EventModerator,
    crate::http::extract::ApiJson(body): crate::http::extract::ApiJson<RoomCommandBody>,
) -> crate::http::ApiResult<Response> {
    if !caller.user_id().starts_with(super::hosts::NODE_SUBJECT_PREFIX) {
        return Err(ApiError::Forbidden("only nodes of this service call internal routes".into()));
    }
    let snapshot = app
        .rooms
        .command(event_id.as_str(), body.command, body.metadata)
        .await
        .map_err(crate::http::rooms::room_error)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], snapshot.to_string()).into_response())
}
