//! `eventuall-bench loadgen fanout|heartbeats`: the peer's Node load generator
//! (`shared/peers/load/load.mjs`) in Rust, for when Node is the limit
//! (issue #21: at 1 × 200 fanout and above 40,000 heartbeats/s the Node
//! generator took 77–100 % of one of the two cores).
//!
//! It reads the same environment variables (`BASE_URL`, `JWT_SECRET`,
//! `ROOMS`, `CLIENTS`, `RATE`, `DURATION`, `SERVER_PIDS`, …, see the peer's
//! README) and prints one JSON line per scenario with the same keys, so its
//! results go through the peer's `compare.mjs` beside the Node ones, and it
//! measures any server that speaks the event-room contract: the peer and
//! ours alike. Its lines carry `"generator": "eventuall-bench"`.
//!
//! Differences, all stated in the output:
//! - Sockets are driven on one thread (a current-thread runtime) by
//!   default, as Node's are; `LOADGEN_THREADS=n` gives it n.
//! - `fanout` takes `WARM_ROOMS=1` (not in load.mjs): one untimed client
//!   per room first, so no timed join pays for starting its room; the
//!   line says `"warm_rooms"`.
//! - `max_client_buffered_bytes` is `null`: a tungstenite socket has no
//!   user-space send buffer to sample (a send waits for the kernel instead,
//!   which shows as `max_send_lag_ms`).
//! - The durable count: the peer's `/event/{id}/debug/heartbeats` first;
//!   where a server has no such route (ours: 404), `--store-url` names its
//!   log and the count is of `HeartbeatReceived` events read back from it.
//!
//! Every loop is bounded in count and time (`MAX_SECONDS`, default 600).

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use eventuall::auth::{Authenticator, Claims, Role};
use eventuall::store::subscription::SqlValue;
use eventuall::store::{EventStore, StoreOptions, StreamId};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Socket, Message>;

const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;
const SNAPSHOT_TAG: &[u8] = br#""type":"snapshot""#;

#[derive(Args)]
pub struct LoadArgs {
    /// The scenario, as `node load.mjs <scenario>`.
    #[arg(value_enum)]
    scenario: Scenario,
    /// The server's event log (`sqlite://…` or `postgres://…`), read for the
    /// durable heartbeat count when the server has no debug count route.
    #[arg(long)]
    store_url: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Fanout,
    Heartbeats,
    All,
}

/// Runs the generator on its own runtime: one thread unless
/// `LOADGEN_THREADS` says otherwise, so that its CPU use is comparable with
/// the Node generator's single thread.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let threads = env_num("LOADGEN_THREADS", 1.0)? as usize;
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    let max_seconds = env_num("MAX_SECONDS", 600.0)?;
    runtime.block_on(async {
        let config = Config::from_env(args.store_url)?;
        let scenarios = match args.scenario {
            Scenario::All => vec![Scenario::Fanout, Scenario::Heartbeats],
            one => vec![one],
        };
        let all = async {
            for scenario in scenarios {
                let started_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
                let mut out = match scenario {
                    Scenario::Fanout => fanout(&config).await?,
                    _ => heartbeats(&config).await?,
                };
                out["run"] = json!(config.run);
                out["started_at"] = json!(started_at);
                out["generator"] = json!("eventuall-bench");
                out["loadgen_threads"] = json!(threads.max(1));
                println!("{out}");
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs_f64(max_seconds), all)
            .await
            .with_context(|| format!("MAX_SECONDS={max_seconds} exceeded; aborting"))?
    })
}

struct Config {
    base: String,
    addr: SocketAddr,
    http: reqwest::Client,
    auth: Authenticator,
    run: String,
    label: String,
    server_pids: Vec<String>,
    store_url: Option<String>,
}

impl Config {
    fn from_env(store_url: Option<String>) -> anyhow::Result<Self> {
        let (base, addr) = base_url_from_env()?;
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        Ok(Self {
            base,
            addr,
            http: reqwest::Client::new(),
            auth: authenticator_from_env(),
            run: std::env::var("RUN_ID").unwrap_or_else(|_| format!("lg{millis:x}")),
            label: std::env::var("LABEL").unwrap_or_default(),
            server_pids: server_pids_from_env(),
            store_url,
        })
    }

