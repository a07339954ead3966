//! Operator routes: `GET /admin/projections`, `GET /admin/streams/{streamId}/history`
//! and `/state?at=` (the `replay history` and `replay state --at` views, for
//! the ops console; moderators with a token not scoped to events: they span
//! every event), and `GET /analytics/events/{eventId}` (any token scoped to
//! the event).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{Authenticated, EventReader};
use super::openapi as oa;
use super::{ApiError, ApiResult, AppState};
use crate::analytics::{EventAnalytics, event_analytics};
use crate::projections::{ProjectionStatus, status};
use crate::replay::history::{HistoryEntry, for_each_history};
use crate::replay::state::{At, StateAt, state_at};
use crate::store::StreamId;
use crate::store::registry::Registry;

/// Most history entries one request returns (the newest are kept).
const HISTORY_LIMIT: usize = 2_000;

/// The 400 of a `?at=` that does not parse. `At`'s own error names the
/// CLI's `--at` flag; an HTTP caller never typed that.
const AT_FORMS: &str = "`at` must be a global position (`1234`), a time in milliseconds (`1764000000000ms`) \
    or an RFC 3339 time (`2026-11-23T18:30:00Z`)";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/projections", get(projections))
        .route("/admin/streams/{stream_id}/history", get(history))
        .route("/admin/streams/{stream_id}/state", get(state))
        .route("/analytics/events/{event_id}", get(analytics))
}

/// Every projection's checkpoint, the log head and the lag (moderators, token not scoped to events).
#[utoipa::path(get, path = "/admin/projections", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProjectionStatus>), oa::E401, oa::E403, oa::E500, oa::E503))]
async fn projections(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Vec<ProjectionStatus>>> {
    caller.may_administer()?;
    Ok(Json(status(&app.store).await?))
}

/// Attendance, stage time, queue waits, recordings and clips of an event (`docs/ANALYTICS.md`).
#[utoipa::path(get, path = "/analytics/events/{event_id}", tag = "admin", params(oa::EventPath), security(("bearer" = [])),
    responses((status = 200, body = EventAnalytics), oa::E400, oa::E401, oa::E403, oa::E404, oa::E500, oa::E503))]
async fn analytics(
    State(app): State<AppState>,
    EventReader { event_id, .. }: EventReader,
) -> ApiResult<Json<EventAnalytics>> {
    match event_analytics(&app.store, event_id.as_str()).await? {
        Some(analytics) => Ok(Json(analytics)),
        None => Err(ApiError::NotFound(format!("no analytics for event {}", event_id.as_str()))),
    }
}

fn stream_id(raw: &str) -> ApiResult<StreamId> {
    StreamId::parse(raw).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

/// A stream's timeline, oldest first: the last [`HISTORY_LIMIT`] entries,
/// with `truncated` when there were more (`eventuall replay history`).
#[utoipa::path(get, path = "/admin/streams/{stream_id}/history", tag = "admin", params(oa::StreamPath),
    security(("bearer" = [])),
    responses((status = 200, body = oa::StreamHistory), oa::E400, oa::E401, oa::E403, oa::E404, oa::E500, oa::E503))]
pub(super) async fn history(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(raw): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.may_administer()?;
    let stream = stream_id(&raw)?;
    let mut entries: std::collections::VecDeque<HistoryEntry> = std::collections::VecDeque::new();
    let total = for_each_history(&app.store, &stream, |entry| {
        if entries.len() == HISTORY_LIMIT {
            entries.pop_front();
        }
        entries.push_back(entry);
        Ok(())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    if total == 0 {
        return Err(ApiError::NotFound(format!("stream {stream} has no events")));
    }
    Ok(Json(serde_json::json!({
        "streamId": stream.to_string(),
        "events": total,
        "truncated": total as usize > entries.len(),
        "entries": entries,
    })))
}

/// The aggregate as it was at `?at=` (a global position, `…ms`, or an RFC
/// 3339 time; now when absent): `eventuall replay state --at`.
#[utoipa::path(get, path = "/admin/streams/{stream_id}/state", tag = "admin", params(oa::StatePath, oa::AtQuery),
    security(("bearer" = [])),
    responses((status = 200, body = StateAt), oa::E400, oa::E401, oa::E403, oa::E404, oa::E500, oa::E503))]
pub(super) async fn state(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<StateAt>> {
    caller.may_administer()?;
    let stream = stream_id(&raw)?;
    let at = match query.get("at") {
        Some(raw) => raw.parse::<At>().map_err(|_| ApiError::InvalidRequest(AT_FORMS.into()))?,
        None => At::Position(i64::MAX),
    };
    match state_at(&app.store, Registry::standard(), &stream, at).await {
        Ok(state) => Ok(Json(state)),
        Err(crate::replay::ReplayError::EmptyStream(_)) => {
            Err(ApiError::NotFound(format!("stream {stream} has no events")))
        }
        Err(crate::replay::ReplayError::UnknownCategory(category)) => {
            Err(ApiError::InvalidRequest(format!("no aggregate state is known for category {category:?}")))
        }
        Err(other) => Err(ApiError::Internal(other.into())),
    }
}
