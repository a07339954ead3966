//! `eventuall-bench cluster`: three nodes on one PostgreSQL (issue #20,
//! ADR 0020), against the real service.
//!
//! The nodes are `rooms-server` children (this binary, as `rooms` runs it)
//! with `EVENTUALL_NODE_ID` n1…n3 and `EVENTUALL_LEASE_TTL`, on fixed
//! 127.0.0.1 ports (a node's URL for its peers is its listen address), on
//! one fresh PostgreSQL database made for the run and dropped after. A
//! room's owner is made by connecting its first client (or sending its first
//! command) to the chosen node, and checked in `cluster_leases`.
//!
//! Phases, each side by side in one run:
//! - `join`: join → all. A room of N members; a newcomer joins; time until
//!   the last member's snapshot lists it. Layout *owner*: every socket on
//!   the room's owner; layout *spread*: members round-robin over the three
//!   nodes, newcomers on a non-owner (their frames cross the tunnel).
//! - `heartbeat`: M sockets in R rooms (owners n1, n2, n3, n1, …) offering a
//!   fixed total heartbeat rate; heartbeats durable per second (counted in
//!   the log when the load ends) and every sent heartbeat stored, with
//!   newcomers' join → first snapshot meanwhile; all on owners vs spread.
//! - `takeover`: the owner of a busy room (members heartbeating and
//!   reconnecting on every node) is killed with SIGKILL and restarted, K
//!   times; time from the kill until a stage command through another node
//!   succeeds, with the short lease of `tests/cluster.rs` and with the
//!   default one.
//!
//! Every loop is bounded by a count and a time limit. Results are printed as
//! Markdown for `docs/BENCHMARKS.md`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use eventuall::auth::Role;
use eventuall::store::{EventStore, StoreOptions};
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::rooms::{
    Child, CpuWindow, Fanout, FanoutSamples, HEARTBEAT, Load, Server, Socket, events_by_type, fill_at, http_post_body,
    join, latency_row, leave, member, newcomers, percentile, token_as,
};

const NODES: usize = 3;

#[derive(Args)]
pub struct ClusterArgs {
    /// Which measurement to run.
    #[arg(long, value_enum, default_value = "all")]
    phase: Phase,
    /// PostgreSQL server; a fresh database is made for the run and dropped
    /// after it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Members of the join → all room.
    #[arg(long, default_value_t = 200)]
    members: usize,
    /// Newcomers (samples) per layout of the join → all phase.
    #[arg(long, default_value_t = 30)]
    joins: usize,
    /// Sockets of the heartbeat load.
    #[arg(long, default_value_t = 600)]
    sockets: usize,
    /// Rooms of the heartbeat load.
    #[arg(long, default_value_t = 6)]
    rooms: usize,
    /// Heartbeats per second offered by all sockets together.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// How long the heartbeat load runs, per layout.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// A newcomer joins a room this often during the heartbeat load.
    #[arg(long, default_value = "100ms")]
    join_every: humantime::Duration,
    /// Lease time of the nodes for the join, heartbeat and first takeover
    /// phases (as in `tests/cluster.rs`).
    #[arg(long, default_value = "1500ms")]
    lease_ttl: humantime::Duration,
    /// Kills of the busy room's owner under `--lease-ttl`.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Kills under the service's default lease time (5 s).
    #[arg(long, default_value_t = 1)]
    default_lease_kills: usize,
    /// Members of the busy room during the kills: one heartbeat a second
    /// each, reconnecting (to the next node) when their socket closes.
    #[arg(long, default_value_t = 60)]
    busy_members: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    All,
    Join,
    Heartbeat,
    Takeover,
}

impl Phase {
    fn runs(self, phase: Phase) -> bool {
        self == Phase::All || self == phase
    }
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let database_url = crate::fresh_postgres(&args.postgres_url).await?;
    let result = run_on(&args, &database_url).await;
    crate::drop_postgres(&args.postgres_url, &database_url).await;
    result
}

