//! Starting and stopping the service: `Application::build` wires the store,
//! timers, rooms and routes; `run_until_stopped` serves until a signal (or
//! the shutdown handle) and then drains: stop accepting, let handlers end,
//! flush pending appends.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{DEV_JWT_SECRET, RecordingWorker, ServeConfig};
use crate::connections::ConnectionLimits;
use crate::http::{AppState, Limits, router};
use crate::interviews::{InterviewSettings, Interviews};
use crate::queues::Queues;
use crate::recording::{Recording, RecordingDeps, RecordingSettings, TIMER_PREFIX};
use crate::rooms::Rooms;
use crate::store::EventStore;
use crate::timers::{Dispatch, Fired, Timers};

pub struct Application {
    listener: TcpListener,
    state: AppState,
    timers: Arc<Timers>,
    shutdown: watch::Sender<bool>,
    recording_worker: RecordingWorker,
    /// The built-in Mux/LiveKit simulators, when no URL is configured.
    simulators: Option<eventuall_media::sim::Simulators>,
    /// The built-in AI simulator, when no `EVENTUALL_AI_URL` is configured.
    ai_simulator: Option<eventuall_media::sim::AiSimulator>,
    archive_policy: crate::archiving::ArchivePolicy,
    connection_limits: ConnectionLimits,
}

