//! `MuxClient` against the Mux simulator: REST round trips, error mapping,
//! the retry policy (idempotent calls retried, POSTs never), and the
//! "committed but response lost" reconciliation by `passthrough`.

mod common;

use std::time::{Duration, Instant};

use common::{mux, mux_config, sims, sims_with};
use eventuall_media::mux::{
    CreateLiveStream, LatencyMode, LiveStreamStatus, MuxClient, MuxConfig, MuxError, NewAssetSettings, PlaybackPolicy,
    RetryPolicy,
};
use eventuall_media::sim::{MuxOp, MuxRequestFault, MuxSimConfig, RateLimit, ResponseLoss, SimConfig, Times};

fn saga_stream(passthrough: &str) -> CreateLiveStream {
    CreateLiveStream {
        passthrough: Some(passthrough.into()),
        playback_policies: vec![PlaybackPolicy::Public],
        new_asset_settings: Some(NewAssetSettings {
            playback_policies: vec![PlaybackPolicy::Public],
            passthrough: None,
        }),
        reconnect_window: Some(60.0),
        latency_mode: Some(LatencyMode::Standard),
        test: Some(false),
    }
}

#[tokio::test]
async fn a_live_stream_round_trips_through_create_get_complete_disable_and_delete() {
    let sims = sims().await;
    let client = mux(&sims);

    let created = client.create_live_stream(&saga_stream("saga-1")).await.unwrap();
    assert_eq!(created.status, LiveStreamStatus::Idle);
    assert_eq!(created.passthrough.as_deref(), Some("saga-1"));
    assert_eq!(created.reconnect_window, Some(60.0));
    assert_eq!(created.latency_mode, Some(LatencyMode::Standard));
    assert_eq!(created.max_continuous_duration, Some(43_200));
    assert!(!created.stream_key.is_empty());
    assert_eq!(created.playback_ids.len(), 1);
    assert_eq!(created.playback_ids[0].policy, PlaybackPolicy::Public);
    assert!(created.created_at.unwrap() > 1_700_000_000);
    assert!(created.active_asset_id.is_none());

    let fetched = client.get_live_stream(&created.id).await.unwrap();
    assert_eq!(fetched, created);

    client.complete_live_stream(&created.id).await.unwrap();
    client.disable_live_stream(&created.id).await.unwrap();
    assert_eq!(client.get_live_stream(&created.id).await.unwrap().status, LiveStreamStatus::Disabled);
    client.enable_live_stream(&created.id).await.unwrap();
    assert_eq!(client.get_live_stream(&created.id).await.unwrap().status, LiveStreamStatus::Idle);

    client.delete_live_stream(&created.id).await.unwrap();
    assert_eq!(client.get_live_stream(&created.id).await, Err(MuxError::NotFound));
    assert_eq!(client.delete_live_stream(&created.id).await, Err(MuxError::NotFound));
    assert!(sims.handle.mux.live_streams().is_empty());
}

