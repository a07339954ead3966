//! `GET /console`: the ops console, one self-contained page served by the
//! binary (no build step, no separate server, nothing fetched from
//! elsewhere). The page itself is public; every figure it shows comes from
//! routes that need a moderator token not scoped to events, which the
//! operator pastes in (kept in the tab's session storage): service tiles
//! with sparklines from `/metrics`, projection lag, an event's presence and
//! stage (live, over the room's own WebSocket), its queue, recording and
//! clips, dead letters with a retry button, and a stream's timeline with
//! time travel (`/admin/streams/{id}/history` and `/state?at=`). What is
//! live and what is polled, screenshots and the browser tests:
//! `docs/CONSOLE.md`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

const PAGE: &str = include_str!("console.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/console", get(console))
}

/// The ops console page (HTML; every figure on it needs an unscoped moderator token).
#[utoipa::path(get, path = "/console", tag = "admin",
    responses((status = 200, description = "the console page", content_type = "text/html", body = String)))]
pub(super) async fn console() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The page talks to this origin only.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        PAGE,
    )
}
