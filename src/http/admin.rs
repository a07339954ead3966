//! Operator routes: `GET /admin/projections` (moderators with a token not
//! scoped to events: the view spans every event) and
//! `GET /analytics/events/{eventId}` (any token scoped to the event).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{Authenticated, event_id};
use super::openapi as oa;
use super::{ApiError, ApiResult, AppState};
use crate::analytics::{EventAnalytics, event_analytics};
use crate::projections::{ProjectionStatus, status};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/projections", get(projections)).route("/analytics/events/{event_id}", get(analytics))
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
    Authenticated(caller): Authenticated,
    Path(raw): Path<String>,
) -> ApiResult<Json<EventAnalytics>> {
    let event_id = event_id(&raw)?;
    caller.may_access(event_id.as_str())?;
    match event_analytics(&app.store, event_id.as_str()).await? {
        Some(analytics) => Ok(Json(analytics)),
        None => Err(ApiError::NotFound(format!("no analytics for event {}", event_id.as_str()))),
    }
}