    fn token(&self, user: &str, role: Role) -> String {
        token(&self.auth, user, role)
    }

    fn ws_url(&self, room: &str, user: &str) -> String {
        let token = self.token(user, Role::Participant);
        format!("ws://{}/parties/event/{room}?_pk={user}&token={token}", self.addr)
    }
}

/// `BASE_URL` (default http://127.0.0.1:8787) without a trailing slash,
/// and the address it resolves to.
pub(crate) fn base_url_from_env() -> anyhow::Result<(String, SocketAddr)> {
    let base = std::env::var("BASE_URL").unwrap_or_else(|_| "http://127.0.0.1:8787".into());
    let base = base.trim_end_matches('/').to_owned();
    let host = base.strip_prefix("http://").context("BASE_URL must be http://host:port")?;
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("BASE_URL host {host}"))?
        .next()
        .context("BASE_URL resolves to nothing")?;
    Ok((base, addr))
}

/// Signs the generator's tokens with `JWT_SECRET` (default: the
/// development secret the service warns about).
pub(crate) fn authenticator_from_env() -> Authenticator {
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "eventuall-dev-secret-change-me".into());
    Authenticator::new(&secret)
}

/// The generators' tokens: `sub` = `name` = the user id, an hour long.
pub(crate) fn token(auth: &Authenticator, user: &str, role: Role) -> String {
    let claims = Claims {
        sub: user.to_owned(),
        exp: eventuall::store::now_millis() / 1000 + 3600,
        name: Some(user.to_owned()),
        role,
        events: None,
    };
    auth.issue(&claims)
}

/// `SERVER_PIDS`: the comma-separated processes whose CPU is measured.
pub(crate) fn server_pids_from_env() -> Vec<String> {
    std::env::var("SERVER_PIDS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn env_num(name: &str, default: f64) -> anyhow::Result<f64> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().with_context(|| format!("{name} must be a number, got {v}")),
        _ => Ok(default),
    }
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// `lib.mjs` `percentiles`: nearest rank, milliseconds, two decimals.
pub(crate) fn percentiles(samples: &[f64]) -> Value {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let pick = |p: f64| {
        if n == 0 {
            Value::Null
        } else {
            json!(round(sorted[(((p / 100.0) * n as f64).ceil() as usize).clamp(1, n) - 1], 2))
        }
    };
    json!({
        "n": n,
        "p50": pick(50.0),
        "p95": pick(95.0),
        "p99": pick(99.0),
        "max": sorted.last().map(|m| round(*m, 2)),
        "mean": if n == 0 { None } else { Some(round(sorted.iter().sum::<f64>() / n as f64, 2)) },
    })
}

pub(crate) fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// Percent of one core used by `pids` (`self` or pids) since it was started.
pub(crate) struct CpuMeter {
    pids: Vec<String>,
    used: Duration,
    started: Instant,
}

impl CpuMeter {
    pub(crate) fn start(pids: Vec<String>) -> Self {
        let used = Self::used(&pids);
        Self { pids, used, started: Instant::now() }
    }

    fn used(pids: &[String]) -> Duration {
        pids.iter().map(|pid| crate::rooms::cpu_time(pid)).sum()
    }

    pub(crate) fn percent(&self) -> Value {
        if self.pids.is_empty() {
            return Value::Null;
        }
        let used = Self::used(&self.pids).saturating_sub(self.used);
        json!(round(used.as_secs_f64() / self.started.elapsed().as_secs_f64() * 100.0, 1))
    }
}

/// The machine's CPU split (`/proc/stat`) and its busiest disk's writes and
/// flushes (`/proc/diskstats`) over a phase, as `load.mjs` `machine()`.
struct MachineMeter {
    before: Option<ProcSample>,
    started: Instant,
}

struct ProcSample {
    cpu: Vec<u64>,
    disk: Option<(String, Vec<u64>)>,
}

fn proc_sample() -> Option<ProcSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let diskstats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let whole_disk = |name: &str| {
        let prefixes = ["loop", "ram", "zram", "dm-"];
        if prefixes.iter().any(|p| name.starts_with(p)) {
            return false;
        }
        // Partitions end in a digit; the same rule as load.mjs, so the
        // two generators report the same device.
        let tail = name.strip_prefix("nvme").map_or(name, |rest| rest.split_once('n').map_or(rest, |(_, t)| t));
        !tail.ends_with(|c: char| c.is_ascii_digit())
    };
    let disk = diskstats
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 14 && whole_disk(f[2]))
        .max_by_key(|f| f[7].parse::<u64>().unwrap_or(0))
        .map(|f| (f[2].to_owned(), f[3..].iter().map(|v| v.parse().unwrap_or(0)).collect()));
    Some(ProcSample { cpu, disk })
}

