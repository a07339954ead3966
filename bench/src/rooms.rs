//! `eventuall-bench rooms`: event rooms under load, against the real service.
//!
//! The service runs in a child process: this same binary re-executed as the
//! hidden `rooms-server` subcommand, which builds `Application` exactly as
//! `eventuall serve` does and answers `stats` (its own VmRSS and
//! `rooms.live_rooms()`) and `stop` (graceful shutdown, which flushes pending
//! appends) on stdin. A separate process keeps the server's RSS and CPU time
//! apart from the clients', while still reaching internals a plain
//! `eventuall` binary would not expose. Clients are tokio-tungstenite sockets
//! on a multi-threaded runtime in this process; everything is on 127.0.0.1.
//!
//! Phases (each on a fresh server and database):
//! - `heartbeat`: 2,000 clients in 20 rooms, one heartbeat per second each;
//!   every heartbeat sent must be in the log as `HeartbeatReceived`. Newcomers
//!   join meanwhile: join → first snapshot latency.
//! - `fanout`: 500 clients in one room; a newcomer joins; time until the last
//!   of the 500 has a snapshot listing the newcomer.
//! - `memory`: server RSS per idle connection, per live idle room and per
//!   evicted room.
//!
//! Every loop is bounded by a count and a time limit. Results are printed as
//! Markdown for `docs/BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use eventuall::auth::{Authenticator, Claims, Role};
use eventuall::config::ServeConfig;
use eventuall::server::Application;
use eventuall::store::{EventStore, StoreOptions, StreamId};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Shared by the bench and its server child; never a production secret.
pub(crate) const SECRET: &str = "eventuall-bench-secret";
pub(crate) const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;
/// Longest wait for any single socket step (connect, first frame, close):
/// a step slower than this is a failure, not a sample.
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(10);
/// Sockets opened at once while filling rooms: enough to fill 2,000 seats in
/// seconds, few enough not to overflow the listen backlog.
pub(crate) const CONNECT_CONCURRENCY: usize = 64;

#[derive(Args)]
pub struct RoomsArgs {
    /// Which measurement to run.
    #[arg(long, value_enum, default_value = "all")]
    phase: Phase,
    /// `postgres://…` server (a fresh database is made per phase); SQLite in
    /// a temporary directory without it.
    #[arg(long)]
    database_url: Option<String>,
    /// Rooms of the heartbeat load.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Clients per room of the heartbeat load.
    #[arg(long, default_value_t = 100)]
    clients_per_room: usize,
    /// How long the heartbeat load runs (one heartbeat per client per second).
    #[arg(long, default_value = "30s")]
    duration: humantime::Duration,
    /// A newcomer joins a room this often during the heartbeat load.
    #[arg(long, default_value = "100ms")]
    join_every: humantime::Duration,
    /// Clients in the fanout room.
    #[arg(long, default_value_t = 500)]
    fanout_clients: usize,
    /// Newcomers (samples) of the fanout phase.
    #[arg(long, default_value_t = 50)]
    fanout_joins: usize,
    /// Idle connections of the memory phase.
    #[arg(long, default_value_t = 2_000)]
    idle_connections: usize,
    /// Rooms per round of the memory phase.
    #[arg(long, default_value_t = 1_000)]
    memory_rooms: usize,
    /// Rounds of create-then-evict in the memory phase; growth that
    /// survives every round is a leak, growth in round 1 only is the
    /// allocator keeping freed memory.
    #[arg(long, default_value_t = 3)]
    memory_rounds: usize,
    /// The server's `--evict-after` in the memory phase: long enough to
    /// create every room and read the RSS while all are live, short enough
    /// to wait for their eviction.
    #[arg(long, default_value = "10s")]
    evict_after: humantime::Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    All,
    Heartbeat,
    Fanout,
    Memory,
}

