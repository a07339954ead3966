//! The HTTP and WebSocket API (axum).
//!
//! Routes are grouped by resource, one module each; [`router`] merges them
//! and adds the cross-cutting layers: CORS for the webapp origins, a body
//! size limit, request tracing, and JSON 404s for unknown paths.

pub mod admin;
pub mod error;
pub mod extract;
pub mod interviews;
pub mod party;
pub mod queue;
pub mod recording;
pub mod rooms;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::clock::SharedClock;
use crate::interviews::Interviews;
use crate::queues::Queues;
use crate::recording::Recording;
use crate::rooms::Rooms;
use crate::store::EventStore;
pub use error::{ApiError, ApiResult};

/// Everything a handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    pub rooms: Rooms,
    pub queues: Queues,
    pub interviews: Interviews,
    /// Verifies LiveKit webhooks (keys chosen by `iss`).
    pub livekit_webhooks: Arc<eventuall_media::livekit::WebhookVerifier>,
    pub recording: Recording,
    pub auth: Authenticator,
    pub clock: SharedClock,
    pub limits: Arc<Limits>,
}

/// Input limits (configuration).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_frame_bytes: usize,
    /// Frames one socket may send (`http/ws.rs`).
    pub frame_rate: ws::FrameRate,
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
}

pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.limits.cors_origins);
    let body_limit = DefaultBodyLimit::max(state.limits.max_body_bytes);
    Router::new()
        .route("/healthz", get(healthz))
        .merge(rooms::router())
        .merge(party::router())
        .merge(queue::router())
        .merge(webhooks::router())
        .merge(recording::router())
        .merge(admin::router())
        .merge(interviews::router())
        .fallback(not_found)
        .layer(body_limit)
        .layer(cors)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> ApiResult<&'static str> {
    state.store.head_position().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok("ok")
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE]);
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(Any);
    }
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o.trim()).ok()).collect();
    layer.allow_origin(AllowOrigin::list(allowed))
}