impl MachineMeter {
    fn start() -> Self {
        Self { before: proc_sample(), started: Instant::now() }
    }

    fn report(&self) -> Value {
        let (Some(a), Some(b)) = (&self.before, proc_sample()) else { return Value::Null };
        let dc: Vec<u64> = b.cpu.iter().zip(&a.cpu).map(|(x, y)| x.saturating_sub(*y)).collect();
        let total = dc.iter().sum::<u64>().max(1) as f64;
        let pct = |i: usize| round(dc.get(i).copied().unwrap_or(0) as f64 / total * 100.0, 1);
        let secs = self.started.elapsed().as_secs_f64();
        let mut out =
            json!({"cpu_pct": {"user": pct(0), "system": pct(2), "idle": pct(3), "iowait": pct(4), "steal": pct(7)}});
        if let (Some((dev_a, da)), Some((dev_b, db))) = (&a.disk, &b.disk)
            && dev_a == dev_b
        {
            let d: Vec<u64> = db.iter().zip(da).map(|(x, y)| x.saturating_sub(*y)).collect();
            let at = |i: usize| d.get(i).copied();
            out["disk"] = json!({
                "dev": dev_b,
                "writes_per_s": round(at(4).unwrap_or(0) as f64 / secs, 0),
                "flushes_per_s": at(15).map(|f| round(f as f64 / secs, 0)),
                "flush_ms_avg": at(15).filter(|f| *f > 0).map(|f| round(at(16).unwrap_or(0) as f64 / f as f64, 3)),
                "busy_pct": round(at(9).unwrap_or(0) as f64 / (secs * 1000.0) * 100.0, 1),
            });
        }
        out
    }
}

/// One GET: the status and the body.
async fn http_get(config: &Config, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    let response = config
        .http
        .get(format!("{}{path}", config.base))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

async fn connect(config: &Config, room: &str, user: &str) -> anyhow::Result<Socket> {
    let url = config.ws_url(room, user);
    let (socket, _) = tokio::time::timeout(Duration::from_secs(15), tokio_tungstenite::connect_async(url))
        .await
        .context("handshake timeout")??;
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_nodelay(true)?;
    }
    Ok(socket)
}

fn frame_bytes(message: &Message) -> Option<&[u8]> {
    match message {
        Message::Text(text) => Some(text.as_bytes()),
        Message::Binary(bytes) => Some(bytes.as_ref()),
        _ => None,
    }
}

/// Closes every sink and waits (bounded) for the readers to see the end.
async fn close_all(sinks: Vec<Sink>, mut readers: Vec<tokio::task::JoinHandle<()>>) {
    let closes = futures::future::join_all(sinks.into_iter().map(|mut sink| async move {
        let _ = sink.send(Message::Close(None)).await;
    }));
    let _ = tokio::time::timeout(Duration::from_secs(10), closes).await;
    let ends = futures::future::join_all(readers.iter_mut());
    let _ = tokio::time::timeout(Duration::from_secs(10), ends).await;
    for reader in readers {
        reader.abort();
    }
}

// ---------------------------------------------------------------------------
// fanout

/// A newcomer's join being timed: done when every required client has a
/// frame holding the newcomer's quoted id.
struct Watcher {
    needle: Vec<u8>,
    required: Arc<HashSet<usize>>,
    seen: HashSet<usize>,
    newcomer: usize,
    newcomer_at: Option<Instant>,
    done: Option<oneshot::Sender<(Instant, Option<Instant>)>>,
}

#[derive(Default)]
struct Received {
    frames: AtomicU64,
    bytes: AtomicU64,
}

