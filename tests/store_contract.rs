//! The event log's contract, run against SQLite and PostgreSQL alike.
//!
//! Every behaviour is one async function taking a fresh [`TestDb`]; the
//! `contract!` macro turns each into a `sqlite_…` and a `postgres_…` test.

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use eventuall::store::subscription::SqlValue;
use eventuall::store::{
    CatchUp, DbTx, EventStore, ExpectedVersion, Metadata, NewEvent, SnapshotWrite, StoreError, StreamId, hash,
};
use uuid::Uuid;

contract!(
    appends_are_read_back_in_order,
    expected_version_mismatches_are_conflicts,
    concurrent_appends_to_one_stream_lose_and_duplicate_nothing,
    racing_unchecked_appends_form_one_chain,
    resending_stored_events_succeeds_once,
    a_second_writer_on_the_same_log_is_never_overwritten,
    two_nodes_racing_on_shared_streams_lose_nothing_and_store_nothing_twice,
    many_streams_at_once_each_hear_their_own_positions,
    read_all_returns_everything_after_a_position,
    subscriptions_deliver_exactly_once_across_a_restart,
    concurrent_writers_never_make_a_subscriber_skip_an_event,
    snapshots_are_invalidated_by_a_new_schema_tag,
    a_snapshot_attached_to_an_append_is_stored_only_with_it,
    each_stream_is_hash_chained,
    the_cqrs_es_framework_runs_on_the_log,
    pending_appends_are_committed_on_shutdown,
    a_statement_first_bound_with_nulls_takes_values_of_every_type_later,
    local_appends_a_subscriber_does_not_read_are_passed_over_only_where_known,
);

fn stream(name: &str) -> StreamId {
    StreamId::parse(format!("test-{name}")).unwrap()
}

fn event(n: usize) -> NewEvent {
    NewEvent::new("Happened", "1", format!("{{\"n\":{n}}}"), Metadata::by("tester").command("Do"))
}

fn events(range: std::ops::Range<usize>) -> Vec<NewEvent> {
    range.map(event).collect()
}

async fn appends_are_read_back_in_order(db: &TestDb) {
    let store = db.open().await;
    let s = stream("a");
    let first = store.append(&s, ExpectedVersion::NoStream, events(0..3)).await.unwrap();
    assert_eq!(first.next_version, 3);
    let second = store.append(&s, ExpectedVersion::Exact(3), events(3..5)).await.unwrap();
    assert_eq!(second.next_version, 5);
    assert!(second.last_position > first.last_position);

    let read = store.read_stream(&s, 1, 100).await.unwrap();
    assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(read[4].payload, "{\"n\":4}");
    assert_eq!(read[0].metadata, Metadata::by("tester").command("Do"));
    assert_eq!(read[0].event_type, "Happened");
    assert!(read.windows(2).all(|w| w[0].global_position < w[1].global_position));
    assert_eq!((read[2].global_position, read[4].global_position), (first.last_position, second.last_position));
    assert_eq!(store.read_stream(&s, 4, 100).await.unwrap().len(), 2);
    assert_eq!(store.stream_version(&s).await.unwrap(), 5);
    assert_eq!(store.stream_version(&stream("never")).await.unwrap(), 0);
}

async fn expected_version_mismatches_are_conflicts(db: &TestDb) {
    let store = db.open().await;
    let s = stream("b");
    store.append(&s, ExpectedVersion::NoStream, events(0..2)).await.unwrap();
    let no_stream = store.append(&s, ExpectedVersion::NoStream, events(2..3)).await.unwrap_err();
    assert!(matches!(no_stream, StoreError::Conflict { actual: 2, .. }), "{no_stream:?}");
    let stale = store.append(&s, ExpectedVersion::Exact(1), events(2..3)).await.unwrap_err();
    assert!(matches!(stale, StoreError::Conflict { actual: 2, .. }), "{stale:?}");
    let ahead = store.append(&s, ExpectedVersion::Exact(7), events(2..3)).await.unwrap_err();
    assert!(ahead.is_conflict());
    store.append(&s, ExpectedVersion::Any, events(2..3)).await.unwrap();
    assert_eq!(store.stream_version(&s).await.unwrap(), 3, "rejected appends wrote nothing");
}

