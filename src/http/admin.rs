//! Operator routes: `GET /admin/projections` (moderators with a token not
//! scoped to events: the view spans every event) and
//! `GET /analytics/events/{eventId}` (any token scoped to the event).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{Authenticated, event_id};
use super::{ApiError, ApiResult, AppState};
use crate::analytics::{EventAnalytics, event_analytics};
use crate::projections::{ProjectionStatus, status};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/projections", get(projections)).route("/analytics/events/{event_id}", get(analytics))
}

/// Every projection's checkpoint, the log head and the lag.
async fn projections(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Vec<ProjectionStatus>>> {
    caller.may_administer()?;
    Ok(Json(status(&app.store).await?))
}

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
