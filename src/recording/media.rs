//! The Mux and LiveKit clients from `MediaConfig`, and the built-in
//! simulators that stand in when no URL is configured.
//!
//! The simulators are served on their own loopback listeners
//! (`127.0.0.1:0`) rather than mounted into the public router: the fake
//! Twirp and Mux endpoints must never be reachable on the service's public
//! port, the LiveKit crate needs a server root URL (it replaces the path
//! with `/twirp/…`), and the URLs are known before the service binds.

use anyhow::Context;
use eventuall_media::livekit::{DEFAULT_REQUEST_TIMEOUT, Egress, EgressConfig};
use eventuall_media::mux::{MuxClient, MuxConfig};
use eventuall_media::sim::{LiveKitSimConfig, MuxSimConfig, SimConfig, Simulators};

use crate::config::MediaConfig;

/// The two clients, and the simulators if they serve in place of the real
/// services (dropping them stops the simulators).
pub struct MediaClients {
    pub mux: MuxClient,
    pub egress: Egress,
    pub simulators: Option<Simulators>,
}

pub async fn connect(config: &MediaConfig) -> anyhow::Result<MediaClients> {
    let need_sims = config.mux_url.is_none() || config.livekit_url.is_none();
    let simulators = if need_sims {
        let mut sim = SimConfig::default();
        if let (Some(id), Some(secret)) = (&config.mux_token_id, &config.mux_token_secret) {
            sim.mux = MuxSimConfig { token_id: id.clone(), token_secret: secret.clone(), ..sim.mux };
        }
        if let (Some(key), Some(secret)) = (&config.livekit_api_key, &config.livekit_api_secret) {
            sim.livekit = LiveKitSimConfig { api_key: key.clone(), api_secret: secret.clone(), ..sim.livekit };
        }
        let sims = Simulators::spawn(sim).await.context("starting the built-in Mux/LiveKit simulators")?;
        if config.mux_url.is_none() {
            tracing::warn!(url = %sims.mux_url, "EVENTUALL_MUX_URL is not set: recordings use a SIMULATED Mux. Nothing is really recorded.");
        }
        if config.livekit_url.is_none() {
            tracing::warn!(url = %sims.livekit_url, "EVENTUALL_LIVEKIT_URL is not set: recordings use a SIMULATED LiveKit egress. Nothing is really recorded.");
        }
        Some(sims)
    } else {
        None
    };
    let sim_mux = MuxSimConfig::default();
    let sim_livekit = LiveKitSimConfig::default();
    let mux = MuxClient::new(MuxConfig {
        base_url: config.mux_url.clone().or_else(|| simulators.as_ref().map(|s| s.mux_url.clone())).unwrap_or_default(),
        token_id: config.mux_token_id.clone().unwrap_or(sim_mux.token_id),
        token_secret: config.mux_token_secret.clone().unwrap_or(sim_mux.token_secret),
        ..MuxConfig::default()
    })
    .context("building the Mux client")?;
    let egress = Egress::new(&EgressConfig {
        url: config
            .livekit_url
            .clone()
            .or_else(|| simulators.as_ref().map(|s| s.livekit_url.clone()))
            .unwrap_or_default(),
        api_key: config.livekit_api_key.clone().unwrap_or(sim_livekit.api_key),
        api_secret: config.livekit_api_secret.clone().unwrap_or(sim_livekit.api_secret),
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
    });
    Ok(MediaClients { mux, egress, simulators })
}
