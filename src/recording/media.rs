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

/// Refuses a configuration whose egress would record a page that does not
/// exist: with a real LiveKit (`EVENTUALL_LIVEKIT_URL`) the composite page
/// must be named, because the default (`DEFAULT_COMPOSITE_URL`) is no route
/// of this service and the egress would record its 404. The simulated
/// egress records nothing, so the default is fine there.
pub fn check(config: &MediaConfig) -> anyhow::Result<()> {
    let composite_set = config.composite_url.as_deref().is_some_and(|url| !url.trim().is_empty());
    if config.livekit_url.is_some() && !composite_set {
        anyhow::bail!(
            "EVENTUALL_LIVEKIT_URL is set but EVENTUALL_COMPOSITE_URL is not: the LiveKit egress needs the URL \
             of the page to record (the webapp's composite view; `?saga={{sessionId}}` is appended). Set \
             EVENTUALL_COMPOSITE_URL (or --composite-url), or unset EVENTUALL_LIVEKIT_URL to use the simulator."
        );
    }
    Ok(())
}

pub async fn connect(config: &MediaConfig) -> anyhow::Result<MediaClients> {
    check(config)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_real_livekit_without_a_composite_url_is_refused_at_start() {
        let config = MediaConfig { livekit_url: Some("https://livekit.example.com".into()), ..MediaConfig::default() };
        let error = connect(&config).await.err().expect("refused").to_string();
        assert!(error.contains("EVENTUALL_COMPOSITE_URL"), "{error}");
        let blank = MediaConfig { composite_url: Some(" ".into()), ..config.clone() };
        assert!(check(&blank).is_err());
        let named = MediaConfig { composite_url: Some("https://app.example.com/composite".into()), ..config };
        assert!(check(&named).is_ok());
        // The simulated egress records nothing: the default is fine.
        assert!(check(&MediaConfig::default()).is_ok());
    }
}
