//! `eventuall-bench`: measures the event log, side by side with postgres-es.
//!
//! - `append`: small (100-byte, heartbeat-like) events appended one per
//!   call from 1, 16 and 256 concurrent streams, each event durable when
//!   acknowledged; throughput and p50/p99 latency per append, on SQLite, on
//!   PostgreSQL, and through postgres-es 0.5's `PostgresEventRepository` on
//!   the same PostgreSQL server, in one run, with the ratio.
//! - `load`: time to load an aggregate whose stream holds 1,000,000 events
//!   (snapshot + tail, as the actors do) against one with 10 events.
//!
//! - `rooms`: event rooms over WebSockets against the running service:
//!   heartbeat load with durability check, join latency, fanout, memory
//!   (see [`rooms`]).
//! - `interviews`: interview rooms with streamed AI replies from an
//!   in-bench OpenAI-compatible provider: chunk → tab latency, replies
//!   completed, server CPU per chunk, RSS per live interview (see
//!   [`interviews`]).
//! - `cluster`: three nodes on one PostgreSQL: join → all and heartbeat
//!   throughput with a room's clients on its owner vs spread over the
//!   nodes, and the takeover time after SIGKILL of an owner (see
//!   [`cluster`]).
//! - `archive`: archive and restore throughput over 1,000 streams of 1,000
//!   events, hot-table size before and after, first read of an archived
//!   stream (see [`archive`]).
//! - `loadgen`: the peer's Node load generator (`load.mjs fanout|heartbeats`)
//!   in Rust, against any server that speaks the event-room contract (see
//!   [`loadgen`]).
//! - `queue`: the collaborative queue against the reference
//!   @y/websocket-server: sustained updates, per-update cost by size, late
//!   joiners during a storm of edits and on a long history, with y-websocket
//!   clients on yrs (see [`queue`]).
//! - `replay`: fills a log with millions of small room events (many streams,
//!   batched appends) and times `replay verify` and `replay rebuild` of each
//!   projection, on SQLite and on PostgreSQL.
//!
//! Every loop is bounded by a count and a time limit. Results are printed as
//! Markdown rows for `docs/BENCHMARKS.md`.

