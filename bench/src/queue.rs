//! `eventuall-bench queue`: the client side of `tests/node/bench/queue-bench.mjs`
//! in Rust, so that the servers bound the figures, not the clients (in Node
//! the 11 y-websocket clients shared one process with the reference server,
//! and a 1.1 s `sustained` run cost our server only 0.45 s of CPU).
//!
//! It owns a y-websocket client on yrs ([`Client`]: one `Doc`, one socket,
//! the provider's message handling), the four scenarios of queue-bench.mjs
//! against one server per run (`--target ours|reference`), and the report of
//! a file of their JSON lines (`--report`, for `bench/queue-compare.sh`).
//!
//! The client does on the wire what y-websocket 3.1 does: on open it sends
//! SyncStep1 (its state vector), then its awareness state (`{}`, clock 0;
//! `AWARENESS=0` sends none); it answers the server's SyncStep1 with
//! SyncStep2, applies every SyncStep2 and Update it receives, sends each
//! local transaction as one Update, one message per frame, and ignores
//! awareness. It is synced once the first SyncStep2 is applied. Entries are
//! `yrs::Any` maps `{userId, name}` in the root arrays `pending` and `live`,
//! as a JavaScript object pushed to a `Y.Array` is.
//!
//! Parameters are queue-bench.mjs's, as environment variables with its
//! defaults: `MODERATORS` (10), `UPDATES_EACH` (300), `ENTRIES` (1000),
//! `EDITS` (20000), `JOINS` (20), `COST_SIZES` (100,5000), `COST_UPDATES`
//! (1000), `EVICT_WAIT_MS` (2500), `STORM_JOIN_EVERY_MS` (100),
//! `STORM_MAX_JOINS` (200); the server is `BASE_URL` (http://127.0.0.1:8787),
//! our tokens are signed with `JWT_SECRET`, `SERVER_PIDS` are measured.
//!
//! Differences from queue-bench.mjs, on purpose:
//! - One server per run; the reference runs in a process of its own
//!   (`tests/node/bench/queue-reference-server.mjs`), so its CPU is measured
//!   too, and our server's figures no longer share a core with 11 clients.
//! - An author's moves (cost, storm, history) are made on a copy of its
//!   document before the timed part, which sends their frames (the bytes
//!   its own transactions would send, see [`premake`]): yrs's index lookups
//!   walk deleted items, and after 20,000 moves the client, not the server,
//!   would bound the run. In queue-bench.mjs making the moves is timed too.
//! - "The server holds it" (history, the end of the storm) is the author
//!   having seen its own last edit come back from the server: both servers
//!   relay an update to every connection, the sender included, and ours
//!   only once it is stored.
//! - `storm` lasts until the server has relayed the author's last edit, not
//!   only until the author's loop ends: in Rust that loop ends long before
//!   the server is done, and the storm would be over before it began. The
//!   line gives both times.
//! - `history` takes `JOINS` = 20 (queue-bench.mjs: 5) and adds a p99. Its
//!   cold joins each wait `EVICT_WAIT_MS` first (queue-bench.mjs waits before
//!   each batch of JOINS joins, so all but the first of a batch are warm),
//!   then until our `/metrics` shows no queue in memory (until the socket
//!   close fix of 2026-12-07 a queue went ~3 s after its last socket
//!   closed, not 1 s); the line says how many joins found none and how long
//!   each waited.
//! - A client does not reconnect: a close the server begins fails the run
//!   and is counted (`server_close_codes`), where y-websocket would
//!   reconnect and resync, and the run would time that instead.
//! - Waits are woken by every frame a client handles instead of polling
//!   every 5 ms, and what a socket has queued when its writer runs goes out
//!   before one flush (Node's `ws` writes each frame at once).
//! - Sockets are driven on one thread by default, as Node's are;
//!   `LOADGEN_THREADS=n` gives n (clients' readers then run in parallel).
//!
//! JSON lines go to stdout, the Markdown rows of queue-bench.mjs to stderr.
//! Every loop is bounded in count and time (`WAIT_LIMIT_S`, default 120, per
//! wait; `MAX_SECONDS`, default 600, per run).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Args, ValueEnum};
use eventuall::auth::{Authenticator, Role};
use futures::stream::{FuturesUnordered, SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Any, Array, ArrayRef, ClientID, Doc, Out, ReadTxn, StateVector, Transact, Update};

use crate::loadgen::{self, CpuMeter, env_num, ms_since, percentiles, round};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The origin of transactions that apply what the server sent: the update
/// observer sends only transactions without one (y-websocket: `origin !==
/// provider`).
const FROM_SERVER: &str = "server";
/// Local edits between yields, as queue-bench.mjs (`setImmediate`).
const SUSTAINED_YIELD_EVERY: u64 = 20;
const HISTORY_YIELD_EVERY: usize = 200;
const COST_YIELD_EVERY: usize = 50;
/// Frames written before one flush at most, so a long queue still goes out
/// in steps.
const MAX_BURST: usize = 256;
/// queue-bench.mjs's pause between the storm's fill and its edits.
const STORM_SETTLE: Duration = Duration::from_millis(500);
/// Longest a close may take before its tasks are dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Args)]
pub struct QueueArgs {
    /// The server measured: ours (`/parties/queue/<room>?token=…`) or the
    /// reference @y/websocket-server (no token; any path, the path is the
    /// room). Both get the same URL path, as in queue-bench.mjs.
    #[arg(long, env = "TARGET", value_enum, default_value = "ours")]
    target: Target,
    /// Scenarios, comma-separated, run in this order.
    #[arg(long, env = "SCENARIOS", value_enum, value_delimiter = ',', default_value = "sustained,cost,storm,history")]
    scenarios: Vec<Scenario>,
    /// Instead of running: the Markdown tables and ratios of a file of this
    /// command's JSON lines (both targets, any rounds).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Target {
    Ours,
    Reference,
}

impl Target {
    fn key(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::Reference => "reference",
        }
    }

    /// The server's name in the Markdown rows, as queue-bench.mjs prints it.
    fn name(self) -> &'static str {
        match self {
            Target::Ours => "eventuall",
            Target::Reference => "@y/websocket-server 0.1.1",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Sustained,
    Cost,
    Storm,
    History,
}

impl Scenario {
    fn key(self) -> &'static str {
        match self {
            Scenario::Sustained => "sustained",
            Scenario::Cost => "cost",
            Scenario::Storm => "storm",
            Scenario::History => "history",
        }
    }
}