async fn concurrent_appends_to_one_stream_lose_and_duplicate_nothing(db: &TestDb) {
    let store = db.open().await;
    let s = stream("race");
    let writers = 16;
    let per_writer = 10;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..per_writer {
                loop {
                    let version = store.stream_version(&s).await.unwrap();
                    match store.append(&s, ExpectedVersion::Exact(version), vec![event(w * 1000 + i)]).await {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => conflicts += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let all = store.read_stream(&s, 1, 10_000).await.unwrap();
    assert_eq!(all.len(), writers * per_writer);
    assert_eq!(
        all.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (1..=(writers * per_writer) as u64).collect::<Vec<_>>()
    );
    let payloads: HashSet<&str> = all.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(payloads.len(), writers * per_writer, "no event written twice");
    assert!(conflicts > 0, "16 racing writers must have met a conflict");
}

/// Appends with `ExpectedVersion::Any` racing on a few streams while others
/// write elsewhere: batches of both PostgreSQL writer tasks plan the same
/// next version from the head cache, one of them collides and goes down the
/// checked path. Every append lands exactly once, each answer names its own
/// version, and every stream stays one contiguous, unbroken chain.
async fn racing_unchecked_appends_form_one_chain(db: &TestDb) {
    let store = db.open().await;
    let (tasks_per_stream, appends_per_task, streams) = (24, 15, 3);
    let mut tasks = Vec::new();
    for t in 0..tasks_per_stream * streams {
        let store = store.clone();
        let s = stream(&format!("any-{}", t % streams));
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..appends_per_task {
                let outcome = store.append(&s, ExpectedVersion::Any, vec![event(t * 1000 + i)]).await.unwrap();
                assert!(!outcome.already_stored);
                versions.push((t % streams, outcome.next_version));
            }
            versions
        }));
    }
    let mut answered = HashSet::new();
    for task in tasks {
        for answer in task.await.unwrap() {
            assert!(answered.insert(answer), "two appends were told the same version: {answer:?}");
        }
    }
    assert_eq!(answered.len(), tasks_per_stream * streams * appends_per_task);
    for n in 0..streams {
        let read = store.read_stream(&stream(&format!("any-{n}")), 1, 10_000).await.unwrap();
        let expected = (tasks_per_stream * appends_per_task) as u64;
        assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=expected).collect::<Vec<_>>());
        let payloads: HashSet<&str> = read.iter().map(|e| e.payload.as_str()).collect();
        assert_eq!(payloads.len() as u64, expected, "no event written twice");
        assert_chained(&read);
        assert_eq!(store.stream_version(&stream(&format!("any-{n}"))).await.unwrap(), expected);
    }
}

/// The log is the system of record: one that dies with the process would
/// break "acknowledged means durable", so an in-memory SQLite URL is refused
/// with a clear error instead of silently losing events.
#[tokio::test]
async fn an_in_memory_sqlite_log_is_refused() {
    let refused = EventStore::open("sqlite::memory:", Default::default()).await.err().expect("refused");
    assert!(matches!(refused, StoreError::Unsupported(_)), "{refused}");
    assert!(refused.to_string().contains("in-memory"), "{refused}");
}

/// PostgreSQL writers commit asynchronously and answer after
/// `eventlog_flush` on the same connection (ADR 0011): that call must leave
/// the WAL flushed past everything the connection committed before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_flush_makes_earlier_asynchronous_commits_durable() {
    use sqlx::{Connection, Row};
    let db = TestDb::postgres().await;
    let store = db.open().await; // migrates
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("set synchronous_commit = off").execute(&mut conn).await.unwrap();
    for round in 0..20 {
        sqlx::query("insert into timers (owner, name, due_at, payload) values ('flush-test', $1, 0, '')")
            .bind(format!("t{round}"))
            .execute(&mut conn)
            .await
            .unwrap();
        // At or past the end of that asynchronous commit's record.
        let committed: String =
            sqlx::query("select pg_current_wal_insert_lsn()::text").fetch_one(&mut conn).await.unwrap().get(0);
        sqlx::query("select eventlog_flush()").execute(&mut conn).await.unwrap();
        let flushed_past: bool = sqlx::query("select pg_current_wal_flush_lsn() >= $1::text::pg_lsn")
            .bind(&committed)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        assert!(flushed_past, "round {round}: the WAL was not flushed past {committed} when eventlog_flush returned");
    }
    // The session's own setting is back to asynchronous after the call.
    let setting: String = sqlx::query("show synchronous_commit").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(setting, "off");
    store.shutdown().await;
    db.drop_db().await;
}

