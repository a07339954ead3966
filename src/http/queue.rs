//! The collaborative queue: the y-websocket endpoint and the webapp's HTTP
//! commands.
//!
//! `GET /parties/queue/{eventId}` speaks the y-websocket protocol (one
//! message per binary frame), so `new WebsocketProvider("ws://HOST/parties/queue",
//! eventId, doc, {params: {token}})` works unmodified. Moderators write;
//! participants read and their writes are dropped. HTTP commands are applied
//! as Yjs transactions on the server's document, so sockets see them live.

use std::collections::HashMap;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use eventuall_domain::EventId;
use eventuall_domain::queue::{Actor, QueueCommand, QueueError, QueueList, Role};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::extract::{ApiJson, EventModerator, EventReader, body_user_id};
use super::openapi as oa;
use super::party::admit;
use super::ws::{self, FrameLimits, Frames, SocketKind};
use super::{ApiError, ApiResult, AppState};
use crate::actor::ActorHandle;
use crate::auth::Caller;
use crate::outlet::Outlet;
use crate::queues::{QueueFailure, QueueMsg};
use crate::rooms::actor::new_connection_id;

/// Largest binary (Yjs) frame accepted; a whole queue of thousands of
/// entries is far smaller.
const MAX_BINARY_FRAME: usize = 4 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/parties/queue/{event_id}", get(queue_socket))
        .route("/event/{event_id}/queue", get(view))
        .route("/event/{event_id}/queue/add", post(add))
        .route("/event/{event_id}/queue/move", post(move_entry))
        .route("/event/{event_id}/queue/promote", post(promote))
        .route("/event/{event_id}/queue/remove", post(remove))
}

fn role_of(caller: &Caller) -> Role {
    if caller.is_moderator() { Role::Moderator } else { Role::Participant }
}

fn queue_error(failure: QueueFailure) -> ApiError {
    match failure {
        QueueFailure::Refused(QueueError::UnknownParticipant(user)) => {
            ApiError::NotFound(format!("{user} is not in the queue"))
        }
        QueueFailure::Refused(QueueError::Forbidden(_)) => ApiError::Forbidden("moderators only".into()),
        QueueFailure::Refused(other) => ApiError::InvalidRequest(other.to_string()),
        QueueFailure::Unavailable => ApiError::Unavailable("the queue is unavailable".into()),
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The queue (any valid token for the event).
#[utoipa::path(get, path = "/event/{event_id}/queue", tag = "queue", params(oa::EventPath), security(("bearer" = [])),
    responses((status = 200, body = oa::QueueView), oa::E400, oa::E401, oa::E403, oa::E503))]
async fn view(State(app): State<AppState>, EventReader { event_id, .. }: EventReader) -> ApiResult<Response> {
    Ok(json_response(app.queues.view(event_id.as_str()).await.map_err(queue_error)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = QueueAddRequest)]
pub(crate) struct AddRequest {
    /// 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) user_id: String,
    /// Display name; the user id when absent.
    pub(crate) name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = QueueMoveRequest)]
pub(crate) struct MoveRequest {
    /// 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) user_id: String,
    #[schema(value_type = oa::QueueList)]
    pub(crate) list: QueueList,
    /// Position in `list` (clamped to its length).
    pub(crate) index: usize,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = QueueUserRequest)]
pub(crate) struct UserRequest {
    /// 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) user_id: String,
}

/// Checks the body's `userId`; answers the moderator as the queue's actor.
fn moderate(caller: &Caller, user_id: &str) -> ApiResult<Actor> {
    body_user_id(user_id)?;
    Ok(Actor::moderator(caller.user_id()))
}

async fn run(app: &AppState, event_id: &EventId, command: QueueCommand) -> ApiResult<Response> {
    Ok(json_response(app.queues.command(event_id.as_str(), command).await.map_err(queue_error)?))
}

/// Adds a user to `pending` (moderators); answers the queue.
#[utoipa::path(post, path = "/event/{event_id}/queue/add", tag = "queue", params(oa::EventPath), security(("bearer" = [])),
    request_body = AddRequest,
    responses((status = 200, body = oa::QueueView), oa::E400, oa::E401, oa::E403, oa::E413, oa::E503))]
async fn add(
    State(app): State<AppState>,
    EventModerator { caller, event_id }: EventModerator,
    ApiJson(body): ApiJson<AddRequest>,
) -> ApiResult<Response> {
    let actor = moderate(&caller, &body.user_id)?;
    let name = body.name.unwrap_or_else(|| body.user_id.clone());
    run(&app, &event_id, QueueCommand::Add { user_id: body.user_id, name, actor, at: app.clock.now_millis() }).await
}

/// Moves a user to `list` at `index` (moderators); answers the queue.
#[utoipa::path(post, path = "/event/{event_id}/queue/move", tag = "queue", params(oa::EventPath), security(("bearer" = [])),
    request_body = MoveRequest,
    responses((status = 200, body = oa::QueueView), oa::E400, oa::E401, oa::E403, oa::E404, oa::E413, oa::E503))]