async fn run_on(args: &ClusterArgs, database_url: &str) -> anyhow::Result<()> {
    let (soft, hard) = crate::rooms::fd_limits();
    println!("open-file limit: soft {soft}, hard {hard}; {NODES} nodes, lease time {}", args.lease_ttl);
    let mut cluster = Cluster::start(database_url, &args.lease_ttl.to_string()).await?;
    if args.phase.runs(Phase::Join) {
        join_phase(&cluster, args).await?;
    }
    if args.phase.runs(Phase::Heartbeat) {
        heartbeat_phase(&cluster, args).await?;
    }
    if args.phase.runs(Phase::Takeover) {
        let short = takeover(&mut cluster, args.kills, &args.lease_ttl.to_string(), args.busy_members).await?;
        cluster.stop().await?;
        // The default lease time: the same database, the nodes restarted
        // without `EVENTUALL_LEASE_TTL`'s short value.
        let mut cluster = Cluster::start(database_url, "5s").await?;
        let default = takeover(&mut cluster, args.default_lease_kills, "5s", args.busy_members).await?;
        cluster.stop().await?;
        print_takeovers(&[short, default]);
        return Ok(());
    }
    cluster.stop().await
}

// --------------------------------------------------------------- cluster --

/// One node: its name, its fixed address (restarts reuse it) and the
/// running child.
struct Node {
    id: String,
    listen: String,
    addr: SocketAddr,
    server: Server,
}

impl Node {
    async fn start(database_url: &str, id: &str, listen: &str, lease_ttl: &str) -> anyhow::Result<Self> {
        let env = [("EVENTUALL_NODE_ID", id), ("EVENTUALL_LEASE_TTL", lease_ttl)];
        let child =
            Child { subcommand: "rooms-server", database_url, listen, extra: &["--evict-after", "60s"], env: &env };
        let server = Server::spawn_on(child).await.with_context(|| format!("starting node {id}"))?;
        Ok(Self { id: id.to_owned(), listen: listen.to_owned(), addr: server.addr, server })
    }
}

struct Cluster {
    database_url: String,
    lease_ttl: String,
    nodes: Vec<Node>,
    /// Reads `cluster_leases`.
    leases: sqlx::PgPool,
}

impl Cluster {
    async fn start(database_url: &str, lease_ttl: &str) -> anyhow::Result<Self> {
        // Migrate once, so the nodes do not race each other's migrations.
        EventStore::open(database_url, StoreOptions::default()).await?.shutdown().await;
        let leases = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(database_url).await?;
        let mut nodes = Vec::with_capacity(NODES);
        for n in 1..=NODES {
            let listen = free_listen()?;
            nodes.push(Node::start(database_url, &format!("n{n}"), &listen, lease_ttl).await?);
        }
        Ok(Self { database_url: database_url.to_owned(), lease_ttl: lease_ttl.to_owned(), nodes, leases })
    }

    fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node % NODES].addr
    }

    fn servers(&self) -> Vec<&Server> {
        self.nodes.iter().map(|n| &n.server).collect()
    }

    /// The node holding `room`'s lease, by index.
    async fn owner_of(&self, room: &str) -> anyhow::Result<Option<usize>> {
        let node: Option<String> = sqlx::query_scalar("select node from cluster_leases where scope = $1")
            .bind(format!("event:{room}"))
            .fetch_optional(&self.leases)
            .await?;
        Ok(node.and_then(|node| self.nodes.iter().position(|n| n.id == node)))
    }

    /// Connects `user` to `room` on node `owner` before anyone else, so
    /// that node takes the room's lease; checks that it did.
    async fn own(&self, owner: usize, room: &str, user: &str) -> anyhow::Result<Socket> {
        let (socket, _, _) = join(self.addr(owner), room, user).await?;
        self.ensure_owner(owner, room).await?;
        Ok(socket)
    }

    async fn ensure_owner(&self, owner: usize, room: &str) -> anyhow::Result<()> {
        let holder = self.owner_of(room).await?;
        anyhow::ensure!(holder == Some(owner), "room {room} is owned by node {holder:?}, not {owner}");
        Ok(())
    }

    /// SIGKILL of node `node`; answers the instant the signal was sent.
    async fn kill(&mut self, node: usize) -> anyhow::Result<Instant> {
        let killed = Instant::now();
        self.nodes[node].server.kill().await?;
        Ok(killed)
    }

    /// Starts node `node` again, on its address and under its name.
    async fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        let old = &self.nodes[node];
        let (id, listen) = (old.id.clone(), old.listen.clone());
        self.nodes[node] = Node::start(&self.database_url, &id, &listen, &self.lease_ttl).await?;
        Ok(())
    }

    /// Graceful stop of every node (they give their leases back).
    async fn stop(self) -> anyhow::Result<()> {
        for mut node in self.nodes {
            node.server.stop().await.with_context(|| format!("stopping node {}", node.id))?;
        }
        self.leases.close().await;
        Ok(())
    }
}

/// A free port on 127.0.0.1 (bound and released: a node's URL for its
/// peers is its listen address, so it cannot listen on port 0).
fn free_listen() -> anyhow::Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

/// Where a room's clients connect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Every client on the room's owner: no hop.
    Owner,
    /// Members round-robin over the nodes, newcomers on non-owners.
    Spread,
}

impl Layout {
    fn tag(self) -> &'static str {
        match self {
            Layout::Owner => "owner",
            Layout::Spread => "spread",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layout::Owner => "all on the owner",
            Layout::Spread => "spread over 3 nodes",
        }
    }

    /// The node of member `j` of a room owned by `owner` (member 0 is on
    /// the owner in both layouts: it made it the owner).
    fn member_node(self, owner: usize, j: usize) -> usize {
        match self {
            Layout::Owner => owner,
            Layout::Spread => (owner + j) % NODES,
        }
    }

    /// The node of the `k`th newcomer to a room owned by `owner`.
    fn newcomer_node(self, owner: usize, k: usize) -> usize {
        match self {
            Layout::Owner => owner,
            Layout::Spread => (owner + 1 + k % (NODES - 1)) % NODES,
        }
    }
}

// ------------------------------------------------------------ join → all --

async fn join_phase(cluster: &Cluster, args: &ClusterArgs) -> anyhow::Result<()> {
    println!("\n### Join → all, {} members, {} newcomers per layout\n", args.members, args.joins);
    let owner = join_to_all(cluster, args, Layout::Owner).await?;
    let spread = join_to_all(cluster, args, Layout::Spread).await?;
    println!();
    println!("| layout | join → | samples | p50 ms | p99 ms | max ms | |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for (layout, s) in [(Layout::Owner, &owner), (Layout::Spread, &spread)] {
        let last = format!("last of {} members sees the newcomer", args.members);
        for row in
            [latency_row("newcomer's own first snapshot", &s.own, None), latency_row(&last, &s.to_last, Some(250.0))]
        {
            println!("| {} {row}", layout.name());
        }
    }
    let ratio = |p: f64| percentile(&spread.to_last, p) / percentile(&owner.to_last, p);
    println!();
    println!("join → all, spread / owner: p50 {:.2}x, p99 {:.2}x, max {:.2}x", ratio(0.5), ratio(0.99), ratio(1.0));
    Ok(())
}