async fn fanout(config: &Config) -> anyhow::Result<Value> {
    let rooms = env_num("ROOMS", 1.0)? as usize;
    let per_room = env_num("CLIENTS", 200.0)? as usize;
    let wave = (env_num("WAVE", 1.0)? as usize).max(1);
    let join_timeout = Duration::from_millis(env_num("JOIN_TIMEOUT_MS", 15_000.0)? as u64);
    let room_mode = std::env::var("ROOM_MODE").unwrap_or_else(|_| "parallel".into());
    // WARM_ROOMS=1 (ours only; not in load.mjs): each room gets one client
    // before the timed joins, so no timed join pays for starting its room.
    let warm_rooms = env_num("WARM_ROOMS", 0.0)? > 0.0;
    let received = Arc::new(Received::default());
    let cpu = CpuMeter::start(vec!["self".into()]);
    let server_cpu = CpuMeter::start(config.server_pids.clone());
    let machine = MachineMeter::start();

    let run_room = |r: usize| {
        let received = received.clone();
        async move {
            let room = format!("{}-f{r}", config.run);
            let watchers: Arc<Mutex<Vec<Watcher>>> = Arc::default();
            let mut outcome = RoomOutcome::default();
            let mut members: Vec<usize> = Vec::new();
            if warm_rooms {
                match connect(config, &room, &format!("{room}-warm")).await {
                    // Its frames are counted nowhere and watched by no one.
                    Ok(socket) => {
                        outcome.clients.push(spawn_fanout_reader(socket, usize::MAX, Arc::default(), Arc::default()))
                    }
                    Err(error) => eprintln!("[fanout] warm client of {room}: {error:#}"),
                }
                // The upgrade answers before the room has taken the client.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            for start in (0..per_room).step_by(wave) {
                let batch: Vec<usize> = (start..(start + wave).min(per_room)).collect();
                let mut required: HashSet<usize> = members.iter().copied().collect();
                required.extend(&batch);
                let required = Arc::new(required);
                let mut waits = Vec::new();
                for &c in &batch {
                    let (tx, rx) = oneshot::channel();
                    let user = format!("{room}-u{c}");
                    watchers.lock().unwrap().push(Watcher {
                        needle: format!("\"{user}\"").into_bytes(),
                        required: required.clone(),
                        seen: HashSet::new(),
                        newcomer: c,
                        newcomer_at: None,
                        done: Some(tx),
                    });
                    waits.push((c, Instant::now(), rx));
                }
                let opens = batch.iter().map(|&c| {
                    let user = format!("{room}-u{c}");
                    let (watchers, received, room) = (watchers.clone(), received.clone(), room.clone());
                    async move {
                        let socket = connect(config, &room, &user).await;
                        (c, socket.map(|socket| spawn_fanout_reader(socket, c, watchers, received)))
                    }
                });
                for (c, opened) in futures::future::join_all(opens).await {
                    match opened {
                        Ok(client) => {
                            outcome.clients.push(client);
                            members.push(c);
                        }
                        Err(error) => {
                            outcome.connect_failures += 1;
                            eprintln!("[fanout] connect {room}-u{c}: {error:#}");
                            watchers.lock().unwrap().retain(|w| w.newcomer != c);
                        }
                    }
                }
                for (c, t0, rx) in waits {
                    match tokio::time::timeout(join_timeout.saturating_sub(t0.elapsed()), rx).await {
                        Ok(Ok((at, newcomer_at))) => {
                            outcome.join_ms.push((at - t0).as_secs_f64() * 1e3);
                            if let Some(first) = newcomer_at {
                                outcome.self_ms.push((first - t0).as_secs_f64() * 1e3);
                            }
                        }
                        _ => {
                            outcome.timeouts += 1;
                            watchers.lock().unwrap().retain(|w| w.newcomer != c);
                        }
                    }
                }
            }
            outcome
        }
    };

    let t0 = Instant::now();
    let outcomes: Vec<RoomOutcome> = if room_mode == "serial" {
        let mut all = Vec::new();
        for r in 0..rooms {
            all.push(run_room(r).await);
        }
        all
    } else {
        futures::future::join_all((0..rooms).map(run_room)).await
    };
    let wall = t0.elapsed().as_secs_f64();
    let (loadgen_cpu, srv_cpu, machine) = (cpu.percent(), server_cpu.percent(), machine.report());
    // Counted before the closes make the server send more snapshots.
    let frames = received.frames.load(Ordering::Relaxed);
    let bytes = received.bytes.load(Ordering::Relaxed);
    let mut joins = Vec::new();
    let mut newcomers = Vec::new();
    let (mut timeouts, mut connect_failures) = (0, 0);
    let (mut sinks, mut readers) = (Vec::new(), Vec::new());
    for outcome in outcomes {
        joins.extend(outcome.join_ms);
        newcomers.extend(outcome.self_ms);
        timeouts += outcome.timeouts;
        connect_failures += outcome.connect_failures;
        for (sink, reader) in outcome.clients {
            sinks.push(sink);
            readers.push(reader);
        }
    }
    close_all(sinks, readers).await;
    Ok(json!({
        "scenario": "fanout",
        "label": config.label,
        "base_url": config.base,
        "rooms": rooms,
        "clients_per_room": per_room,
        "wave": wave,
        "warm_rooms": warm_rooms,
        "room_mode": room_mode,
        "joins": rooms * per_room,
        "join_to_all_ms": percentiles(&joins),
        "newcomer_first_snapshot_ms": percentiles(&newcomers),
        "incomplete_joins": timeouts,
        "connect_failures": connect_failures,
        "snapshots_received": frames,
        "snapshot_bytes_received": bytes,
        "snapshots_per_s": round(frames as f64 / wall, 1),
        "mb_per_s": round(bytes as f64 / wall / 1e6, 2),
        "wall_s": round(wall, 2),
        "loadgen_cpu_pct": loadgen_cpu,
        "server_cpu_pct": srv_cpu,
        "machine": machine,
    }))
}