async fn resending_stored_events_succeeds_once(db: &TestDb) {
    let store = db.open().await;
    let s = stream("idem");
    let batch = events(0..3);
    let first = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    // The same append again (e.g. the client never saw the answer).
    let retry = store.append(&s, ExpectedVersion::NoStream, batch.clone()).await.unwrap();
    assert!(retry.already_stored);
    assert_eq!((retry.next_version, retry.last_position), (first.next_version, first.last_position));
    assert_eq!(store.read_stream(&s, 1, 100).await.unwrap().len(), 3);
    // Some stored, some new: not a retry.
    let mixed = vec![batch[2].clone(), event(9)];
    let error = store.append(&s, ExpectedVersion::Any, mixed).await.unwrap_err();
    assert!(matches!(error, StoreError::PartialDuplicate { .. }), "{error:?}");
    // A stored id in another stream is not a retry either.
    let error = store.append(&stream("other"), ExpectedVersion::Any, vec![batch[0].clone()]).await.unwrap_err();
    assert!(matches!(error, StoreError::PartialDuplicate { .. }), "{error:?}");
}

async fn read_all_returns_everything_after_a_position(db: &TestDb) {
    let store = db.open().await;
    for i in 0..5 {
        store.append(&stream(&format!("r{i}")), ExpectedVersion::NoStream, events(0..2)).await.unwrap();
    }
    let all = store.read_all(0, 100).await.unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].global_position < w[1].global_position));
    let after = all[3].global_position;
    let rest = store.read_all(after, 100).await.unwrap();
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].global_position, all[4].global_position);
    assert_eq!(store.read_all(after, 2).await.unwrap().len(), 2, "limit is honoured");
    assert_eq!(store.head_position().await.unwrap(), all[9].global_position);
}

/// A subscriber that records each event id in a table whose primary key
/// refuses duplicates, committing its checkpoint in the same transaction.
async fn handle_batch(store: &EventStore, sub: &mut CatchUp, commit: bool) -> usize {
    let batch = sub.poll().await.unwrap();
    let mut tx = DbTx::begin(store).await.unwrap();
    for e in &batch {
        tx.execute("insert into seen (event_id) values ($1)", &[SqlValue::Text(e.event_id.to_string())]).await.unwrap();
    }
    let last = batch.last().map_or(sub.position(), |e| e.global_position);
    if commit {
        sub.commit(tx, last).await.unwrap();
    }
    // Without commit the transaction is dropped: rolled back, as in a crash.
    batch.len()
}

async fn subscriptions_deliver_exactly_once_across_a_restart(db: &TestDb) {
    let store = db.open().await;
    let mut setup = DbTx::begin(&store).await.unwrap();
    setup.execute("create table seen (event_id text primary key)", &[]).await.unwrap();
    setup.commit().await.unwrap();
    for i in 0..10 {
        store.append(&stream(&format!("s{i}")), ExpectedVersion::Any, events(0..5)).await.unwrap();
    }
    let mut sub = CatchUp::resume(&store, "counter").await.unwrap().with_batch_size(7);
    assert_eq!(handle_batch(&store, &mut sub, true).await, 7);
    assert_eq!(handle_batch(&store, &mut sub, true).await, 7);
    // Crash in the middle of the third batch.
    assert_eq!(handle_batch(&store, &mut sub, false).await, 7);
    drop(sub);

    let mut resumed = CatchUp::resume(&store, "counter").await.unwrap().with_batch_size(7);
    let mut handled = 14;
    loop {
        let n = handle_batch(&store, &mut resumed, true).await;
        if n == 0 {
            break;
        }
        handled += n;
    }
    assert_eq!(handled, 50);
    let mut check = DbTx::begin(&store).await.unwrap();
    let seen = check.query_i64("select count(*) from seen", &[]).await.unwrap();
    assert_eq!(seen, Some(50), "every event handled exactly once");
    check.commit().await.unwrap();

    // Events appended later are delivered to the waiting subscriber.
    let waiter = tokio::spawn(async move { resumed.next_batch().await.unwrap().len() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.append(&stream("late"), ExpectedVersion::Any, events(0..1)).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap(), 1);
}

async fn concurrent_writers_never_make_a_subscriber_skip_an_event(db: &TestDb) {
    // Several stores = several writer tasks with their own connections, as
    // several nodes would be; many tasks append through each.
    let nodes = 4;
    let tasks_per_node = 8;
    let appends_per_task = 40;
    let mut stores = Vec::new();
    for _ in 0..nodes {
        stores.push(db.open().await);
    }
    let reader = stores[0].clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let subscriber = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut sub = CatchUp::from_position(&reader, "gap-test", 0).with_batch_size(50);
            let mut seen: Vec<(i64, Uuid)> = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let batch = sub.poll().await.unwrap();
                if batch.is_empty() {
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        // One more look after the writers finished.
                        let tail = sub.poll().await.unwrap();
                        if tail.is_empty() {
                            return seen;
                        }
                        continue;
                    }
                    assert!(tokio::time::Instant::now() < deadline, "subscriber timed out");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                for e in &batch {
                    seen.push((e.global_position, e.event_id));
                }
                // Advance the in-memory position without a database write.
                let last = batch.last().unwrap().global_position;
                sub = CatchUp::from_position(&reader, "gap-test", last).with_batch_size(50);
            }
        })
    };
    let mut writers = Vec::new();
    let mut written = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for t in 0..tasks_per_node {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..appends_per_task {
                    let e = event(i);
                    ids.push(e.event_id);
                    store.append(&stream(&format!("n{n}t{t}")), ExpectedVersion::Any, vec![e]).await.unwrap();
                }
                ids
            }));
        }
    }
    for w in writers {
        written.extend(w.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = subscriber.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "positions strictly increase");
    let seen_ids: HashSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(seen.len(), seen_ids.len(), "no event delivered twice");
    let written: HashSet<Uuid> = written.into_iter().collect();
    assert_eq!(written.len(), nodes * tasks_per_node * appends_per_task);
    assert_eq!(seen_ids, written, "the live subscriber saw every event");
}