#[tokio::test]
async fn the_rest_body_has_mux_shapes() {
    let sims = sims().await;
    let client = mux(&sims);
    let created = client.create_live_stream(&saga_stream("shape")).await.unwrap();
    let cfg = SimConfig::fast().mux;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/video/v1/live-streams/{}", sims.mux_url, created.id))
        .basic_auth(&cfg.token_id, Some(&cfg.token_secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = &body["data"];
    assert!(data["created_at"].is_string(), "REST created_at is a string: {data}");
    assert_eq!(data["status"], "idle");
    assert_eq!(data["new_asset_settings"]["playback_policies"][0], "public");
    assert_eq!(data["playback_ids"][0]["policy"], "public");
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized() {
    let sims = sims().await;
    let client = MuxClient::new(MuxConfig { token_secret: "nope".into(), ..mux_config(&sims) }).unwrap();
    assert_eq!(client.list_live_streams().await, Err(MuxError::Unauthorized));
}

#[tokio::test]
async fn invalid_parameters_are_reported_with_mux_messages() {
    let sims = sims().await;
    let client = mux(&sims);
    let req = CreateLiveStream { reconnect_window: Some(5000.0), ..saga_stream("bad") };
    match client.create_live_stream(&req).await {
        Err(MuxError::InvalidParameters(msg)) => assert!(msg.contains("reconnect_window"), "{msg}"),
        other => panic!("expected invalid parameters, got {other:?}"),
    }
}

#[tokio::test]
async fn idempotent_calls_are_retried_through_transient_failures() {
    let sims = sims().await;
    let client = mux(&sims);
    let stream = client.create_live_stream(&saga_stream("retry")).await.unwrap();

    sims.faults().mux_request(MuxOp::GetLiveStream, MuxRequestFault::ServerError { status: 503 }, Times::N(2));
    assert_eq!(client.get_live_stream(&stream.id).await.unwrap().id, stream.id);

    let zero = Duration::ZERO;
    sims.faults().mux_request(
        MuxOp::CompleteLiveStream,
        MuxRequestFault::RateLimited { retry_after: zero },
        Times::Once,
    );
    client.complete_live_stream(&stream.id).await.unwrap();

    // Three failures exhaust two retries.
    sims.faults().mux_request(MuxOp::GetLiveStream, MuxRequestFault::ServerError { status: 502 }, Times::N(3));
    assert_eq!(client.get_live_stream(&stream.id).await, Err(MuxError::Server { status: 502 }));

    // Without retries the first failure surfaces.
    let once = MuxClient::new(MuxConfig { retry: RetryPolicy::none(), ..mux_config(&sims) }).unwrap();
    sims.faults().mux_request(MuxOp::GetLiveStream, MuxRequestFault::ServerError { status: 500 }, Times::Once);
    assert_eq!(once.get_live_stream(&stream.id).await, Err(MuxError::Server { status: 500 }));
    assert!(once.get_live_stream(&stream.id).await.is_ok());
}

#[tokio::test]
async fn a_long_retry_after_is_returned_instead_of_waited_out() {
    let sims = sims().await;
    let client = mux(&sims); // max_retry_after: 2 s
    let fault = MuxRequestFault::RateLimited { retry_after: Duration::from_secs(30) };
    sims.faults().mux_request(MuxOp::ListLiveStreams, fault, Times::Always);
    let started = Instant::now();
    assert_eq!(
        client.list_live_streams().await,
        Err(MuxError::RateLimited { retry_after: Some(Duration::from_secs(30)) })
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_failed_create_is_never_replayed() {
    let sims = sims().await;
    let client = mux(&sims);
    sims.faults().mux_request(MuxOp::CreateLiveStream, MuxRequestFault::ServerError { status: 503 }, Times::Once);
    let err = client.create_live_stream(&saga_stream("no-replay")).await.unwrap_err();
    assert_eq!(err, MuxError::Server { status: 503 });
    assert!(err.outcome_unknown());
    assert!(sims.handle.mux.live_streams().is_empty(), "nothing created, nothing retried");
    assert_eq!(client.find_live_stream_by_passthrough("no-replay").await, Ok(None));
}

#[tokio::test]
async fn a_create_whose_response_times_out_is_found_by_passthrough() {
    let sims = sims().await;
    let client =
        MuxClient::new(MuxConfig { request_timeout: Duration::from_millis(300), ..mux_config(&sims) }).unwrap();
    let loss = MuxRequestFault::CommitThenLose(ResponseLoss::Hang(Duration::from_secs(2)));
    sims.faults().mux_request(MuxOp::CreateLiveStream, loss, Times::Once);

    let err = client.create_live_stream(&saga_stream("saga-lost")).await.unwrap_err();
    assert_eq!(err, MuxError::Timeout);
    assert!(err.outcome_unknown());

    let found = client.find_live_stream_by_passthrough("saga-lost").await.unwrap().expect("committed");
    assert_eq!(sims.handle.mux.live_streams().len(), 1, "exactly one stream: the POST was not retried");
    assert_eq!(found.id, sims.handle.mux.live_streams()[0].id);
}

#[tokio::test]
async fn a_create_answered_with_500_or_a_reset_still_committed() {
    let sims = sims().await;
    let client = mux(&sims);
    let faults = sims.faults();
    faults.mux_request(
        MuxOp::CreateLiveStream,
        MuxRequestFault::CommitThenLose(ResponseLoss::InternalError),
        Times::Once,
    );
    assert_eq!(client.create_live_stream(&saga_stream("a")).await, Err(MuxError::Server { status: 500 }));
    faults.mux_request(MuxOp::CreateLiveStream, MuxRequestFault::CommitThenLose(ResponseLoss::Reset), Times::Once);
    let err = client.create_live_stream(&saga_stream("b")).await.unwrap_err();
    assert!(matches!(err, MuxError::Transport(_) | MuxError::Decode(_)), "{err:?}");
    assert!(err.outcome_unknown());
    assert!(client.find_live_stream_by_passthrough("a").await.unwrap().is_some());
    assert!(client.find_live_stream_by_passthrough("b").await.unwrap().is_some());
}

#[tokio::test]
async fn duplicates_from_a_replayed_create_are_all_found_newest_first() {
    let sims = sims().await;
    let client = mux(&sims);
    let first = client.create_live_stream(&saga_stream("dup")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // distinct created_at seconds
    let second = client.create_live_stream(&saga_stream("dup")).await.unwrap();
    client.create_live_stream(&saga_stream("other")).await.unwrap();
    let found = client.find_live_streams_by_passthrough("dup").await.unwrap();
    let ids: Vec<_> = found.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, vec![second.id.as_str(), first.id.as_str()]);
}

#[tokio::test]
async fn posts_beyond_the_rate_limit_get_429_with_retry_after() {
    let config = SimConfig {
        mux: MuxSimConfig {
            post_rate_limit: Some(RateLimit { burst: 1, refill_every: Duration::from_secs(1) }),
            ..MuxSimConfig::fast()
        },
        ..SimConfig::fast()
    };
    let sims = sims_with(config).await;
    let client = mux(&sims);
    client.create_live_stream(&saga_stream("one")).await.unwrap();
    assert_eq!(
        client.create_live_stream(&saga_stream("two")).await,
        Err(MuxError::RateLimited { retry_after: Some(Duration::from_secs(1)) })
    );
    // GETs are not limited.
    assert_eq!(client.list_live_streams().await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    client.create_live_stream(&saga_stream("three")).await.unwrap();
}

#[tokio::test]
async fn unknown_assets_are_not_found() {
    let sims = sims().await;
    assert_eq!(mux(&sims).get_asset("nope").await, Err(MuxError::NotFound));
}

#[tokio::test]
async fn an_html_bad_gateway_is_a_transient_server_error() {
    let sims = sims().await;
    let client = MuxClient::new(MuxConfig { retry: RetryPolicy::none(), ..mux_config(&sims) }).unwrap();
    let stream = client.create_live_stream(&saga_stream("html-502")).await.unwrap();
    sims.faults().mux_request(MuxOp::GetLiveStream, MuxRequestFault::BadGatewayHtml, Times::Once);
    let err = client.get_live_stream(&stream.id).await.unwrap_err();
    assert_eq!(err, MuxError::Server { status: 502 });
    assert!(err.is_transient());
    assert_eq!(client.get_live_stream(&stream.id).await.unwrap().id, stream.id);
}

#[tokio::test]
async fn a_held_create_takes_effect_before_its_response_is_released() {
    use eventuall_media::sim::HoldOn;
    let sims = sims().await;
    let client = mux(&sims);
    let hold = sims.faults().hold(HoldOn::Mux(MuxOp::CreateLiveStream), 1);
    client.create_live_stream(&saga_stream("first")).await.unwrap();
    assert!(!hold.is_reached(), "the first create went through");
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.create_live_stream(&saga_stream("held")).await }
    });
    assert!(hold.reached(Duration::from_secs(5)).await);
    assert_eq!(sims.handle.mux.live_streams_created(), 2, "created while the response is held");
    assert!(!held.is_finished());
    hold.release();
    assert_eq!(held.await.unwrap().unwrap().passthrough.as_deref(), Some("held"));
}
