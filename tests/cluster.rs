//! Several nodes on one PostgreSQL (issue #20, ADR 0020), with real
//! `eventuall serve` processes: clients of one room spread over three nodes
//! see one room; the owner killed with SIGKILL ten times under load loses
//! nothing acknowledged and is replaced within the lease bound; a paused
//! owner that resumes (a zombie) writes nothing; the lease itself fences.
//!
//! Every server listens on 127.0.0.1; every loop is bounded in count and
//! time.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use eventuall::auth::{Authenticator, Claims, Role};
use eventuall::cluster::{Cluster, ClusterSettings, Owner, Scope};
use eventuall::store::{ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use eventuall_media::sim::{SimConfig, Simulators};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "cluster-test-secret";
/// Short leases so that takeovers are quick to wait for; the bound a test
/// allows for a takeover is this plus the time a restart of routing takes.
const LEASE_TTL: &str = "1500ms";
const TAKEOVER_BOUND: Duration = Duration::from_secs(8);

struct Node {
    id: String,
    port: u16,
    child: Child,
    /// The node's stderr (warnings and errors), shown when it fails to start.
    log: std::path::PathBuf,
}

impl Node {
    fn start_with(db: &TestDb, id: &str, port: u16, args: &[String]) -> Self {
        let log = db.dir().join(format!("{id}-{port}.log"));
        let stderr = std::fs::File::create(&log).expect("node log file");
        let child = Command::new(env!("CARGO_BIN_EXE_eventuall"))
            .arg("serve")
            .args(args)
            .env("EVENTUALL_LISTEN", format!("127.0.0.1:{port}"))
            .env("EVENTUALL_DATABASE_URL", &db.url)
            .env("EVENTUALL_JWT_SECRET", SECRET)
            .env("EVENTUALL_NODE_ID", id)
            .env("EVENTUALL_LEASE_TTL", LEASE_TTL)
            .env("EVENTUALL_ARCHIVE_URL", format!("file://{}", db.dir().join("archive").display()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("node starts");
        Self { id: id.to_owned(), port, child, log }
    }

    /// How the node ended, if it did, and the tail of its log.
    fn failure_report(&mut self) -> String {
        let exited = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited with {status}"),
            _ => "still running".to_owned(),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{exited}; port {}; log:\n{}", self.port, tail.join("\n"))
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that is free now, below the kernel's ephemeral range
/// (`ip_local_port_range`, 32768–60999 here). A port taken from that range
/// (`bind(:0)`) can be handed to some other test's outgoing connection
/// between this check and the node's own bind; this range is never handed
/// out for outgoing connections, so only another listener can take it, and
/// [`start_healthy`] starts over on a fresh port if one does.
fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How a node's start ended.
enum Started {
    Healthy,
    /// The process exited before it answered; the report says how.
    Exited(String),
}

async fn wait_started(http: &reqwest::Client, node: &mut Node) -> Started {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(answer) = http.get(node.url("/healthz")).send().await
            && answer.status().is_success()
        {
            return Started::Healthy;
        }
        if matches!(node.child.try_wait(), Ok(Some(_))) {
            return Started::Exited(node.failure_report());
        }
        if Instant::now() >= deadline {
            let report = node.failure_report();
            panic!("node {} did not become healthy: {report}", node.id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_healthy(http: &reqwest::Client, node: &mut Node) {
    if let Started::Exited(report) = wait_started(http, node).await {
        panic!("node {} exited before it became healthy: {report}", node.id);
    }
}

/// Starts a node on a free port and waits until it answers; a node whose
/// port was taken before it could bind starts again on another (at most
/// three tries). Any other early exit fails the test with its log.
async fn start_healthy(db: &TestDb, http: &reqwest::Client, id: &str, args: &[String]) -> Node {
    for _ in 0..3 {
        let mut node = Node::start_with(db, id, free_port(), args);
        match wait_started(http, &mut node).await {
            Started::Healthy => return node,
            Started::Exited(report) if report.contains("binding 127.0.0.1") => {
                eprintln!("node {id}: its port was taken; starting again on another: {report}");
            }
            Started::Exited(report) => panic!("node {id} exited before it became healthy: {report}"),
        }
    }
    panic!("node {id}: three ports in a row were taken before it could bind");
}

async fn start_nodes(db: &TestDb, http: &reqwest::Client, count: usize) -> Vec<Node> {
    start_nodes_with(db, http, count, &[]).await
}

async fn start_nodes_with(db: &TestDb, http: &reqwest::Client, count: usize, args: &[String]) -> Vec<Node> {
    // Migrate once, so the nodes do not race each other's migrations.
    db.open().await.shutdown().await;
    let starts = (1..=count).map(|n| {
        let id = format!("n{n}");
        async move { start_healthy(db, http, &id, args).await }
    });
    futures::future::join_all(starts).await
}

fn token(user: &str, role: Role) -> String {
    let claims = Claims {
        sub: user.into(),
        exp: eventuall::store::now_millis() / 1000 + 3600,
        name: Some(format!("{user} name")),
        role,
        events: None,
    };
    Authenticator::new(SECRET).issue(&claims)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(node: &Node, event: &str, user: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{}/parties/event/{event}?token={}", node.port, token(user, Role::Participant));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("socket opens");
    socket
}

/// Reads snapshots until one satisfies `done` (10 s at most).
async fn snapshot_where(socket: &mut Socket, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, socket.next()).await.expect("a matching snapshot within 10 s");
        let Some(Ok(Message::Text(text))) = frame else { continue };
        let value: Value = serde_json::from_str(text.as_str()).expect("frames are JSON");
        if value["type"] == "snapshot" && done(&value) {
            return value;
        }
    }
}

fn present(snapshot: &Value) -> HashSet<String> {
    snapshot["presence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["status"] != "offline")
        .filter_map(|u| u["userId"].as_str().map(str::to_owned))
        .collect()
}

/// The string at `key` anywhere in `value` (payloads may be tagged).
fn find_string(value: &Value, key: &str) -> Option<String> {
    match value {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| map.values().find_map(|v| find_string(v, key))),
        _ => None,
    }
}

async fn owner_of(db: &TestDb, scope: &str) -> Option<(String, i64)> {
    let store = db.open().await;
    let leases = Cluster::leases(&store).await.expect("leases read");
    leases.into_iter().find(|l| l.scope == scope).map(|l| (l.node, l.epoch))
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> reqwest::Result<reqwest::Response> {
    http.post(url).bearer_auth(token("mod", Role::Moderator)).json(&body).timeout(Duration::from_secs(5)).send().await
}

/// The user ids of an event's pending queue, read through `node`.
async fn pending_queue(http: &reqwest::Client, node: &Node, event: &str) -> Vec<String> {
    let view: Value = http
        .get(node.url(&format!("/event/{event}/queue")))
        .bearer_auth(token("mod", Role::Moderator))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    view["pending"].as_array().unwrap().iter().filter_map(|e| e["userId"].as_str().map(str::to_owned)).collect()
}

/// Waits (30 s at most) until the event's recording is in `state`, asking
/// any node that answers.
async fn recording_state(http: &reqwest::Client, nodes: &[Node], state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    loop {
        for node in nodes {
            let answer = http
                .get(node.url("/cloudcaster/kill/status"))
                .bearer_auth(token("mod", Role::Moderator))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(answer) = answer
                && let Ok(status) = answer.json::<Value>().await
            {
                if status["state"] == state {
                    return;
                }
                last = status;
            }
        }
        assert!(Instant::now() < deadline, "the recording never reached {state}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_one_room_on_three_nodes_see_one_room_queue_and_interviews() {
    let db = TestDb::postgres().await;
    let http = reqwest::Client::new();
    let nodes = start_nodes(&db, &http, 3).await;

    // One participant per node.
    let mut sockets = Vec::new();
    for (node, user) in nodes.iter().zip(["ann", "bob", "cat"]) {
        sockets.push(join(node, "spread", user).await);
    }
    let all: HashSet<String> = ["ann", "bob", "cat"].map(String::from).into();
    for socket in &mut sockets {
        snapshot_where(socket, |s| present(s) == all).await;
    }
    let leases: Vec<_> = Cluster::leases(&db.open().await).await.unwrap();
    let rooms: Vec<_> = leases.iter().filter(|l| l.scope == "event:spread").collect();
    assert_eq!(rooms.len(), 1, "one owner for the event: {leases:?}");

    // A stage change through one node reaches the sockets of all three.
    let entered = post(&http, nodes[2].url("/event/spread/stage/enter"), json!({"userId": "bob"})).await.unwrap();
    assert_eq!(entered.status(), 200);
    for socket in &mut sockets {
        snapshot_where(socket, |s| s["stage"][0]["userId"] == "bob").await;
    }

    // The queue: edits through two nodes, read through the third.
    for (node, user) in [(&nodes[0], "dan"), (&nodes[1], "eve")] {
        let added = post(&http, node.url("/event/spread/queue/add"), json!({"userId": user})).await.unwrap();
        assert_eq!(added.status(), 200);
    }
    assert_eq!(pending_queue(&http, &nodes[2], "spread").await, ["dan", "eve"]);

    // Interviews: created through one node, read and renamed through
    // others, heard on a user socket held by a third.
    let alice = token("alice", Role::Participant);
    let url = format!("ws://127.0.0.1:{}/parties/user-interviews/alice?token={alice}", nodes[2].port);
    let (mut user_socket, _) = tokio_tungstenite::connect_async(url).await.expect("user socket opens");
    let created: Value = http
        .post(nodes[0].url("/api/interviews"))
        .bearer_auth(&alice)
        .json(&json!({"title": "Rust engineer", "skills": ["Rust"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["interview"]["id"].as_str().expect("interview id").to_owned();
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Ok(Message::Text(text))) = user_socket.next().await {
                return serde_json::from_str::<Value>(text.as_str()).unwrap();
            }
        }
    })
    .await
    .expect("the user socket hears the create");
    assert_eq!(heard, json!({"type": "INTERVIEW_CREATED", "interviewId": id}));
    let renamed = http
        .patch(nodes[1].url(&format!("/api/interviews/{id}")))
        .bearer_auth(&alice)
        .json(&json!({"title": "Staff Rust engineer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let details: Value = http
        .get(nodes[2].url(&format!("/api/interviews/{id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(details["interview"]["title"], "Staff Rust engineer", "{details}");
    let users: Vec<_> = Cluster::leases(&db.open().await).await.unwrap();
    assert_eq!(users.iter().filter(|l| l.scope == "user:alice").count(), 1);

    drop(nodes);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_killed_ten_times_under_load_loses_nothing_and_is_replaced_within_the_bound() {
    let db = TestDb::postgres().await;
    let http = reqwest::Client::new();
    // One Mux and one LiveKit for all nodes: the saga moves between nodes
    // and must still create one stream and one egress.
    let sims = Simulators::spawn(SimConfig::fast()).await.expect("simulators");
    let media: Vec<String> = [
        "--mux-url",
        &sims.mux_url,
        "--livekit-url",
        &sims.livekit_url,
        "--composite-url",
        "https://app.example.com/composite",
        "--recording-poll-every",
        "50ms",
    ]
    .map(String::from)
    .to_vec();
    let mut nodes = start_nodes_with(&db, &http, 3, &media).await;
    let started = post(&http, nodes[0].url("/cloudcaster/kill/start"), json!({})).await.unwrap();
    assert_eq!(started.status(), 202, "{}", started.text().await.unwrap_or_default());
    recording_state(&http, &nodes, "recording").await;
    let mut acked: Vec<String> = Vec::new();
    let mut queued: Vec<String> = Vec::new();
    let mut takeovers = Vec::new();
    let mut last_epoch = 0;

    for cycle in 0..10 {
        // Load: stage entries through every node, and a heartbeating
        // socket on every node; the room gets an owner if it has none.
        let mut sockets = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            sockets.push(join(node, "kill", &format!("viewer{n}")).await);
        }
        for k in 0..12 {
            let node = &nodes[k % nodes.len()];
            let user = format!("c{cycle}-u{k}");
            if let Ok(answer) = post(&http, node.url("/event/kill/stage/enter"), json!({"userId": user})).await
                && answer.status() == 200
            {
                acked.push(user);
            }
            for socket in &mut sockets {
                let _ = socket.send(Message::text(r#"{"type":"heartbeat"}"#)).await;
            }
            if k % 4 == 0 {
                let user = format!("c{cycle}-q{k}");
                if let Ok(answer) = post(&http, node.url("/event/kill/queue/add"), json!({"userId": user})).await
                    && answer.status() == 200
                {
                    queued.push(user);
                }
            }
        }
        let (owner, epoch) = owner_of(&db, "event:kill").await.expect("the event has an owner");
        assert!(epoch > last_epoch, "each takeover raises the epoch ({epoch} after {last_epoch})");
        last_epoch = epoch;
        let killed = nodes.iter().position(|n| n.id == owner).expect("the owner is one of the nodes");

        // Kill the owner while a burst of commands is in flight through
        // the others; a command is acknowledged only by a 200.
        let burst: Vec<_> = (0..8)
            .map(|k| {
                let url = nodes[(killed + 1 + k % 2) % nodes.len()].url("/event/kill/stage/enter");
                let user = format!("c{cycle}-burst{k}");
                let http = http.clone();
                async move {
                    let answer = post(&http, url, json!({"userId": user.clone()})).await;
                    (user, answer)
                }
            })
            .collect();
        let in_flight = tokio::spawn(futures::future::join_all(burst));
        tokio::time::sleep(Duration::from_millis(5)).await;
        nodes[killed].kill();
        let killed_at = Instant::now();
        for (user, answer) in in_flight.await.unwrap() {
            if answer.is_ok_and(|a| a.status() == 200) {
                acked.push(user);
            }
        }

        // Served again: the first command another node acknowledges.
        let survivor = &nodes[(killed + 1) % nodes.len()];
        loop {
            let user = format!("c{cycle}-after");
            if let Ok(answer) =
                post(&http, survivor.url("/event/kill/stage/enter"), json!({"userId": user.clone()})).await
                && answer.status() == 200
            {
                acked.push(user);
                break;
            }
            assert!(killed_at.elapsed() < TAKEOVER_BOUND, "cycle {cycle}: nobody took the room over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        takeovers.push(killed_at.elapsed());
        drop(sockets);

        // The killed node comes back (a new process: it waits for nothing
        // of its old life).
        let port = nodes[killed].port;
        let id = nodes[killed].id.clone();
        nodes[killed] = Node::start_with(&db, &id, port, &media);
        wait_healthy(&http, &mut nodes[killed]).await;
    }

    // The recording ran through all ten kills: stopping it completes the
    // saga with one stream, one egress, nothing left behind.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stop = post(&http, nodes[1].url("/cloudcaster/kill/stop"), json!({})).await;
        if stop.is_ok_and(|s| s.status() == 202) {
            break;
        }
        assert!(Instant::now() < deadline, "the stop was never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recording_state(&http, &nodes, "completed").await;
    assert_eq!(sims.handle.mux.live_streams().len(), 1, "one live stream");
    assert_eq!(sims.handle.livekit.egresses().len(), 1, "one egress");
    for _ in 0..100 {
        if sims.handle.leftovers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sims.handle.leftovers().is_empty(), "{:#?}", sims.handle.leftovers());

    // Nothing acknowledged is lost, nothing is doubled.
    let store = db.open().await;
    let stream = StreamId::of("room", "kill");
    let events = store.read_stream(&stream, 0, 1_000_000).await.unwrap();
    let mut entered = Vec::new();
    for event in events.iter().filter(|e| e.event_type == "StageEntered") {
        let payload: Value = serde_json::from_str(&event.payload).expect("payloads are JSON");
        let user = find_string(&payload, "user_id").expect("a stage entry names its user");
        entered.push(user);
    }
    assert_eq!(pending_queue(&http, &nodes[0], "kill").await, queued, "every acknowledged queue edit, in order, once");
    let stored: HashSet<&String> = entered.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|u| !stored.contains(u)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged stage entries lost: {lost:?}", lost.len(), acked.len());
    assert_eq!(stored.len(), entered.len(), "a stage entry stored twice");
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "the room's versions have a gap or a fork");
    // At most one sweep timer per room, whoever armed it.
    let timers: Vec<(i64,)> =
        store.query_as("select count(*) from timers where owner = 'room-kill'", &[]).await.unwrap();
    assert!(timers[0].0 <= 1);

    let verify = Command::new(env!("CARGO_BIN_EXE_eventuall"))
        .args(["replay", "verify", "--database-url", &db.url])
        .env("EVENTUALL_ARCHIVE_URL", format!("file://{}", db.dir().join("archive").display()))
        .output()
        .expect("verify runs");
    assert!(verify.status.success(), "replay verify: {}", String::from_utf8_lossy(&verify.stdout));

    takeovers.sort();
    let ms: Vec<u128> = takeovers.iter().map(Duration::as_millis).collect();
    println!(
        "takeover after SIGKILL (ms, sorted, lease {LEASE_TTL}): {ms:?}; acknowledged {} stage entries, {} queue edits",
        acked.len(),
        queued.len()
    );
    drop(nodes);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_resumes_as_a_zombie_and_writes_nothing() {
    let db = TestDb::postgres().await;
    let http = reqwest::Client::new();
    let nodes = start_nodes(&db, &http, 2).await;
    // A socket straight on the node that will own the room.
    let mut direct = join(&nodes[0], "zombie", "zed").await;
    snapshot_where(&mut direct, |s| present(s).contains("zed")).await;
    assert_eq!(owner_of(&db, "event:zombie").await.map(|o| o.0).as_deref(), Some("n1"));

    nodes[0].signal("-STOP");
    let paused_at = Instant::now();
    // The other node takes the room over once the lease runs out.
    loop {
        if let Ok(answer) = post(&http, nodes[1].url("/event/zombie/stage/enter"), json!({"userId": "yan"})).await
            && answer.status() == 200
        {
            break;
        }
        assert!(paused_at.elapsed() < TAKEOVER_BOUND, "nobody took over from the paused owner");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = db.open().await;
    let stream = StreamId::of("room", "zombie");
    let before = store.read_stream(&stream, 0, 100_000).await.unwrap();
    assert_eq!(owner_of(&db, "event:zombie").await.map(|o| o.0).as_deref(), Some("n2"));

    // The zombie wakes with a socket still open to it and tries to write.
    nodes[0].signal("-CONT");
    for _ in 0..20 {
        let _ = direct.send(Message::text(r#"{"type":"heartbeat"}"#)).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = store.read_stream(&stream, 0, 100_000).await.unwrap();
    let zombie_writes: Vec<_> = after[before.len()..]
        .iter()
        .filter(|e| e.event_type == "HeartbeatReceived" && e.payload.contains("\"zed\""))
        .collect();
    assert!(zombie_writes.is_empty(), "the zombie wrote {} heartbeats", zombie_writes.len());
    assert_eq!(owner_of(&db, "event:zombie").await.map(|o| o.0).as_deref(), Some("n2"));
    drop(nodes);
    db.drop_db().await;
}

/// The lease fences without any server: an expired holder's guard refuses,
/// and an append that got past a guard meets the new owner's version.
#[tokio::test]
async fn an_expired_lease_refuses_writes_and_a_late_append_meets_the_new_version() {
    let db = TestDb::postgres().await;
    let settings = |node: &str| ClusterSettings {
        node_id: node.into(),
        url: format!("http://127.0.0.1:1/{node}"),
        lease_ttl: Duration::from_millis(400),
    };
    let old_store = db.open().await;
    let new_store = db.open().await;
    let old = Cluster::new(old_store.clone(), settings("old")).unwrap();
    let new = Cluster::new(new_store.clone(), settings("new")).unwrap();
    let guard = old.clone();
    old_store.set_write_guard(std::sync::Arc::new(move |s| guard.may_write(s)));
    let guard = new.clone();
    new_store.set_write_guard(std::sync::Arc::new(move |s| guard.may_write(s)));
    let scope = Scope::Event("fence".into());
    let stream = StreamId::of("room", "fence");
    let event =
        || NewEvent::new("StageEntered", "1", json!({"user_id": "x", "at": 1}).to_string(), Metadata::by("test"));

    assert_eq!(old.owner(&scope).await.unwrap(), Owner::Here);
    assert!(matches!(new.owner(&scope).await.unwrap(), Owner::There { node, .. } if node == "old"));
    old_store.append(&stream, ExpectedVersion::Exact(0), vec![event()]).await.unwrap();
    let refused = new_store.append(&stream, ExpectedVersion::Exact(1), vec![event()]).await;
    assert!(matches!(refused, Err(StoreError::NotOwner(_))), "a non-owner may not write: {refused:?}");

    // Just inside the lease the holder still writes; past it, nobody
    // renewed, and the other node takes it with a new epoch.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let late = old_store.append(&stream, ExpectedVersion::Exact(1), vec![event()]).await;
    assert!(matches!(late, Err(StoreError::NotOwner(_))), "an expired holder may not write: {late:?}");
    assert_eq!(new.owner(&scope).await.unwrap(), Owner::Here);
    assert_eq!(new.epoch(&scope), Some(2));
    new_store.append(&stream, ExpectedVersion::Exact(1), vec![event()]).await.unwrap();

    // A zombie whose append slipped past its guard (a store without one)
    // still cannot write over the new owner: the version fences it.
    let unguarded = db.open().await;
    let zombie = unguarded.append(&stream, ExpectedVersion::Exact(1), vec![event()]).await;
    assert!(matches!(zombie, Err(ref e) if e.is_conflict()), "{zombie:?}");
    db.drop_db().await;
}

/// What a renewal round does besides renewing: an unused scope with no live
/// actor is given back, and a lease another node took evicts its actors.
#[tokio::test]
async fn a_renewal_gives_back_idle_leases_and_evicts_the_actors_of_lost_ones() {
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Hosts {
        live: Mutex<HashSet<String>>,
        evicted: Mutex<Vec<String>>,
    }
    impl eventuall::cluster::ScopeHosts for Hosts {
        fn is_live(&self, scope: &Scope) -> bool {
            self.live.lock().unwrap().contains(&scope.key())
        }
        fn evict(&self, scope: &Scope) {
            self.evicted.lock().unwrap().push(scope.key());
        }
    }

    let db = TestDb::postgres().await;
    let store = db.open().await;
    let ttl = Duration::from_millis(300);
    let settings = |node: &str| ClusterSettings { node_id: node.into(), url: format!("http://{node}"), lease_ttl: ttl };
    let one = Cluster::new(store.clone(), settings("one")).unwrap();
    let two = Cluster::new(store.clone(), settings("two")).unwrap();
    let hosts = Arc::new(Hosts::default());
    one.set_hosts(hosts.clone());
    let idle = Scope::Event("idle".into());
    let busy = Scope::Event("busy".into());
    let lost = Scope::Event("lost".into());
    hosts.live.lock().unwrap().insert(busy.key());
    for scope in [&idle, &busy, &lost] {
        assert_eq!(one.owner(scope).await.unwrap(), Owner::Here);
    }
    // Within two lease times nothing is given back, whatever is live.
    one.renew().await;
    let scopes = |leases: Vec<eventuall::cluster::LeaseRow>| leases.into_iter().map(|l| l.scope).collect::<Vec<_>>();
    assert_eq!(scopes(Cluster::leases(&store).await.unwrap()), ["event:busy", "event:idle", "event:lost"]);

    // `lost` runs out unrenewed while `one` is "paused" (no renewal), and
    // `two` takes it; the others are renewed in `one`'s next round.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    one.renew().await;
    expire_now(&store, "event:lost").await;
    assert_eq!(two.owner(&lost).await.unwrap(), Owner::Here);
    tokio::time::sleep(ttl * 2).await;
    one.renew().await;
    assert_eq!(hosts.evicted.lock().unwrap().as_slice(), ["event:lost"], "the lost lease's actors are evicted");
    assert!(!one.holds(&lost));
    assert!(one.holds(&busy), "a live scope is kept");
    assert!(!one.holds(&idle), "an idle scope is given back");
    let left = Cluster::leases(&store).await.unwrap();
    assert_eq!(scopes(left.clone()), ["event:busy", "event:lost"]);
    assert_eq!(left.iter().find(|l| l.scope == "event:lost").map(|l| (l.node.as_str(), l.epoch)), Some(("two", 2)));
    db.drop_db().await;
}

/// Makes a lease expired now, as if its holder had stopped renewing it.
async fn expire_now(store: &eventuall::store::EventStore, scope: &str) {
    store.execute("update cluster_leases set expires_at = 0 where scope = $1", &[scope.into()]).await.unwrap();
}
