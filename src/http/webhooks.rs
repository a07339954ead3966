//! `POST /webhooks/livekit`: LiveKit's participant webhooks feed presence.
//!
//! The raw body and the raw `Authorization` value go to the multi-key
//! verifier (key chosen by the JWT's `iss`, body checked against its
//! `sha256` claim, 60 s leeway); anything that does not verify is a 401 and
//! records nothing. `participant_joined` opens a LiveKit connection of that
//! user in the room named like the event, `participant_left` (and
//! `participant_connection_aborted`) closes that connection only. Other event
//! types are accepted and ignored: the recording saga polls LiveKit, which is
//! the source of truth. Deliveries are deduplicated by webhook `id` in the
//! room itself (`RoomCommand::LiveKitDelivery`: the check, the effect and
//! the record are one append). `webhook_deliveries` only lets a redelivery
//! be answered `duplicate` without waking the room.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use eventuall_domain::EventId;
use eventuall_domain::room::{CloseReason, ConnectionKind, RoomCommand};
use eventuall_media::livekit::WebhookVerifyError;
use serde_json::{Value, json};

use super::openapi as oa;
use super::{ApiError, ApiResult, AppState};
use crate::store::subscription::SqlValue;
use crate::store::{DbTx, Metadata};

/// Deliveries older than this are forgotten (the contract asks for ≥ 24 h).
const KEEP_DELIVERIES_MS: i64 = 48 * 3600 * 1000;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/livekit", post(livekit))
}

/// LiveKit webhooks: `participant_joined` / `participant_left` are LiveKit connections of
/// the user in the room named like the event; other events are accepted and ignored.
#[utoipa::path(post, path = "/webhooks/livekit", tag = "webhooks", security(("livekit" = [])),
    request_body(content = Object, content_type = "application/webhook+json", description = "LiveKit's WebhookEvent JSON"),
    responses((status = 200, body = oa::WebhookOutcome), oa::E400, oa::E401, oa::E409, oa::E413, oa::E500, oa::E503))]
async fn livekit(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    // Over the body limit: the API's JSON 413, not axum's text.
    let body = body.map_err(|rejection| match rejection.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::InvalidRequest(rejection.body_text()),
    })?;
    let authorization =
        headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(ApiError::Unauthorized)?;
    let event = app.livekit_webhooks.verify(&body, authorization).map_err(|error| {
        match &error {
            WebhookVerifyError::Malformed(_) => tracing::info!(%error, "malformed LiveKit webhook refused"),
            _ => tracing::warn!(%error, "LiveKit webhook refused"),
        }
        ApiError::Unauthorized
    })?;
    if !event.id.is_empty() && already_applied(&app, &event.id).await? {
        return Ok(Json(json!({"status": "duplicate"})));
    }
    let applied = apply(&app, &event).await?;
    if !event.id.is_empty() {
        record_delivery(&app, &event.id).await?;
    }
    Ok(Json(json!({"status": if applied { "applied" } else { "ignored" }})))
}

/// Applies a verified event; false when it has nothing to do with presence.
async fn apply(app: &AppState, event: &eventuall_media::livekit::proto::WebhookEvent) -> ApiResult<bool> {
    let (Some(room), Some(participant)) = (&event.room, &event.participant) else { return Ok(false) };
    let Ok(event_id) = EventId::parse(&room.name) else {
        tracing::info!(room = %room.name, "LiveKit room is not an event id; webhook ignored");
        return Ok(false);
    };
    if participant.identity.is_empty() {
        return Ok(false);
    }
    let at = app.clock.now_millis();
    let connection_id =
        format!("livekit:{}", if participant.sid.is_empty() { &participant.identity } else { &participant.sid });
    let command = match event.event.as_str() {
        "participant_joined" => RoomCommand::Connect {
            connection_id,
            client_id: None,
            user_id: participant.identity.clone(),
            name: if participant.name.is_empty() { participant.identity.clone() } else { participant.name.clone() },
            kind: ConnectionKind::LiveKit,
            at,
        },
        "participant_left" | "participant_connection_aborted" => {
            RoomCommand::Disconnect { connection_id, reason: CloseReason::LeftLiveKit, at }
        }
        _ => return Ok(false),
    };
    // The room applies a delivery id at most once, in the same append as
    // its effect: a redelivery racing this one, or arriving after a crash
    // before `record_delivery`, changes nothing.
    let command = if event.id.is_empty() {
        command
    } else {
        RoomCommand::LiveKitDelivery { delivery_id: event.id.clone(), command: Box::new(command), at }
    };
    let metadata = Metadata::by("system:livekit");
    app.rooms.command(event_id.as_str(), command, metadata).await.map_err(super::rooms::room_error)?;
    Ok(true)
}

async fn already_applied(app: &AppState, delivery_id: &str) -> ApiResult<bool> {
    let mut tx = DbTx::begin(&app.store).await?;
    let seen = tx
        .query_i64(
            "select count(*) from webhook_deliveries where source = 'livekit' and delivery_id = $1",
            &[delivery_id.into()],
        )
        .await?;
    tx.commit().await?;
    Ok(seen.unwrap_or(0) > 0)
}

async fn record_delivery(app: &AppState, delivery_id: &str) -> ApiResult<()> {
    let now = app.clock.now_millis();
    let mut tx = DbTx::begin(&app.store).await?;
    tx.execute(
        "insert into webhook_deliveries (source, delivery_id, received_at) values ('livekit', $1, $2) \
         on conflict do nothing",
        &[delivery_id.into(), SqlValue::Int(now)],
    )
    .await?;
    tx.execute("delete from webhook_deliveries where received_at < $1", &[SqlValue::Int(now - KEEP_DELIVERIES_MS)])
        .await?;
    tx.commit().await?;
    Ok(())
}
