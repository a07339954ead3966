//! The simulators mounted inside another axum app, as the service does when
//! no credentials are configured: LiveKit merged at the root next to the
//! app's own routes and fallback, Mux nested under a path prefix.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::eventually;
use eventuall_media::livekit::{self as lk, Egress, EgressConfig, StartSignal};
use eventuall_media::mux::{CreateLiveStream, LiveStreamStatus, MuxClient, MuxConfig};
use eventuall_media::sim::{SimConfig, SimHandle};

#[derive(Clone)]
struct AppState;

#[tokio::test]
async fn both_simulators_work_mounted_in_a_host_app() {
    let config = SimConfig::fast();
    let sims = SimHandle::new(config.clone());
    let app: Router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .nest("/sim/mux", sims.mux_router::<AppState>())
        .merge(sims.livekit_router::<AppState>())
        .fallback(|| async { "host fallback" })
        .with_state(AppState);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mux = MuxClient::new(MuxConfig {
        base_url: format!("{base}/sim/mux"),
        token_id: config.mux.token_id.clone(),
        token_secret: config.mux.token_secret.clone(),
        request_timeout: Duration::from_secs(5),
        ..MuxConfig::default()
    })
    .unwrap();
    let egress = Egress::new(&EgressConfig {
        url: base.clone(),
        api_key: config.livekit.api_key.clone(),
        api_secret: config.livekit.api_secret.clone(),
        ..EgressConfig::default()
    });

    let stream = mux.create_live_stream(&CreateLiveStream::default()).await.unwrap();
    let url = format!("mux://{}", stream.stream_key);
    let info = egress.start_web_egress("https://x/?saga=mounted", &[url], StartSignal::Immediate).await.unwrap();
    eventually("stream active", || async {
        (mux.get_live_stream(&stream.id).await.unwrap().status == LiveStreamStatus::Active).then_some(())
    })
    .await;
    assert_eq!(
        lk::status(&egress.get_egress(&info.egress_id).await.unwrap().unwrap()),
        lk::proto::EgressStatus::EgressActive
    );
    let health = reqwest::get(format!("{base}/health")).await.unwrap().text().await.unwrap();
    assert_eq!(health, "ok");
    let other = reqwest::get(format!("{base}/elsewhere")).await.unwrap().text().await.unwrap();
    assert_eq!(other, "host fallback", "the simulators add no fallback of their own");
}
