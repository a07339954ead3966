//! The HTTP and WebSocket API (axum).
//!
//! Routes are grouped by resource, one module each; [`router`] merges them
//! and adds the cross-cutting layers: CORS for the webapp origins, a body
//! size limit, request tracing and metrics, JSON 404s for unknown paths,
//! and `GET /metrics` (Prometheus).

pub mod admin;
pub mod console;
pub mod error;
pub mod extract;
pub mod interviews;
pub mod openapi;
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
use axum::response::IntoResponse;
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
    /// Durable timers (read by `/metrics`: how many are due).
    pub timers: Arc<crate::timers::Timers>,
    /// The Prometheus recorder's handle (`GET /metrics`).
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Several nodes (`EVENTUALL_NODE_ID`): leases and forwarding.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl AppState {
    /// Timers due now and not yet fired (a backlog means the timer loop
    /// is behind).
    pub async fn timers_due(&self) -> Result<i64, crate::store::StoreError> {
        self.timers.due_count(self.clock.now_millis()).await
    }
}

/// Input limits (configuration).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_frame_bytes: usize,
    /// Frames one socket may send (`http/ws.rs`).
    pub frame_rate: ws::FrameRate,
    pub max_body_bytes: usize,
    /// How long a socket's peer may leave a frame untaken (`http/party.rs`).
    pub write_timeout: std::time::Duration,
    pub cors_origins: Vec<String>,
}

pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.limits.cors_origins);
    let body_limit = DefaultBodyLimit::max(state.limits.max_body_bytes);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .merge(rooms::router())
        .merge(party::router())
        .merge(queue::router())
        .merge(webhooks::router())
        .merge(recording::router())
        .merge(admin::router())
        .merge(console::router())
        .merge(interviews::router())
        .merge(openapi::router())
        .merge(crate::cluster::route::internal_router())
        .fallback(not_found)
        // Innermost: a request another node owns is forwarded before any
        // handler runs (a no-op on a single node).
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::cluster::route::forward_to_owner))
        .layer(body_limit)
        .layer(cors)
        .layer(axum::middleware::from_fn(track_request))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
/// `GET /metrics`: the Prometheus text format. Unauthenticated, as
/// scrapers expect: it holds counts and latencies, no ids or payloads.
async fn metrics_text(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let body = crate::metrics::render(&state, &state.metrics).await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Counts every request by route template (never the raw path: ids would
/// make one series per room), method and status, and times it.
async fn track_request(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(crate::metrics::HTTP_DURATION, "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// `ok` when the database answers.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "ok", body = String, content_type = "text/plain"), openapi::E503))]
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