pub async fn run(args: RoomsArgs) -> anyhow::Result<()> {
    let (soft, hard) = fd_limits();
    println!("open-file limit: soft {soft}, hard {hard} (each client socket costs one fd here and one in the server)");
    if matches!(args.phase, Phase::All | Phase::Heartbeat) {
        heartbeat_phase(&args).await?;
    }
    if matches!(args.phase, Phase::All | Phase::Fanout) {
        fanout_phase(&args).await?;
    }
    if matches!(args.phase, Phase::All | Phase::Memory) {
        memory_phase(&args).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- server --

/// The hidden `rooms-server` subcommand: the service, driven over stdin.
#[derive(Args)]
pub struct ServerArgs {
    #[command(flatten)]
    config: ServeConfig,
}

pub async fn serve_child(args: ServerArgs) -> anyhow::Result<()> {
    serve_driven(args.config, |state| state.rooms.live_rooms()).await
}

/// Builds the service as `eventuall serve` does and drives it over stdin:
/// `stats` answers `stats {VmRSS} {live(state)}`, `stop` (or stdin closing)
/// stops it gracefully. `live` counts the actors the caller measures (rooms
/// for `rooms-server`, interviews for `interviews-server`).
pub(crate) async fn serve_driven(
    config: ServeConfig,
    live: impl Fn(&eventuall::http::AppState) -> usize,
) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let shutdown = app.shutdown_handle();
    println!("listening {}", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Ends on `stop` or when the parent goes away (stdin closes).
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "stats" => println!("stats {} {}", rss_bytes("self")?, live(&state)),
            "stop" => break,
            other => eprintln!("rooms-server: unknown command {other:?}"),
        }
    }
    let _ = shutdown.send(true);
    server.await??;
    println!("stopped");
    Ok(())
}

/// A running `rooms-server` (or `interviews-server`) child.
pub(crate) struct Server {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pub(crate) addr: SocketAddr,
    pid: u32,
    pub(crate) database_url: String,
    /// The temporary directory of a SQLite database, or the PostgreSQL
    /// server to drop the fresh database from.
    _dir: Option<tempfile::TempDir>,
    pg_server: Option<String>,
}

/// How to start a server child: which hidden subcommand, on which
/// database and address, with which extra flags and environment.
pub(crate) struct Child<'a> {
    pub(crate) subcommand: &'a str,
    pub(crate) database_url: &'a str,
    pub(crate) listen: &'a str,
    pub(crate) extra: &'a [&'a str],
    pub(crate) env: &'a [(&'a str, &'a str)],
}

pub(crate) struct Stats {
    pub(crate) rss: u64,
    /// Live rooms of a `rooms-server`, live interviews of an
    /// `interviews-server`.
    pub(crate) live_rooms: usize,
}

impl Server {
    async fn start(database: Option<&str>, evict_after: &str) -> anyhow::Result<Self> {
        Self::spawn("rooms-server", database, &["--evict-after", evict_after]).await
    }

    /// Starts this binary as the hidden `subcommand` on 127.0.0.1:0 with a
    /// fresh database (PostgreSQL on `database`, else SQLite in a temporary
    /// directory) and `extra` flags; returns once it listens.
    pub(crate) async fn spawn(subcommand: &str, database: Option<&str>, extra: &[&str]) -> anyhow::Result<Self> {
        let (database_url, dir, pg_server) = match database {
            Some(server) => (crate::fresh_postgres(server).await?, None, Some(server.to_owned())),
            None => {
                let dir = tempfile::tempdir()?;
                (format!("sqlite://{}", dir.path().join("rooms.db").display()), Some(dir), None)
            }
        };
        let child = Child { subcommand, database_url: &database_url, listen: "127.0.0.1:0", extra, env: &[] };
        let mut server = Self::spawn_on(child).await?;
        server._dir = dir;
        server.pg_server = pg_server;
        Ok(server)
    }

    /// Starts `child` on a database somebody else made (and drops); returns
    /// once it listens.
    pub(crate) async fn spawn_on(child: Child<'_>) -> anyhow::Result<Self> {
        let Child { subcommand, database_url, listen, extra, env } = child;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args([subcommand, "--listen", listen, "--jwt-secret", SECRET])
            .args(["--database-url", database_url])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {subcommand} child"))?;
        let pid = child.id().context("child pid")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("server start timed out")??
            .context("server exited before listening")?;
        let addr = first.strip_prefix("listening ").context("unexpected first line")?.parse()?;
        let database_url = database_url.to_owned();
        Ok(Self { child, stdin, lines, addr, pid, database_url, _dir: None, pg_server: None })
    }

    pub(crate) async fn stats(&mut self) -> anyhow::Result<Stats> {
        self.stdin.write_all(b"stats\n").await?;
        let line = tokio::time::timeout(STEP_LIMIT, self.lines.next_line()).await??.context("server gone")?;
        let mut parts = line.strip_prefix("stats ").context("unexpected stats line")?.split(' ');
        let rss = parts.next().context("rss")?.parse()?;
        let live_rooms = parts.next().context("live rooms")?.parse()?;
        Ok(Stats { rss, live_rooms })
    }

