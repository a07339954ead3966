//! Nothing acknowledged is lost: a writer process is killed with SIGKILL in
//! the middle of a stream of appends, and every event it acknowledged (it
//! prints an event's id only after `append` returned) must be in the log.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use uuid::Uuid;

/// Acknowledged appends to wait for before pulling the plug.
const ACKS_BEFORE_KILL: usize = 3_000;

async fn kill_nine_loses_no_acknowledged_event(db: &TestDb) {
    // Create the schema first so the child starts appending at once.
    db.open().await.shutdown().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventuall"))
        .args(["tools", "append-load", "--database-url", &db.url, "--streams", "32"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("writer process starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            acked.push(line.parse::<Uuid>().expect("acks are event ids"));
        }
        acked
    });
    let started = Instant::now();
    let pid = child.id();
    // Watch the log itself to know when enough has been acknowledged.
    let store = db.open().await;
    loop {
        let stored = store.read_all(0, ACKS_BEFORE_KILL).await.unwrap().len();
        if stored >= ACKS_BEFORE_KILL {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the writer made too little progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL delivered"); // SIGKILL on Unix
    child.wait().expect("child reaped");
    let acked = reader.join().expect("reader thread");
    assert!(acked.len() >= ACKS_BEFORE_KILL / 2, "pid {pid} acknowledged only {} events", acked.len());

    let reopened = db.open().await;
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let page = reopened.read_all(after, 10_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.global_position;
        stored.extend(page.iter().map(|e| e.event_id));
    }
    let lost: Vec<&Uuid> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged events were lost", lost.len(), acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_nine_loses_no_acknowledged_event() {
    let db = TestDb::sqlite().await;
    kill_nine_loses_no_acknowledged_event(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_nine_loses_no_acknowledged_event() {
    let db = TestDb::postgres().await;
    kill_nine_loses_no_acknowledged_event(&db).await;
    db.drop_db().await;
}