impl Application {
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: ServeConfig, clock: SharedClock) -> anyhow::Result<Self> {
        let secret = match &config.jwt_secret {
            Some(secret) if !secret.is_empty() => secret.clone(),
            _ => {
                tracing::warn!(
                    "EVENTUALL_JWT_SECRET is not set: using the built-in DEVELOPMENT secret. \
                     Anyone can mint tokens for this server. Never run it like this in production."
                );
                DEV_JWT_SECRET.to_owned()
            }
        };
        let store = EventStore::open(&config.database.database_url, config.database.store_options())
            .await
            .with_context(|| format!("opening the event store at {}", redact(&config.database.database_url)))?;
        let timers = Timers::new(store.clone(), clock.clone());
        let rooms = Rooms::new(store.clone(), timers.clone(), clock.clone(), config.presence());
        let queues = Queues::new(store.clone(), clock.clone(), config.evict_after.into());
        let webhook_keys = config.media.livekit_webhook_keys().map_err(anyhow::Error::msg)?;
        if config.media.livekit_api_key.is_none() && config.media.livekit_webhook_keys.is_empty() {
            tracing::warn!("no LiveKit key configured: webhooks are verified with the development key 'devkey'");
        }
        let media = crate::recording::media::connect(&config.media).await?;
        let deps = RecordingDeps {
            store: store.clone(),
            timers: timers.clone(),
            clock: clock.clone(),
            rooms: rooms.clone(),
            mux: media.mux,
            egress: media.egress,
        };
        let recording = Recording::new(
            deps,
            RecordingSettings {
                composite_url: config
                    .media
                    .composite_url
                    .clone()
                    .unwrap_or_else(|| crate::recording::DEFAULT_COMPOSITE_URL.into()),
                poll_every: config.media.recording_poll_every.into(),
                orphan_after: config.media.recording_orphan_after.into(),
                ..RecordingSettings::default()
            },
        );
        let ai = crate::interviews::provider::connect(&config.ai).await?;
        let interviews = Interviews::new(
            store.clone(),
            timers.clone(),
            clock.clone(),
            ai.client,
            InterviewSettings {
                hint_after: config.ai.hint_after.into(),
                rate_limit: config.ai.ai_rate_limit,
                max_audio_bytes: config.ai.max_audio_bytes,
                evict_after: config.evict_after.into(),
                archive_after: config.archive.archive_after.into(),
            },
        );
        let archive_policy = crate::archiving::ArchivePolicy::from(&config.archive);
        // Bound before the cluster is joined: the address other nodes dial
        // defaults to the one actually bound (`127.0.0.1:0` picks a port).
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let bound = listener.local_addr().context("reading the bound address")?;
        let cluster = match &config.cluster.node_id {
            None => None,
            Some(node_id) => Some(
                crate::cluster::Cluster::new(
                    store.clone(),
                    crate::cluster::ClusterSettings {
                        node_id: node_id.clone(),
                        url: config.cluster.node_url.clone().unwrap_or_else(|| format!("http://{bound}")),
                        lease_ttl: config.cluster.lease_ttl.into(),
                    },
                )
                .context("joining the cluster")?,
            ),
        };
        let state = AppState {
            cluster: cluster.clone(),
            store,
            rooms,
            queues,
            interviews,
            livekit_webhooks: Arc::new(eventuall_media::livekit::WebhookVerifier::new(webhook_keys)),
            recording,
            auth: Authenticator::new(&secret),
            clock,
            timers: timers.clone(),
            metrics: crate::metrics::install(),
            limits: Arc::new(Limits {
                max_frame_bytes: config.max_frame_bytes,
                frame_rate: crate::http::ws::FrameRate {
                    per_second: f64::from(config.max_frames_per_second.max(1)),
                    burst: 2.0 * f64::from(config.max_frames_per_second.max(1)),
                },
                max_body_bytes: config.max_body_bytes,
                write_timeout: config.write_timeout.into(),
                cors_origins: config.cors_origins.clone(),
            }),
        };
        if let Some(cluster) = &cluster {
            crate::cluster::hosts::install(cluster, &state);
        }
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            listener,
            state,
            timers,
            shutdown,
            recording_worker: config.media.recording_worker,
            simulators: media.simulators,
            ai_simulator: ai.simulator,
            archive_policy,
            connection_limits: ConnectionLimits {
                header_timeout: config.header_timeout.into(),
                max_connections: config.max_connections.max(1),
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The built-in simulators, if they serve in place of Mux and LiveKit.
    pub fn simulators(&self) -> Option<&eventuall_media::sim::Simulators> {
        self.simulators.as_ref()
    }

    /// The built-in AI simulator, if it answers in place of a provider.
    pub fn ai_simulator(&self) -> Option<&eventuall_media::sim::AiSimulator> {
        self.ai_simulator.as_ref()
    }

    /// The durable timers (tests fire them with a manual clock).
    pub fn timers(&self) -> Arc<Timers> {
        self.timers.clone()
    }

    /// A handle that stops the server when set to true.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// The dispatcher that routes fired timers to their owners.
    pub fn timer_dispatch(state: &AppState) -> Dispatch {
        let rooms = state.rooms.clone();
        let recording = state.recording.clone();
        let interviews = state.interviews.clone();
        let cluster = state.cluster.clone();
        let store = state.store.clone();
        Arc::new(move |timer| {
            let rooms = rooms.clone();
            let recording = recording.clone();
            let interviews = interviews.clone();
            let cluster = cluster.clone();
            let store = store.clone();
            Box::pin(async move {
                // Several nodes: a timer fires on the node that owns its
                // aggregate (taking a lease nobody holds), the saga's on
                // the node that runs the saga; the others leave it due.
                if let Some(cluster) = &cluster {
                    if timer.owner.starts_with(TIMER_PREFIX) {
                        if !recording.runs_saga().await {
                            return Fired::Elsewhere;
                        }
                    } else if let Some(scope) = crate::cluster::hosts::timer_scope(&store, &timer).await
                        && !matches!(cluster.owner(&scope).await, Ok(crate::cluster::Owner::Here))
                    {
                        return Fired::Elsewhere;
                    }
                }
                if timer.owner.starts_with("room-") {
                    rooms.fire(timer).await;
                } else if timer.owner.starts_with(crate::interviews::TIMER_PREFIX) {
                    interviews.fire(timer).await;
                } else if timer.owner.starts_with(TIMER_PREFIX) {
                    recording.fire(timer).await;
                } else {
                    tracing::warn!(owner = %timer.owner, "timer with no known owner dropped");
                }
                Fired::Handled
            })
        })
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            timers,
            shutdown,
            recording_worker,
            simulators,
            ai_simulator,
            archive_policy,
            connection_limits,
        } = self;
        let timer_loop = tokio::spawn(timers.run(Self::timer_dispatch(&state), shutdown.subscribe()));
        let cluster_loop = state.cluster.clone().map(|cluster| tokio::spawn(cluster.run(shutdown.subscribe())));
        let projection_loop = tokio::spawn(crate::projections::run(state.store.clone(), shutdown.subscribe()));
        let recording_loop = (recording_worker == RecordingWorker::Background)
            .then(|| tokio::spawn(state.recording.clone().run(shutdown.subscribe())));
        tokio::spawn(recover_interviews(state.clone()));
        tokio::spawn(crate::archiving::run_sweeps(
            state.store.clone(),
            state.clock.clone(),
            archive_policy,
            shutdown.subscribe(),
        ));
        let mut stop = shutdown.subscribe();
        let signal = async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        };
        let store = state.store.clone();
        let cluster = state.cluster.clone();
        crate::connections::serve(listener, router(state), connection_limits, signal).await;
        let _ = shutdown.send(true);
        let _ = timer_loop.await;
        let _ = projection_loop.await;
        if let Some(recording_loop) = recording_loop {
            let _ = recording_loop.await;
        }
        if let Some(cluster_loop) = cluster_loop {
            let _ = cluster_loop.await;
        }
        drop(simulators);
        drop(ai_simulator);
        store.shutdown().await;
        // After the last append: another node may take over from here.
        if let Some(cluster) = &cluster {
            cluster.release_all().await;
        }
        tracing::info!("stopped; all acknowledged events are stored");
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Once the interviews projection has caught up with the log (at most a
/// minute), wakes the interviews a crash left in an `ai.*` state.
async fn recover_interviews(state: AppState) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let lag = crate::projections::status(&state.store)
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|s| s.name == "interviews").map(|s| s.lag));
        if lag == Some(0) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    match state.interviews.recover_interrupted().await {
        Ok(0) => {}
        Ok(woken) => tracing::info!(woken, "recovered interviews interrupted by a restart"),
        Err(error) => tracing::warn!(%error, "could not look for interrupted interviews"),
    }
}