    /// User + system CPU time of the server process so far.
    pub(crate) fn cpu(&self) -> Duration {
        cpu_time(&self.pid.to_string())
    }

    /// Graceful stop (pending appends are flushed); keeps the database.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        self.stdin.write_all(b"stop\n").await?;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        anyhow::ensure!(status.success(), "server exited with {status}");
        Ok(())
    }

    /// SIGKILL, as `kill -9`: nothing is flushed, no lease is released.
    pub(crate) async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok(())
    }

    pub(crate) async fn cleanup(self) {
        if let Some(server) = &self.pg_server {
            crate::drop_postgres(server, &self.database_url).await;
        }
    }
}

/// VmRSS of `/proc/{pid}/status`, in bytes.
fn rss_bytes(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kb: u64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kb * 1024)
}

/// utime + stime of `/proc/{pid}/stat` (all threads), assuming USER_HZ =
/// 100, which Linux reports on every architecture we run on.
pub(crate) fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // The command name may hold spaces; fields are counted after its ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

pub(crate) fn fd_limits() -> (String, String) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or("");
    let mut values = line.split_whitespace().skip(3);
    (values.next().unwrap_or("?").to_owned(), values.next().unwrap_or("?").to_owned())
}

// --------------------------------------------------------------- clients --

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) fn token(user: &str) -> String {
    token_as(user, Role::Participant)
}

pub(crate) fn token_as(user: &str, role: Role) -> String {
    let claims = Claims {
        sub: user.to_owned(),
        exp: eventuall::store::now_millis() / 1000 + 3600,
        name: Some(format!("{user} name")),
        role,
        events: None,
    };
    Authenticator::new(SECRET).issue(&claims)
}

/// One HTTP/1.1 POST on a fresh connection; answers the status code. Plain
/// TCP keeps an HTTP client crate out of the bench for one call.
pub(crate) async fn http_post(addr: SocketAddr, path: &str, token: &str, body: &str) -> anyhow::Result<u16> {
    Ok(http_post_body(addr, path, token, body).await?.0)
}

/// [`http_post`] answering the status code and the response body (the
/// service answers JSON with a `Content-Length`, never chunked).
pub(crate) async fn http_post_body(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(STEP_LIMIT, exchange).await.context("HTTP request timed out")??;
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    let code =
        head.split(' ').nth(1).and_then(|code| code.parse().ok()).with_context(|| format!("bad response {head:?}"))?;
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((code, body))
}

/// Opens a socket to `event` as `user`; returns it once its first frame (a
/// snapshot) arrived, with the time from the start of the TCP connect and
/// the size of that snapshot.
pub(crate) async fn join(addr: SocketAddr, event: &str, user: &str) -> anyhow::Result<(Socket, Duration, usize)> {
    let url = format!("ws://{addr}/parties/event/{event}?token={}&_pk={user}", token(user));
    let started = Instant::now();
    let (mut socket, _) = tokio::time::timeout(STEP_LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")??;
    loop {
        let frame = tokio::time::timeout(STEP_LIMIT, socket.next())
            .await
            .context("no first frame")?
            .context("closed before the first frame")??;
        match frame {
            Message::Text(text) => {
                let elapsed = started.elapsed();
                let value: serde_json::Value = serde_json::from_str(&text)?;
                anyhow::ensure!(value["type"] == "snapshot", "first frame is not a snapshot: {text}");
                return Ok((socket, elapsed, text.len()));
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => bail!("unexpected first frame {other:?}"),
        }
    }
}

/// Closes `socket` cleanly: a close frame, then reads until the server's.
pub(crate) async fn leave(mut socket: Socket) {
    let _ = socket.send(Message::Close(None)).await;
    let _ = tokio::time::timeout(STEP_LIMIT, async { while let Some(Ok(_)) = socket.next().await {} }).await;
}

/// Opens `seats` (room, user) sockets on `addr`, `CONNECT_CONCURRENCY` at
/// a time.
async fn fill(addr: SocketAddr, seats: Vec<(String, String)>) -> anyhow::Result<(Vec<Socket>, Duration)> {
    fill_at(seats.into_iter().map(|(room, user)| (addr, room, user)).collect()).await
}

/// Opens `seats` (server, room, user) sockets, `CONNECT_CONCURRENCY` at a
/// time (in the order they open, not of `seats`).
pub(crate) async fn fill_at(seats: Vec<(SocketAddr, String, String)>) -> anyhow::Result<(Vec<Socket>, Duration)> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Socket, Duration, usize)>> = futures::stream::iter(
        seats.into_iter().map(|(addr, room, user)| async move { join(addr, &room, &user).await }),
    )
    .buffer_unordered(CONNECT_CONCURRENCY)
    .collect()
    .await;
    let mut sockets = Vec::with_capacity(results.len());
    for r in results {
        sockets.push(r?.0);
    }
    Ok((sockets, started.elapsed()))
}