async fn snapshots_are_invalidated_by_a_new_schema_tag(db: &TestDb) {
    let store = db.open().await;
    let s = stream("snap");
    assert_eq!(store.load_snapshot(&s, "v1").await.unwrap(), None);
    store.save_snapshot(&s, 5, "v1", b"five").await.unwrap();
    let snap = store.load_snapshot(&s, "v1").await.unwrap().unwrap();
    assert_eq!((snap.version, snap.state.as_slice()), (5, b"five".as_slice()));
    assert_eq!(store.load_snapshot(&s, "v2").await.unwrap(), None, "another schema reads as none");
    store.save_snapshot(&s, 3, "v1", b"three").await.unwrap();
    assert_eq!(
        store.load_snapshot(&s, "v1").await.unwrap().unwrap().version,
        5,
        "an older snapshot never replaces a newer one"
    );
    store.save_snapshot(&s, 2, "v2", b"two").await.unwrap();
    assert_eq!(store.load_snapshot(&s, "v2").await.unwrap().unwrap().version, 2, "a new schema replaces the old one");
}

async fn a_snapshot_attached_to_an_append_is_stored_only_with_it(db: &TestDb) {
    let store = db.open().await;
    let s = stream("snap-along");
    let snapshot = |state: &[u8]| SnapshotWrite { schema_tag: "v1".into(), state: state.to_vec() };
    store.append(&s, ExpectedVersion::NoStream, events(0..2)).await.unwrap();
    let batch = events(2..5);
    let outcome = store.append_with_snapshot(&s, ExpectedVersion::Exact(2), batch.clone(), snapshot(b"at 5")).await;
    assert_eq!(outcome.unwrap().next_version, 5);
    let stored = store.load_snapshot(&s, "v1").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.state.as_slice()), (5, b"at 5".as_slice()), "at the version reached");

    // Refused: neither the events nor the snapshot are stored.
    let refused = store.append_with_snapshot(&s, ExpectedVersion::Exact(2), events(5..6), snapshot(b"bad")).await;
    assert!(refused.unwrap_err().is_conflict());
    // A retry of stored events: answered from the log, the snapshot untouched.
    let retry = store.append_with_snapshot(&s, ExpectedVersion::Any, batch, snapshot(b"retry")).await;
    assert!(retry.unwrap().already_stored);
    assert_eq!(store.load_snapshot(&s, "v1").await.unwrap().unwrap().state, b"at 5");

    // Several in one batch: each stream gets its own, the newest wins.
    let other = stream("snap-along-2");
    let (first, second) = tokio::join!(
        store.append_with_snapshot(&other, ExpectedVersion::NoStream, events(0..1), snapshot(b"one")),
        store.append_with_snapshot(&s, ExpectedVersion::Exact(5), events(5..6), snapshot(b"at 6")),
    );
    first.unwrap();
    second.unwrap();
    assert_eq!(store.load_snapshot(&other, "v1").await.unwrap().unwrap().version, 1);
    assert_eq!(store.load_snapshot(&s, "v1").await.unwrap().unwrap().state, b"at 6");
    assert_eq!(store.stream_version(&s).await.unwrap(), 6);
}

