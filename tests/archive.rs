//! The archive tier (ADR 0017), run against SQLite and PostgreSQL alike:
//! archived streams read exactly as before, appends after archiving get a
//! hot tail, restore gives the log back, `replay verify` names a broken
//! segment, and a process killed at any step of archiving loses nothing.

#[macro_use]
mod common;

use std::process::Command;

use common::TestDb;
use eventuall::replay::{Progress, verify};
use eventuall::store::raw::{BATCH, Batches, Filter, RawEvent};
use eventuall::store::registry::Registry;
use eventuall::store::subscription::SqlValue;
use eventuall::store::{DbTx, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, SnapshotWrite, StreamId};

contract!(
    an_archived_stream_reads_as_before_and_restores_exactly,
    appends_after_archiving_get_a_hot_tail_and_archive_again,
    whole_log_reads_merge_archive_and_tail_in_position_order,
    only_events_every_subscriber_passed_are_archived,
    verify_names_an_altered_or_missing_segment,
    a_crash_at_any_step_of_archiving_loses_nothing,
    a_store_opened_before_another_process_archived_reads_through_it,
);

fn stream(name: &str) -> StreamId {
    StreamId::parse(format!("test-{name}")).unwrap()
}

fn event(n: usize) -> NewEvent {
    NewEvent::new("Happened", "1", format!("{{\"n\":{n},  \"spaced\" : true}}"), Metadata::by("tester").command("Do"))
}

/// Three streams written in turns, so their positions interleave:
/// `a` gets 30 events, `b` 20, `c` 10, and a snapshot on `a` at 25.
async fn seed(store: &EventStore) {
    for round in 0..30usize {
        for (name, count) in [("a", 30usize), ("b", 20), ("c", 10)] {
            if round < count {
                let s = stream(name);
                let expected =
                    if round == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(round as u64) };
                if name == "a" && round == 24 {
                    let snapshot = SnapshotWrite { schema_tag: "test/1".into(), state: b"{\"at\":25}".to_vec() };
                    store.append_with_snapshot(&s, expected, vec![event(round)], snapshot).await.unwrap();
                } else {
                    store.append(&s, expected, vec![event(round)]).await.unwrap();
                }
            }
        }
    }
}

async fn hot_rows(store: &EventStore, stream: &StreamId) -> i64 {
    let rows: Vec<(i64,)> =
        store.query_as("select count(*) from events where stream_id = $1", &[stream.as_str().into()]).await.unwrap();
    rows[0].0
}

async fn whole_stream(store: &EventStore, stream: &StreamId) -> Vec<RecordedEvent> {
    store.read_stream(stream, 1, 10_000).await.unwrap()
}

async fn raw_scan(store: &EventStore, filter: Filter) -> Vec<RawEvent> {
    let head = store.head_position().await.unwrap();
    let mut batches = Batches::start(store, filter, 0, head, 7);
    let mut out = Vec::new();
    while let Some(batch) = batches.next().await {
        out.extend(batch.unwrap().to_events());
    }
    out
}

