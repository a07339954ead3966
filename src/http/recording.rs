//! Recording routes (`/cloudcaster/…`): start and stop are queued as durable
//! commands (202 with the command id); status and clips are read from the
//! recording aggregates; dead letters of the command queue can be listed and
//! retried by moderators.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::{Authenticated, EventModerator, EventReader};
use super::openapi as oa;
use super::{ApiError, ApiResult, AppState};
use crate::auth::Caller;
use crate::recording::{CommandKind, EnqueueError, StatusView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cloudcaster/dead-letters", get(dead_letters))
        .route("/cloudcaster/dead-letters/{command_id}/retry", post(retry_dead_letter))
        .route("/cloudcaster/{event_id}/start", post(start))
        .route("/cloudcaster/{event_id}/stop", post(stop))
        .route("/cloudcaster/{event_id}/status", get(status))
        .route("/cloudcaster/{event_id}/clips", get(clips))
}

fn internal(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Internal(e.into())
}

/// Queues a durable start (moderators): 409 while recording or queued.
#[utoipa::path(post, path = "/cloudcaster/{event_id}/start", tag = "recording", params(oa::EventPath), security(("bearer" = [])),
    responses((status = 202, body = oa::CommandQueued), oa::E400, oa::E401, oa::E403, oa::E409, oa::E500))]
async fn start(app: State<AppState>, moderator: EventModerator) -> ApiResult<(StatusCode, Json<Value>)> {
    enqueue(app, moderator, CommandKind::Start).await
}

/// Queues a durable stop of the current session (moderators): 409 with nothing to stop.
#[utoipa::path(post, path = "/cloudcaster/{event_id}/stop", tag = "recording", params(oa::EventPath), security(("bearer" = [])),
    responses((status = 202, body = oa::CommandQueued), oa::E400, oa::E401, oa::E403, oa::E409, oa::E500))]
async fn stop(app: State<AppState>, moderator: EventModerator) -> ApiResult<(StatusCode, Json<Value>)> {
    enqueue(app, moderator, CommandKind::Stop).await
}

async fn enqueue(
    State(app): State<AppState>,
    EventModerator { caller, event_id }: EventModerator,
    kind: CommandKind,
) -> ApiResult<(StatusCode, Json<Value>)> {
    match app.recording.enqueue(event_id.as_str(), kind, caller.user_id()).await {
        Ok(command_id) => {
            let mut body = json!({"commandId": command_id, "status": "queued"});
            if kind == CommandKind::Start {
                body["sessionId"] = json!(command_id);
            }
            Ok((StatusCode::ACCEPTED, Json(body)))
        }
        Err(error @ (EnqueueError::AlreadyRecording | EnqueueError::NothingToStop)) => {
            Err(ApiError::Conflict(error.to_string()))
        }
        Err(EnqueueError::Store(e)) => Err(internal(e)),
    }
}

/// The latest recording session (any valid token for the event).
#[utoipa::path(get, path = "/cloudcaster/{event_id}/status", tag = "recording", params(oa::EventPath), security(("bearer" = [])),
    responses((status = 200, body = StatusView), oa::E400, oa::E401, oa::E403, oa::E500))]
async fn status(State(app): State<AppState>, EventReader { event_id, .. }: EventReader) -> ApiResult<Json<Value>> {
    let view = app.recording.status(event_id.as_str()).await.map_err(internal)?;
    Ok(Json(serde_json::to_value(view).map_err(internal)?))
}

/// The event's clips (any valid token for the event).
#[utoipa::path(get, path = "/cloudcaster/{event_id}/clips", tag = "recording", params(oa::EventPath), security(("bearer" = [])),
    responses((status = 200, body = oa::ClipList), oa::E400, oa::E401, oa::E403, oa::E500))]
async fn clips(State(app): State<AppState>, EventReader { event_id, .. }: EventReader) -> ApiResult<Json<Value>> {
    let clips = app.recording.clips(event_id.as_str()).await.map_err(internal)?;
    Ok(Json(json!({"eventId": event_id.as_str(), "clips": clips})))
}

fn moderator(caller: &Caller) -> ApiResult<()> {
    if caller.is_moderator() { Ok(()) } else { Err(ApiError::Forbidden("moderators only".into())) }
}

/// The `events` claim applies here too: a token scoped to events sees and
/// retries only those events' dead letters; an unscoped moderator token
/// sees them all.
#[utoipa::path(get, path = "/cloudcaster/dead-letters", tag = "recording", security(("bearer" = [])),
    responses((status = 200, body = oa::DeadLetterList), oa::E401, oa::E403, oa::E500))]
async fn dead_letters(State(app): State<AppState>, Authenticated(caller): Authenticated) -> ApiResult<Json<Value>> {
    moderator(&caller)?;
    let mut rows = app.recording.dead_letters().await.map_err(internal)?;
    rows.retain(|row| caller.covers(&row.event_id));
    Ok(Json(json!({"deadLetters": rows})))
}

/// Makes a dead letter pending again (moderators).
#[utoipa::path(post, path = "/cloudcaster/dead-letters/{command_id}/retry", tag = "recording", params(oa::CommandPath), security(("bearer" = [])),
    responses((status = 200, body = oa::RetryAccepted), oa::E401, oa::E403, oa::E404, oa::E409, oa::E500))]
async fn retry_dead_letter(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(command_id): Path<String>,
) -> ApiResult<Json<Value>> {
    moderator(&caller)?;
    // A dead letter of an event outside the token's scope: 403, as on
    // every route of that event.
    if let Some(letter) = app.recording.dead_letter(&command_id).await.map_err(internal)? {
        caller.may_moderate(&letter.event_id)?;
    }
    match app.recording.retry_dead_letter(&command_id).await {
        Ok(true) => Ok(Json(json!({"commandId": command_id, "status": "pending"}))),
        Ok(false) => Err(ApiError::NotFound("no such dead letter".into())),
        Err(EnqueueError::AlreadyRecording) => {
            Err(ApiError::Conflict("another start of this event is queued; retry the dead letter after it".into()))
        }
        Err(EnqueueError::NothingToStop) => Err(ApiError::Conflict(EnqueueError::NothingToStop.to_string())),
        Err(EnqueueError::Store(e)) => Err(internal(e)),
    }
}
