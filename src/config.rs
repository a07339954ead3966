//! Configuration: one clap struct, every field a flag and an environment
//! variable (names are part of the public contract, see the README).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// Secret used when none is configured; only for local development, and
/// announced loudly at start.
pub const DEV_JWT_SECRET: &str = "eventuall-dev-secret-do-not-use-in-production";

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// `sqlite://FILE` (created if missing) or `postgres://…`.
    #[arg(long, env = "EVENTUALL_DATABASE_URL", default_value = "sqlite://eventuall.db")]
    pub database_url: String,
    /// Where archived segments live: `file:///…` or `s3://bucket/prefix`
    /// (AWS_* variables). Default: a folder beside the SQLite file
    /// (`eventuall.db.archive/`), `./eventuall-archive/` for PostgreSQL.
    #[arg(long, env = "EVENTUALL_ARCHIVE_URL")]
    pub archive_url: Option<String>,
}

impl DatabaseArgs {
    /// Store options for this database and archive.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions { archive_url: self.archive_url.clone(), ..Default::default() }
    }
}

#[derive(Args, Clone, Debug)]
pub struct ServeConfig {
    /// Address and port to listen on.
    #[arg(long, env = "EVENTUALL_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// HS256 secret for client JWTs. Without it a development secret is used.
    #[arg(long, env = "EVENTUALL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Webapp origins allowed by CORS, comma-separated (`*` for any).
    #[arg(long, env = "EVENTUALL_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// A user with no heartbeat for this long is `away`.
    #[arg(long, env = "EVENTUALL_AWAY_AFTER", default_value = "90s")]
    pub away_after: humantime::Duration,

    /// How often a room with present users sweeps for away / forgotten users.
    #[arg(long, env = "EVENTUALL_SWEEP_EVERY", default_value = "30s")]
    pub sweep_every: humantime::Duration,

    /// An offline user unseen for this long is dropped from the snapshot.
    #[arg(long, env = "EVENTUALL_FORGET_AFTER", default_value = "24h")]
    pub forget_after: humantime::Duration,

    /// A room with no connections and no messages for this long is evicted
    /// from memory (rebuilt from snapshot + tail on next use).
    #[arg(long, env = "EVENTUALL_EVICT_AFTER", default_value = "60s")]
    pub evict_after: humantime::Duration,

    /// Largest accepted WebSocket text frame; larger ones close with 1009.
    #[arg(long, env = "EVENTUALL_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Frames one socket may send per second (bursts of twice that); over
    /// it a JSON socket gets a `rate_limited` error frame and the frame is
    /// dropped, a y-websocket closes with 1008.
    #[arg(long, env = "EVENTUALL_MAX_FRAMES_PER_SECOND", default_value_t = 50)]
    pub max_frames_per_second: u32,

    /// Largest accepted HTTP request body.
    #[arg(long, env = "EVENTUALL_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// A connection must deliver a request's whole head (request line and
    /// headers) within this long of opening, or of its previous response on
    /// a kept-alive connection; otherwise it is closed. Stops slowloris
    /// clients from holding sockets forever.
    #[arg(long, env = "EVENTUALL_HEADER_TIMEOUT", default_value = "10s")]
    pub header_timeout: humantime::Duration,

    /// Most TCP connections served at once, WebSockets included; past it a
    /// new connection is closed as soon as it is accepted. Keep the
    /// open-file limit (`ulimit -n`) above it, or accepts fail first (the
    /// server then retries them every 100 ms).
    #[arg(long, env = "EVENTUALL_MAX_CONNECTIONS", default_value_t = 15_000)]
    pub max_connections: usize,

    /// A WebSocket frame the peer has not taken within this long (a client
    /// that stopped reading) drops the connection, and its buffers with it.
    #[arg(long, env = "EVENTUALL_WRITE_TIMEOUT", default_value = "30s")]
    pub write_timeout: humantime::Duration,

    #[command(flatten)]
    pub media: MediaConfig,

    #[command(flatten)]
    pub ai: AiArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub archive: ArchivePolicyArgs,
}