#[derive(Default)]
struct RoomOutcome {
    clients: Vec<(Sink, tokio::task::JoinHandle<()>)>,
    join_ms: Vec<f64>,
    self_ms: Vec<f64>,
    timeouts: usize,
    connect_failures: usize,
}

fn spawn_fanout_reader(
    socket: Socket,
    client: usize,
    watchers: Arc<Mutex<Vec<Watcher>>>,
    received: Arc<Received>,
) -> (Sink, tokio::task::JoinHandle<()>) {
    let (sink, mut stream) = socket.split();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let Some(frame) = frame_bytes(&message) else { continue };
            received.frames.fetch_add(1, Ordering::Relaxed);
            received.bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
            let now = Instant::now();
            let mut watchers = watchers.lock().unwrap();
            watchers.retain_mut(|w| {
                if w.seen.contains(&client)
                    || !w.required.contains(&client)
                    || memchr::memmem::find(frame, &w.needle).is_none()
                {
                    return true;
                }
                w.seen.insert(client);
                if client == w.newcomer {
                    w.newcomer_at = Some(now);
                }
                if w.seen.len() < w.required.len() {
                    return true;
                }
                if let Some(done) = w.done.take() {
                    let _ = done.send((now, w.newcomer_at));
                }
                false
            });
        }
    });
    (sink, reader)
}

// ---------------------------------------------------------------------------
// heartbeats

#[derive(Default)]
struct HeartbeatCounters {
    snapshots: AtomicU64,
    other_frames: AtomicU64,
    unexpected_closes: AtomicU64,
    stopping: AtomicBool,
}