mod archive;
mod cluster;
mod interviews;
mod loadgen;
mod queue;
mod rooms;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use eventuall::store::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreOptions, StreamId, aggregate};
use eventuall_domain::room::{EventRoom, RoomEvent};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append throughput and latency: ours (SQLite, PostgreSQL) vs postgres-es.
    Append {
        /// Server for the PostgreSQL runs; a fresh database is made per run.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Events per run (per concurrency level and store).
        #[arg(long, default_value_t = 60_000)]
        events: usize,
        /// Longest a single run may take.
        #[arg(long, default_value = "30s")]
        time_limit: humantime::Duration,
        /// Concurrency levels (streams appending at once).
        #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
        streams: Vec<usize>,
        /// Stores to run (all three by default; the ratio needs both
        /// PostgreSQL ones). One store alone is for profiling.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres,postgres-es")]
        stores: Vec<Target>,
        /// Group-commit writer tasks on PostgreSQL (the store's default
        /// unless given).
        #[arg(long)]
        postgres_writers: Option<usize>,
        /// Rounds of runs, the stores alternating within each: the ratio
        /// reported is the median of the rounds' ratios.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// `replay verify` and `replay rebuild` over a log of `events` room events.
    Replay {
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Room streams the events are spread over.
        #[arg(long, default_value_t = 10_000)]
        streams: u64,
        /// `sqlite`, a `postgres://` server URL, or both (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres://postgres@127.0.0.1:5432/postgres")]
        databases: Vec<String>,
        /// Keep the SQLite log in this file (to rerun the CLI on it) instead
        /// of a temporary directory.
        #[arg(long)]
        sqlite_file: Option<std::path::PathBuf>,
        /// Keep each PostgreSQL log (its URL goes to stderr) instead of
        /// dropping the database, to rerun the CLI on it.
        #[arg(long)]
        keep_postgres: bool,
    },
    /// Load time of a 1,000,000-event aggregate vs a 10-event one.
    Load {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// `sqlite` or a `postgres://` server URL.
        #[arg(long, default_value = "sqlite")]
        database: String,
        /// Events after the big stream's snapshot: 0 as after an eviction
        /// (the actor snapshots when it retires), 24 as after a crash in
        /// the worst case (room actors attach a snapshot to the append that
        /// crosses every 25th event), 499 for comparison with a sparse
        /// snapshot policy.
        #[arg(long, value_delimiter = ',', default_value = "0,24,499")]
        tails: Vec<u64>,
    },
    /// The peer's Node load generator (`load.mjs fanout|heartbeats`) in
    /// Rust: same environment variables, same JSON line, any server.
    Loadgen(Box<loadgen::LoadArgs>),
    /// queue-bench.mjs's clients in Rust: y-websocket on yrs against ours or
    /// the reference @y/websocket-server.
    Queue(Box<queue::QueueArgs>),
    /// Event rooms: heartbeat load, join latency, fanout, memory.
    Rooms(Box<rooms::RoomsArgs>),
    /// The service for `rooms`, driven over stdin (run by `rooms` itself).
    #[command(hide = true)]
    RoomsServer(Box<rooms::ServerArgs>),
    /// Interview rooms: streamed AI replies to 200 concurrent interviews.
    Interviews(Box<interviews::InterviewsArgs>),
    /// The service for `interviews`, driven over stdin (run by `interviews`).
    #[command(hide = true)]
    InterviewsServer(Box<interviews::ServerArgs>),
    /// Three nodes on one PostgreSQL: join → all, heartbeats, takeover.
    Cluster(Box<cluster::ClusterArgs>),
    /// The archive tier: archive and restore throughput, hot-table size,
    /// first read of an archived stream.
    Archive(Box<archive::ArchiveArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Append { postgres_url, events, time_limit, streams, stores, postgres_writers, rounds } => {
            let mut options = StoreOptions::default();
            if let Some(writers) = postgres_writers {
                options.group_commit.postgres_writers = writers;
            }
            append_bench(&postgres_url, events, time_limit.into(), &streams, &stores, &options, rounds).await
        }
        Command::Load { events, database, tails } => load_bench(events, &database, &tails).await,
        // Its own runtime, on its own thread (one by default, as Node's).
        Command::Loadgen(args) => tokio::task::spawn_blocking(move || loadgen::run(*args)).await?,
        Command::Queue(args) => tokio::task::spawn_blocking(move || queue::run(*args)).await?,
        Command::Rooms(args) => rooms::run(*args).await,
        Command::RoomsServer(args) => rooms::serve_child(*args).await,
        Command::Interviews(args) => interviews::run(*args).await,
        Command::InterviewsServer(args) => interviews::serve_child(*args).await,
        Command::Archive(args) => archive::run(*args).await,
        Command::Cluster(args) => cluster::run(*args).await,
        Command::Replay { events, streams, databases, sqlite_file, keep_postgres } => {
            let keep = if keep_postgres { replay::Keep::Postgres } else { replay::Keep::Nothing };
            replay::bench(events, streams, &databases, sqlite_file, keep).await
        }
    }
}

/// A heartbeat-like payload of about 100 bytes.
fn payload(n: u64) -> String {
    let p = json!({"HeartbeatReceived": {"connection_id": "0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4", "user_id": "user-0042", "at": 1_764_000_000_000u64 + n}});
    p.to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
enum Target {
    Sqlite,
    Postgres,
    PostgresEs,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Sqlite => "eventuall / SQLite",
            Target::Postgres => "eventuall / PostgreSQL",
            Target::PostgresEs => "postgres-es 0.5 / PostgreSQL",
        }
    }
}

struct RunResult {
    events: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i] as f64 / 1000.0
    }
}

/// A fresh PostgreSQL database on `server`, returned as a URL.
async fn fresh_postgres(server: &str) -> anyhow::Result<String> {
    let name = format!("eventuall_bench_{}", uuid::Uuid::new_v4().simple());
    admin::exec(server, &format!("create database {name}")).await?;
    let base = server.rsplit_once('/').map(|(b, _)| b).context("server URL has a database")?;
    Ok(format!("{base}/{name}"))
}

async fn drop_postgres(server: &str, url: &str) {
    if let Some((_, name)) = url.rsplit_once('/') {
        let _ = admin::exec(server, &format!("drop database if exists {name} with (force)")).await;
    }
}

/// Admin statements (create / drop database, postgres-es schema) over sqlx 0.9.
mod admin {
    use sqlx::Connection;

    pub async fn exec(url: &str, sql: &str) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await?;
        Ok(())
    }
}

async fn run_ours(store: EventStore, streams: usize, events: usize, limit: Duration) -> RunResult {
    let per_stream = events.div_ceil(streams);
    let deadline = Instant::now() + limit;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::of("bench", &format!("s{s}"));
            let mut latencies = Vec::with_capacity(per_stream);
            for n in 0..per_stream as u64 {
                if Instant::now() > deadline {
                    break;
                }
                let event = NewEvent::new("HeartbeatReceived", "1", payload(n), Metadata::by("bench"));
                let t = Instant::now();
                store.append(&stream, ExpectedVersion::Exact(n), vec![event]).await.expect("append");
                latencies.push(t.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("task"));
    }
    RunResult { events: latencies_us.len(), elapsed: started.elapsed(), latencies_us }
}