async fn move_entry(
    State(app): State<AppState>,
    EventModerator { caller, event_id }: EventModerator,
    ApiJson(body): ApiJson<MoveRequest>,
) -> ApiResult<Response> {
    let actor = moderate(&caller, &body.user_id)?;
    let at = app.clock.now_millis();
    run(&app, &event_id, QueueCommand::Move { user_id: body.user_id, list: body.list, index: body.index, actor, at })
        .await
}

/// Moves a user from `pending` to `live` (moderators); answers the queue.
#[utoipa::path(post, path = "/event/{event_id}/queue/promote", tag = "queue", params(oa::EventPath), security(("bearer" = [])),
    request_body = UserRequest,
    responses((status = 200, body = oa::QueueView), oa::E400, oa::E401, oa::E403, oa::E404, oa::E413, oa::E503))]
async fn promote(
    State(app): State<AppState>,
    EventModerator { caller, event_id }: EventModerator,
    ApiJson(body): ApiJson<UserRequest>,
) -> ApiResult<Response> {
    let actor = moderate(&caller, &body.user_id)?;
    run(&app, &event_id, QueueCommand::Promote { user_id: body.user_id, actor, at: app.clock.now_millis() }).await
}

/// Removes a user from the queue (moderators); answers the queue.
#[utoipa::path(post, path = "/event/{event_id}/queue/remove", tag = "queue", params(oa::EventPath), security(("bearer" = [])),
    request_body = UserRequest,
    responses((status = 200, body = oa::QueueView), oa::E400, oa::E401, oa::E403, oa::E404, oa::E413, oa::E503))]
async fn remove(
    State(app): State<AppState>,
    EventModerator { caller, event_id }: EventModerator,
    ApiJson(body): ApiJson<UserRequest>,
) -> ApiResult<Response> {
    let actor = moderate(&caller, &body.user_id)?;
    run(&app, &event_id, QueueCommand::Remove { user_id: body.user_id, actor, at: app.clock.now_millis() }).await
}

/// WebSocket speaking the y-websocket protocol (one message per binary frame): a Yjs
/// document with `Y.Array`s `pending` and `live` of `QueueEntry`. Moderators write;
/// participants' writes are dropped. Over the frame budget the socket closes with 1008.
#[utoipa::path(get, path = "/parties/queue/{event_id}", tag = "queue", params(oa::EventPath, oa::SocketQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), oa::E400, oa::E401, oa::E403))]
async fn queue_socket(
    State(app): State<AppState>,
    Path(raw): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match admit(&app, &raw, &params, &headers, upgrade) {
        Ok((event_id, caller, upgrade)) => {
            upgrade.on_upgrade(move |socket| serve_queue_socket(app, event_id, caller, socket))
        }
        Err(refusal) => refusal,
    }
}

async fn serve_queue_socket(app: AppState, event_id: EventId, caller: Caller, socket: WebSocket) {
    let connection_id = new_connection_id();
    let queue = event_id.as_str().to_owned();
    let (outbound, frames) = Outlet::with_capacity(crate::queues::actor::CONNECTION_FRAMES);
    let (reply, joined) = oneshot::channel();
    let actor = Actor { user_id: caller.user_id().to_owned(), role: role_of(&caller) };
    app.queues
        .send(
            &queue,
            QueueMsg::Connect { connection_id: connection_id.clone(), actor, outbound: outbound.clone(), reply },
        )
        .await;
    if joined.await.is_err() {
        return;
    }
    let limits = FrameLimits::binary_protocol(
        SocketKind::Queue,
        app.limits.max_frame_bytes,
        MAX_BINARY_FRAME,
        app.limits.frame_rate,
    )
    .writes_within(app.limits.write_timeout);
    let mut handler = QueueFrames { queue: app.queues.handle(&queue), connection_id };
    ws::serve(socket, outbound, frames, limits, &mut handler).await;
}

/// What a queue socket's frames mean: y-sync messages for the queue actor.
struct QueueFrames {
    queue: ActorHandle<QueueMsg>,
    connection_id: String,
}

impl Frames for QueueFrames {
    /// y-partyserver's `__YPS:` custom messages and other text: no handler
    /// is registered for them; ignored like unknown types.
    async fn text(&mut self, _: Utf8Bytes, _: &Outlet) {}

    async fn binary(&mut self, frame: Bytes, _: &Outlet) {
        let msg = QueueMsg::Frame { connection_id: self.connection_id.clone(), frame };
        self.queue.send(msg).await;
    }

    async fn closed(&mut self, _: bool) {
        let connection_id = std::mem::take(&mut self.connection_id);
        self.queue.send(QueueMsg::Disconnect { connection_id }).await;
    }
}