async fn join_to_all(cluster: &Cluster, args: &ClusterArgs, layout: Layout) -> anyhow::Result<FanoutSamples> {
    let room = format!("join-{}", layout.tag());
    let owner = 0;
    let first = cluster.own(owner, &room, "member-0000").await?;
    let seats = (1..args.members)
        .map(|j| (cluster.addr(layout.member_node(owner, j)), room.clone(), format!("member-{j:04}")))
        .collect();
    let (mut sockets, fill_time) = fill_at(seats).await?;
    sockets.push(first);
    let mut fanout = Fanout::start(sockets);
    // Let the snapshots of the fill reach everyone before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = CpuWindow::start(&cluster.servers());
    let time_limit = Instant::now() + Duration::from_secs(120);
    let mut samples = FanoutSamples::default();
    for k in 0..args.joins {
        if Instant::now() > time_limit {
            break;
        }
        let addr = cluster.addr(layout.newcomer_node(owner, k));
        samples.add(k, fanout.sample(addr, &room, &format!("{}-newcomer-{k:03}", layout.tag())).await?);
    }
    let cpu_report = cpu.report();
    let still_open = fanout.finish().await;
    cluster.ensure_owner(owner, &room).await?;
    println!(
        "- {}: {} members connected in {:.1} s, {still_open} still connected after the joins; last snapshot {} bytes; \
         CPU (joins, with 200 ms pauses) {cpu_report}",
        layout.name(),
        args.members,
        fill_time.as_secs_f64(),
        samples.snapshot_bytes
    );
    if !samples.incomplete.is_empty() {
        println!("  joins not seen by all members within 5 s (join, members that saw it): {:?}", samples.incomplete);
    }
    Ok(samples)
}

// ------------------------------------------------------------- heartbeat --

/// One layout's heartbeat figures.
struct Heartbeats {
    sent: u64,
    dropped: usize,
    /// `HeartbeatReceived` in the log when the load ended, and 3 s later.
    durable_at_end: u64,
    stored: u64,
    window: Duration,
    joins: Vec<Duration>,
    join_failures: usize,
}

async fn heartbeat_phase(cluster: &Cluster, args: &ClusterArgs) -> anyhow::Result<()> {
    println!(
        "\n### Heartbeats: {} sockets in {} rooms, {} heartbeats/s offered for {}\n",
        args.sockets, args.rooms, args.rate, args.duration
    );
    let owner = heartbeat_load(cluster, args, Layout::Owner).await?;
    let spread = heartbeat_load(cluster, args, Layout::Spread).await?;
    println!();
    println!(
        "| layout | heartbeats sent | durable when the load ended | durable/s | stored 3 s later | all stored | \
         join → first snapshot p50 / p99 ms (samples, failed) |"
    );
    println!("|---|---:|---:|---:|---:|---|---|");
    for (layout, h) in [(Layout::Owner, &owner), (Layout::Spread, &spread)] {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {:.1} / {:.1} ({}, {}) |",
            layout.name(),
            h.sent,
            h.durable_at_end,
            h.durable_at_end as f64 / h.window.as_secs_f64(),
            h.stored,
            if h.stored == h.sent { "yes" } else { "**NO**" },
            percentile(&h.joins, 0.5),
            percentile(&h.joins, 0.99),
            h.joins.len(),
            h.join_failures
        );
        if h.dropped > 0 {
            println!("({} sockets of the {} layout were closed by the server)", h.dropped, layout.tag());
        }
    }
    Ok(())
}