/// The log an operator's tool (`replay`, `archive`) works on; it must
/// exist: a mistyped path is an error, not a new empty log (issue #22,
/// defect 11). Accepted before or after the subcommand.
#[derive(Args, Clone, Debug)]
pub struct ExistingLogArgs {
    /// `sqlite://FILE` or `postgres://…`.
    #[arg(long, env = "EVENTUALL_DATABASE_URL", default_value = "sqlite://eventuall.db", global = true)]
    pub database_url: String,
    /// Where archived segments live (`file:///…` or `s3://bucket/prefix`;
    /// default: beside the database); archived streams are read from there.
    #[arg(long, env = "EVENTUALL_ARCHIVE_URL", global = true)]
    pub archive_url: Option<String>,
}

impl ExistingLogArgs {
    pub async fn open(&self) -> anyhow::Result<crate::store::EventStore> {
        use anyhow::Context;
        let url = &self.database_url;
        let options = crate::store::StoreOptions {
            existing_only: true,
            archive_url: self.archive_url.clone(),
            ..Default::default()
        };
        crate::store::EventStore::open(url, options)
            .await
            .with_context(|| format!("opening the event log at {} (it must exist)", crate::server::redact(url)))
    }
}

/// When the service moves cold streams to the archive on its own.
#[derive(Args, Clone, Debug)]
pub struct ArchivePolicyArgs {
    /// An interview idle this long is archived (a durable timer per
    /// interview, re-armed whenever it is used again).
    #[arg(long, env = "EVENTUALL_ARCHIVE_AFTER", default_value = "30d")]
    pub archive_after: humantime::Duration,
    /// An event's room, queue and recording streams are archived this long
    /// after their last event.
    #[arg(long, env = "EVENTUALL_ARCHIVE_EVENTS_AFTER", default_value = "30d")]
    pub archive_events_after: humantime::Duration,
    /// How often the service looks for cold event streams; `0s` never.
    #[arg(long, env = "EVENTUALL_ARCHIVE_SWEEP_EVERY", default_value = "1h")]
    pub archive_sweep_every: humantime::Duration,
}

/// Several nodes on one PostgreSQL (ADR 0020). Without a node id the
/// service runs alone, exactly as a single node always has.
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// This node's name among its peers; setting it turns on leases and
    /// forwarding (PostgreSQL only).
    #[arg(long, env = "EVENTUALL_NODE_ID")]
    pub node_id: Option<String>,

    /// How the other nodes reach this one; defaults to `http://` + the
    /// listen address (which must then be reachable by them).
    #[arg(long, env = "EVENTUALL_NODE_URL")]
    pub node_url: Option<String>,

    /// How long an aggregate's lease lasts without renewal: the longest a
    /// dead owner's rooms wait for another node to take them over.
    #[arg(long, env = "EVENTUALL_LEASE_TTL", default_value = "5s")]
    pub lease_ttl: humantime::Duration,
}

/// The AI provider and the interview rooms' limits.
#[derive(Args, Clone, Debug)]
pub struct AiArgs {
    /// Base URL of an OpenAI-compatible API, ending in `/v1`; without it the
    /// built-in simulator answers (and the log says SIMULATED).
    #[arg(long, env = "EVENTUALL_AI_URL")]
    pub ai_url: Option<String>,
    #[arg(long, env = "EVENTUALL_AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<String>,
    #[arg(long, env = "EVENTUALL_AI_CHAT_MODEL", default_value = "@cf/meta/llama-3.1-8b-instruct")]
    pub ai_chat_model: String,
    #[arg(long, env = "EVENTUALL_AI_TRANSCRIBE_MODEL", default_value = "@cf/openai/whisper-tiny-en")]
    pub ai_transcribe_model: String,
    /// Longest wait for a streamed reply's first chunk (per attempt).
    #[arg(long, env = "EVENTUALL_AI_FIRST_CHUNK_TIMEOUT", default_value = "30s")]
    pub ai_first_chunk_timeout: humantime::Duration,
    /// Longest gap between two chunks of a streamed reply.
    #[arg(long, env = "EVENTUALL_AI_CHUNK_TIMEOUT", default_value = "20s")]
    pub ai_chunk_timeout: humantime::Duration,
    /// Quiet time after an AI question before it writes a hint.
    #[arg(long, env = "EVENTUALL_HINT_AFTER", default_value = "3m")]
    pub hint_after: humantime::Duration,
    /// AI requests per user per window, e.g. `100/24h`.
    #[arg(long, env = "EVENTUALL_AI_RATE_LIMIT", default_value = "100/24h")]
    pub ai_rate_limit: crate::interviews::RateLimit,
    /// Largest audio answer (one binary frame) in bytes.
    #[arg(long, env = "EVENTUALL_MAX_AUDIO_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_audio_bytes: usize,
    /// Delay between the built-in simulator's chunks (tests and demos).
    #[arg(long, env = "EVENTUALL_AI_SIM_CHUNK_DELAY", hide = true)]
    pub ai_sim_chunk_delay: Option<humantime::Duration>,
}