async fn each_stream_is_hash_chained(db: &TestDb) {
    let store = db.open().await;
    let s = stream("chain");
    store.append(&s, ExpectedVersion::NoStream, events(0..3)).await.unwrap();
    store.append(&s, ExpectedVersion::Exact(3), events(3..4)).await.unwrap();
    assert_chained(&store.read_stream(&s, 1, 10).await.unwrap());
}

/// Every event's hash covers its fields and its predecessor's hash.
fn assert_chained(read: &[eventuall::store::RecordedEvent]) {
    let mut previous = [0u8; 32];
    for e in read {
        let metadata = serde_json::to_string(&e.metadata).unwrap();
        let expected = hash::chain(
            &previous,
            hash::Fields {
                stream_id: e.stream_id.as_str(),
                stream_version: e.stream_version,
                event_id: &e.event_id,
                event_type: &e.event_type,
                event_version: &e.event_version,
                payload: &e.payload,
                metadata: &metadata,
                recorded_at: e.recorded_at,
            },
        );
        assert_eq!(e.hash, expected, "event {} chains to its predecessor", e.stream_version);
        previous = e.hash;
    }
}

/// Two stores on one database (two processes, or two nodes on PostgreSQL):
/// each writer remembers the heads it wrote, and the other one moves them
/// behind its back. The log must still refuse stale expectations, accept
/// fresh ones, recognise retries and keep one unbroken hash chain.
async fn a_second_writer_on_the_same_log_is_never_overwritten(db: &TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let s = stream("two-writers");
    a.append(&s, ExpectedVersion::NoStream, events(0..2)).await.unwrap();
    b.append(&s, ExpectedVersion::Exact(2), events(2..3)).await.unwrap();

    // `a` last saw version 2; the log is at 3.
    let stale = a.append(&s, ExpectedVersion::Exact(2), events(10..11)).await.unwrap_err();
    assert!(matches!(stale, StoreError::Conflict { actual: 3, .. }), "{stale:?}");
    let fresh = a.append(&s, ExpectedVersion::Exact(3), events(3..4)).await.unwrap();
    assert_eq!(fresh.next_version, 4);

    // `b` last saw version 3; `a` moved it to 4, then `Any` appends go on top.
    let last = events(4..5);
    a.append(&s, ExpectedVersion::Any, last.clone()).await.unwrap();
    let stale = b.append(&s, ExpectedVersion::Exact(4), events(11..12)).await.unwrap_err();
    assert!(matches!(stale, StoreError::Conflict { actual: 5, .. }), "{stale:?}");
    let retry = b.append(&s, ExpectedVersion::Any, last).await.unwrap();
    assert!(retry.already_stored, "a retry through the other writer is recognised");
    b.append(&s, ExpectedVersion::Any, events(5..6)).await.unwrap();

    let read = a.read_stream(&s, 1, 100).await.unwrap();
    assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    let payloads: Vec<&str> = read.iter().map(|e| e.payload.as_str()).collect();
    let expected: Vec<String> = (0..6).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(payloads, expected, "no refused append wrote anything");
    assert_chained(&read);
    assert_eq!(b.stream_version(&s).await.unwrap(), 6);
    a.shutdown().await;
    b.shutdown().await;
}

