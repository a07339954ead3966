//! Prometheus metrics: the recorder, the names, and the gauges read when
//! Prometheus scrapes `GET /metrics`.
//!
//! Counters and histograms are recorded where things happen, with the
//! `metrics` macros (no-ops until [`install`] ran): HTTP requests (a layer
//! in `http/mod.rs`), socket connections (`http/ws.rs`), appends, batches,
//! commit and WAL sync latency (`store/`), saga steps (`recording/`), AI
//! calls (`interviews/calls.rs`) and rate-limit refusals. What is cheaper to
//! read than to track (live actors, projection lag, due timers, dead
//! letters) is read from the service at scrape time ([`render`]).
//!
//! Names follow Prometheus conventions: a `eventuall_` prefix, base units
//! (`_seconds`), `_total` for counters. The recorder is global to the
//! process, so it is installed once, however many `Application`s a test
//! process builds.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::http::AppState;

pub const HTTP_REQUESTS: &str = "eventuall_http_requests_total";
pub const HTTP_DURATION: &str = "eventuall_http_request_duration_seconds";
pub const SOCKETS_OPEN: &str = "eventuall_websocket_connections";
pub const SOCKETS_OPENED: &str = "eventuall_websocket_connections_opened_total";
pub const LIVE_ACTORS: &str = "eventuall_live_actors";
pub const BATCHES: &str = "eventuall_eventlog_batches_total";
pub const EVENTS_APPENDED: &str = "eventuall_eventlog_events_appended_total";
pub const BATCH_EVENTS: &str = "eventuall_eventlog_batch_events";
pub const COMMIT_DURATION: &str = "eventuall_eventlog_commit_duration_seconds";
pub const WAL_SYNC_DURATION: &str = "eventuall_eventlog_wal_sync_duration_seconds";
pub const HEAD_POSITION: &str = "eventuall_eventlog_head_position";
pub const PROJECTION_LAG: &str = "eventuall_projection_lag_events";
pub const TIMERS_DUE: &str = "eventuall_timers_due";
pub const SAGA_STEPS: &str = "eventuall_recording_saga_steps_total";
pub const DEAD_LETTERS: &str = "eventuall_recording_dead_letters";
pub const AI_CALLS: &str = "eventuall_ai_calls_total";
pub const AI_DURATION: &str = "eventuall_ai_call_duration_seconds";
pub const RATE_LIMITED: &str = "eventuall_rate_limit_refusals_total";
/// Connections closed at accept because `EVENTUALL_MAX_CONNECTIONS` were open.
pub const CONNECTIONS_REFUSED: &str = "eventuall_connections_refused_total";
/// WebSockets dropped because their peer stopped reading (`http/party.rs`).
pub const SOCKETS_STALLED: &str = "eventuall_websocket_write_stalls_total";
/// Several nodes (`src/cluster`): leases taken and lost, requests and
/// sockets forwarded to another node, forwards whose owner did not answer.
pub const CLUSTER_LEASES_TAKEN: &str = "eventuall_cluster_leases_taken_total";
pub const CLUSTER_LEASES_LOST: &str = "eventuall_cluster_leases_lost_total";
pub const CLUSTER_FORWARDED: &str = "eventuall_cluster_forwarded_total";
pub const CLUSTER_FORWARD_FAILURES: &str = "eventuall_cluster_forward_failures_total";

/// Latency buckets, in seconds: sub-millisecond commits to minute-long AI
/// replies.
const SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const EVENTS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0];

/// Installs the process-wide recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_EVENTS.into()), EVENTS))
                .expect("bucket lists are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be set (a test harness, an
            // embedding program): then metrics go there, and `/metrics`
            // shows what this handle saw, which is nothing.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}

/// The Prometheus text exposition, after reading the scrape-time gauges.
pub async fn render(app: &AppState, handle: &PrometheusHandle) -> String {
    metrics::gauge!(LIVE_ACTORS, "kind" => "room").set(app.rooms.live_rooms() as f64);
    metrics::gauge!(LIVE_ACTORS, "kind" => "queue").set(app.queues.live_queues() as f64);
    metrics::gauge!(LIVE_ACTORS, "kind" => "interview").set(app.interviews.live_interviews() as f64);
    if let Ok(statuses) = crate::projections::status(&app.store).await {
        // Every status carries the same head, read once by `status`.
        if let Some(first) = statuses.first() {
            metrics::gauge!(HEAD_POSITION).set(first.head as f64);
        }
        for status in statuses {
            metrics::gauge!(PROJECTION_LAG, "projection" => status.name).set(status.lag as f64);
        }
    }
    if let Ok(due) = app.timers_due().await {
        metrics::gauge!(TIMERS_DUE).set(due as f64);
    }
    if let Ok(dead) = app.recording.dead_letters().await {
        metrics::gauge!(DEAD_LETTERS).set(dead.len() as f64);
    }
    handle.render()
}