async fn heartbeats(config: &Config) -> anyhow::Result<Value> {
    let n = env_num("CLIENTS", 1000.0)? as usize;
    let rooms = env_num("ROOMS", 10.0)? as usize;
    let interval_ms = env_num("INTERVAL", 1000.0)?;
    let duration_s = env_num("DURATION", 30.0)?;
    let probe_every_ms = env_num("PROBE_EVERY_MS", 1000.0)?;
    let probe_timeout = Duration::from_millis(env_num("PROBE_TIMEOUT_MS", 10_000.0)? as u64);
    let connect_concurrency = (env_num("CONNECT_CONCURRENCY", 20.0)? as usize).max(1);
    let drain_timeout = Duration::from_secs_f64(env_num("DRAIN_TIMEOUT_S", 30.0)?);
    let p99_limit_ms = env_num("P99_LIMIT_MS", 250.0)?;
    let drain_ok_ms = env_num("DRAIN_OK_MS", 2000.0)?;
    let settle = Duration::from_millis(env_num("SETTLE_MS", 1000.0)? as u64);
    let rate = match std::env::var("RATE") {
        Ok(r) if !r.is_empty() => r.parse::<f64>().context("RATE must be a number")?,
        _ => n as f64 * 1000.0 / interval_ms,
    };
    let room_name = |r: usize| format!("{}-h{r}", config.run);
    let counters = Arc::new(HeartbeatCounters::default());

    // Everyone connects (bounded concurrency) and waits for a first frame.
    let tc0 = Instant::now();
    let connected: Vec<(usize, anyhow::Result<(Sink, tokio::task::JoinHandle<()>)>)> =
        futures::stream::iter((0..n).map(|i| {
            let counters = counters.clone();
            let room = room_name(i % rooms);
            async move { (i, connect_heartbeat_client(config, &room, &format!("{room}-u{i}"), counters).await) }
        }))
        .buffer_unordered(connect_concurrency)
        .collect()
        .await;
    let mut slots: Vec<Option<Sink>> = (0..n).map(|_| None).collect();
    let mut readers = Vec::new();
    let mut connect_failures = 0;
    for (i, result) in connected {
        match result {
            Ok((sink, reader)) => {
                slots[i] = Some(sink);
                readers.push(reader);
            }
            Err(error) => {
                connect_failures += 1;
                eprintln!("[heartbeats] client {i}: {error:#}");
            }
        }
    }
    let connect_s = tc0.elapsed().as_secs_f64();
    eprintln!("[heartbeats] connected {}/{n} in {connect_s:.2} s", n - connect_failures);
    tokio::time::sleep(settle).await;

    // The open-loop schedule: `rate` heartbeats a second, rotating over the
    // clients, with a probe join every PROBE_EVERY_MS.
    let total = (rate * duration_s).floor() as u64;
    let (mut sent, mut skipped, mut scheduled) = (0u64, 0u64, 0u64);
    let mut max_lag_ms: f64 = 0.0;
    let cpu = CpuMeter::start(vec!["self".into()]);
    let server_cpu = CpuMeter::start(config.server_pids.clone());
    let machine = MachineMeter::start();
    let probe_count = (duration_s * 1000.0 / probe_every_ms).floor() as usize;
    let probe_results: Arc<Mutex<(Vec<f64>, usize)>> = Arc::default();
    let mut probes = Vec::new();
    let mut next_probe = 0;
    let ts0 = Instant::now();
    while scheduled < total {
        let elapsed = ms_since(ts0);
        if elapsed > duration_s * 1000.0 + 60_000.0 {
            break; // hopelessly behind
        }
        let due = ((elapsed / 1000.0 * rate).floor() as u64).min(total);
        if due > scheduled + 1 {
            max_lag_ms = max_lag_ms.max((due - scheduled) as f64 / rate * 1000.0);
        }
        while scheduled < due {
            let slot = &mut slots[(scheduled % n as u64) as usize];
            scheduled += 1;
            let Some(sink) = slot else {
                skipped += 1;
                continue;
            };
            if sink.send(Message::text(HEARTBEAT)).await.is_ok() {
                sent += 1;
            } else {
                *slot = None;
                skipped += 1;
            }
        }
        while next_probe < probe_count && elapsed >= next_probe as f64 * probe_every_ms + probe_every_ms / 2.0 {
            let (room, user) = (room_name(next_probe % rooms), format!("{}-probe{next_probe}", config.run));
            let results = probe_results.clone();
            let url = config.ws_url(&room, &user);
            probes.push(tokio::spawn(probe(url, user, probe_timeout, results)));
            next_probe += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let send_s = ts0.elapsed().as_secs_f64();
    let (loadgen_cpu, srv_cpu, machine) = (cpu.percent(), server_cpu.percent(), machine.report());

    // The durable count, right after the last send and then until it
    // matches what was sent.
    let observer = config.token(&format!("{}-observer", config.run), Role::Moderator);
    let room_names: Vec<String> = (0..rooms).map(room_name).collect();
    let mut counter = DurableCounter::new(config, &room_names, observer).await?;
    let t_stop = Instant::now();
    let (mut at_stop, mut at_stop_ms, mut count, mut drain_ms) = (None, None, None, None);
    while t_stop.elapsed() < drain_timeout {
        if let Some(c) = counter.count().await {
            if at_stop.is_none() {
                at_stop = Some(c);
                at_stop_ms = Some(ms_since(t_stop).round());
            }
            count = Some(c);
            if c >= sent {
                drain_ms = Some(ms_since(t_stop).round());
                break;
            }
        } else if !counter.exposed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = tokio::time::timeout(probe_timeout + Duration::from_secs(1), futures::future::join_all(probes)).await;
    counters.stopping.store(true, Ordering::Relaxed);
    close_all(slots.into_iter().flatten().collect(), readers).await;

    let (probe_ms, probe_timeouts) = probe_results.lock().unwrap().clone();
    let probe_stats = percentiles(&probe_ms);
    let unexpected_closes = counters.unexpected_closes.load(Ordering::Relaxed);
    let p99 = probe_stats["p99"].as_f64();
    let equal = count == Some(sent);
    let pass = probe_timeouts == 0
        && p99.is_some_and(|p| p < p99_limit_ms)
        && equal
        && drain_ms.is_some_and(|d| d <= drain_ok_ms)
        && unexpected_closes == 0
        && connect_failures == 0
        && skipped == 0;
    let mut probe_json = probe_stats;
    probe_json["timeouts"] = json!(probe_timeouts);
    Ok(json!({
        "scenario": "heartbeats",
        "label": config.label,
        "base_url": config.base,
        "rooms": rooms,
        "clients": n,
        "interval_ms": round(n as f64 * 1000.0 / rate, 1),
        "duration_s": duration_s,
        "target_hb_per_s": round(rate, 1),
        "sent": sent,
        "skipped": skipped,
        "hb_sent_per_s": round(sent as f64 / send_s, 1),
        "send_s": round(send_s, 2),
        "max_send_lag_ms": round(max_lag_ms, 1),
        "max_client_buffered_bytes": null,
        "probe_ms": probe_json,
        "durable": {
            "exposed": counter.exposed(),
            "source": counter.source(),
            "at_stop": at_stop,
            "at_stop_read_ms": at_stop_ms,
            "count": count,
            "equal": equal,
            "lag_at_stop": at_stop.map(|c| sent as i64 - c as i64),
            "drain_ms": drain_ms,
        },
        "connect": {"ok": n - connect_failures, "failed": connect_failures, "s": round(connect_s, 2)},
        "unexpected_closes": unexpected_closes,
        "snapshots_received": counters.snapshots.load(Ordering::Relaxed),
        "non_snapshot_frames": counters.other_frames.load(Ordering::Relaxed),
        "loadgen_cpu_pct": loadgen_cpu,
        "server_cpu_pct": srv_cpu,
        "machine": machine,
        "pass": pass,
    }))
}

/// Connects a heartbeat client and waits (20 s at most) for its first frame,
/// which must be a snapshot; its reader then counts frames and notes a close
/// the generator did not ask for.
async fn connect_heartbeat_client(
    config: &Config,
    room: &str,
    user: &str,
    counters: Arc<HeartbeatCounters>,
) -> anyhow::Result<(Sink, tokio::task::JoinHandle<()>)> {
    let (sink, mut stream) = connect(config, room, user).await?.split();
    let (first_tx, first_rx) = oneshot::channel::<bool>();
    let reader = tokio::spawn(async move {
        let mut first = Some(first_tx);
        while let Some(Ok(message)) = stream.next().await {
            let Some(frame) = frame_bytes(&message) else { continue };
            let snapshot = memchr::memmem::find(frame, SNAPSHOT_TAG).is_some();
            let counter = if snapshot { &counters.snapshots } else { &counters.other_frames };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(first) = first.take() {
                let _ = first.send(snapshot);
            }
        }
        if !counters.stopping.load(Ordering::Relaxed) {
            counters.unexpected_closes.fetch_add(1, Ordering::Relaxed);
        }
    });
    match tokio::time::timeout(Duration::from_secs(20), first_rx).await {
        Ok(Ok(true)) => Ok((sink, reader)),
        Ok(Ok(false)) => {
            reader.abort();
            anyhow::bail!("the first frame was not a snapshot")
        }
        _ => {
            reader.abort();
            anyhow::bail!("no first snapshot")
        }
    }
}

/// A fresh user joins; its latency is the time until a frame lists it.
async fn probe(url: String, user: String, timeout: Duration, results: Arc<Mutex<(Vec<f64>, usize)>>) {
    let needle = format!("\"{user}\"").into_bytes();
    let t0 = Instant::now();
    let seen = async {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.ok()?;
        while let Some(Ok(message)) = socket.next().await {
            if frame_bytes(&message).is_some_and(|f| memchr::memmem::find(f, &needle).is_some()) {
                let at = ms_since(t0);
                let _ = socket.close(None).await;
                return Some(at);
            }
        }
        None
    };
    let outcome = tokio::time::timeout(timeout, seen).await.ok().flatten();
    let mut results = results.lock().unwrap();
    match outcome {
        Some(ms) => results.0.push(ms),
        None => results.1 += 1,
    }
}

/// Where the durable heartbeat count comes from: the server's debug route
/// (the peer), else the server's log (`--store-url`), else nowhere.
enum DurableCounter<'a> {
    Route { config: &'a Config, rooms: &'a [String], token: String },
    Store { store: EventStore, rooms: &'a [String] },
    Unexposed,
}

impl<'a> DurableCounter<'a> {
    async fn new(config: &'a Config, rooms: &'a [String], token: String) -> anyhow::Result<Self> {
        let probe = http_get(config, &format!("/event/{}/debug/heartbeats", rooms[0]), &token).await;
        if !matches!(probe, Ok((404, _))) {
            return Ok(Self::Route { config, rooms, token });
        }
        match &config.store_url {
            Some(url) => {
                let options = StoreOptions { existing_only: true, ..StoreOptions::default() };
                let store = EventStore::open(url, options).await.context("opening --store-url")?;
                Ok(Self::Store { store, rooms })
            }
            None => Ok(Self::Unexposed),
        }
    }

    fn exposed(&self) -> bool {
        !matches!(self, Self::Unexposed)
    }

    fn source(&self) -> &'static str {
        match self {
            Self::Route { .. } => "debug route",
            Self::Store { .. } => "event log (HeartbeatReceived)",
            Self::Unexposed => "none",
        }
    }

    /// The summed count, or None when it could not be read this time.
    async fn count(&mut self) -> Option<u64> {
        match self {
            Self::Route { config, rooms, token } => {
                let mut sum = 0;
                for room in rooms.iter() {
                    let (status, body) =
                        http_get(config, &format!("/event/{room}/debug/heartbeats"), token).await.ok()?;
                    if status != 200 {
                        return None;
                    }
                    sum += serde_json::from_str::<Value>(&body).ok()?["count"].as_u64()?;
                }
                Some(sum)
            }
            Self::Store { store, rooms } => {
                // One statement, so the count is of one snapshot of the log.
                let placeholders: Vec<String> = (2..rooms.len() + 2).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "select count(*) from events where event_type = $1 and stream_id in ({})",
                    placeholders.join(", ")
                );
                let mut args: Vec<SqlValue> = vec!["HeartbeatReceived".into()];
                args.extend(rooms.iter().map(|room| SqlValue::from(StreamId::of("room", room).to_string())));
                let rows: Vec<(i64,)> = store.query_as(&sql, &args).await.ok()?;
                rows.first().map(|row| row.0 as u64)
            }
            Self::Unexposed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_nearest_rank_as_in_load_mjs() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&samples);
        assert_eq!(p["n"], 100);
        assert_eq!(p["p50"], 50.0);
        assert_eq!(p["p95"], 95.0);
        assert_eq!(p["p99"], 99.0);
        assert_eq!(p["max"], 100.0);
        assert_eq!(p["mean"], 50.5);
        let few = percentiles(&[3.0, 1.0, 2.0]);
        assert_eq!((few["p50"].as_f64(), few["p99"].as_f64()), (Some(2.0), Some(3.0)));
        let none = percentiles(&[]);
        assert_eq!((none["n"].as_u64(), none["p99"].is_null(), none["max"].is_null()), (Some(0), true, true));
    }

    #[test]
    fn rounding_keeps_the_digits_asked_for() {
        assert_eq!(round(12.3456, 2), 12.35);
        assert_eq!(round(12.3456, 0), 12.0);
    }
}
