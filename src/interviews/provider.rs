//! The AI client from configuration, or the built-in simulator when no
//! provider URL is given (served on its own loopback port, like the Mux and
//! LiveKit simulators, so the fake API is never on the public port).

use anyhow::Context;
use eventuall_media::ai::{AiClient, AiConfig};
use eventuall_media::sim::{AiSimConfig, AiSimulator};

use crate::config::AiArgs;

/// The client, and the simulator if it answers in place of a provider
/// (dropping it stops the simulator).
pub struct AiProvider {
    pub client: AiClient,
    pub simulator: Option<AiSimulator>,
}

pub async fn connect(args: &AiArgs) -> anyhow::Result<AiProvider> {
    let simulator = match &args.ai_url {
        Some(_) => None,
        None => {
            let mut sim = AiSimConfig { api_key: args.ai_api_key.clone(), ..AiSimConfig::default() };
            if let Some(delay) = args.ai_sim_chunk_delay {
                sim.chunk_delay = delay.into();
                sim.first_token_delay = delay.into();
            }
            let simulator = AiSimulator::spawn(sim).await.context("starting the built-in AI simulator")?;
            tracing::warn!(url = %simulator.url, "EVENTUALL_AI_URL is not set: interviews talk to a SIMULATED AI. Its questions are canned.");
            Some(simulator)
        }
    };
    let base_url = args.ai_url.clone().or_else(|| simulator.as_ref().map(|s| s.url.clone())).unwrap_or_default();
    let client = AiClient::new(AiConfig {
        base_url,
        api_key: args.ai_api_key.clone(),
        chat_model: args.ai_chat_model.clone(),
        transcribe_model: args.ai_transcribe_model.clone(),
        first_chunk_timeout: args.ai_first_chunk_timeout.into(),
        chunk_timeout: args.ai_chunk_timeout.into(),
        ..AiConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("configuring the AI client: {e}"))?;
    Ok(AiProvider { client, simulator })
}