async fn an_archived_stream_reads_as_before_and_restores_exactly(db: &TestDb) {
    let store = db.open().await;
    seed(&store).await;
    let a = stream("a");
    let before = whole_stream(&store, &a).await;
    let snapshot_before = store.load_snapshot(&a, "test/1").await.unwrap();
    assert_eq!(snapshot_before.as_ref().map(|s| s.version), Some(25));

    let outcome = store.archive_stream(&a).await.unwrap();
    assert_eq!((outcome.segments, outcome.events), (1, 29), "every event but the newest moves");
    assert_eq!(hot_rows(&store, &a).await, 1, "the newest event stays hot: the head never needs the archive");
    let snapshots: Vec<(i64,)> =
        store.query_as("select count(*) from snapshots where stream_id = $1", &[a.as_str().into()]).await.unwrap();
    assert_eq!(snapshots[0].0, 0, "the snapshot moved with the segment");

    assert_eq!(whole_stream(&store, &a).await, before, "same events, versions, positions and hashes");
    assert_eq!(store.read_stream(&a, 10, 5).await.unwrap(), before[9..14].to_vec(), "a page inside the segment");
    assert_eq!(store.read_stream(&a, 28, 100).await.unwrap(), before[27..].to_vec(), "a page across the boundary");
    assert_eq!(store.stream_version(&a).await.unwrap(), 30);
    assert_eq!(store.load_snapshot(&a, "test/1").await.unwrap(), snapshot_before, "the archived snapshot is found");
    assert_eq!(store.load_snapshot(&a, "test/2").await.unwrap(), None, "another schema tag still misses");

    // A fresh process sees the same (nothing was only in memory).
    store.shutdown().await;
    let store = db.open().await;
    assert_eq!(whole_stream(&store, &a).await, before);

    let restored = store.restore_stream(&a).await.unwrap();
    assert_eq!((restored.segments, restored.events), (1, 29));
    assert_eq!(hot_rows(&store, &a).await, 30);
    assert!(store.segments_of(&a).await.unwrap().is_empty());
    assert_eq!(whole_stream(&store, &a).await, before);
    assert_eq!(store.load_snapshot(&a, "test/1").await.unwrap(), snapshot_before, "the snapshot is back");
    let report = verify::verify(&store, Registry::standard(), &Progress::hidden()).await.unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
    store.shutdown().await;
}

async fn appends_after_archiving_get_a_hot_tail_and_archive_again(db: &TestDb) {
    let store = db.open().await;
    seed(&store).await;
    let b = stream("b");
    store.archive_stream(&b).await.unwrap();
    let appended = store.append(&b, ExpectedVersion::Exact(20), vec![event(20), event(21)]).await.unwrap();
    assert_eq!(appended.next_version, 22, "the expected version is checked against the hot head");
    let conflict = store.append(&b, ExpectedVersion::Exact(5), vec![event(99)]).await.unwrap_err();
    assert!(conflict.is_conflict(), "an archived version is not the head: {conflict:?}");
    let read = whole_stream(&store, &b).await;
    assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=22).collect::<Vec<_>>());

    let second = store.archive_stream(&b).await.unwrap();
    assert_eq!((second.segments, second.events), (1, 2), "only what was appended since, minus the newest");
    let segments = store.segments_of(&b).await.unwrap();
    assert_eq!(segments.iter().map(|s| (s.first_version, s.last_version)).collect::<Vec<_>>(), vec![(1, 19), (20, 21)]);
    assert_eq!(whole_stream(&store, &b).await, read);
    let nothing = store.archive_stream(&b).await.unwrap();
    assert_eq!(nothing.events, 0, "archiving again with nothing new is a no-op");

    store.restore_stream(&b).await.unwrap();
    assert_eq!(whole_stream(&store, &b).await, read);
    assert_eq!(hot_rows(&store, &b).await, 22);
    store.shutdown().await;
}

async fn whole_log_reads_merge_archive_and_tail_in_position_order(db: &TestDb) {
    let store = db.open().await;
    seed(&store).await;
    let all_before = store.read_all(0, 10_000).await.unwrap();
    let raw_before = raw_scan(&store, Filter::All).await;
    let category_before = raw_scan(&store, Filter::Category("test".into())).await;
    let stream_before = raw_scan(&store, Filter::Stream("test-a".into())).await;
    assert_eq!(all_before.len(), 60);

    store.archive_stream(&stream("a")).await.unwrap();
    store.archive_stream(&stream("c")).await.unwrap();

    assert_eq!(store.read_all(0, 10_000).await.unwrap(), all_before);
    // Paged as a subscriber reads: every page boundary falls somewhere new.
    for page in [1, 3, 7, 59] {
        let mut after = 0;
        let mut paged = Vec::new();
        loop {
            let batch = store.read_all(after, page).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = last.global_position;
            paged.extend(batch);
        }
        assert_eq!(paged, all_before, "pages of {page}");
    }
    assert_eq!(raw_scan(&store, Filter::All).await, raw_before);
    assert_eq!(raw_scan(&store, Filter::Category("test".into())).await, category_before);
    assert_eq!(raw_scan(&store, Filter::Stream("test-a".into())).await, stream_before);
    let mut storage_order = Batches::start_in_storage_order(&store, 0, store.head_position().await.unwrap(), BATCH);
    let mut scanned = Vec::new();
    while let Some(batch) = storage_order.next().await {
        scanned.extend(batch.unwrap().to_events());
    }
    assert_eq!(scanned, raw_before, "the fast scan merges too");
    let report = verify::verify(&store, Registry::standard(), &Progress::hidden()).await.unwrap();
    assert!(report.is_sound(), "the chain holds across the boundary: {:?}", report.problems);
    assert_eq!(report.events, 60);
    store.shutdown().await;
}

