//! Shared fixtures: simulators on port 0 with millisecond timings, the real
//! clients pointed at them, and a polling helper.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::time::Duration;

use eventuall_media::livekit::{Egress, EgressConfig};
use eventuall_media::mux::{MuxClient, MuxConfig, RetryPolicy};
use eventuall_media::sim::{SimConfig, Simulators};

pub async fn sims() -> Simulators {
    sims_with(SimConfig::fast()).await
}

pub async fn sims_with(config: SimConfig) -> Simulators {
    Simulators::spawn(config).await.expect("simulators bind on 127.0.0.1:0")
}

pub fn mux_config(sims: &Simulators) -> MuxConfig {
    let cfg = &SimConfig::fast().mux;
    MuxConfig {
        base_url: sims.mux_url.clone(),
        token_id: cfg.token_id.clone(),
        token_secret: cfg.token_secret.clone(),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(2),
        },
    }
}

pub fn mux(sims: &Simulators) -> MuxClient {
    MuxClient::new(mux_config(sims)).expect("mux client builds")
}

pub fn egress_config(sims: &Simulators) -> EgressConfig {
    let cfg = &SimConfig::fast().livekit;
    EgressConfig {
        url: sims.livekit_url.clone(),
        api_key: cfg.api_key.clone(),
        api_secret: cfg.api_secret.clone(),
        request_timeout: Duration::from_secs(5),
    }
}

pub fn egress(sims: &Simulators) -> Egress {
    Egress::new(&egress_config(sims))
}

/// Polls `probe` every 10 ms until it returns `Some`, failing after 5 s.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn mux_ingest_url(stream_key: &str) -> String {
    format!("rtmps://global-live.mux.com:443/app/{stream_key}")
}