/// Reads and discards frames until `stop`; returns the socket, or None if
/// the server closed it (e.g. dropped as too slow).
async fn drain_until(mut socket: Socket, mut stop: watch::Receiver<bool>) -> Option<Socket> {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Some(socket),
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            },
        }
    }
}

pub(crate) fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPU used by the servers and by this (client) process over a window, as
/// a share of the machine.
pub(crate) struct CpuWindow {
    started: Instant,
    /// The servers' pids and their CPU time at the start.
    servers: Vec<(u32, Duration)>,
    clients: Duration,
}

impl CpuWindow {
    pub(crate) fn start(servers: &[&Server]) -> Self {
        let servers = servers.iter().map(|s| (s.pid, s.cpu())).collect();
        Self { started: Instant::now(), servers, clients: cpu_time("self") }
    }

    pub(crate) fn report(&self) -> String {
        let wall = self.started.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let s: f64 =
            self.servers.iter().map(|(pid, at)| (cpu_time(&pid.to_string()).saturating_sub(*at)).as_secs_f64()).sum();
        let c = (cpu_time("self") - self.clients).as_secs_f64();
        let who = if self.servers.len() == 1 { "server".to_owned() } else { format!("{} servers", self.servers.len()) };
        format!(
            "over {wall:.1} s wall: {who} {s:.1} CPU-s ({:.0}% of one core), clients {c:.1} CPU-s ({:.0}%); \
             machine {:.0}% busy of {cores} cores by these",
            s / wall * 100.0,
            c / wall * 100.0,
            (s + c) / wall / cores * 100.0
        )
    }
}

// ------------------------------------------------------------- heartbeat --

/// One member of the heartbeat load: a heartbeat every `period` from
/// `first_beat` (phase-shifted per member) until `deadline`, reading
/// whatever the room sends.
pub(crate) struct Member {
    pub(crate) sent: u64,
    pub(crate) dropped: bool,
    pub(crate) socket: Option<Socket>,
}

pub(crate) async fn member(
    socket: Socket,
    first_beat: tokio::time::Instant,
    period: Duration,
    deadline: tokio::time::Instant,
) -> Member {
    let max_beats = ((deadline - first_beat).as_secs_f64() / period.as_secs_f64()) as u64 + 1;
    let (mut sink, mut stream) = socket.split();
    let mut beats = tokio::time::interval_at(first_beat, period);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = tokio::time::sleep_until(deadline);
    tokio::pin!(end);
    let mut sent = 0;
    let mut dropped = false;
    while sent < max_beats {
        tokio::select! {
            _ = &mut end => break,
            _ = beats.tick() => {
                if sink.send(Message::text(HEARTBEAT)).await.is_err() {
                    dropped = true;
                    break;
                }
                sent += 1;
            }
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => { dropped = true; break; }
                Some(Ok(_)) => {}
            },
        }
    }
    let socket = if dropped { None } else { sink.reunite(stream).ok() };
    Member { sent, dropped, socket }
}