async fn run_postgres_es(url: &str, streams: usize, events: usize, limit: Duration) -> anyhow::Result<RunResult> {
    admin::exec(
        url,
        "create table events (aggregate_type text not null, aggregate_id text not null, \
         sequence bigint check (sequence >= 0) not null, event_type text not null, event_version text not null, \
         payload json not null, metadata json not null, primary key (aggregate_type, aggregate_id, sequence))",
    )
    .await?;
    admin::exec(
        url,
        "create table snapshots (aggregate_type text not null, aggregate_id text not null, \
         last_sequence bigint check (last_sequence >= 0) not null, current_snapshot bigint check (current_snapshot >= 0) not null, \
         payload json not null, primary key (aggregate_type, aggregate_id, last_sequence))",
    )
    .await?;
    let pool = postgres_es::default_postgress_pool(url).await;
    let repo = Arc::new(postgres_es::PostgresEventRepository::new(pool));
    let per_stream = events.div_ceil(streams);
    let deadline = Instant::now() + limit;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_stream);
            for n in 0..per_stream {
                if Instant::now() > deadline {
                    break;
                }
                let event = SerializedEvent::new(
                    format!("s{s}"),
                    n + 1,
                    "room".into(),
                    "HeartbeatReceived".into(),
                    "1".into(),
                    serde_json::from_str(&payload(n as u64)).expect("json"),
                    json!({"actor": "bench"}),
                );
                let t = Instant::now();
                repo.persist::<EventRoom>(&[event], None).await.expect("persist");
                latencies.push(t.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.expect("task"));
    }
    Ok(RunResult { events: latencies_us.len(), elapsed: started.elapsed(), latencies_us })
}

async fn append_bench(
    server: &str,
    events: usize,
    limit: Duration,
    levels: &[usize],
    stores: &[Target],
    options: &StoreOptions,
    rounds: usize,
) -> anyhow::Result<()> {
    println!("| streams | round | store | events | events/s | p50 ms | p99 ms |");
    println!("|---:|---:|---|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for &streams in levels {
        let mut round_ratios = Vec::new();
        for round in 1..=rounds.max(1) {
            let mut rates = std::collections::HashMap::new();
            for target in [Target::Sqlite, Target::Postgres, Target::PostgresEs] {
                if !stores.contains(&target) {
                    continue;
                }
                settle(server).await;
                let result = run_target(target, server, streams, events, limit, options).await?;
                println!(
                    "| {streams} | {round} | {} | {} | {:.0} | {:.2} | {:.2} |",
                    target.name(),
                    result.events,
                    result.rate(),
                    result.percentile(0.50),
                    result.percentile(0.99)
                );
                rates.insert(target, result.rate());
            }
            if let (Some(ours), Some(theirs)) = (rates.get(&Target::Postgres), rates.get(&Target::PostgresEs)) {
                round_ratios.push(ours / theirs);
            }
        }
        if !round_ratios.is_empty() {
            ratios.push((streams, round_ratios));
        }
    }
    println!();
    for (streams, mut each) in ratios {
        let listed: Vec<String> = each.iter().map(|r| format!("{r:.1}x")).collect();
        each.sort_by(f64::total_cmp);
        let median = each[each.len() / 2];
        println!(
            "- {streams} streams: eventuall/PostgreSQL appends {median:.1}x the events/s of postgres-es on the same \
             server (median of {} rounds: {})",
            each.len(),
            listed.join(", ")
        );
    }
    Ok(())
}

/// One run of `target` on a fresh database.
async fn run_target(
    target: Target,
    server: &str,
    streams: usize,
    events: usize,
    limit: Duration,
    options: &StoreOptions,
) -> anyhow::Result<RunResult> {
    Ok(match target {
        Target::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = EventStore::open(&url, options.clone()).await?;
            let r = run_ours(store.clone(), streams, events, limit).await;
            store.shutdown().await;
            r
        }
        Target::Postgres => {
            let url = fresh_postgres(server).await?;
            let store = EventStore::open(&url, options.clone()).await?;
            let r = run_ours(store.clone(), streams, events, limit).await;
            store.shutdown().await;
            drop(store);
            drop_postgres(server, &url).await;
            r
        }
        Target::PostgresEs => {
            let url = fresh_postgres(server).await?;
            let r = run_postgres_es(&url, streams, events, limit).await?;
            drop_postgres(server, &url).await;
            r
        }
    })
}