#[derive(Args, Clone, Debug, Default)]
pub struct MediaConfig {
    /// LiveKit server URL; without it the built-in simulator is used.
    #[arg(long, env = "EVENTUALL_LIVEKIT_URL")]
    pub livekit_url: Option<String>,
    #[arg(long, env = "EVENTUALL_LIVEKIT_API_KEY")]
    pub livekit_api_key: Option<String>,
    #[arg(long, env = "EVENTUALL_LIVEKIT_API_SECRET", hide_env_values = true)]
    pub livekit_api_secret: Option<String>,
    /// Further webhook signing keys, `key:secret,…` (key rotation).
    #[arg(long, env = "EVENTUALL_LIVEKIT_WEBHOOK_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub livekit_webhook_keys: Vec<String>,
    /// Mux API base URL; without it the built-in simulator is used.
    #[arg(long, env = "EVENTUALL_MUX_URL")]
    pub mux_url: Option<String>,
    #[arg(long, env = "EVENTUALL_MUX_TOKEN_ID")]
    pub mux_token_id: Option<String>,
    #[arg(long, env = "EVENTUALL_MUX_TOKEN_SECRET", hide_env_values = true)]
    pub mux_token_secret: Option<String>,
    /// The page the LiveKit egress records.
    #[arg(long, env = "EVENTUALL_COMPOSITE_URL")]
    pub composite_url: Option<String>,
    /// How often waiting recording sessions poll Mux and LiveKit.
    #[arg(long, env = "EVENTUALL_RECORDING_POLL_EVERY", default_value = "1s")]
    pub recording_poll_every: humantime::Duration,
    /// A recording session with no progress for this long (outside the
    /// recording itself) is failed and cleaned up.
    #[arg(long, env = "EVENTUALL_RECORDING_ORPHAN_AFTER", default_value = "10m")]
    pub recording_orphan_after: humantime::Duration,
    /// `background` runs the recording saga's loops; `manual` leaves them to
    /// the caller (tests step them deterministically).
    #[arg(long, env = "EVENTUALL_RECORDING_WORKER", value_enum, default_value_t = RecordingWorker::Background, hide = true)]
    pub recording_worker: RecordingWorker,
}

/// Who drives the recording process manager and command worker.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordingWorker {
    #[default]
    Background,
    Manual,
}

/// Credentials of `livekit-server --dev`, which the built-in LiveKit
/// simulator also uses when no key is configured.
pub const DEV_LIVEKIT_KEY: (&str, &str) = ("devkey", "secret");

impl MediaConfig {
    /// Every `(key, secret)` that may sign LiveKit webhooks: the API key and
    /// the extra `EVENTUALL_LIVEKIT_WEBHOOK_KEYS` (`key:secret,…`). Without
    /// any, the development key of the simulator.
    pub fn livekit_webhook_keys(&self) -> Result<Vec<(String, String)>, String> {
        let mut keys = Vec::new();
        if let (Some(key), Some(secret)) = (&self.livekit_api_key, &self.livekit_api_secret) {
            keys.push((key.clone(), secret.clone()));
        }
        for pair in self.livekit_webhook_keys.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let (key, secret) = pair
                .split_once(':')
                .ok_or_else(|| "EVENTUALL_LIVEKIT_WEBHOOK_KEYS entries are key:secret".to_owned())?;
            keys.push((key.to_owned(), secret.to_owned()));
        }
        if keys.is_empty() {
            keys.push((DEV_LIVEKIT_KEY.0.to_owned(), DEV_LIVEKIT_KEY.1.to_owned()));
        }
        Ok(keys)
    }
}

/// Presence timings in the units the room actor uses.
#[derive(Clone, Copy, Debug)]
pub struct PresenceTimings {
    pub away_after: Duration,
    pub sweep_every: Duration,
    pub forget_after: Duration,
    pub evict_after: Duration,
}

impl ServeConfig {
    pub fn presence(&self) -> PresenceTimings {
        PresenceTimings {
            away_after: self.away_after.into(),
            sweep_every: self.sweep_every.into(),
            forget_after: self.forget_after.into(),
            evict_after: self.evict_after.into(),
        }
    }
}