async fn heartbeat_load(cluster: &Cluster, args: &ClusterArgs, layout: Layout) -> anyhow::Result<Heartbeats> {
    let rooms: Vec<String> = (0..args.rooms).map(|r| format!("hb-{}-{r}", layout.tag())).collect();
    let owner = |r: usize| r % NODES;
    let mut sockets = Vec::with_capacity(args.sockets);
    for (r, room) in rooms.iter().enumerate() {
        sockets.push(cluster.own(owner(r), room, &format!("{room}-m0000")).await?);
    }
    // Socket i is member j = i / R of room r = i % R.
    let seats = (rooms.len()..args.sockets)
        .map(|i| {
            let (r, j) = (i % rooms.len(), i / rooms.len());
            (cluster.addr(layout.member_node(owner(r), j)), rooms[r].clone(), format!("{}-m{j:04}", rooms[r]))
        })
        .collect();
    let (rest, fill_time) = fill_at(seats).await?;
    sockets.extend(rest);
    let store = EventStore::open(&cluster.database_url, StoreOptions::default()).await?;
    let n = sockets.len();
    let period = Duration::from_secs_f64(n as f64 / f64::from(args.rate.max(1)));
    let window: Duration = args.duration.into();
    let cpu = CpuWindow::start(&cluster.servers());
    let start = tokio::time::Instant::now() + Duration::from_millis(500);
    let deadline = start + window;
    let members = sockets
        .into_iter()
        .enumerate()
        // Spread the beats evenly over each period, as real clients are.
        .map(|(i, socket)| tokio::spawn(member(socket, start + period.mul_f64(i as f64 / n as f64), period, deadline)))
        .collect();
    let seat = |k: usize| {
        let r = k % rooms.len();
        (cluster.addr(layout.newcomer_node(owner(r), k / rooms.len())), rooms[r].clone())
    };
    let (joins, join_failures) = newcomers(seat, start, args.join_every.into(), deadline).await?;
    let Load { sent, dropped, open } = Load::collect(members).await?;
    let heartbeats = |by_type: std::collections::BTreeMap<String, u64>| by_type.get("HeartbeatReceived").copied();
    let durable_at_end = heartbeats(events_by_type(&store, &rooms).await?).unwrap_or(0);
    let cpu_report = cpu.report();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = heartbeats(events_by_type(&store, &rooms).await?).unwrap_or(0);
    futures::future::join_all(open.into_iter().map(leave)).await;
    store.shutdown().await;
    for (r, room) in rooms.iter().enumerate() {
        cluster.ensure_owner(owner(r), room).await?;
    }
    println!(
        "- {}: {n} sockets connected in {:.1} s, one heartbeat every {:.0} ms each; CPU {cpu_report}",
        layout.name(),
        fill_time.as_secs_f64(),
        period.as_secs_f64() * 1e3
    );
    Ok(Heartbeats { sent, dropped, durable_at_end, stored, window, joins, join_failures })
}

// -------------------------------------------------------------- takeover --

/// One lease time's takeovers: (kill → stage command answered, attempts,
/// old owner, new owner).
struct Takeovers {
    lease_ttl: String,
    rounds: Vec<(Duration, usize, String, String)>,
    reconnects: u64,
}