/// Lets the previous run's writes reach the disk before the next run
/// starts (a PostgreSQL checkpoint, then the kernel's dirty pages), so that
/// no run pays for its predecessor's writeback.
async fn settle(server: &str) {
    if let Err(error) = admin::exec(server, "checkpoint").await {
        eprintln!("checkpoint before the run failed: {error}");
    }
    let _ = tokio::process::Command::new("sync").status().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn load_bench(events: u64, database: &str, tails: &[u64]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, server) = if database == "sqlite" {
        (format!("sqlite://{}", dir.path().join("load.db").display()), None)
    } else {
        (fresh_postgres(database).await?, Some(database.to_owned()))
    };
    let store = EventStore::open(&url, StoreOptions::default()).await?;
    let big = StreamId::of("room", "big");
    let small = StreamId::of("room", "small");
    let beat = |n: u64| RoomEvent::HeartbeatReceived { connection_id: "c".into(), user_id: "u".into(), at: n as i64 };
    let opened = RoomEvent::ConnectionOpened {
        connection_id: "c".into(),
        client_id: None,
        user_id: "u".into(),
        name: "U".into(),
        kind: eventuall_domain::room::ConnectionKind::WebSocket,
        at: 0,
    };
    let encode = |e: &RoomEvent| NewEvent::json("RoomEvent", "1", e, Metadata::by("bench")).expect("json");
    let started = Instant::now();
    let mut written = 0u64;
    // Fill in batches of 1,000 from 16 concurrent writers of sub-streams is
    // not possible for one stream: one writer, large batches.
    while written < events {
        let batch: Vec<NewEvent> = (written..(written + 1_000).min(events))
            .map(|n| if n == 0 { encode(&opened) } else { encode(&beat(n)) })
            .collect();
        let n = batch.len() as u64;
        store.append(&big, ExpectedVersion::Exact(written), batch).await?;
        written += n;
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "filling took over 10 minutes");
    }
    let fill = started.elapsed();
    let small_events: Vec<NewEvent> =
        (0..10).map(|n| if n == 0 { encode(&opened) } else { encode(&beat(n)) }).collect();
    store.append(&small, ExpectedVersion::NoStream, small_events).await?;
    let tag = eventuall::rooms::SNAPSHOT_TAG;
    let mut state = EventRoom::default();
    for e in store.read_stream(&big, 1, 1).await? {
        cqrs_es::Aggregate::apply(&mut state, e.decode::<RoomEvent>()?);
    }
    let rounds = 50;
    let time = |stream: StreamId| {
        let store = store.clone();
        async move {
            let t = Instant::now();
            for _ in 0..rounds {
                let loaded = aggregate::load::<EventRoom>(&store, &stream, tag).await.expect("load");
                std::hint::black_box(loaded.version);
            }
            t.elapsed() / rounds
        }
    };
    let small_load = time(small.clone()).await;
    println!(
        "filled {events} events in {:.1} s ({:.0} events/s)",
        fill.as_secs_f64(),
        events as f64 / fill.as_secs_f64()
    );
    println!("| stream | events | events after snapshot | mean load (snapshot + tail) | vs 10-event stream |");
    println!("|---|---:|---:|---:|---:|");
    println!("| small | 10 | 10 (no snapshot) | {:.3} ms | 1.00x |", small_load.as_secs_f64() * 1e3);
    // Largest tail first: a snapshot never replaces a newer one.
    let mut tails = tails.to_vec();
    tails.sort_unstable_by(|a, b| b.cmp(a));
    for tail in tails {
        // The snapshot holds the state's shape; its content does not change
        // what a load costs, which is reading it plus replaying the tail.
        aggregate::save(&store, &big, tag, events - tail, &state).await?;
        let big_load = time(big.clone()).await;
        println!(
            "| big | {events} | {tail} | {:.3} ms | {:.2}x |",
            big_load.as_secs_f64() * 1e3,
            big_load.as_secs_f64() / small_load.as_secs_f64()
        );
    }
    store.shutdown().await;
    if let Some(server) = server {
        drop(store);
        drop_postgres(&server, &url).await;
    }
    Ok(())
}

/// `replay verify` / `replay rebuild` throughput.
mod replay {
    use std::time::{Duration, Instant};