/// Two stores on one database (two nodes, four writer tasks on PostgreSQL)
/// append with `Any` to the same few streams, each task walking them in its
/// own order, with snapshots attached and every append sent twice. The
/// heads each node caches go stale all the time, so fast-path batches
/// collide and the checked path, with heads read from the log (ADR 0012),
/// runs beside them on the same streams. Every append lands once, each
/// retry is recognised, every stream is one chain, and its head (read on
/// the other node) and its snapshot agree with its last event.
async fn two_nodes_racing_on_shared_streams_lose_nothing_and_store_nothing_twice(db: &TestDb) {
    let nodes = [db.open().await, db.open().await];
    let (streams, tasks_per_node, appends_per_task) = (5, 12, 10);
    let mut tasks = Vec::new();
    for t in 0..tasks_per_node * nodes.len() {
        let store = nodes[t % nodes.len()].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..appends_per_task {
                let s = stream(&format!("shared-{}", (t * 7 + i * (1 + t % 3)) % streams));
                let batch = events(t * 1000 + i * 2..t * 1000 + i * 2 + 2);
                let snapshot = || SnapshotWrite { schema_tag: "race".into(), state: vec![t as u8, i as u8] };
                let first = store.append_with_snapshot(&s, ExpectedVersion::Any, batch.clone(), snapshot()).await;
                let again = store.append_with_snapshot(&s, ExpectedVersion::Any, batch, snapshot()).await;
                let (first, again) = (first.unwrap(), again.unwrap());
                assert!(!first.already_stored && again.already_stored, "{first:?} {again:?}");
                assert_eq!(first.next_version, again.next_version);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut total = 0;
    for n in 0..streams {
        let s = stream(&format!("shared-{n}"));
        let read = nodes[0].read_stream(&s, 1, 10_000).await.unwrap();
        let count = read.len() as u64;
        assert_eq!(read.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=count).collect::<Vec<_>>());
        let payloads: HashSet<&str> = read.iter().map(|e| e.payload.as_str()).collect();
        assert_eq!(payloads.len() as u64, count, "no event written twice");
        assert_chained(&read);
        assert_eq!(nodes[1].stream_version(&s).await.unwrap(), count);
        let snapshot = nodes[1].load_snapshot(&s, "race").await.unwrap().expect("a snapshot was attached");
        assert_eq!(snapshot.version, count, "the last append's snapshot is the one stored");
        total += count;
    }
    assert_eq!(total as usize, tasks_per_node * nodes.len() * appends_per_task * 2);
    for node in nodes {
        node.shutdown().await;
    }
}

/// 128 streams append at once, so the writer gathers batches large enough
/// that SQLite writes each as two commits (ADR 0013); every caller must hear
/// the version and position of its own events, whichever commit held them.
async fn many_streams_at_once_each_hear_their_own_positions(db: &TestDb) {
    let store = db.open().await;
    let (streams, appends_per_stream) = (128, 8);
    let mut tasks = Vec::new();
    for t in 0..streams {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("crowd-{t}"));
            let mut heard = Vec::new();
            for i in 0..appends_per_stream {
                // Some appends carry two events, so halves are cut by events.
                let batch = events(t * 100 + i * 2..t * 100 + i * 2 + 1 + (t + i) % 2);
                let count = batch.len() as u64;
                let version = heard.last().map_or(0, |(v, _)| *v);
                let outcome = store.append(&s, ExpectedVersion::Exact(version), batch).await.unwrap();
                assert_eq!(outcome.next_version, version + count);
                heard.push((outcome.next_version, outcome.last_position));
            }
            (s, heard)
        }));
    }
    let mut positions = HashSet::new();
    let mut heard_by_stream = Vec::new();
    for task in tasks {
        let (s, heard) = task.await.unwrap();
        for (_, position) in &heard {
            assert!(positions.insert(*position), "position {position} answered twice");
        }
        heard_by_stream.push((s, heard));
    }
    let all = store.read_all(0, 100_000).await.unwrap();
    let at: HashMap<i64, &eventuall::store::RecordedEvent> = all.iter().map(|e| (e.global_position, e)).collect();
    for (s, heard) in &heard_by_stream {
        for (version, position) in heard {
            let event = at.get(position).expect("an answered position holds an event");
            assert_eq!((&event.stream_id, event.stream_version), (s, *version), "position {position}");
        }
        // Each answer's version moved on by its own events, so the last is the total.
        let (last_version, _) = heard.last().expect("every stream appended");
        assert_eq!(store.stream_version(s).await.unwrap(), *last_version);
    }
    store.shutdown().await;
}

