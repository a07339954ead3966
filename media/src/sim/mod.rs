//! Faithful local simulators of Mux Video and LiveKit Egress, for tests and
//! for running the service without credentials.
//!
//! # Layout
//!
//! - `mux`: [`MuxSim`], the Mux REST API and live-stream state machine.
//! - `livekit`: [`LiveKitSim`], Twirp Egress API, egress state machine and
//!   webhooks.
//! - `bus`: the in-process RTMP link between the two (an egress streaming
//!   to a Mux stream key drives that stream).
//! - `ai`: [`AiSim`], an OpenAI-compatible chat/transcription API with
//!   deterministic answers and its own faults ([`AiFault`]).
//! - `faults`: [`Faults`], failure injection for both.
//! - `twirp`, `hooks`, `outbox`, `common`: Twirp framing, webhook signing,
//!   webhook delivery, shared helpers.
//!
//! # Use
//!
//! In tests, [`Simulators::spawn`] serves both on `127.0.0.1:0`. To mount
//! them inside another axum app, build a [`SimHandle`] and merge
//! [`SimHandle::livekit_router`] at the root (LiveKit SDKs always call
//! `/twirp/…` on the server root) and nest [`SimHandle::mux_router`]
//! anywhere (the Mux client takes a base URL with a path).

mod ai;
mod bus;
mod common;
mod faults;
mod hooks;
mod livekit;
mod mux;
mod outbox;
mod twirp;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use ai::{
    AiFault, AiFaults, AiRequests, AiSim, AiSimConfig, AiSimulator, SKILL_WORDS, reply_text, skills_in, transcript_of,
};
pub use faults::{
    AssetFault, AssetKind, EgressFault, Faults, Hold, HoldOn, IngestFault, MuxOp, MuxRequestFault, ResponseLoss, Times,
    TwirpFault, TwirpMethod, WebhookFault,
};
pub use hooks::{SignedWebhook, sign_webhook as sign_livekit_webhook};
pub use livekit::{EgressSnapshot, LiveKitSim, LiveKitSimConfig};
pub use mux::{AssetSnapshot, IngestPhase, LiveStreamSnapshot, MuxSim, MuxSimConfig, RateLimit};
pub use outbox::{DeliveryOutcome, DeliveryPolicy, SentWebhook};

/// Configuration of both simulators.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    pub mux: MuxSimConfig,
    pub livekit: LiveKitSimConfig,
}

impl SimConfig {
    /// Millisecond timings and no rate limit: for tests.
    pub fn fast() -> Self {
        Self { mux: MuxSimConfig::fast(), livekit: LiveKitSimConfig::fast() }
    }
}

/// Both simulators, linked by the RTMP bus, sharing one [`Faults`].
/// Cloning shares state.
#[derive(Clone)]
pub struct SimHandle {
    pub mux: MuxSim,
    pub livekit: LiveKitSim,
    pub faults: Faults,
}

impl SimHandle {
    /// Must be called inside a tokio runtime (background delivery tasks).
    pub fn new(config: SimConfig) -> Self {
        let faults = Faults::default();
        let mux = MuxSim::new(config.mux, faults.clone());
        let livekit = LiveKitSim::new(config.livekit, faults.clone(), Some(mux.clone()));
        Self { mux, livekit, faults }
    }

    /// See [`MuxSim::router`]; generic over the host app's state type.
    pub fn mux_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.mux.router()
    }

    /// See [`LiveKitSim::router`]; merge it at the root.
    pub fn livekit_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.livekit.router()
    }

    /// Mux live streams not `idle`/`disabled` or still holding an encoder,
    /// and egresses still running: what a finished saga must not leave.
    pub fn leftovers(&self) -> Leftovers {
        Leftovers {
            live_streams: self
                .mux
                .live_streams()
                .into_iter()
                .filter(|s| s.phase != IngestPhase::Idle || s.encoder_connected)
                .collect(),
            egresses: self.livekit.active_egresses(),
        }
    }
}

/// See [`SimHandle::leftovers`].
#[derive(Debug, Clone, PartialEq)]
pub struct Leftovers {
    pub live_streams: Vec<LiveStreamSnapshot>,
    pub egresses: Vec<EgressSnapshot>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.live_streams.is_empty() && self.egresses.is_empty()
    }
}

/// Where to listen. Both default to `127.0.0.1:0`.
#[derive(Debug, Clone, Copy)]
pub struct SimAddrs {
    pub mux: SocketAddr,
    pub livekit: SocketAddr,
}

impl Default for SimAddrs {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self { mux: any, livekit: any }
    }
}

/// Both simulators served over HTTP. Dropping this stops the servers.
pub struct Simulators {
    /// Base URL for [`crate::mux::MuxConfig::base_url`].
    pub mux_url: String,
    /// Server URL for [`crate::livekit::EgressConfig::url`].
    pub livekit_url: String,
    pub handle: SimHandle,
    servers: Vec<JoinHandle<()>>,
}

impl Simulators {
    /// Serves both on `127.0.0.1`, each on a free port.
    pub async fn spawn(config: SimConfig) -> std::io::Result<Self> {
        Self::spawn_on(config, SimAddrs::default()).await
    }

    pub async fn spawn_on(config: SimConfig, addrs: SimAddrs) -> std::io::Result<Self> {
        let handle = SimHandle::new(config);
        let (mux_url, mux_server) = serve(addrs.mux, handle.mux_router()).await?;
        let (livekit_url, livekit_server) = serve(addrs.livekit, handle.livekit_router()).await?;
        Ok(Self { mux_url, livekit_url, handle, servers: vec![mux_server, livekit_server] })
    }

    pub fn faults(&self) -> &Faults {
        &self.handle.faults
    }
}

impl Drop for Simulators {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<(String, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, %local, "simulator server stopped");
        }
    });
    Ok((format!("http://{local}"), server))
}
