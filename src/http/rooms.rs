//! Event room HTTP routes: snapshot reads, stage entry and exit, and short
//! WebSocket tokens.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventuall_domain::room::RoomCommand;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::extract::{ApiJson, Authenticated, EventModerator, EventReader, body_user_id};
use super::openapi as oa;
use super::{ApiError, ApiResult, AppState};
use crate::auth::SHORT_TOKEN_SECS;
use crate::host::Failure;
use crate::rooms::RoomFailure;
use crate::store::Metadata;

pub fn router() -> Router<AppState> {
    Router::new()
        // The second seed's client fetches it with GET.
        .route("/auth/token", get(short_token).post(short_token))
        .route("/event/{event_id}/snapshot", get(snapshot))
        .route("/event/{event_id}/stage/enter", post(enter_stage))
        .route("/event/{event_id}/stage/exit", post(exit_stage))
}

enum StageMove {
    Enter,
    Exit,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StageRequest {
    /// 1 to 256 characters; need not be connected.
    #[schema(min_length = 1, max_length = 256)]
    pub(crate) user_id: String,
}

fn snapshot_response(json: std::sync::Arc<str>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
}

/// The room snapshot (any valid token for the event).
#[utoipa::path(get, path = "/event/{event_id}/snapshot", tag = "rooms", params(oa::EventPath), security(("bearer" = [])),
    responses((status = 200, body = oa::RoomSnapshot), oa::E400, oa::E401, oa::E403, oa::E503))]
async fn snapshot(State(app): State<AppState>, EventReader { event_id, .. }: EventReader) -> ApiResult<Response> {
    let json = app.rooms.snapshot(event_id.as_str()).await.map_err(room_error)?;
    Ok(snapshot_response(json))
}

/// Puts a user on stage (moderators; idempotent); answers the new snapshot.
#[utoipa::path(post, path = "/event/{event_id}/stage/enter", tag = "rooms", params(oa::EventPath), security(("bearer" = [])),
    request_body = StageRequest,
    responses((status = 200, body = oa::RoomSnapshot), oa::E400, oa::E401, oa::E403, oa::E413, oa::E503))]
async fn enter_stage(
    app: State<AppState>,
    moderator: EventModerator,
    ApiJson(body): ApiJson<StageRequest>,
) -> ApiResult<Response> {
    stage(app, moderator, body, StageMove::Enter).await
}

/// Takes a user off stage (moderators; idempotent); answers the new snapshot.
#[utoipa::path(post, path = "/event/{event_id}/stage/exit", tag = "rooms", params(oa::EventPath), security(("bearer" = [])),
    request_body = StageRequest,
    responses((status = 200, body = oa::RoomSnapshot), oa::E400, oa::E401, oa::E403, oa::E413, oa::E503))]
async fn exit_stage(
    app: State<AppState>,
    moderator: EventModerator,
    ApiJson(body): ApiJson<StageRequest>,
) -> ApiResult<Response> {
    stage(app, moderator, body, StageMove::Exit).await
}

async fn stage(
    State(app): State<AppState>,
    EventModerator { caller, event_id }: EventModerator,
    body: StageRequest,
    movement: StageMove,
) -> ApiResult<Response> {
    body_user_id(&body.user_id)?;
    let at = app.clock.now_millis();
    let command = match movement {
        StageMove::Enter => RoomCommand::EnterStage { user_id: body.user_id, at },
        StageMove::Exit => RoomCommand::ExitStage { user_id: body.user_id, at },
    };
    let metadata = Metadata::by(caller.user_id()).correlated(Uuid::now_v7());
    let json = app.rooms.command(event_id.as_str(), command, metadata).await.map_err(room_error)?;
    Ok(snapshot_response(json))
}

/// A 5-minute token with the caller's `sub`, `name`, `role` and `events`,
/// for a caller presenting a valid longer-lived token; a short token gets
/// 403 (it would otherwise renew itself forever; see `crate::auth`). Times
/// are the system clock's, as the validation's are.
#[utoipa::path(method(get, post), path = "/auth/token", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, body = oa::ShortToken), oa::E401, oa::E403))]
async fn short_token(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<serde_json::Value>> {
    caller.may_renew()?;
    let now = crate::store::now_millis() / 1000;
    let (token, expires_at) = app.auth.issue_short(&caller.claims, now);
    debug_assert_eq!(expires_at, now + SHORT_TOKEN_SECS);
    Ok(Json(json!({"token": token, "expiresAt": expires_at * 1000})))
}

/// A room request that failed. The room answers a command it refuses with
/// its snapshot (every command of the routes is idempotent), so in practice
/// this is the room out of reach.
pub(crate) fn room_error(failure: RoomFailure) -> ApiError {
    match failure {
        Failure::Refused(error) => ApiError::InvalidRequest(error.to_string()),
        Failure::Unavailable => ApiError::Unavailable("the room is unavailable".into()),
    }
}
