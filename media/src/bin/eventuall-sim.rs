//! `eventuall-sim`: runs the Mux and LiveKit simulators (and with `--ai` the
//! OpenAI-compatible AI simulator) standalone on 127.0.0.1 and prints one
//! JSON line `{"mux_url":…,"livekit_url":…}` (plus `"ai_url":"http://…/v1"`
//! with `--ai`) on stdout once all listen, then serves until killed. Used by
//! the Node fidelity tests and for local development without credentials.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use eventuall_media::sim::{AiSimConfig, AiSimulator, LiveKitSimConfig, MuxSimConfig, SimAddrs, SimConfig, Simulators};

#[derive(Debug, Parser)]
#[command(name = "eventuall-sim", about = "Local Mux, LiveKit Egress and AI (OpenAI-compatible) simulators")]
struct Args {
    /// Port for the Mux simulator (0: any free port).
    #[arg(long, env = "EVENTUALL_SIM_MUX_PORT", default_value_t = 0)]
    mux_port: u16,
    /// Port for the LiveKit simulator (0: any free port).
    #[arg(long, env = "EVENTUALL_SIM_LIVEKIT_PORT", default_value_t = 0)]
    livekit_port: u16,
    #[arg(long, env = "EVENTUALL_LIVEKIT_API_KEY", default_value = "devkey")]
    livekit_api_key: String,
    #[arg(long, env = "EVENTUALL_LIVEKIT_API_SECRET", default_value = "secret")]
    livekit_api_secret: String,
    #[arg(long, env = "EVENTUALL_MUX_TOKEN_ID", default_value = "dev-mux-token-id")]
    mux_token_id: String,
    #[arg(long, env = "EVENTUALL_MUX_TOKEN_SECRET", default_value = "dev-mux-token-secret")]
    mux_token_secret: String,
    /// Where the LiveKit simulator POSTs its webhooks.
    #[arg(long, env = "EVENTUALL_SIM_LIVEKIT_WEBHOOK_URL")]
    livekit_webhook_url: Option<String>,
    /// Where the Mux simulator POSTs its webhooks.
    #[arg(long, env = "EVENTUALL_SIM_MUX_WEBHOOK_URL")]
    mux_webhook_url: Option<String>,
    /// Secret for Mux webhook signatures.
    #[arg(long, env = "EVENTUALL_SIM_MUX_WEBHOOK_SECRET", default_value = "whsec_sim")]
    mux_webhook_secret: String,
    /// Also serve the AI simulator (its base URL is `ai_url` in the JSON line).
    #[arg(long, env = "EVENTUALL_SIM_AI")]
    ai: bool,
    /// Port for the AI simulator (0: any free port).
    #[arg(long, env = "EVENTUALL_SIM_AI_PORT", default_value_t = 0)]
    ai_port: u16,
    /// API key the AI simulator requires (none: any request is served).
    #[arg(long, env = "EVENTUALL_SIM_AI_API_KEY")]
    ai_api_key: Option<String>,
    /// Delay between the AI simulator's streamed chunks (after `--fast`).
    #[arg(long, env = "EVENTUALL_SIM_AI_CHUNK_DELAY")]
    ai_chunk_delay: Option<humantime::Duration>,
    /// Millisecond state transitions, no Mux rate limit, no AI delays (for
    /// tests).
    #[arg(long, env = "EVENTUALL_SIM_FAST")]
    fast: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_init();
    let args = Args::parse();
    let base = if args.fast { SimConfig::fast() } else { SimConfig::default() };
    let config = SimConfig {
        mux: MuxSimConfig {
            token_id: args.mux_token_id,
            token_secret: args.mux_token_secret,
            webhook_url: args.mux_webhook_url,
            webhook_secret: args.mux_webhook_secret,
            ..base.mux
        },
        livekit: LiveKitSimConfig {
            api_key: args.livekit_api_key,
            api_secret: args.livekit_api_secret,
            webhook_url: args.livekit_webhook_url,
            ..base.livekit
        },
    };
    let addrs = SimAddrs {
        mux: SocketAddr::from(([127, 0, 0, 1], args.mux_port)),
        livekit: SocketAddr::from(([127, 0, 0, 1], args.livekit_port)),
    };
    let sims = Simulators::spawn_on(config, addrs).await.context("binding the simulators")?;
    let ai = match args.ai {
        false => None,
        true => {
            let mut config = if args.fast { AiSimConfig::fast() } else { AiSimConfig::default() };
            config.api_key = args.ai_api_key;
            if let Some(delay) = args.ai_chunk_delay {
                config.chunk_delay = delay.into();
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], args.ai_port));
            Some(AiSimulator::spawn_on(config, addr).await.context("binding the AI simulator")?)
        }
    };
    let mut line = serde_json::json!({"mux_url": sims.mux_url, "livekit_url": sims.livekit_url});
    if let Some(ai) = &ai {
        line["ai_url"] = ai.url.clone().into();
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").context("writing the address line")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);
    loop {
        // Runs until killed; the servers live on spawned tasks.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Logs go to stderr: stdout carries exactly one JSON line. `RUST_LOG`
/// filters (default `warn`).
fn tracing_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
