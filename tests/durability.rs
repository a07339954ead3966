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

/// On SQLite an append is answered only after the WAL is synced (the writer
/// commits without syncing, a thread syncs behind it). A sync that fails is
/// reported to the appender, never as a success, and the store takes no more
/// appends: after a failed fsync the kernel may already have dropped pages.
/// The WAL is unlinked under the running store to make the sync fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failed_wal_sync_is_never_acknowledged_and_stops_appends() {
    use eventuall::store::{ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("events.db");
    let store = eventuall::store::EventStore::open(&format!("sqlite://{}", file.display()), Default::default())
        .await
        .expect("store opens");
    let stream = StreamId::of("room", "sync");
    let event = |n: u64| NewEvent::new("HeartbeatReceived", "1", format!("{{\"n\":{n}}}"), Metadata::by("test"));
    store.append(&stream, ExpectedVersion::NoStream, vec![event(1)]).await.expect("a synced append succeeds");

    std::fs::remove_file(dir.path().join("events.db-wal")).expect("the store keeps its log in a WAL");
    let refused = store.append(&stream, ExpectedVersion::Exact(1), vec![event(2)]).await;
    assert!(matches!(refused, Err(StoreError::NotDurable(_))), "an unsynced append was answered {refused:?}");
    let later = store.append(&StreamId::of("room", "other"), ExpectedVersion::NoStream, vec![event(3)]).await;
    assert!(matches!(later, Err(StoreError::NotDurable(_))), "the store took an append after a failed sync: {later:?}");
    store.shutdown().await;
}