async fn the_cqrs_es_framework_runs_on_the_log(db: &TestDb) {
    use cqrs_es::CqrsFramework;
    use cqrs_es::persist::PersistedEventStore;
    use eventuall_domain::room::{ConnectionKind, EventRoom, RoomCommand};

    let store = db.open().await;
    let event_store = PersistedEventStore::<EventStore, EventRoom>::new_snapshot_store(store.clone(), 2);
    let cqrs = CqrsFramework::new(event_store, vec![], ());
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        let command = RoomCommand::Connect {
            connection_id: format!("c{i}"),
            client_id: None,
            user_id: (*user).into(),
            name: (*user).into(),
            kind: ConnectionKind::WebSocket,
            at: i as i64,
        };
        let metadata = HashMap::from([("actor".to_owned(), (*user).to_owned())]);
        cqrs.execute_with_metadata("launch", command, metadata).await.unwrap();
    }
    let stored = store.read_stream(&StreamId::parse("room-launch").unwrap(), 1, 10).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2].metadata.actor.as_deref(), Some("carol"));
    assert!(store.load_snapshot(&StreamId::parse("room-launch").unwrap(), "cqrs-es").await.unwrap().is_some());
}

async fn pending_appends_are_committed_on_shutdown(db: &TestDb) {
    let store = db.open().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.append(&stream(&format!("sd{i}")), ExpectedVersion::Any, events(0..2)).await
        }));
    }
    tokio::task::yield_now().await;
    store.shutdown().await;
    let acknowledged = futures::future::join_all(tasks).await.into_iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let after = store.append(&stream("late"), ExpectedVersion::Any, events(0..1)).await;
    assert!(matches!(after, Err(StoreError::Closed)));
    let reopened = db.open().await;
    let stored = reopened.read_all(0, 1000).await.unwrap().len();
    assert_eq!(stored, acknowledged * 2, "every acknowledged append is stored, nothing else");
}

/// The CI failure of 2026-12-07: PostgreSQL prepares a statement with the
/// types of its first binds and the connection caches it, so an untyped
/// null bound first (as an integer) made the same insert refuse a text
/// value later on that connection. One transaction is one connection.
async fn a_statement_first_bound_with_nulls_takes_values_of_every_type_later(db: &TestDb) {
    let store = db.open().await;
    let mut tx = DbTx::begin(&store).await.unwrap();
    tx.execute("create table nullable (n bigint, x double precision, t text, b bytea)", &[]).await.unwrap();
    let insert = "insert into nullable (n, x, t, b) values ($1, $2, $3, $4)";
    let nulls: [SqlValue; 4] = [None::<i64>.into(), None::<f64>.into(), None::<&str>.into(), None::<Vec<u8>>.into()];
    let values: [SqlValue; 4] =
        [Some(7_i64).into(), Some(0.5_f64).into(), Some("seven").into(), Some(vec![7_u8]).into()];
    for args in [&nulls, &values, &nulls] {
        tx.execute(insert, args).await.unwrap();
    }
    let rows: Vec<(Option<i64>, Option<String>)> =
        tx.fetch_all_as("select n, t from nullable order by n nulls first", &[]).await.unwrap();
    assert_eq!(rows, vec![(None, None), (None, None), (Some(7), Some("seven".to_owned()))]);
}

/// Issue #21: a subscriber passes over what this process appended and it
/// does not read, without reading the log. Never past a position it did
/// not append itself, nor past one the subscriber reads.
async fn local_appends_a_subscriber_does_not_read_are_passed_over_only_where_known(db: &TestDb) {
    let store = db.open().await;
    let reads_opened = |_: &str, event_type: &str| event_type == "Opened";
    let typed = |event_type: &str| NewEvent::new(event_type, "1", "{}".into(), Metadata::by("tester").command("Do"));
    let beats = store.append(&stream("beats"), ExpectedVersion::Any, vec![typed("Beat"), typed("Beat")]).await.unwrap();
    let opened = store.append(&stream("opens"), ExpectedVersion::Any, vec![typed("Opened")]).await.unwrap();
    let more = store.append(&stream("beats"), ExpectedVersion::Any, vec![typed("Beat")]).await.unwrap();
    let start = beats.last_position - 2;
    let passed = |after| store.unread_local_through(after, reads_opened);
    assert_eq!(passed(start), Some(beats.last_position), "up to the append it reads");
    assert_eq!(passed(beats.last_position), None, "the next append is read");
    assert_eq!(passed(opened.last_position), Some(more.last_position));
    assert_eq!(passed(more.last_position), None, "nothing after the newest");
    assert_eq!(store.local_head(), more.last_position);
    assert_eq!(passed(start - 1), None, "a position before the first known is never vouched for");
}