async fn takeover(cluster: &mut Cluster, kills: usize, lease_ttl: &str, busy: usize) -> anyhow::Result<Takeovers> {
    // Lease times print as `1s 500ms`: the room's id takes the digits only.
    let room = format!("busy-{}", lease_ttl.replace(' ', ""));
    // The first command makes n1 the owner.
    stage_until_ok(cluster.addr(0), &room, "speaker-start", Instant::now()).await?;
    cluster.ensure_owner(0, &room).await?;
    let (stop, stopped) = watch::channel(false);
    let addrs: Vec<SocketAddr> = (0..NODES).map(|n| cluster.addr(n)).collect();
    let members: Vec<_> = (0..busy)
        .map(|i| tokio::spawn(busy_member(addrs.clone(), room.clone(), format!("busy-{i:03}"), i, stopped.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rounds = Vec::new();
    for round in 0..kills {
        let owner = wait_for_owner(cluster, &room).await?;
        let via = (owner + 1) % NODES;
        let killed = cluster.kill(owner).await?;
        let (took, attempts) = stage_until_ok(cluster.addr(via), &room, &format!("speaker-{round}"), killed).await?;
        let new_owner = cluster.owner_of(&room).await?.map_or("?".to_owned(), |n| cluster.nodes[n].id.clone());
        rounds.push((took, attempts, cluster.nodes[owner].id.clone(), new_owner));
        cluster.restart(owner).await?;
        // Let the members that were on the killed node reconnect.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = stop.send(true);
    let mut reconnects = 0;
    for m in members {
        reconnects += m.await?.saturating_sub(1);
    }
    Ok(Takeovers { lease_ttl: lease_ttl.to_owned(), rounds, reconnects })
}

/// The node holding `room`'s lease (10 s at most: a room with members
/// always has an owner soon after a takeover).
async fn wait_for_owner(cluster: &Cluster, room: &str) -> anyhow::Result<usize> {
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(owner) = cluster.owner_of(room).await? {
            return Ok(owner);
        }
        anyhow::ensure!(Instant::now() < limit, "room {room} has no owner");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `user` on stage through `addr`, retrying every 25 ms (30 s at
/// most); answers the time since `since` and the attempts it took.
async fn stage_until_ok(addr: SocketAddr, room: &str, user: &str, since: Instant) -> anyhow::Result<(Duration, usize)> {
    let moderator = token_as("bench-moderator", Role::Moderator);
    let path = format!("/event/{room}/stage/enter");
    let body = format!(r#"{{"userId":"{user}"}}"#);
    for attempt in 1..=2_000 {
        let answer = http_post_body(addr, &path, &moderator, &body).await;
        if let Ok((200, _)) = answer {
            return Ok((since.elapsed(), attempt));
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(30),
            "no stage command succeeded within 30 s; the last answer: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("no stage command succeeded in 2,000 attempts")
}

/// A member of the busy room: joins at node `first`, one heartbeat a second;
/// when its socket closes (its node or the owner behind it was killed) it
/// joins the next node after 500 ms, as a reconnecting client does. Answers
/// how many times it connected.
async fn busy_member(
    addrs: Vec<SocketAddr>,
    room: String,
    user: String,
    first: usize,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut connects = 0;
    for attempt in 0..1_000 {
        if *stop.borrow() {
            break;
        }
        match join(addrs[(first + attempt) % addrs.len()], &room, &user).await {
            Ok((socket, _, _)) => {
                connects += 1;
                beat_until_closed(socket, &mut stop).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    connects
}

async fn beat_until_closed(socket: Socket, stop: &mut watch::Receiver<bool>) {
    let (mut sink, mut stream) = socket.split();
    let mut beats = tokio::time::interval(Duration::from_secs(1));
    // Bounded by the stop signal, and by 10 minutes.
    let limit = tokio::time::sleep(Duration::from_secs(600));
    tokio::pin!(limit);
    while !*stop.borrow() {
        tokio::select! {
            // `changed`, not `wait_for`: its answer holds no lock across
            // the heartbeat's await.
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            _ = &mut limit => break,
            _ = beats.tick() => if sink.send(Message::text(HEARTBEAT)).await.is_err() { return },
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    if let Ok(socket) = sink.reunite(stream) {
        leave(socket).await;
    }
}

fn print_takeovers(all: &[Takeovers]) {
    println!("\n### Takeover: SIGKILL of a busy room's owner, then a stage command through another node\n");
    println!("| lease time | kills | min ms | p50 ms | p90 ms | max ms | each (ms, old → new owner) |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for t in all {
        let times: Vec<Duration> = t.rounds.iter().map(|r| r.0).collect();
        let each: Vec<String> =
            t.rounds.iter().map(|(d, _, old, new)| format!("{:.0} {old}→{new}", d.as_secs_f64() * 1e3)).collect();
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            t.lease_ttl,
            times.len(),
            percentile(&times, 0.0),
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            percentile(&times, 1.0),
            each.join(", ")
        );
    }
    for t in all {
        let attempts: usize = t.rounds.iter().map(|r| r.1).sum();
        println!(
            "- lease {}: {attempts} stage attempts in all (one every 25 ms until one answered 200); busy members \
             reconnected {} times",
            t.lease_ttl, t.reconnects
        );
    }
}