/// Runs the scenarios on the generator's own runtime: one thread unless
/// `LOADGEN_THREADS` says otherwise, so that its CPU use compares with the
/// Node clients' single thread.
pub fn run(args: QueueArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.report {
        return report(path);
    }
    let threads = param("LOADGEN_THREADS", 1, 1, 64)? as usize;
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    let max_seconds = param("MAX_SECONDS", 600, 1, 86_400)?;
    runtime.block_on(async {
        let config = Config::from_env(args.target)?;
        let all = async {
            for &scenario in &args.scenarios {
                let started_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
                let generator = CpuMeter::start(vec!["self".into()]);
                let result = match scenario {
                    Scenario::Sustained => sustained(&config).await,
                    Scenario::Cost => cost(&config).await,
                    Scenario::Storm => storm(&config).await,
                    Scenario::History => history(&config).await,
                };
                // Every client is closed before the next scenario, and its
                // close counted in this one.
                config.settle_closes().await;
                let mut out = result.with_context(|| format!("scenario {}", scenario.key()))?;
                out["scenario"] = json!(scenario.key());
                out["target"] = json!(config.target.key());
                out["server"] = json!(config.target.name());
                out["label"] = json!(config.label);
                out["base_url"] = json!(config.base);
                out["run"] = json!(config.run);
                out["round"] = json!(config.round);
                out["started_at"] = json!(started_at);
                out["generator"] = json!("eventuall-bench queue");
                out["loadgen_threads"] = json!(threads);
                out["awareness"] = json!(config.awareness);
                out["server_pids"] = json!(config.server_pids);
                out["generator_cpu_pct_total"] = generator.percent();
                out["clients"] = config.stats.take();
                println!("{out}");
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(max_seconds), all)
            .await
            .with_context(|| format!("MAX_SECONDS={max_seconds} exceeded; aborting"))?
    })
}

/// An integer environment variable within `min..=max`.
fn param(name: &str, default: u64, min: u64, max: u64) -> anyhow::Result<u64> {
    let value = env_num(name, default as f64)?;
    ensure!(
        value.fract() == 0.0 && value >= min as f64 && value <= max as f64,
        "{name} must be an integer from {min} to {max}, got {value}"
    );
    Ok(value as u64)
}

/// The scenarios' sizes, queue-bench.mjs's parameters.
struct Params {
    moderators: u64,
    updates_each: u64,
    entries: u32,
    edits: u64,
    joins: u64,
    cost_sizes: Vec<u32>,
    cost_updates: u64,
    evict_wait: Duration,
    storm_join_every: Duration,
    storm_max_joins: u64,
}

impl Params {
    fn from_env() -> anyhow::Result<Self> {
        let sizes = std::env::var("COST_SIZES").unwrap_or_default();
        let sizes = if sizes.trim().is_empty() { "100,5000".to_owned() } else { sizes };
        let cost_sizes = sizes
            .split(',')
            .map(|s| {
                let size: u32 = s.trim().parse().with_context(|| format!("COST_SIZES: {s:?} is not a number"))?;
                ensure!((1..=1_000_000).contains(&size), "COST_SIZES must be from 1 to 1000000, got {size}");
                Ok(size)
            })
            .collect::<anyhow::Result<Vec<u32>>>()?;
        ensure!(cost_sizes.len() <= 8, "COST_SIZES takes at most 8 sizes");
        Ok(Self {
            moderators: param("MODERATORS", 10, 1, 1000)?,
            updates_each: param("UPDATES_EACH", 300, 1, 1_000_000)?,
            entries: param("ENTRIES", 1000, 1, 1_000_000)? as u32,
            edits: param("EDITS", 20_000, 0, 10_000_000)?,
            joins: param("JOINS", 20, 1, 10_000)?,
            cost_sizes,
            cost_updates: param("COST_UPDATES", 1000, 0, 1_000_000)?,
            evict_wait: Duration::from_millis(param("EVICT_WAIT_MS", 2500, 0, 600_000)?),
            storm_join_every: Duration::from_millis(param("STORM_JOIN_EVERY_MS", 100, 1, 60_000)?),
            storm_max_joins: param("STORM_MAX_JOINS", 200, 1, 10_000)?,
        })
    }
}

struct Config {
    target: Target,
    /// `http://host:port`.
    base: String,
    /// `host:port`, resolved.
    host: String,
    http: reqwest::Client,
    auth: Authenticator,
    run: String,
    label: String,
    round: Option<u64>,
    server_pids: Vec<String>,
    wait_limit: Duration,
    awareness: bool,
    params: Params,
    stats: Arc<Stats>,
    /// Closes under way, awaited (bounded) at the end of each scenario.
    closers: Mutex<Vec<JoinHandle<()>>>,
}

impl Config {
    fn from_env(target: Target) -> anyhow::Result<Self> {
        let (base, addr) = loadgen::base_url_from_env()?;
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let round = match std::env::var("ROUND") {
            Ok(r) if !r.is_empty() => Some(r.parse().context("ROUND must be a number")?),
            _ => None,
        };
        let run = std::env::var("RUN_ID").unwrap_or_else(|_| format!("q{millis:x}"));
        // Room names start with it: our event ids are [A-Za-z0-9_-]{1,128}.
        ensure!(
            !run.is_empty()
                && run.len() <= 64
                && run.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "RUN_ID must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"
        );
        Ok(Self {
            target,
            base,
            host: addr.to_string(),
            http: reqwest::Client::new(),
            auth: loadgen::authenticator_from_env(),
            run,
            label: std::env::var("LABEL").unwrap_or_default(),
            round,
            server_pids: loadgen::server_pids_from_env(),
            wait_limit: Duration::from_secs(param("WAIT_LIMIT_S", 120, 1, 3600)?),
            awareness: param("AWARENESS", 1, 0, 1)? == 1,
            params: Params::from_env()?,
            stats: Arc::default(),
            closers: Mutex::default(),
        })
    }

    /// A room of this run: a server that is not fresh has nothing in it.
    fn room(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    /// What y-websocket opens: `serverUrl + '/' + room` and the params, with
    /// queue-bench.mjs's server URL `ws://host/parties/queue` for both.
    fn url(&self, room: &str, user: &str, role: Role) -> String {
        match self.target {
            Target::Ours => {
                let token = loadgen::token(&self.auth, user, role);
                format!("ws://{}/parties/queue/{room}?token={token}", self.host)
            }
            Target::Reference => format!("ws://{}/parties/queue/{room}", self.host),
        }
    }

    /// CPU seconds the servers have used so far, if any were named.
    fn server_cpu(&self) -> Option<f64> {
        if self.server_pids.is_empty() {
            return None;
        }
        Some(self.server_pids.iter().map(|pid| crate::rooms::cpu_time(pid)).sum::<Duration>().as_secs_f64())
    }

    async fn settle_closes(&self) {
        let closers = std::mem::take(&mut *self.closers.lock().unwrap());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT * 2, futures::future::join_all(closers)).await;
    }

    /// Our server's queues in memory (`/metrics`); None for the reference
    /// or when unreadable.
    async fn live_queues(&self) -> Option<u64> {
        if self.target != Target::Ours {
            return None;
        }
        let response =
            self.http.get(format!("{}/metrics", self.base)).timeout(Duration::from_secs(5)).send().await.ok()?;
        let text = response.text().await.ok()?;
        let line = text.lines().find(|l| l.starts_with("eventuall_live_actors{kind=\"queue\"}"))?;
        line.split_whitespace().last()?.parse::<f64>().ok().map(|v| v as u64)
    }
}

/// What the clients saw in one scenario, for its JSON line.
#[derive(Default)]
struct Stats {
    connects: AtomicU64,
    /// Sockets that ended before the generator closed them.
    unexpected_closes: AtomicU64,
    /// Close codes of the closes the server began (1005: no code).
    close_codes: Mutex<BTreeMap<u16, u64>>,
    /// Frames yrs could not read as y-sync messages.
    bad_frames: AtomicU64,
    /// Updates yrs could not decode or apply.
    bad_updates: AtomicU64,
    /// Auth messages with a permission-denied reason.
    denied: AtomicU64,
    /// Closes whose socket took over a second to end after the client's
    /// close frame (the server's close answer came late), and the longest.
    closes_over_1s: AtomicU64,
    close_ms_max: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
}

impl Stats {
    /// The counts as JSON, reset for the next scenario.
    fn take(&self) -> Value {
        let n = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let codes = std::mem::take(&mut *self.close_codes.lock().unwrap());
        let codes: serde_json::Map<String, Value> =
            codes.iter().map(|(code, count)| (code.to_string(), json!(count))).collect();
        json!({
            "connects": n(&self.connects),
            "unexpected_closes": n(&self.unexpected_closes),
            "server_close_codes": codes,
            "bad_frames": n(&self.bad_frames),
            "bad_updates": n(&self.bad_updates),
            "denied": n(&self.denied),
            "closes_over_1s": n(&self.closes_over_1s),
            "close_ms_max": n(&self.close_ms_max),
            "frames_in": n(&self.frames_in),
            "bytes_in": n(&self.bytes_in),
            "frames_out": n(&self.frames_out),
            "bytes_out": n(&self.bytes_out),
        })
    }
}

// ---------------------------------------------------------------------------
// the client

enum Outgoing {
    Frame(Vec<u8>),
    Close,
}

/// State the socket's reader shares with the scenario.
struct Shared {
    /// Bumped after every frame handled and at the end, so waits re-check.
    version: watch::Sender<u64>,
    synced: AtomicBool,
    /// The end (clock) of this client's own insertions the server has sent
    /// back: all it sent is on the server once this reaches its own clock.
    echoed: AtomicU32,
    closing: AtomicBool,
    ended: AtomicBool,
}

/// A y-websocket provider with its document.
struct Client {
    doc: Doc,
    pending: ArrayRef,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Outgoing>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// A queue entry as a JavaScript client writes it: a plain object.
fn entry(user_id: String, name: String) -> Any {
    let map = HashMap::from([("userId".to_owned(), Any::from(user_id)), ("name".to_owned(), Any::from(name))]);
    Any::Map(Arc::new(map))
}

fn sync_frame(message: SyncMessage) -> Vec<u8> {
    Message::Sync(message).encode_v1()
}

impl Client {
    async fn connect(config: &Config, room: &str, user: &str, role: Role) -> anyhow::Result<Client> {
        // Yjs draws client ids from the u32 range (our server's own id is
        // 2^32 because of it); yrs would draw 53 bits.
        let doc = Doc::with_client_id(u64::from(uuid::Uuid::new_v4().as_u128() as u32));
        let pending = doc.get_or_insert_array("pending");
        doc.get_or_insert_array("live");
        let (out, queued) = mpsc::unbounded_channel();
        // y-websocket's `doc.on('update')`: each local transaction goes out
        // as one Update message, as it commits.
        let local = out.clone();
        doc.observe_update_v1("provider", move |txn, event| {
            if txn.origin().is_none() {
                let _ = local.send(Outgoing::Frame(sync_frame(SyncMessage::Update(event.update.clone()))));
            }
        })
        .map_err(|e| anyhow::anyhow!("observing the document: {e:?}"))?;

        let url = config.url(room, user, role);
        let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .context("handshake timeout")?
            .with_context(|| format!("connecting {user} to {room}"))?;
        // Node's `ws` sets no-delay on every socket.
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_nodelay(true)?;
        }
        config.stats.connects.fetch_add(1, Ordering::Relaxed);
        // On open, as y-websocket: SyncStep1, then the local awareness state.
        let _ = out.send(Outgoing::Frame(sync_frame(SyncMessage::SyncStep1(doc.transact().state_vector()))));
        if config.awareness {
            let state = AwarenessUpdateEntry { clock: 0, json: Arc::from("{}") };
            let update = AwarenessUpdate { clients: HashMap::from([(doc.client_id(), state)]) };
            let _ = out.send(Outgoing::Frame(Message::Awareness(update).encode_v1()));
        }
        let shared = Arc::new(Shared {
            version: watch::Sender::new(0),
            synced: AtomicBool::new(false),
            echoed: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        });
        let (sink, stream) = socket.split();
        let writer = tokio::spawn(write(sink, queued, config.stats.clone()));
        let reader = tokio::spawn(read(stream, doc.clone(), shared.clone(), out.clone(), config.stats.clone()));
        Ok(Client { doc, pending, shared, out, reader, writer })
    }

    fn synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    fn pending_len(&self) -> u32 {
        self.pending.len(&self.doc.transact())
    }

    /// Whether `pending` holds an entry of `user_id`.
    fn holds(&self, user_id: &str) -> bool {
        let txn = self.doc.transact();
        self.pending.iter(&txn).any(|value| match value {
            Out::Any(Any::Map(map)) => matches!(map.get("userId"), Some(Any::String(id)) if &**id == user_id),
            _ => false,
        })
    }

    /// Whether the server has sent back this client's insertions up to
    /// `clock` (its own clock once all it wrote is on the server).
    fn echoed(&self, clock: u32) -> bool {
        self.shared.echoed.load(Ordering::Acquire) >= clock
    }

    /// Appends `entries` to `pending` in one transaction.
    fn push(&self, entries: Vec<Any>) {
        push(&self.doc, &self.pending, entries);
    }

    /// Sends `premade` as this client's own transactions: what is queued
    /// goes out as the writer takes it, with a yield every `every`.
    async fn send_premade(&self, premade: Premade, every: usize) {
        for (i, frame) in premade.frames.into_iter().enumerate() {
            let _ = self.out.send(Outgoing::Frame(frame));
            if i % every == every - 1 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Waits until `check` holds, re-checking after every frame handled.
    async fn until(&self, config: &Config, what: &str, check: impl Fn(&Client) -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + config.wait_limit;
        let mut changes = self.shared.version.subscribe();
        loop {
            changes.borrow_and_update();
            if check(self) {
                return Ok(());
            }
            if self.shared.ended.load(Ordering::Acquire) {
                bail!("{what}: the socket closed first");
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("{what}: the client is gone"),
                Err(_) => bail!("timed out ({} s): {what}", config.wait_limit.as_secs()),
            }
        }
    }

    /// Closes the socket, as `provider.destroy()`: without waiting; the
    /// scenario's end waits for it (bounded).
    fn close(self, config: &Config) {
        self.shared.closing.store(true, Ordering::Release);
        let _ = self.out.send(Outgoing::Close);
        let Client { reader, writer, .. } = self;
        let stats = config.stats.clone();
        let closer = tokio::spawn(async move {
            let started = Instant::now();
            let abort = reader.abort_handle();
            if tokio::time::timeout(CLOSE_TIMEOUT, reader).await.is_err() {
                abort.abort();
            }
            writer.abort();
            let ms = started.elapsed().as_millis() as u64;
            if ms > 1000 {
                stats.closes_over_1s.fetch_add(1, Ordering::Relaxed);
            }
            stats.close_ms_max.fetch_max(ms, Ordering::Relaxed);
        });
        config.closers.lock().unwrap().push(closer);
    }
}

/// The socket's writer: what is queued goes out, then one flush.
async fn write(
    mut sink: SplitSink<Socket, WsMessage>,
    mut queued: mpsc::UnboundedReceiver<Outgoing>,
    stats: Arc<Stats>,
) {
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        let mut burst = 0;
        while let Some(item) = next.take() {
            match item {
                Outgoing::Frame(frame) => {
                    stats.frames_out.fetch_add(1, Ordering::Relaxed);
                    stats.bytes_out.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    if sink.feed(WsMessage::binary(frame)).await.is_err() {
                        return;
                    }
                }
                Outgoing::Close => {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    return;
                }
            }
            burst += 1;
            if burst < MAX_BURST {
                next = queued.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// The socket's reader: y-websocket's message handler.
async fn read(
    mut stream: SplitStream<Socket>,
    doc: Doc,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Outgoing>,
    stats: Arc<Stats>,
) {
    let me = doc.client_id();
    while let Some(Ok(message)) = stream.next().await {
        match message {
            WsMessage::Binary(frame) => {
                stats.frames_in.fetch_add(1, Ordering::Relaxed);
                stats.bytes_in.fetch_add(frame.len() as u64, Ordering::Relaxed);
                on_frame(&frame, &doc, me, &shared, &out, &stats);
            }
            WsMessage::Close(close) if !shared.closing.load(Ordering::Acquire) => {
                let code = close.map_or(1005, |c| u16::from(c.code));
                *stats.close_codes.lock().unwrap().entry(code).or_default() += 1;
            }
            _ => {}
        }
        shared.version.send_modify(|v| *v += 1);
    }
    if !shared.closing.load(Ordering::Acquire) {
        stats.unexpected_closes.fetch_add(1, Ordering::Relaxed);
    }
    shared.ended.store(true, Ordering::Release);
    shared.version.send_modify(|v| *v += 1);
}

fn on_frame(
    frame: &[u8],
    doc: &Doc,
    me: ClientID,
    shared: &Shared,
    out: &mpsc::UnboundedSender<Outgoing>,
    stats: &Stats,
) {
    let mut decoder = DecoderV1::from(frame);
    for message in MessageReader::new(&mut decoder) {
        match message {
            Ok(Message::Sync(SyncMessage::SyncStep1(state_vector))) => {
                let diff = doc.transact().encode_state_as_update_v1(&state_vector);
                let _ = out.send(Outgoing::Frame(sync_frame(SyncMessage::SyncStep2(diff))));
            }
            Ok(Message::Sync(SyncMessage::SyncStep2(update))) => {
                apply(&update, doc, me, shared, stats);
                shared.synced.store(true, Ordering::Release);
            }
            Ok(Message::Sync(SyncMessage::Update(update))) => apply(&update, doc, me, shared, stats),
            Ok(Message::Auth(Some(_))) => {
                stats.denied.fetch_add(1, Ordering::Relaxed);
            }
            // Awareness, awareness queries, other types: ignored.
            Ok(_) => {}
            Err(_) => {
                stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

fn apply(bytes: &[u8], doc: &Doc, me: ClientID, shared: &Shared, stats: &Stats) {
    let Ok(update) = Update::decode_v1(bytes) else {
        stats.bad_updates.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let own_end = update
        .insertions(true)
        .iter()
        .find(|(client, _)| **client == me)
        .and_then(|(_, ranges)| ranges.iter().map(|r| r.end).max());
    if let Some(end) = own_end {
        shared.echoed.fetch_max(end, Ordering::AcqRel);
    }
    if doc.transact_mut_with(FROM_SERVER).apply_update(update).is_err() {
        stats.bad_updates.fetch_add(1, Ordering::Relaxed);
    }
}

fn push(doc: &Doc, pending: &ArrayRef, entries: Vec<Any>) {
    let mut txn = doc.transact_mut();
    let len = pending.len(&txn);
    pending.insert_range(&mut txn, len, entries);
}

/// queue-bench.mjs's move: delete at `from`, insert at `to` (clamped), one
/// transaction.
fn move_entry(doc: &Doc, pending: &ArrayRef, from: u32, to: u32) -> anyhow::Result<()> {
    let mut txn = doc.transact_mut();
    let Some(Out::Any(entry)) = pending.get(&txn, from) else { bail!("no entry at {from}") };
    pending.remove(&mut txn, from);
    let len = pending.len(&txn);
    pending.insert(&mut txn, to.min(len), entry);
    Ok(())
}

/// An author's moves, made beforehand: the frames its transactions send,
/// and its clock after the last.
struct Premade {
    frames: Vec<Vec<u8>>,
    end: u32,
}

/// `moves` of queue-bench.mjs's moves from `seed` (then a `marker` entry,
/// if given) made on a copy of `author`'s document, same client id and
/// state, so that the timed part only sends them. yrs finds an index by
/// walking the array, deleted items included: after 20,000 moves a move
/// costs ~0.5 ms (Yjs's search markers make it O(1)), which would bound the
/// runs by the client. The bytes are the ones the author's own transactions
/// would send; the author makes no edit of its own until they are back.
fn premake(author: &Client, seed: f64, moves: u64, size: u32, marker: Option<Any>) -> anyhow::Result<Premade> {
    let copy = Doc::with_client_id(author.doc.client_id().get());
    let pending = copy.get_or_insert_array("pending");
    copy.get_or_insert_array("live");
    let state = author.doc.transact().encode_state_as_update_v1(&StateVector::default());
    copy.transact_mut().apply_update(Update::decode_v1(&state)?)?;
    let frames: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = frames.clone();
    copy.observe_update_v1("premade", move |_, event| {
        sink.lock().unwrap().push(sync_frame(SyncMessage::Update(event.update.clone())));
    })
    .map_err(|e| anyhow::anyhow!("observing the copy: {e:?}"))?;
    let mut lcg = Lcg(seed);
    for _ in 0..moves {
        let (from, to) = lcg.next_move(size);
        move_entry(&copy, &pending, from, to)?;
    }
    if let Some(marker) = marker {
        push(&copy, &pending, vec![marker]);
    }
    let end = copy.transact().state_vector().get(&copy.client_id());
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    Ok(Premade { frames, end })
}

/// queue-bench.mjs's generator of moves, in f64 as JavaScript computes it
/// (the product passes 2^53, so integer arithmetic would give other moves).
struct Lcg(f64);

impl Lcg {
    /// The next `(from, to)` in a list of `size`.
    fn next_move(&mut self, size: u32) -> (u32, u32) {
        self.0 = (self.0 * 1_103_515_245.0 + 12_345.0) % 2_147_483_648.0;
        let seed = self.0 as u64;
        ((seed % u64::from(size)) as u32, ((seed >> 8) % u64::from(size)) as u32)
    }
}

async fn connect_all(config: &Config, room: &str, users: &[(String, Role)]) -> anyhow::Result<Vec<Client>> {
    let clients =
        futures::future::try_join_all(users.iter().map(|(user, role)| Client::connect(config, room, user, *role)))
            .await?;
    for client in &clients {
        client.until(config, "synced", Client::synced).await?;
    }
    Ok(clients)
}

/// A late joiner: ms from the socket's connect to synced; it must hold
/// `expected` entries then.
async fn late_join(config: &Config, room: &str, user: String, expected: u32) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let late = Client::connect(config, room, &user, Role::Participant).await?;
    late.until(config, &format!("{user} synced"), Client::synced).await?;
    let ms = ms_since(t0);
    let held = late.pending_len();
    late.close(config);
    ensure!(held == expected, "late joiner {user} has {held} of {expected} entries");
    Ok(ms)
}

/// Waits until the servers used under one clock tick of CPU in each of two
/// consecutive 250 ms windows (30 s at most), as queue-bench.mjs
/// `quiesce`; without pids, 500 ms. Answers the CPU ms used meanwhile.
async fn quiesce(config: &Config) -> Option<f64> {
    let Some(start) = config.server_cpu() else {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return None;
    };
    let mut quiet = 0;
    for _ in 0..120 {
        if quiet >= 2 {
            break;
        }
        let a = config.server_cpu().unwrap_or(0.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
        quiet = if config.server_cpu().unwrap_or(0.0) - a < 0.010 { quiet + 1 } else { 0 };
    }
    Some(round((config.server_cpu().unwrap_or(0.0) - start) * 1e3, 0))
}

fn cpu_since(config: &Config, before: Option<f64>) -> Option<f64> {
    Some(config.server_cpu()? - before?)
}

/// queue-bench.mjs's median: the upper one of an even count.
fn median(sorted: &[f64]) -> Option<f64> {
    sorted.get(sorted.len() / 2).copied()
}

/// Nearest rank, as queue-bench.mjs `pct`.
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn join_stats(times: &[f64]) -> Value {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let r = |x: Option<f64>| x.map(|x| round(x, 2));
    json!({
        "n": sorted.len(),
        "median": r(median(&sorted)),
        "p50": r(pct(&sorted, 50.0)),
        "p99": r(pct(&sorted, 99.0)),
        "max": r(sorted.last().copied()),
        "ms": percentiles(&sorted),
    })
}

fn ms_cell(value: &Value) -> String {
    value.as_f64().map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

// ---------------------------------------------------------------------------
// scenarios

/// MODERATORS clients push UPDATES_EACH entries each, one transaction each;
/// rate = entries / time until an observer holds them all.
async fn sustained(config: &Config) -> anyhow::Result<Value> {
    let p = &config.params;
    let room = config.room("sustained");
    let mut users: Vec<(String, Role)> = (0..p.moderators).map(|i| (format!("mod-{i}"), Role::Moderator)).collect();
    users.push(("observer".into(), Role::Participant));
    let mut clients = connect_all(config, &room, &users).await?;
    let observer = clients.pop().context("the observer")?;
    let total = p.moderators * p.updates_each;
    let cpu_before = config.server_cpu();
    let server_pct = CpuMeter::start(config.server_pids.clone());
    let generator = CpuMeter::start(vec!["self".into()]);
    let started = Instant::now();
    futures::future::join_all(clients.iter().enumerate().map(|(i, moderator)| async move {
        for n in 0..p.updates_each {
            moderator.push(vec![entry(format!("u-{i}-{n}"), format!("User {i}/{n}"))]);
            if n % SUSTAINED_YIELD_EVERY == SUSTAINED_YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
    }))
    .await;
    let pushed_s = started.elapsed().as_secs_f64();
    let what = format!("observer holds {total} entries");
    observer.until(config, &what, |o| u64::from(o.pending_len()) == total).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (generator_pct, server_pct) = (generator.percent(), server_pct.percent());
    let cpu_s = cpu_since(config, cpu_before);
    for client in clients.into_iter().chain([observer]) {
        client.close(config);
    }
    let rate = total as f64 / seconds;
    let server = match config.target {
        Target::Ours => "eventuall (each update appended before relay)",
        Target::Reference => "@y/websocket-server 0.1.1 (in memory)",
    };
    eprintln!("| server | updates | seconds | updates/s |");
    eprintln!("|---|---:|---:|---:|");
    eprintln!("| {server} | {total} | {seconds:.2} | {rate:.0} |");
    eprintln!(
        "server CPU over the run: {} s; generator CPU: {generator_pct} %",
        cpu_s.map_or("?".into(), |s| format!("{s:.2}"))
    );
    Ok(json!({
        "moderators": p.moderators,
        "updates_each": p.updates_each,
        "total": total,
        "seconds": round(seconds, 3),
        "rate": round(rate, 1),
        "pushed_s": round(pushed_s, 3),
        "server_cpu_s": cpu_s.map(|s| round(s, 2)),
        "server_cpu_pct": server_pct,
        "generator_cpu_pct": generator_pct,
    }))
}

/// Per-update cost by queue size: COST_UPDATES moves and a marker, timed
/// until an observer holds the marker.
async fn cost(config: &Config) -> anyhow::Result<Value> {
    let p = &config.params;
    let mut rows = Vec::new();
    eprintln!(
        "| server | queue entries | per update, µs (wall, {} moves) | server CPU per update, µs |",
        p.cost_updates
    );
    eprintln!("|---|---:|---:|---:|");
    for &size in &p.cost_sizes {
        let room = config.room(&format!("cost-{size}"));
        let users = [("mod-0".to_owned(), Role::Moderator), ("observer".to_owned(), Role::Participant)];
        let mut clients = connect_all(config, &room, &users).await?;
        let observer = clients.pop().context("the observer")?;
        let author = clients.pop().context("the author")?;
        author.push((0..size).map(|i| entry(format!("c{i}"), format!("C{i}"))).collect());
        observer.until(config, &format!("observer holds {size} entries"), |o| o.pending_len() == size).await?;
        // The fill leaves work behind on our server (projections read the
        // queued events; the document is snapshotted): wait it out, or the
        // moves are charged for it.
        let premade_at = Instant::now();
        let marker = entry("marker".into(), "Marker".into());
        let premade = premake(&author, 7.0, p.cost_updates, size, Some(marker))?;
        let premade_s = premade_at.elapsed().as_secs_f64();
        let settle_cpu_ms = quiesce(config).await;
        let cpu_before = config.server_cpu();
        let generator = CpuMeter::start(vec!["self".into()]);
        let started = Instant::now();
        author.send_premade(premade, COST_YIELD_EVERY).await;
        let holds_marker = |o: &Client| o.pending_len() == size + 1 && o.holds("marker");
        observer.until(config, "observer holds the marker", holds_marker).await?;
        let ms = ms_since(started);
        let cpu_s = cpu_since(config, cpu_before);
        let generator_pct = generator.percent();
        author.close(config);
        observer.close(config);
        let updates = (p.cost_updates + 1) as f64;
        let per_update_us = ms * 1000.0 / updates;
        let cpu_us = cpu_s.map(|s| s * 1e6 / updates);
        eprintln!(
            "| {} | {size} | {per_update_us:.0} | {} |",
            config.target.name(),
            cpu_us.map_or("?".into(), |c| format!("{c:.0}"))
        );
        rows.push(json!({
            "entries": size,
            "wall_ms": round(ms, 1),
            "per_update_us": round(per_update_us, 1),
            "server_cpu_us": cpu_us.map(|c| round(c, 1)),
            "settle_cpu_ms": settle_cpu_ms,
            "premade_s": round(premade_s, 3),
            "generator_cpu_pct": generator_pct,
        }));
    }
    let first = rows.first().and_then(|r| r["per_update_us"].as_f64());
    let last = rows.last().and_then(|r| r["per_update_us"].as_f64());
    let ratio = first.zip(last).map(|(a, b)| round(b / a, 2));
    eprintln!("cost ratio {} / {} entries: {}", p.cost_sizes.last().unwrap_or(&0), p.cost_sizes[0], json!(ratio));
    Ok(json!({ "cost_updates": p.cost_updates, "sizes": rows, "ratio_last_first": ratio }))
}

/// Late joiners every STORM_JOIN_EVERY_MS while one moderator's EDITS moves
/// go through the server.
async fn storm(config: &Config) -> anyhow::Result<Value> {
    let p = &config.params;
    let room = config.room("storm");
    let author = Client::connect(config, &room, "mod-0", Role::Moderator).await?;
    author.until(config, "author synced", Client::synced).await?;
    author.push((0..p.entries).map(|i| entry(format!("s{i}"), format!("S{i}"))).collect());
    let premade_at = Instant::now();
    let premade = premake(&author, 13.0, p.edits, p.entries, None)?;
    let (premade_s, end) = (premade_at.elapsed().as_secs_f64(), premade.end);
    // queue-bench.mjs's pause after the fill; the premade moves took some.
    tokio::time::sleep(STORM_SETTLE.saturating_sub(premade_at.elapsed())).await;
    let cpu_before = config.server_cpu();
    let started = Instant::now();
    let relayed = AtomicBool::new(false);
    let edits = async {
        author.send_premade(premade, HISTORY_YIELD_EVERY).await;
        let sent_s = started.elapsed().as_secs_f64();
        let result = author.until(config, "the server relays the last edit", |a| a.echoed(end)).await;
        relayed.store(true, Ordering::Release);
        result.map(|()| (sent_s, started.elapsed().as_secs_f64()))
    };
    let joins = async {
        let mut running = FuturesUnordered::new();
        let (mut times, mut failures) = (Vec::new(), Vec::new());
        let mut started_joins = 0;
        let deadline = Instant::now() + config.wait_limit;
        let mut tick = tokio::time::interval(p.storm_join_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let over = relayed.load(Ordering::Acquire) || started_joins >= p.storm_max_joins;
                    if over || Instant::now() > deadline {
                        break;
                    }
                    running.push(late_join(config, &room, format!("storm-{started_joins}"), p.entries));
                    started_joins += 1;
                }
                Some(result) = running.next(), if !running.is_empty() => match result {
                    Ok(ms) => times.push(ms),
                    Err(error) => failures.push(format!("{error:#}")),
                },
            }
        }
        // Each join is bounded by its own waits.
        while let Some(result) = running.next().await {
            match result {
                Ok(ms) => times.push(ms),
                Err(error) => failures.push(format!("{error:#}")),
            }
        }
        (times, failures, started_joins)
    };
    let (edited, (times, failures, started_joins)) = tokio::join!(edits, joins);
    let (sent_s, relayed_s) = edited?;
    let cpu_s = cpu_since(config, cpu_before);
    author.close(config);
    let stats = join_stats(&times);
    eprintln!("| server | late joiners during {} edits | sync p50 ms | p99 ms | max ms |", p.edits);
    eprintln!("|---|---:|---:|---:|---:|");
    eprintln!(
        "| {} | {} | {} | {} | {} |",
        config.target.name(),
        times.len(),
        ms_cell(&stats["p50"]),
        ms_cell(&stats["p99"]),
        ms_cell(&stats["max"])
    );
    for failure in failures.iter().take(5) {
        eprintln!("storm join failed: {failure}");
    }
    Ok(json!({
        "entries": p.entries,
        "edits": p.edits,
        "join_every_ms": p.storm_join_every.as_millis() as u64,
        "joins_started": started_joins,
        "joins": times.len(),
        "failed": failures.len(),
        "failures": failures.iter().take(5).collect::<Vec<_>>(),
        "p50": stats["p50"],
        "p99": stats["p99"],
        "max": stats["max"],
        "sync_ms": stats,
        "premade_s": round(premade_s, 3),
        "edits_sent_s": round(sent_s, 3),
        "edits_relayed_s": round(relayed_s, 3),
        "server_cpu_s": cpu_s.map(|s| round(s, 2)),
    }))
}

/// Late joiners on a queue of ENTRIES entries with EDITS moves of history:
/// warm (the queue in memory), and for ours cold (evicted first).
async fn history(config: &Config) -> anyhow::Result<Value> {
    let p = &config.params;
    let room = config.room("history");
    let author = Client::connect(config, &room, "mod-0", Role::Moderator).await?;
    author.until(config, "author synced", Client::synced).await?;
    author.push((0..p.entries).map(|i| entry(format!("p{i}"), format!("P{i}"))).collect());
    let premade_at = Instant::now();
    let premade = premake(&author, 11.0, p.edits, p.entries, None)?;
    let (premade_s, end) = (premade_at.elapsed().as_secs_f64(), premade.end);
    let started = Instant::now();
    author.send_premade(premade, HISTORY_YIELD_EVERY).await;
    let edits_s = started.elapsed().as_secs_f64();
    author.until(config, "the server holds the history", |a| a.echoed(end)).await?;
    let held_s = started.elapsed().as_secs_f64();
    // One reader stays while the warm joins are timed, as queue-bench.mjs.
    let keeper = Client::connect(config, &room, "keeper", Role::Participant).await?;
    let entries = p.entries;
    keeper.until(config, "keeper synced", |k| k.synced() && k.pending_len() == entries).await?;
    author.close(config);
    // One untimed join first, as queue-bench.mjs.
    late_join(config, &room, "late-warm-up".into(), entries).await?;
    let mut warm = Vec::new();
    for j in 0..p.joins {
        warm.push(late_join(config, &room, format!("late-{j}"), entries).await?);
    }
    keeper.close(config);
    config.settle_closes().await;
    let (mut cold, mut evicted, mut evict_ms) = (Vec::new(), 0, Vec::new());
    if config.target == Target::Ours {
        // The queue's actor retires EVENTUALL_EVICT_AFTER after its last
        // connection left: each join then loads snapshot + tail.
        for j in 0..p.joins {
            let waited = Instant::now();
            tokio::time::sleep(p.evict_wait).await;
            config.settle_closes().await;
            // EVICT_WAIT_MS is the least wait: the queue may take longer to
            // go (its last socket's close is slow, see `closes_over_1s`), and
            // a join that finds it in memory is not cold.
            let deadline = waited + config.wait_limit;
            while config.live_queues().await.is_some_and(|n| n > 0) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if config.live_queues().await == Some(0) {
                evicted += 1;
            }
            evict_ms.push(ms_since(waited));
            cold.push(late_join(config, &room, format!("cold-{j}"), entries).await?);
        }
    }
    let warm = join_stats(&warm);
    let cold = (config.target == Target::Ours).then(|| join_stats(&cold));
    eprintln!("| server | late joiner sync, median ms | p99 ms | max ms |");
    eprintln!("|---|---:|---:|---:|");
    let row = |name: &str, s: &Value| {
        eprintln!("| {name} | {} | {} | {} |", ms_cell(&s["median"]), ms_cell(&s["p99"]), ms_cell(&s["max"]));
    };
    match &cold {
        Some(cold) => {
            row("eventuall, queue in memory", &warm);
            row("eventuall, evicted: snapshot + tail from the log", cold);
            eprintln!("cold joins that found no queue in memory: {evicted} of {}", p.joins);
            let waited = percentiles(&evict_ms);
            eprintln!("waited for the eviction before each: median {} ms, max {} ms", waited["p50"], waited["max"]);
        }
        None => row("@y/websocket-server 0.1.1, in memory", &warm),
    }
    Ok(json!({
        "entries": p.entries,
        "edits": p.edits,
        "joins": p.joins,
        "premade_s": round(premade_s, 3),
        "edits_s": round(edits_s, 3),
        "held_s": round(held_s, 3),
        "warm": warm,
        "cold": cold,
        "cold_evicted": (config.target == Target::Ours).then_some(evicted),
        "evict_wait_ms": p.evict_wait.as_millis() as u64,
        "evicted_after_ms": (config.target == Target::Ours).then(|| percentiles(&evict_ms)),
    }))
}

// ---------------------------------------------------------------------------
// report

/// The Markdown tables of a file of JSON lines, both targets side by side
/// per round, with the ratios.
fn report(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["generator"] == "eventuall-bench queue")
        .collect();
    let of = |scenario: &str| -> Vec<&Value> { lines.iter().filter(|v| v["scenario"] == scenario).collect() };
    let round_of = |v: &Value| v["round"].as_u64().map_or("–".to_owned(), |r| r.to_string());
    // The last line of a target in a round.
    let pick = |rows: &[&Value], target: &str, round: &Value| -> Option<Value> {
        rows.iter().rev().find(|v| v["target"] == target && v["round"] == *round).map(|v| (*v).clone())
    };
    let rounds = |rows: &[&Value]| -> Vec<Value> {
        let mut seen: Vec<Value> = Vec::new();
        for v in rows {
            if !seen.contains(&v["round"]) {
                seen.push(v["round"].clone());
            }
        }
        seen
    };
    let f = |v: &Value, digits: usize| v.as_f64().map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"));

    let sustained = of("sustained");
    if !sustained.is_empty() {
        println!("| round | server | updates | seconds | updates/s | server CPU s | generator CPU % |");
        println!("|---:|---|---:|---:|---:|---:|---:|");
        for v in &sustained {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                round_of(v),
                v["server"].as_str().unwrap_or("?"),
                v["total"],
                f(&v["seconds"], 2),
                f(&v["rate"], 0),
                f(&v["server_cpu_s"], 2),
                f(&v["generator_cpu_pct"], 1)
            );
        }
        let mut ratios = Vec::new();
        for r in rounds(&sustained) {
            if let (Some(a), Some(b)) = (pick(&sustained, "ours", &r), pick(&sustained, "reference", &r))
                && let (Some(a), Some(b)) = (a["rate"].as_f64(), b["rate"].as_f64())
            {
                ratios.push(a / b);
            }
        }
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "sustained rate, eventuall / reference: {} (median {})\n",
            listed.join(", "),
            median(&ratios).map_or("–".into(), |m| format!("{m:.2}"))
        );
    }

    let cost = of("cost");
    if !cost.is_empty() {
        println!("| round | server | queue entries | per update, µs (wall) | server CPU per update, µs |");
        println!("|---:|---|---:|---:|---:|");
        for v in &cost {
            for size in v["sizes"].as_array().into_iter().flatten() {
                println!(
                    "| {} | {} | {} | {} | {} |",
                    round_of(v),
                    v["server"].as_str().unwrap_or("?"),
                    size["entries"],
                    f(&size["per_update_us"], 0),
                    f(&size["server_cpu_us"], 0)
                );
            }
        }
        for v in &cost {
            println!(
                "round {}: {} cost ratio last / first size {}",
                round_of(v),
                v["server"].as_str().unwrap_or("?"),
                f(&v["ratio_last_first"], 2)
            );
        }
        println!();
    }

    let storm = of("storm");
    if !storm.is_empty() {
        println!("| round | server | late joiners during the edits | failed | sync p50 ms | p99 ms | max ms |");
        println!("|---:|---|---:|---:|---:|---:|---:|");
        for v in &storm {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                round_of(v),
                v["server"].as_str().unwrap_or("?"),
                v["joins"],
                v["failed"],
                f(&v["p50"], 1),
                f(&v["p99"], 1),
                f(&v["max"], 1)
            );
        }
        for r in rounds(&storm) {
            let p99 = |t: &str| pick(&storm, t, &r).map_or("–".into(), |v| f(&v["p99"], 1));
            println!("storm p99 ms, round {}: eventuall {} vs reference {}", json!(r), p99("ours"), p99("reference"));
        }
        println!();
    }

    let history = of("history");
    if !history.is_empty() {
        println!("| round | server | late joiner sync, median ms | p99 ms | max ms |");
        println!("|---:|---|---:|---:|---:|");
        for v in &history {
            let name = v["server"].as_str().unwrap_or("?");
            let warm = &v["warm"];
            let (warm_name, cold_name) = if v["target"] == "ours" {
                (format!("{name}, queue in memory"), format!("{name}, evicted: snapshot + tail from the log"))
            } else {
                (format!("{name}, in memory"), String::new())
            };
            println!(
                "| {} | {warm_name} | {} | {} | {} |",
                round_of(v),
                f(&warm["median"], 1),
                f(&warm["p99"], 1),
                f(&warm["max"], 1)
            );
            let cold = &v["cold"];
            if cold.is_object() {
                println!(
                    "| {} | {cold_name} | {} | {} | {} |",
                    round_of(v),
                    f(&cold["median"], 1),
                    f(&cold["p99"], 1),
                    f(&cold["max"], 1)
                );
            }
        }
        for r in rounds(&history) {
            let ours = pick(&history, "ours", &r);
            let reference = pick(&history, "reference", &r);
            let at = |v: &Option<Value>, key: &str| v.as_ref().map_or("–".into(), |v| f(&v[key]["p99"], 1));
            println!(
                "history p99 ms, round {}: eventuall warm {} / cold {} vs reference {}",
                json!(r),
                at(&ours, "warm"),
                at(&ours, "cold"),
                at(&reference, "warm")
            );
        }
    }
    let troubled: Vec<String> = lines
        .iter()
        .filter(|v| {
            let c = &v["clients"];
            c["unexpected_closes"].as_u64().unwrap_or(0) > 0
                || c["bad_frames"].as_u64().unwrap_or(0) > 0
                || c["bad_updates"].as_u64().unwrap_or(0) > 0
                || c["server_close_codes"].as_object().is_some_and(|m| !m.is_empty())
        })
        .map(|v| format!("{} {} round {}: {}", v["target"], v["scenario"], round_of(v), v["clients"]))
        .collect();
    for line in &troubled {
        println!("client trouble: {line}");
    }
    // A close the server answers late keeps its connection in the room
    // (receiving every update) until it does.
    for target in ["ours", "reference"] {
        let of_target = lines.iter().filter(|v| v["target"] == target);
        let (slow, max) = of_target.fold((0, 0), |(slow, max), v| {
            let c = &v["clients"];
            (slow + c["closes_over_1s"].as_u64().unwrap_or(0), max.max(c["close_ms_max"].as_u64().unwrap_or(0)))
        });
        if slow > 0 {
            println!("{target}: {slow} client closes took over 1 s to end (longest {max} ms)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_moves_are_the_ones_javascript_computes() {
        // node -e 'let s=11; for (let i=0;i<5;i++){ s=(s*1103515245+12345)%2147483648;
        //   console.log(s%1000,(s>>8)%1000) }'
        let mut lcg = Lcg(11.0);
        let moves: Vec<(u32, u32)> = (0..5).map(|_| lcg.next_move(1000)).collect();
        assert_eq!(moves, [(800, 678), (504, 209), (520, 45), (800, 425), (384, 189)]);
        assert_eq!(lcg.0, 834_608_384.0);
        // The 1000th move of `cost` at 5000 entries, seed 7.
        let mut lcg = Lcg(7.0);
        let last = (0..1000).map(|_| lcg.next_move(5000)).last();
        assert_eq!((lcg.0, last), (2_134_882_624.0, Some((2624, 4385))));
    }

    #[test]
    fn percentiles_are_the_nearest_rank_and_the_median_the_upper() {
        let sorted: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median(&sorted), Some(11.0));
        assert_eq!(pct(&sorted, 99.0), Some(20.0));
        assert_eq!(pct(&sorted, 50.0), Some(10.0));
        assert_eq!(pct(&[], 99.0), None);
    }
}