/// Newcomers during a load: from `start`, every `every` until 500 ms before
/// `deadline`, one joins where `seat(k)` says (server, room), waits for its
/// first snapshot and leaves. Answers the join → first snapshot latencies
/// and how many joins failed.
pub(crate) async fn newcomers(
    seat: impl Fn(usize) -> (SocketAddr, String),
    start: tokio::time::Instant,
    every: Duration,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let max_joins = ((deadline - start).as_secs_f64() / every.as_secs_f64()) as usize;
    let mut joiners = Vec::new();
    let mut ticks = tokio::time::interval_at(start, every);
    for k in 0..max_joins {
        ticks.tick().await;
        if tokio::time::Instant::now() + Duration::from_millis(500) > deadline {
            break;
        }
        let (addr, room) = seat(k);
        joiners.push(tokio::spawn(async move {
            let (socket, latency, _) = join(addr, &room, &format!("joiner-{k:04}")).await?;
            leave(socket).await;
            anyhow::Ok(latency)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for j in joiners {
        match j.await? {
            Ok(latency) => latencies.push(latency),
            Err(error) => {
                failures += 1;
                eprintln!("join failed: {error:#}");
            }
        }
    }
    Ok((latencies, failures))
}

/// What the members of a heartbeat load did, summed.
pub(crate) struct Load {
    pub(crate) sent: u64,
    pub(crate) dropped: usize,
    /// The sockets the server did not close.
    pub(crate) open: Vec<Socket>,
}

impl Load {
    pub(crate) async fn collect(members: Vec<tokio::task::JoinHandle<Member>>) -> anyhow::Result<Self> {
        let mut load = Self { sent: 0, dropped: 0, open: Vec::new() };
        for m in members {
            let m = m.await?;
            load.sent += m.sent;
            load.dropped += usize::from(m.dropped);
            load.open.extend(m.socket);
        }
        Ok(load)
    }
}

/// How many events of each type the streams of `rooms` hold.
pub(crate) async fn events_by_type(store: &EventStore, rooms: &[String]) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for room in rooms {
        let stream = StreamId::of("room", room);
        let mut from = 1;
        // Bounded: a room holds at most a few events per client-second.
        for _ in 0..10_000 {
            let page = store.read_stream(&stream, from, 10_000).await?;
            let Some(last) = page.last() else { break };
            from = last.stream_version + 1;
            for event in &page {
                *by_type.entry(event.event_type.clone()).or_default() += 1;
            }
        }
    }
    Ok(by_type)
}

async fn heartbeat_phase(args: &RoomsArgs) -> anyhow::Result<()> {
    let rooms: Vec<String> = (0..args.rooms).map(|r| format!("hb-{r:02}")).collect();
    let clients = args.rooms * args.clients_per_room;
    let duration: Duration = args.duration.into();
    let mut server = Server::start(args.database_url.as_deref(), "60s").await?;
    let addr = server.addr;
    let seats: Vec<(String, String)> =
        (0..clients).map(|i| (rooms[i % rooms.len()].clone(), format!("member-{i:04}"))).collect();
    let (sockets, fill_time) = fill(addr, seats).await?;
    println!("\n### Heartbeat load\n");
    println!(
        "{clients} clients in {} rooms connected in {:.1} s; server RSS {:.1} MiB",
        rooms.len(),
        fill_time.as_secs_f64(),
        mib(server.stats().await?.rss)
    );

    let cpu = CpuWindow::start(&[&server]);
    let start = tokio::time::Instant::now() + Duration::from_millis(500);
    let deadline = start + duration;
    let members: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            // Spread the beats evenly over each second, as real clients are.
            let offset = Duration::from_secs(1).mul_f64(i as f64 / clients as f64);
            tokio::spawn(member(socket, start + offset, Duration::from_secs(1), deadline))
        })
        .collect();

    let (join_latencies, join_failures) =
        newcomers(|k| (addr, rooms[k % rooms.len()].clone()), start, args.join_every.into(), deadline).await?;
    let Load { sent, dropped, open } = Load::collect(members).await?;
    let cpu_report = cpu.report();
    let rss = server.stats().await?.rss;
    futures::future::join_all(open.into_iter().map(leave)).await;
    server.stop().await?;

    // Every heartbeat sent must be in the log.
    let store = EventStore::open(&server.database_url, StoreOptions::default()).await?;
    let by_type = events_by_type(&store, &rooms).await?;
    store.shutdown().await;
    server.cleanup().await;
    let stored = by_type.get("HeartbeatReceived").copied().unwrap_or(0);
    println!(
        "ran {:.0} s, {} heartbeats/s offered; {dropped} clients dropped by the server; server RSS {:.1} MiB at the end",
        duration.as_secs_f64(),
        clients,
        mib(rss)
    );
    println!("CPU {cpu_report}");
    println!();
    println!("| heartbeats sent | `HeartbeatReceived` in the log | equal |");
    println!("|---:|---:|---|");
    println!("| {sent} | {stored} | {} |", if sent == stored { "yes" } else { "**NO**" });
    println!();
    let all: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!("all events in the {} room streams: {}", rooms.len(), all.join(", "));
    println!();
    println!("| join → first snapshot | samples | failed | p50 ms | p99 ms | max ms | target p99 < 100 ms |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    let p99 = percentile(&join_latencies, 0.99);
    println!(
        "| during the load, 1 per {} | {} | {join_failures} | {:.1} | {p99:.1} | {:.1} | {} |",
        humantime::format_duration(args.join_every.into()),
        join_latencies.len(),
        percentile(&join_latencies, 0.50),
        percentile(&join_latencies, 1.0),
        if p99 < 100.0 { "met" } else { "**missed**" }
    );
    Ok(())
}

// ---------------------------------------------------------------- fanout --

/// What the room members look for: the current newcomer, and who saw it.
struct Probe {
    serial: u64,
    /// `"userId":"newcomer-007"` as it appears in compact snapshot JSON:
    /// a substring test keeps 500 clients from parsing 500 × 50 KB of JSON
    /// per join on the two cores the server needs.
    pattern: String,
    members: usize,
    seen: AtomicUsize,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
    all_seen: Notify,
}

impl Probe {
    fn new(serial: u64, user: &str, members: usize) -> Arc<Self> {
        Arc::new(Self {
            serial,
            pattern: format!(r#""userId":"{user}""#),
            members,
            seen: AtomicUsize::new(0),
            first: OnceLock::new(),
            last: OnceLock::new(),
            all_seen: Notify::new(),
        })
    }

    /// True once every member saw the newcomer, false after `limit`.
    async fn all_seen_within(&self, limit: Duration) -> bool {
        let waited = tokio::time::timeout(limit, async {
            while self.last.get().is_none() {
                let notified = self.all_seen.notified();
                if self.last.get().is_some() {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        })
        .await;
        waited.is_ok() && self.last.get().is_some()
    }
}

/// Reads the room until the probes end; false if the server closed the
/// socket first (e.g. dropped as too slow).
async fn fanout_member(
    mut socket: Socket,
    mut probes: watch::Receiver<Option<Arc<Probe>>>,
    frames: Arc<AtomicU64>,
) -> bool {
    let mut seen_serial = 0;
    loop {
        tokio::select! {
            changed = probes.changed() => if changed.is_err() { break },
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    frames.fetch_add(1, Ordering::Relaxed);
                    let probe = probes.borrow().clone();
                    let Some(probe) = probe else { continue };
                    if probe.serial > seen_serial && text.as_str().contains(&probe.pattern) {
                        seen_serial = probe.serial;
                        let _ = probe.first.set(at);
                        if probe.seen.fetch_add(1, Ordering::AcqRel) + 1 == probe.members {
                            let _ = probe.last.set(at);
                            probe.all_seen.notify_one();
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
        }
    }
    leave(socket).await;
    true
}

/// One newcomer: its own join → first snapshot, the size of that snapshot,
/// and join → first / last member seeing it (or how many saw it within
/// 5 s when not all did).
pub(crate) struct Sample {
    pub(crate) own: Duration,
    pub(crate) bytes: usize,
    pub(crate) seen: Result<(Duration, Duration), usize>,
}

/// Members reading one room, watching for the newcomers [`Fanout::sample`]
/// sends in.
pub(crate) struct Fanout {
    probes: watch::Sender<Option<Arc<Probe>>>,
    members: Vec<tokio::task::JoinHandle<bool>>,
    pub(crate) frames: Arc<AtomicU64>,
    serial: u64,
}

impl Fanout {
    pub(crate) fn start(sockets: Vec<Socket>) -> Self {
        let (probes, probe_rx) = watch::channel(None::<Arc<Probe>>);
        let frames = Arc::new(AtomicU64::new(0));
        let members =
            sockets.into_iter().map(|s| tokio::spawn(fanout_member(s, probe_rx.clone(), frames.clone()))).collect();
        Self { probes, members, frames, serial: 0 }
    }

    /// `user` joins `room` at `addr`; measured until every member saw it
    /// (5 s at most), then it leaves and the departure's snapshot is given
    /// 200 ms to pass before the next sample.
    pub(crate) async fn sample(&mut self, addr: SocketAddr, room: &str, user: &str) -> anyhow::Result<Sample> {
        self.serial += 1;
        let probe = Probe::new(self.serial, user, self.members.len());
        self.probes.send_replace(Some(probe.clone()));
        let started = Instant::now();
        let (socket, own, bytes) = join(addr, room, user).await?;
        let seen = if probe.all_seen_within(Duration::from_secs(5)).await {
            let first = *probe.first.get().expect("first before last") - started;
            Ok((first, *probe.last.get().expect("all seen") - started))
        } else {
            Err(probe.seen.load(Ordering::Acquire))
        };
        leave(socket).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Sample { own, bytes, seen })
    }

    /// Ends the probes and closes the members; answers how many were still
    /// connected (the rest were dropped by the server).
    pub(crate) async fn finish(self) -> usize {
        self.probes.send_replace(None);
        drop(self.probes);
        let mut still_open = 0;
        for m in self.members {
            if let Ok(Ok(true)) = tokio::time::timeout(STEP_LIMIT, m).await {
                still_open += 1;
            }
        }
        still_open
    }
}

/// The figures of a run of [`Fanout::sample`]s.
#[derive(Default)]
pub(crate) struct FanoutSamples {
    pub(crate) own: Vec<Duration>,
    pub(crate) to_first: Vec<Duration>,
    pub(crate) to_last: Vec<Duration>,
    /// (newcomer, members that saw it) of the newcomers not seen by all.
    pub(crate) incomplete: Vec<(usize, usize)>,
    pub(crate) snapshot_bytes: usize,
}

impl FanoutSamples {
    pub(crate) fn add(&mut self, k: usize, sample: Sample) {
        self.own.push(sample.own);
        self.snapshot_bytes = sample.bytes;
        match sample.seen {
            Ok((first, last)) => {
                self.to_first.push(first);
                self.to_last.push(last);
            }
            Err(seen) => self.incomplete.push((k, seen)),
        }
    }
}

/// A Markdown row: samples, p50, p99, max (ms), and the verdict against a
/// p99 target when there is one.
pub(crate) fn latency_row(what: &str, s: &[Duration], target: Option<f64>) -> String {
    let p99 = percentile(s, 0.99);
    let verdict = match target {
        Some(t) if p99 < t => format!("p99 < {t} ms: met"),
        Some(t) => format!("p99 < {t} ms: **missed**"),
        None => String::new(),
    };
    format!("| {what} | {} | {:.1} | {p99:.1} | {:.1} | {verdict} |", s.len(), percentile(s, 0.5), percentile(s, 1.0))
}

async fn fanout_phase(args: &RoomsArgs) -> anyhow::Result<()> {
    let room = "fanout";
    let mut server = Server::start(args.database_url.as_deref(), "60s").await?;
    let addr = server.addr;
    let seats = (0..args.fanout_clients).map(|i| (room.to_owned(), format!("member-{i:04}"))).collect();
    let (sockets, fill_time) = fill(addr, seats).await?;
    let mut fanout = Fanout::start(sockets);
    // Let the snapshots of the fill reach everyone before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = CpuWindow::start(&[&server]);
    let time_limit = Instant::now() + Duration::from_secs(120);
    let mut samples = FanoutSamples::default();
    for k in 0..args.fanout_joins {
        if Instant::now() > time_limit {
            break;
        }
        samples.add(k, fanout.sample(addr, room, &format!("newcomer-{k:03}")).await?);
    }
    let cpu_report = cpu.report();
    let rss = server.stats().await?.rss;
    let frames = fanout.frames.load(Ordering::Relaxed);
    let still_open = fanout.finish().await;
    server.stop().await?;
    server.cleanup().await;
    println!("\n### Fanout\n");
    println!(
        "{} clients in one room connected in {:.1} s; {} still connected after the joins (the rest were dropped by the server); \
         last snapshot frame {} bytes; server RSS {:.1} MiB; {} frames received by members in all",
        args.fanout_clients,
        fill_time.as_secs_f64(),
        still_open,
        samples.snapshot_bytes,
        mib(rss),
        frames
    );
    println!("CPU (joins only, including 200 ms pauses) {cpu_report}");
    if !samples.incomplete.is_empty() {
        println!("joins not seen by all members within 5 s (join, members that saw it): {:?}", samples.incomplete);
    }
    println!();
    println!("| join → | samples | p50 ms | p99 ms | max ms | target |");
    println!("|---|---:|---:|---:|---:|---|");
    println!("{}", latency_row("newcomer's own first snapshot", &samples.own, None));
    println!("{}", latency_row("first of the members sees the newcomer", &samples.to_first, None));
    let last = format!("last of the {} members sees the newcomer", args.fanout_clients);
    println!("{}", latency_row(&last, &samples.to_last, Some(250.0)));
    Ok(())
}

// ---------------------------------------------------------------- memory --

async fn memory_phase(args: &RoomsArgs) -> anyhow::Result<()> {
    println!("\n### Memory (server RSS)\n");
    println!("| measurement | RSS before | RSS after | live rooms before → after | per item |");
    println!("|---|---:|---:|---:|---:|");

    // Idle connections: 100 per room, as in the heartbeat load.
    let mut server = Server::start(args.database_url.as_deref(), "60s").await?;
    let addr = server.addr;
    let (warm, _, _) = join(addr, "warmup", "warmup").await?;
    leave(warm).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.stats().await?;
    let n = args.idle_connections;
    let rooms = n.div_ceil(args.clients_per_room.max(1));
    let seats = (0..n).map(|i| (format!("idle-{:02}", i % rooms), format!("member-{i:04}"))).collect();
    let (sockets, _) = fill(addr, seats).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers: Vec<_> = sockets.into_iter().map(|s| tokio::spawn(drain_until(s, stop_rx.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = server.stats().await?;
    println!(
        "| {n} idle connections in {rooms} rooms | {:.1} MiB | {:.1} MiB | {} → {} | {:.1} KiB/connection |",
        mib(before.rss),
        mib(with.rss),
        before.live_rooms,
        with.live_rooms,
        (with.rss.saturating_sub(before.rss)) as f64 / n as f64 / 1024.0
    );
    let _ = stop_tx.send(true);
    let mut open = Vec::new();
    for r in readers {
        open.extend(r.await?);
    }
    let dropped = n - open.len();
    futures::future::join_all(open.into_iter().map(leave)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = server.stats().await?;
    println!(
        "| … all {n} closed again | {:.1} MiB | {:.1} MiB | {} → {} | {:.1} KiB/connection kept |",
        mib(with.rss),
        mib(closed.rss),
        with.live_rooms,
        closed.live_rooms,
        (closed.rss.saturating_sub(before.rss)) as f64 / n as f64 / 1024.0
    );
    if dropped > 0 {
        println!("({dropped} idle connections were closed by the server)");
    }
    server.stop().await?;
    server.cleanup().await;

    // Rooms: each gets one change over HTTP (a stage entry), so no socket
    // memory mixes into the figure; they go idle (and evict) together.
    let evict_after: Duration = args.evict_after.into();
    let mut server = Server::start(args.database_url.as_deref(), &args.evict_after.to_string()).await?;
    let addr = server.addr;
    let moderator = token_as("bench-moderator", Role::Moderator);
    let m = args.memory_rooms;
    for round in 1..=args.memory_rounds.min(10) {
        let base = server.stats().await?;
        let created: Vec<anyhow::Result<u16>> = futures::stream::iter((0..m).map(|i| {
            let moderator = moderator.clone();
            async move {
                let path = format!("/event/mem-{round}-{i:04}/stage/enter");
                http_post(addr, &path, &moderator, r#"{"userId":"speaker"}"#).await
            }
        }))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
        let failed = created.iter().filter(|r| !matches!(r, Ok(200))).count();
        anyhow::ensure!(failed == 0, "{failed} of {m} stage entries failed");
        let live = server.stats().await?;
        println!(
            "| round {round}: {m} rooms, one stage entry each, live and idle | {:.1} MiB | {:.1} MiB | {} → {} | {:.1} KiB/room |",
            mib(base.rss),
            mib(live.rss),
            base.live_rooms,
            live.live_rooms,
            (live.rss as f64 - base.rss as f64)
                / live.live_rooms.saturating_sub(base.live_rooms).max(1) as f64
                / 1024.0
        );
        let evicted = wait_for_live_rooms(&mut server, 0, evict_after).await?;
        println!(
            "| round {round}: the same {m} rooms evicted | {:.1} MiB | {:.1} MiB | {} → {} | {:.2} KiB/room kept |",
            mib(base.rss),
            mib(evicted.rss),
            live.live_rooms,
            evicted.live_rooms,
            (evicted.rss as f64 - base.rss as f64) / m as f64 / 1024.0
        );
    }
    server.stop().await?;
    server.cleanup().await;
    println!();
    println!(
        "Rooms: `--evict-after {}`. RSS is what the allocator keeps: memory freed by eviction is reused by the next \
         round rather than returned, so the later rounds show whether eviction really frees.",
        args.evict_after
    );
    Ok(())
}

/// Polls until at most `target` rooms are live (bounded by the eviction
/// delay plus a margin).
async fn wait_for_live_rooms(server: &mut Server, target: usize, evict_after: Duration) -> anyhow::Result<Stats> {
    let limit = Instant::now() + evict_after + Duration::from_secs(30);
    loop {
        let stats = server.stats().await?;
        if stats.live_rooms <= target {
            return Ok(stats);
        }
        if Instant::now() > limit {
            bail!("{} rooms still live after {:?}", stats.live_rooms, evict_after);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