    use eventuall::projections::Projection;
    use eventuall::replay::registry::Registry;
    use eventuall::replay::{Progress, rebuild, verify};
    use eventuall::store::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreOptions, StreamId};
    use eventuall_domain::room::{CloseReason, ConnectionKind, RoomEvent};

    /// Events per append: one group-commit slot carries a whole slice of a
    /// stream, which is what makes filling millions of events quick.
    const APPEND: u64 = 500;
    /// Concurrent appenders, so group commit batches several appends.
    const WRITERS: u64 = 8;

    /// The `n`th event of a room: blocks of 50 events in which one user
    /// connects, steps on stage, heartbeats 46 times, steps off and leaves,
    /// so 4 of every 50 events change presence rows (heartbeats dominate
    /// real logs the same way).
    fn event(n: u64, base_at: i64) -> RoomEvent {
        let block = n / 50;
        let connection_id = format!("c{block}");
        let user_id = format!("user-{}", block % 40);
        let at = base_at + n as i64 * 1_000;
        match n % 50 {
            0 => RoomEvent::ConnectionOpened {
                connection_id,
                client_id: None,
                user_id: user_id.clone(),
                name: user_id,
                kind: ConnectionKind::WebSocket,
                at,
            },
            1 => RoomEvent::StageEntered { user_id, at },
            48 => RoomEvent::StageExited { user_id, at },
            49 => RoomEvent::ConnectionClosed { connection_id, user_id, reason: CloseReason::Closed, at },
            _ => RoomEvent::HeartbeatReceived { connection_id, user_id, at },
        }
    }

    pub(crate) async fn fill(store: &EventStore, events: u64, streams: u64) -> anyhow::Result<Duration> {
        let per_stream = events.div_ceil(streams);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let metadata = Metadata::by("bench").command("Fill");
                for s in (w..streams).step_by(WRITERS as usize) {
                    let stream = StreamId::of("room", &format!("bench-{s}"));
                    let mut written = 0;
                    while written < per_stream {
                        let n = APPEND.min(per_stream - written);
                        let batch: Vec<NewEvent> = (written..written + n)
                            .map(|i| {
                                let e = event(i, 1_764_000_000_000);
                                let kind = match &e {
                                    RoomEvent::ConnectionOpened { .. } => "ConnectionOpened",
                                    RoomEvent::StageEntered { .. } => "StageEntered",
                                    RoomEvent::StageExited { .. } => "StageExited",
                                    RoomEvent::ConnectionClosed { .. } => "ConnectionClosed",
                                    _ => "HeartbeatReceived",
                                };
                                NewEvent::json(kind, "1", &e, metadata.clone()).expect("json")
                            })
                            .collect();
                        store.append(&stream, ExpectedVersion::Exact(written), batch).await?;
                        written += n;
                    }
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(started.elapsed())
    }

    /// What outlives the run besides `--sqlite-file`.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Keep {
        Nothing,
        Postgres,
    }

    pub async fn bench(
        events: u64,
        streams: u64,
        databases: &[String],
        sqlite_file: Option<std::path::PathBuf>,
        keep: Keep,
    ) -> anyhow::Result<()> {
        println!(
            "| database | events | streams | fill | verify | verify events/s | rebuild room_presence | events/s | rebuild analytics | events/s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for database in databases {
            let dir = tempfile::tempdir()?;
            let (url, server) = if database == "sqlite" {
                let path = sqlite_file.clone().unwrap_or_else(|| dir.path().join("replay.db"));
                (format!("sqlite://{}", path.display()), None)
            } else {
                (super::fresh_postgres(database).await?, Some(database.clone()))
            };
            let store = EventStore::open(&url, StoreOptions::default()).await?;
            let fill_time = fill(&store, events, streams).await?;
            let total = store.head_position().await?;
            let report = verify::verify(&store, Registry::standard(), &Progress::hidden()).await?;
            anyhow::ensure!(report.is_sound(), "the benchmark log must verify: {:?}", report.problems.first());
            let presence = rebuild::rebuild(&store, Projection::RoomPresence, &Progress::hidden()).await?;
            let analytics = rebuild::rebuild(&store, Projection::Analytics, &Progress::hidden()).await?;
            println!(
                "| {} | {} | {streams} | {:.1} s | {:.2} s | {:.0} | {:.2} s | {:.0} | {:.2} s | {:.0} |",
                if server.is_some() { "PostgreSQL" } else { "SQLite" },
                total,
                fill_time.as_secs_f64(),
                report.elapsed.as_secs_f64(),
                report.events_per_second(),
                presence.elapsed.as_secs_f64(),
                presence.events_per_second(),
                analytics.elapsed.as_secs_f64(),
                analytics.events_per_second(),
            );
            store.shutdown().await;
            drop(store);
            if let Some(server) = server {
                if keep == Keep::Postgres {
                    eprintln!("kept PostgreSQL log: {url}");
                } else {
                    super::drop_postgres(&server, &url).await;
                }
            }
        }
        Ok(())
    }
}