async fn only_events_every_subscriber_passed_are_archived(db: &TestDb) {
    let store = db.open().await;
    seed(&store).await;
    let a = stream("a");
    let events = whole_stream(&store, &a).await;
    // A subscriber that has handled the log up to a's 10th event.
    let checkpoint = events[9].global_position;
    let mut tx = DbTx::begin(&store).await.unwrap();
    tx.execute(
        "insert into checkpoints (subscriber, position, updated_at) values ($1, $2, 0)",
        &[SqlValue::from("slow-projection"), checkpoint.into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let outcome = store.archive_stream(&a).await.unwrap();
    assert_eq!(outcome.events, 10, "nothing past the lowest checkpoint moves");
    assert_eq!(store.segments_of(&a).await.unwrap()[0].last_position, checkpoint);
    assert_eq!(hot_rows(&store, &a).await, 20);
    assert_eq!(whole_stream(&store, &a).await, events);
    store.shutdown().await;
}

async fn verify_names_an_altered_or_missing_segment(db: &TestDb) {
    let store = db.open().await;
    seed(&store).await;
    store.archive_stream(&stream("a")).await.unwrap();
    store.archive_stream(&stream("b")).await.unwrap();
    let sound = verify::verify(&store, Registry::standard(), &Progress::hidden()).await.unwrap();
    assert!(sound.is_sound(), "{:?}", sound.problems);
    store.shutdown().await;

    let a = db.open().await.segments_of(&stream("a")).await.unwrap().remove(0);
    let b = db.open().await.segments_of(&stream("b")).await.unwrap().remove(0);
    let path_of = |location: &str| std::path::PathBuf::from(location.strip_prefix("file://").unwrap());
    // One byte of a's payload changed; b's file gone.
    let mut bytes = std::fs::read(path_of(&a.location)).unwrap();
    let at = bytes.iter().rposition(|&c| c == b'7').expect("a digit to change");
    bytes[at] = b'8';
    std::fs::write(path_of(&a.location), bytes).unwrap();
    std::fs::remove_file(path_of(&b.location)).unwrap();

    let store = db.open().await;
    let report = verify::verify(&store, Registry::standard(), &Progress::hidden()).await.unwrap();
    assert!(!report.is_sound());
    let messages: Vec<String> = report.problems.iter().map(|p| p.message.clone()).collect();
    assert!(
        messages.iter().any(|m| m.contains(&a.location) && m.contains("altered")),
        "the altered segment is named: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains(&b.location) && m.contains("missing")),
        "the missing segment is named: {messages:?}"
    );
    assert!(
        report.problems.iter().any(|p| p.stream_id == "test-b" && p.message.contains("missing version 1")),
        "the pass goes on and shows the gap it leaves: {messages:?}"
    );
    // A reader of the broken stream gets an error, never a silent gap.
    let read = store.read_stream(&stream("b"), 1, 100).await.unwrap_err();
    assert!(read.to_string().contains("missing"), "{read}");
    store.shutdown().await;
}

/// Runs `eventuall archive test-a` with the process aborting (as `kill -9`
/// would stop it) at `step`.
fn archive_crashing_at(db: &TestDb, step: &str) -> std::process::ExitStatus {
    Command::new(env!("CARGO_BIN_EXE_eventuall"))
        .args(["archive", "test-a", "--database-url", &db.url, "--archive-url", &db.archive_url])
        .env("EVENTUALL_ARCHIVE_CRASH_AT", step)
        .env("EVENTUALL_LOG", "warn")
        .output()
        .expect("the binary runs")
        .status
}

async fn a_crash_at_any_step_of_archiving_loses_nothing(db: &TestDb) {
    let store = db.open().await;
    seed(&store).await;
    let a = stream("a");
    let before = whole_stream(&store, &a).await;
    let all_before = store.read_all(0, 10_000).await.unwrap();
    store.shutdown().await;

    for step in ["before-put", "after-put", "after-commit"] {
        let status = archive_crashing_at(db, step);
        assert!(!status.success(), "{step}: the run was aborted");
        let store = db.open().await;
        assert_eq!(whole_stream(&store, &a).await, before, "{step}: the stream reads whole");
        assert_eq!(store.read_all(0, 10_000).await.unwrap(), all_before, "{step}: nothing lost or doubled");
        let segments = store.segments_of(&a).await.unwrap().len();
        let expected_hot = if step == "after-commit" { 1 } else { 30 };
        assert_eq!(hot_rows(&store, &a).await, expected_hot, "{step}: the events are in one place");
        assert_eq!(segments, usize::from(step == "after-commit"), "{step}");
        let report = verify::verify(&store, Registry::standard(), &Progress::hidden()).await.unwrap();
        assert!(report.is_sound(), "{step}: {:?}", report.problems);
        if step == "after-commit" {
            // Killed while restoring, after the events went back.
            store.shutdown().await;
            let status = Command::new(env!("CARGO_BIN_EXE_eventuall"))
                .args(["archive", "restore", "test-a", "--database-url", &db.url, "--archive-url", &db.archive_url])
                .env("EVENTUALL_ARCHIVE_CRASH_AT", "restore-after-commit")
                .output()
                .unwrap()
                .status;
            assert!(!status.success());
            let store = db.open().await;
            assert_eq!(hot_rows(&store, &a).await, 30, "restore committed: every event hot again");
            assert!(store.segments_of(&a).await.unwrap().is_empty());
            assert_eq!(whole_stream(&store, &a).await, before);
            store.shutdown().await;
        } else {
            store.shutdown().await;
        }
    }
    // And a run that is not interrupted finishes the job.
    let output = Command::new(env!("CARGO_BIN_EXE_eventuall"))
        .args(["archive", "test-a", "--json", "--database-url", &db.url, "--archive-url", &db.archive_url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["events"], 29, "{report}");
    let store = db.open().await;
    assert_eq!(whole_stream(&store, &a).await, before);
    store.shutdown().await;
}

/// A service that opened the log before an operator ran `eventuall archive`
/// reads the archived stream through every path.
async fn a_store_opened_before_another_process_archived_reads_through_it(db: &TestDb) {
    let store = db.open().await;
    seed(&store).await;
    let a = stream("a");
    let before = whole_stream(&store, &a).await;
    let history_before = raw_scan(&store, Filter::Stream("test-a".into())).await;
    let all_before = store.read_all(0, 10_000).await.unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_eventuall"))
        .args(["archive", "test-a", "--database-url", &db.url, "--archive-url", &db.archive_url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(hot_rows(&store, &a).await, 1, "the other process archived");
    assert_eq!(whole_stream(&store, &a).await, before, "read_stream finds the gap and fills it");
    assert_eq!(raw_scan(&store, Filter::Stream("test-a".into())).await, history_before, "a scan asks first");
    // Whole-log pages re-read the bound within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if store.read_all(0, 10_000).await.unwrap() == all_before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "read_all never saw the other process's segment");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    store.shutdown().await;
}
