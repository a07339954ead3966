//! `eventuall replay` and the projections it rebuilds, on SQLite and
//! PostgreSQL: verify finds tampering, rebuilds equal incremental
//! processing, analytics figures are exact for a scripted event.
//!
//! Every behaviour is one async function taking a fresh [`TestDb`]; the
//! `contract!` macro turns each into a `sqlite_…` and a `postgres_…` test.

#[macro_use]
mod common;

use common::TestDb;
use eventuall::analytics::event_analytics;
use eventuall::projections::{Projection, Step, save_skipped, try_step_projection};
use eventuall::replay::registry::Registry;
use eventuall::replay::verify::{ProblemKind, Report, VerifyOptions, verify, verify_with};
use eventuall::replay::{Progress, rebuild, state};
use eventuall::store::subscription::SqlValue;
use eventuall::store::{CatchUp, DbTx, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use eventuall_domain::queue::{QueueEvent, QueueList};
use eventuall_domain::recording::{ClipPlan, SessionEvent};
use eventuall_domain::room::{CloseReason, ConnectionKind, RoomEvent};

contract!(
    a_sound_log_verifies,
    verify_reports_a_tampered_payload,
    verify_reports_a_deleted_event,
    verify_reports_a_reordered_event,
    verify_reports_a_tail_cut_below_its_snapshot,
    verify_reports_a_payload_that_does_not_decode,
    verify_reports_problems_in_log_order_on_any_number_of_threads,
    a_rebuild_produces_exactly_the_incremental_rows,
    a_crowd_in_one_batch_gives_the_rows_of_one_event_at_a_time,
    a_rebuild_after_archiving_every_stream_gives_the_same_tables,
    a_running_projection_follows_a_rebuild,
    analytics_are_exact_for_a_scripted_event,
    recording_analytics_are_exact_for_scripted_sessions,
    state_at_a_position_is_the_state_after_that_event,
);

// ---------------------------------------------------------------- helpers

fn room(id: &str) -> StreamId {
    StreamId::of("room", id)
}

fn room_event(event: &RoomEvent) -> NewEvent {
    use cqrs_es::DomainEvent;
    NewEvent::json(event.event_type(), "1", event, Metadata::by("tester").command("Script")).unwrap()
}

fn queue_event(event: &QueueEvent) -> NewEvent {
    use cqrs_es::DomainEvent;
    NewEvent::json(event.event_type(), "1", event, Metadata::by("mod").command("Script")).unwrap()
}

fn recording_event(event: &SessionEvent) -> NewEvent {
    use cqrs_es::DomainEvent;
    NewEvent::json(event.event_type(), "1", event, Metadata::by("saga").command("Script")).unwrap()
}

/// Appends a recording session's events, one append each.
async fn append_recording(store: &EventStore, session_id: &str, events: &[SessionEvent]) {
    let stream = StreamId::of("recording", session_id);
    for e in events {
        store.append(&stream, ExpectedVersion::Any, vec![recording_event(e)]).await.unwrap();
    }
}

fn clip(clip_id: &str, user: &str, start: f64, end: f64) -> ClipPlan {
    ClipPlan { clip_id: clip_id.into(), user_id: user.into(), start, end }
}

/// A session that records from 11,000 to 71,500 (egress stopped) and cuts
/// three clips (two ready, one errored), and one that fails while
/// recording (81,000 → 90,500).
async fn scripted_recordings(store: &EventStore, event_id: &str) {
    let requested = |session_id: &str, at| SessionEvent::Requested {
        session_id: session_id.into(),
        event_id: event_id.into(),
        requested_by: "mod".into(),
        at,
    };
    append_recording(
        store,
        &format!("{event_id}-s1"),
        &[
            requested(&format!("{event_id}-s1"), 10_000),
            SessionEvent::StreamCreateRequested { at: 10_100 },
            SessionEvent::StreamCreated {
                stream_id: "ms1".into(),
                stream_key: "key".into(),
                playback_id: None,
                at: 10_200,
            },
            SessionEvent::StreamReady { at: 10_300 },
            SessionEvent::EgressStartRequested { page_url: "http://composite".into(), at: 10_400 },
            SessionEvent::EgressStarted { egress_id: "eg1".into(), at: 10_500 },
            SessionEvent::EgressActive { at: 10_600 },
            SessionEvent::RecordingStarted { asset_id: None, at: 11_000 },
            SessionEvent::StopRequested { reason: "moderator".into(), at: 71_000 },
            SessionEvent::EgressStopped { egress_id: Some("eg1".into()), error: None, at: 71_500 },
            SessionEvent::StreamCompleted { asset_id: "as1".into(), at: 72_000 },
            SessionEvent::AssetReady { asset_id: "as1".into(), duration: 60.25, at: 73_000 },
            SessionEvent::ClipsRequested {
                clips: vec![
                    clip("c1", "alice", 1.5, 20.0),
                    clip("c2", "bob", 20.0, 45.5),
                    clip("c3", "alice", 50.0, 60.0),
                ],
                at: 73_100,
            },
            SessionEvent::ClipCreated { clip_id: "c1".into(), asset_id: "k1".into(), playback_id: None, at: 73_200 },
            SessionEvent::ClipCreated { clip_id: "c2".into(), asset_id: "k2".into(), playback_id: None, at: 73_300 },
            SessionEvent::ClipCreated { clip_id: "c3".into(), asset_id: "k3".into(), playback_id: None, at: 73_400 },
            SessionEvent::ClipReady { clip_id: "c1".into(), at: 74_000 },
            SessionEvent::ClipErrored { clip_id: "c2".into(), reason: "asset too short".into(), at: 74_100 },
            SessionEvent::ClipReady { clip_id: "c3".into(), at: 74_200 },
            SessionEvent::Completed { at: 75_000 },
        ],
    )
    .await;
    append_recording(
        store,
        &format!("{event_id}-s2"),
        &[
            requested(&format!("{event_id}-s2"), 80_000),
            SessionEvent::RecordingStarted { asset_id: None, at: 81_000 },
            SessionEvent::FailureDetected { reason: "egress lost".into(), at: 90_000 },
            SessionEvent::EgressStopped { egress_id: None, error: None, at: 90_500 },
            SessionEvent::StreamDeleted { stream_id: Some("ms2".into()), error: None, at: 90_600 },
            SessionEvent::LockReleased { at: 90_700 },
            SessionEvent::Failed { reason: "compensated".into(), at: 91_000 },
        ],
    )
    .await;
}

fn open(connection: &str, user: &str, at: i64) -> RoomEvent {
    RoomEvent::ConnectionOpened {
        connection_id: connection.into(),
        client_id: None,
        user_id: user.into(),
        name: format!("{user} name"),
        kind: ConnectionKind::WebSocket,
        at,
    }
}

fn close(connection: &str, user: &str, at: i64) -> RoomEvent {
    RoomEvent::ConnectionClosed {
        connection_id: connection.into(),
        user_id: user.into(),
        reason: CloseReason::Closed,
        at,
    }
}

fn beat(connection: &str, user: &str, at: i64) -> RoomEvent {
    RoomEvent::HeartbeatReceived { connection_id: connection.into(), user_id: user.into(), at }
}

fn enter(user: &str, at: i64) -> RoomEvent {
    RoomEvent::StageEntered { user_id: user.into(), at }
}

fn exit(user: &str, at: i64) -> RoomEvent {
    RoomEvent::StageExited { user_id: user.into(), at }
}

fn queued(user: &str, at: i64) -> QueueEvent {
    QueueEvent::ParticipantQueued {
        user_id: user.into(),
        name: user.into(),
        list: QueueList::Pending,
        index: 0,
        by: "mod".into(),
        at,
    }
}

fn removed(user: &str, at: i64) -> QueueEvent {
    QueueEvent::ParticipantRemoved { user_id: user.into(), list: QueueList::Pending, by: "mod".into(), at }
}

/// Appends room events one append each (so each gets its own position).
async fn append_room(store: &EventStore, id: &str, events: &[RoomEvent]) {
    for e in events {
        store.append(&room(id), ExpectedVersion::Any, vec![room_event(e)]).await.unwrap();
    }
}

/// A small log: two rooms with five events each and a queue.
async fn small_log(store: &EventStore) {
    for id in ["launch", "other"] {
        append_room(
            store,
            id,
            &[
                open("c1", "alice", 10),
                beat("c1", "alice", 20),
                enter("alice", 30),
                exit("alice", 40),
                close("c1", "alice", 50),
            ],
        )
        .await;
    }
    let queue = StreamId::of("queue", "launch");
    store.append(&queue, ExpectedVersion::NoStream, vec![queue_event(&queued("bob", 5))]).await.unwrap();
}

async fn verified(store: &EventStore) -> Report {
    verify(store, Registry::standard(), &Progress::hidden()).await.unwrap()
}

/// Runs a statement directly: tests tamper with the log behind the store's back.
async fn sql(store: &EventStore, statement: &str, args: &[SqlValue]) {
    let mut tx = DbTx::begin(store).await.unwrap();
    tx.execute(statement, args).await.unwrap();
    tx.commit().await.unwrap();
}

/// Steps `projection` on the live tables until the log is exhausted.
async fn run_to_end(store: &EventStore, projection: Projection) {
    let mut subscription = CatchUp::resume(store, projection.name()).await.unwrap().with_batch_size(3);
    while try_step_projection(store, projection, &mut subscription).await.unwrap() != Step::Idle {}
    // Batches it only skipped moved its checkpoint in memory; the runner
    // stores it within a second, this does it now.
    save_skipped(store, projection, &mut subscription).await.unwrap();
}

/// Every row of a table, rendered and sorted, for comparisons.
async fn rows(store: &EventStore, table: &str, columns: &str) -> Vec<String> {
    let columns: Vec<String> = columns.split(", ").map(|c| format!("coalesce(cast({c} as text), 'null')")).collect();
    let columns = columns.join(", ");
    let mut tx = DbTx::begin(store).await.unwrap();
    let text = if tx.is_postgres() {
        format!(
            "select coalesce(string_agg(concat_ws('|', {columns}), E'\\n' order by concat_ws('|', {columns})), '') from {table}"
        )
    } else {
        format!(
            "select coalesce(group_concat(r, char(10)), '') from (select concat_ws('|', {columns}) as r from {table} order by r)"
        )
    };
    let all = tx.query_text(&text, &[]).await.unwrap().unwrap_or_default();
    all.lines().map(str::to_owned).collect()
}

async fn all_projection_rows(store: &EventStore) -> Vec<Vec<String>> {
    let tables = [
        ("presence_sessions", "event_id, connection_id, user_id, kind, connected_at, disconnected_at, close_reason"),
        ("stage_intervals", "event_id, user_id, entered_at, exited_at"),
        (
            "analytics_events",
            "event_id, present_users, peak_concurrent_users, peak_at, first_activity_at, last_activity_at",
        ),
        (
            "analytics_attendance",
            "event_id, user_id, first_joined_at, last_left_at, open_connections, present_since, present_ms, sessions",
        ),
        ("analytics_stage_time", "event_id, user_id, on_stage_since, stage_ms, stage_entries"),
        ("analytics_queue_waits", "event_id, user_id, queued_at, ended_at, outcome"),
        (
            "analytics_recording_sessions",
            "event_id, session_id, requested_by, requested_at, recording_started_at, recording_stopped_at, \
             duration_ms, asset_duration_ms, ended_at, outcome, failure_reason",
        ),
        (
            "analytics_clips",
            "event_id, clip_id, session_id, user_id, start_ms, end_ms, requested_at, finished_at, status, error",
        ),
    ];
    let mut out = Vec::new();
    for (table, columns) in tables {
        out.push(rows(store, table, columns).await);
    }
    out
}

// ------------------------------------------------------------------ verify

async fn a_sound_log_verifies(db: &TestDb) {
    let store = db.open().await;
    small_log(&store).await;
    let report = verified(&store).await;
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!((report.events, report.streams), (11, 3));
}

async fn verify_reports_a_tampered_payload(db: &TestDb) {
    let store = db.open().await;
    small_log(&store).await;
    sql(
        &store,
        // A literal, not a bind: PostgreSQL's column is `json`.
        r#"update events set payload = '{"StageEntered":{"user_id":"mallory","at":30}}' where stream_id = 'room-launch' and stream_version = 3"#,
        &[],
    )
    .await;
    let report = verified(&store).await;
    assert_eq!(report.problem_count, 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!((problem.stream_id.as_str(), problem.stream_version), ("room-launch", 3));
    assert!(matches!(problem.kind, ProblemKind::HashMismatch { .. }));
    assert_eq!(problem.message, "hash mismatch");
    assert!(problem.global_position.is_some());
}

async fn verify_reports_a_deleted_event(db: &TestDb) {
    let store = db.open().await;
    small_log(&store).await;
    sql(&store, "delete from events where stream_id = 'room-launch' and stream_version = 3", &[]).await;
    let report = verified(&store).await;
    assert_eq!(report.problem_count, 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!((problem.stream_id.as_str(), problem.stream_version), ("room-launch", 4));
    assert_eq!(problem.kind, ProblemKind::MissingVersion { expected: 3, found: 4 });
    assert_eq!(problem.message, "missing version 3 (found 4)");
}

async fn verify_reports_a_reordered_event(db: &TestDb) {
    let store = db.open().await;
    small_log(&store).await;
    // Swap versions 2 and 3: in log order the stream now reads 1, 3, 2, 4, 5.
    for (from, to) in [(2, 1000), (3, 2), (1000, 3)] {
        sql(
            &store,
            "update events set stream_version = $2 where stream_id = 'room-launch' and stream_version = $1",
            &[SqlValue::Int(from), SqlValue::Int(to)],
        )
        .await;
    }
    let report = verified(&store).await;
    let found: Vec<(&str, u64, &ProblemKind)> =
        report.problems.iter().map(|p| (p.stream_id.as_str(), p.stream_version, &p.kind)).collect();
    assert_eq!(
        found[..2],
        [
            ("room-launch", 3, &ProblemKind::MissingVersion { expected: 2, found: 3 }),
            ("room-launch", 2, &ProblemKind::OutOfOrder { after: 3, found: 2 }),
        ]
    );
    // Version 4 chains to the real version 3, which is no longer where it was.
    assert_eq!((found[2].0, found[2].1), ("room-launch", 4));
    assert!(matches!(found[2].2, ProblemKind::HashMismatch { .. }));
    assert_eq!(found.len(), 3);
}

/// On PostgreSQL verify first reads the heap as stored (no `order by`),
/// which is log order for an append-only table, but not after a vacuum has
/// freed a rolled-back batch's space for later rows. Such a log must still
/// verify sound: the scan notices the first position out of order and the
/// pass is run again in log order. (Read in storage order, the stream's
/// third batch would come before its second and show missing versions.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_reads_a_log_stored_out_of_order_in_log_order() {
    use sqlx::Connection;
    let db = TestDb::postgres().await;
    let store = db.open().await;
    let s = room("shuffled");
    let beats = |from: i64| -> Vec<NewEvent> {
        (from..from + 200)
            .map(|at| room_event(&RoomEvent::HeartbeatReceived { connection_id: "c".into(), user_id: "u".into(), at }))
            .collect()
    };
    store.append(&s, ExpectedVersion::NoStream, beats(0)).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // A batch that rolls back leaves dead rows between the first and second.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(
        "insert into events (stream_id, stream_version, event_id, event_type, event_version, payload, metadata, \
         recorded_at, hash) select 'room-ghost', g, gen_random_uuid(), 'X', '1', '{}', '{}', 0, '\\x00' \
         from generate_series(1, 2000) g",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    store.append(&s, ExpectedVersion::Exact(200), beats(200)).await.unwrap();
    sqlx::query("vacuum events").execute(&mut conn).await.unwrap();
    store.append(&s, ExpectedVersion::Exact(400), beats(400)).await.unwrap();
    let stored: Vec<i64> =
        sqlx::query_scalar("select global_position from events order by ctid").fetch_all(&mut conn).await.unwrap();
    assert!(stored.windows(2).any(|w| w[1] < w[0]), "the scenario must leave the heap out of log order");

    let report = verified(&store).await;
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!((report.events, report.streams), (600, 1));
    store.shutdown().await;
    db.drop_db().await;
}

/// Events deleted from a stream's tail leave an unbroken, shorter chain; the
/// stream's snapshot, taken at the old last version, gives it away.
async fn verify_reports_a_tail_cut_below_its_snapshot(db: &TestDb) {
    let store = db.open().await;
    small_log(&store).await;
    let other = room("other");
    store.save_snapshot(&other, 5, "room-state-v1", b"{}").await.unwrap();
    let sound = verified(&store).await;
    assert!(sound.is_sound(), "a snapshot at the last version is no problem: {:?}", sound.problems);
    sql(&store, "delete from events where stream_id = 'room-other' and stream_version >= 4", &[]).await;
    let report = verified(&store).await;
    assert_eq!(report.problem_count, 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].stream_id, "room-other");
    assert_eq!(report.problems[0].kind, ProblemKind::SnapshotAhead { snapshot_version: 5, log_version: 3 });
    assert_eq!(store.stream_version(&other).await.unwrap(), 3, "the head is the log's last event");
}

async fn verify_reports_a_payload_that_does_not_decode(db: &TestDb) {
    let store = db.open().await;
    small_log(&store).await;
    let odd = NewEvent::new("StageDanced", "1", r#"{"StageDanced":{"user_id":"alice"}}"#.into(), Metadata::by("x"));
    store.append(&room("launch"), ExpectedVersion::Exact(5), vec![odd]).await.unwrap();
    let report = verified(&store).await;
    assert_eq!(report.problem_count, 1, "{:?}", report.problems);
    assert_eq!((report.problems[0].stream_id.as_str(), report.problems[0].stream_version), ("room-launch", 6));
    assert!(report.problems[0].message.starts_with("decode error: "), "{}", report.problems[0].message);
}

/// Problems in events spread over many streams (so over every check
/// thread), with the kinds each check finds.
async fn many_problems_log(store: &EventStore) -> Vec<(String, u64, String)> {
    // Round-robin appends: each stream's events are spread through the log.
    for version in 1..=6 {
        for s in 0..40 {
            let event = if version == 1 { open("c1", "alice", version) } else { beat("c1", "alice", version) };
            let expected = ExpectedVersion::Exact(version as u64 - 1);
            store.append(&room(&format!("r{s}")), expected, vec![room_event(&event)]).await.unwrap();
        }
    }
    for (s, version) in [(3, 2), (17, 5), (29, 1), (38, 4)] {
        sql(
            store,
            r#"update events set payload = '{"HeartbeatReceived":{"connection_id":"c9","user_id":"eve","at":1}}' where stream_id = $1 and stream_version = $2"#,
            &[format!("room-r{s}").as_str().into(), SqlValue::Int(version)],
        )
        .await;
    }
    sql(store, "delete from events where stream_id = 'room-r11' and stream_version = 3", &[]).await;
    let odd = NewEvent::new("StageDanced", "1", r#"{"StageDanced":{"user_id":"alice"}}"#.into(), Metadata::by("x"));
    store.append(&room("r23"), ExpectedVersion::Exact(6), vec![odd]).await.unwrap();
    // In log order: version 1 of r29, then version 2 of r3, …; r23's odd
    // event was appended last.
    [
        ("room-r29", 1, "hash_mismatch"),
        ("room-r3", 2, "hash_mismatch"),
        ("room-r11", 4, "missing_version"),
        ("room-r38", 4, "hash_mismatch"),
        ("room-r17", 5, "hash_mismatch"),
        ("room-r23", 7, "decode"),
    ]
    .map(|(stream, version, kind)| (stream.to_owned(), version, kind.to_owned()))
    .to_vec()
}

async fn verify_reports_problems_in_log_order_on_any_number_of_threads(db: &TestDb) {
    let store = db.open().await;
    let expected = many_problems_log(&store).await;
    for (check_threads, batch) in [(1, 10_000), (2, 10_000), (2, 1), (3, 7), (8, 50)] {
        let options = VerifyOptions { check_threads, batch };
        let report = verify_with(&store, Registry::standard(), &Progress::hidden(), options).await.unwrap();
        let found: Vec<(String, u64, String)> = report
            .problems
            .iter()
            .map(|p| {
                let kind = serde_json::to_value(&p.kind).unwrap()["kind"].as_str().unwrap().to_owned();
                (p.stream_id.clone(), p.stream_version, kind)
            })
            .collect();
        assert_eq!(found, expected, "{check_threads} threads, batches of {batch}");
        let positions: Vec<i64> = report.problems.iter().map(|p| p.global_position.unwrap()).collect();
        assert!(positions.is_sorted(), "{positions:?}");
        assert_eq!((report.events, report.streams), (240, 40));
    }
}

// ----------------------------------------------------------------- rebuild

/// Several rooms with reconnects, second tabs, repeated stage entries and a
/// queue: every branch of both projections.
async fn busy_log(store: &EventStore) {
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        let t = 1_000 * n as i64;
        append_room(
            store,
            id,
            &[
                open("c1", "alice", t + 1),
                open("c2", "bob", t + 2),
                open("c3", "alice", t + 3),
                beat("c1", "alice", t + 4),
                enter("bob", t + 5),
                enter("bob", t + 6),
                close("c1", "alice", t + 7),
                exit("bob", t + 8),
                close("c3", "alice", t + 9),
                open("c4", "alice", t + 10),
                enter("alice", t + 11),
                close("c2", "bob", t + 12),
            ],
        )
        .await;
    }
    let queue = StreamId::of("queue", "a");
    let events = [
        queued("carol", 1),
        queued("dave", 2),
        QueueEvent::ParticipantPromoted { user_id: "carol".into(), by: "mod".into(), at: 7 },
        QueueEvent::ParticipantSentBack { user_id: "carol".into(), by: "mod".into(), at: 9 },
    ];
    for e in &events {
        store.append(&queue, ExpectedVersion::Any, vec![queue_event(e)]).await.unwrap();
    }
    scripted_recordings(store, "a").await;
}

async fn a_rebuild_after_archiving_every_stream_gives_the_same_tables(db: &TestDb) {
    let store = db.open().await;
    busy_log(&store).await;
    for p in Projection::ALL {
        run_to_end(&store, p).await;
    }
    let incremental = all_projection_rows(&store).await;
    let streams: Vec<(String,)> = store.query_as("select distinct stream_id from events", &[]).await.unwrap();
    let mut archived = 0;
    for (stream,) in &streams {
        archived += store.archive_stream(&StreamId::parse(stream.clone()).unwrap()).await.unwrap().events;
    }
    let hot: Vec<(i64,)> = store.query_as("select count(*) from events", &[]).await.unwrap();
    assert_eq!(hot[0].0 as usize, streams.len(), "only each stream's newest event is hot");
    assert!(archived > 0);
    for p in Projection::ALL {
        rebuild::rebuild(&store, p, &Progress::hidden()).await.unwrap();
    }
    assert_eq!(all_projection_rows(&store).await, incremental, "the rebuild read the archived streams");
    assert!(verified(&store).await.is_sound());
}

/// Analytics reads and writes its per-user rows a chunk of users per
/// statement (256, 64, 16, 4, 1). A crowd of 301 users (every chunk size)
/// projected one event per batch must give the rows a rebuild gives from
/// batches that hold the whole log.
async fn a_crowd_in_one_batch_gives_the_rows_of_one_event_at_a_time(db: &TestDb) {
    const USERS: i64 = 301;
    let store = db.open().await;
    let user = |n: i64| format!("u{n:03}");
    let mut room_events = Vec::new();
    for n in 0..USERS {
        room_events.push(open(&format!("c{n}"), &user(n), 1_000 + n));
        if n % 2 == 0 {
            room_events.push(enter(&user(n), 2_000 + n));
        }
    }
    for n in (0..USERS).step_by(3) {
        room_events.push(close(&format!("c{n}"), &user(n), 3_000 + n));
        if n % 2 == 0 {
            room_events.push(exit(&user(n), 3_000 + n));
        }
    }
    let events: Vec<NewEvent> = room_events.iter().map(room_event).collect();
    store.append(&room("crowd"), ExpectedVersion::Any, events).await.unwrap();
    let mut queue_events: Vec<QueueEvent> = (0..USERS).map(|n| queued(&user(n), 4_000 + n)).collect();
    for n in 0..USERS {
        let at = 5_000 + n;
        match n % 3 {
            0 => queue_events.push(QueueEvent::ParticipantPromoted { user_id: user(n), by: "mod".into(), at }),
            1 => queue_events.push(removed(&user(n), at)),
            _ => {}
        }
    }
    let events: Vec<NewEvent> = queue_events.iter().map(queue_event).collect();
    store.append(&StreamId::of("queue", "crowd"), ExpectedVersion::Any, events).await.unwrap();

    for p in Projection::ALL {
        let mut one_at_a_time = CatchUp::resume(&store, p.name()).await.unwrap().with_batch_size(1);
        while try_step_projection(&store, p, &mut one_at_a_time).await.unwrap() != Step::Idle {}
    }
    let incremental = all_projection_rows(&store).await;
    let [_, _, totals, attendance, stage, waits, ..] = &incremental[..] else { unreachable!() };
    assert_eq!(totals.len(), 1);
    assert_eq!(attendance.len(), USERS as usize);
    assert_eq!(stage.len(), (USERS as usize).div_ceil(2));
    assert_eq!(waits.len(), USERS as usize);
    assert_eq!(waits.iter().filter(|w| w.ends_with("|promoted")).count(), (USERS as usize).div_ceil(3));
    assert_eq!(waits.iter().filter(|w| w.ends_with("|null")).count(), (USERS / 3) as usize, "still waiting");
    for p in Projection::ALL {
        rebuild::rebuild(&store, p, &Progress::hidden()).await.unwrap();
    }
    assert_eq!(all_projection_rows(&store).await, incremental);

    // One statement may not update a row twice on PostgreSQL: the same wait
    // (same start) ended four times within one batch (a chunk of four rows)
    // is written once.
    let same_ms = [queued("again", 7), removed("again", 7)];
    let events: Vec<NewEvent> = same_ms.iter().cycle().take(8).map(queue_event).collect();
    store.append(&StreamId::of("queue", "same-ms"), ExpectedVersion::Any, events).await.unwrap();
    let mut batch = CatchUp::resume(&store, Projection::Analytics.name()).await.unwrap();
    while try_step_projection(&store, Projection::Analytics, &mut batch).await.unwrap() != Step::Idle {}
    let waits = rows(&store, "analytics_queue_waits", "event_id, user_id, queued_at, ended_at, outcome").await;
    let again: Vec<&String> = waits.iter().filter(|w| w.starts_with("same-ms|")).collect();
    assert_eq!(again, ["same-ms|again|7|7|removed"]);
}

async fn a_rebuild_produces_exactly_the_incremental_rows(db: &TestDb) {
    let store = db.open().await;
    busy_log(&store).await;
    for p in Projection::ALL {
        run_to_end(&store, p).await;
    }
    let incremental = all_projection_rows(&store).await;
    assert!(incremental.iter().all(|t| !t.is_empty()), "every table has rows: {incremental:?}");
    let head = store.head_position().await.unwrap();
    // Twice: the second rebuild meets the index names the first one left.
    for _ in 0..2 {
        for p in Projection::ALL {
            let report = rebuild::rebuild(&store, p, &Progress::hidden()).await.unwrap();
            assert_eq!(report.position, head);
        }
        assert_eq!(all_projection_rows(&store).await, incremental);
        for status in eventuall::projections::status(&store).await.unwrap() {
            assert_eq!((status.position, status.lag), (head, 0), "{status:?}");
        }
    }
    // More events after the rebuild are processed incrementally as usual,
    // and still equal a fresh rebuild.
    append_room(&store, "a", &[close("c4", "alice", 5_000), exit("alice", 5_001)]).await;
    for p in Projection::ALL {
        run_to_end(&store, p).await;
    }
    let after = all_projection_rows(&store).await;
    for p in Projection::ALL {
        rebuild::rebuild(&store, p, &Progress::hidden()).await.unwrap();
    }
    assert_eq!(all_projection_rows(&store).await, after);
}

async fn a_running_projection_follows_a_rebuild(db: &TestDb) {
    let store = db.open().await;
    busy_log(&store).await;
    // A runner that has handled nothing yet when the rebuild swaps.
    let mut runner = CatchUp::resume(&store, "room_presence").await.unwrap();
    let report = rebuild::rebuild(&store, Projection::RoomPresence, &Progress::hidden()).await.unwrap();
    let step = try_step_projection(&store, Projection::RoomPresence, &mut runner).await.unwrap();
    assert_eq!(step, Step::Progressed(0), "it notices the moved checkpoint");
    assert_eq!(runner.position(), report.position);
    assert_eq!(try_step_projection(&store, Projection::RoomPresence, &mut runner).await.unwrap(), Step::Idle);
}

// --------------------------------------------------------------- analytics

/// The scripted event of docs/ANALYTICS.md ("a worked example").
async fn analytics_are_exact_for_a_scripted_event(db: &TestDb) {
    let store = db.open().await;
    append_room(
        &store,
        "launch",
        &[
            open("c1", "alice", 1_000),
            open("c2", "bob", 2_000),
            enter("bob", 2_500),
            open("c3", "alice", 3_000), // alice's second tab
            enter("alice", 3_000),
            open("c4", "carol", 4_000), // peak: 3 users
            beat("c4", "carol", 4_200),
            exit("bob", 4_500),
            close("c1", "alice", 5_000), // alice still has c3
            enter("bob", 5_000),
            exit("bob", 5_500),
            close("c2", "bob", 6_000),
            close("c3", "alice", 7_000), // alice: 1,000 → 7,000
            open("c5", "bob", 8_000),
            exit("alice", 8_000),
            close("c5", "bob", 9_000),    // bob: 2,000 → 6,000 and 8,000 → 9,000
            close("c4", "carol", 10_000), // carol: 4,000 → 10,000
        ],
    )
    .await;
    let queue = StreamId::of("queue", "launch");
    for e in [
        queued("carol", 1_500),
        queued("dave", 2_000),
        QueueEvent::ParticipantRemoved {
            user_id: "dave".into(),
            list: QueueList::Pending,
            by: "mod".into(),
            at: 2_500,
        },
        queued("erin", 3_000),
        QueueEvent::ParticipantPromoted { user_id: "erin".into(), by: "mod".into(), at: 3_100 },
        QueueEvent::ParticipantPromoted { user_id: "carol".into(), by: "mod".into(), at: 4_500 },
        queued("frank", 6_000),
    ] {
        store.append(&queue, ExpectedVersion::Any, vec![queue_event(&e)]).await.unwrap();
    }
    run_to_end(&store, Projection::Analytics).await;
    let a = event_analytics(&store, "launch").await.unwrap().expect("analytics for launch");

    assert_eq!(a.position, store.head_position().await.unwrap());
    assert_eq!(a.attendance.unique_users, 3);
    assert_eq!(a.attendance.peak_concurrent_users, 3);
    assert_eq!(a.attendance.peak_at, Some(4_000));
    assert_eq!(a.attendance.present_users, 0);
    assert_eq!(a.attendance.total_present_ms, 6_000 + 5_000 + 6_000);
    assert_eq!(a.attendance.average_present_ms, 17_000.0 / 3.0);
    let per_user: Vec<(&str, i64, i64)> =
        a.attendance.users.iter().map(|u| (u.user_id.as_str(), u.present_ms, u.sessions)).collect();
    assert_eq!(per_user, vec![("alice", 6_000, 2), ("bob", 5_000, 2), ("carol", 6_000, 1)]);

    let stage: Vec<(&str, i64, i64)> = a.stage.iter().map(|s| (s.user_id.as_str(), s.stage_ms, s.entries)).collect();
    assert_eq!(stage, vec![("alice", 5_000, 1), ("bob", 2_500, 2)]);

    assert_eq!((a.queue.promoted, a.queue.removed, a.queue.waiting), (2, 1, 1));
    assert_eq!(a.queue.average_wait_ms, (3_000.0 + 100.0) / 2.0);
    assert_eq!(a.queue.max_wait_ms, Some(3_000));
    let waits: Vec<(&str, Option<i64>, Option<&str>)> =
        a.queue.waits.iter().map(|w| (w.user_id.as_str(), w.wait_ms, w.outcome.as_deref())).collect();
    assert_eq!(
        waits,
        vec![
            ("carol", Some(3_000), Some("promoted")),
            ("dave", Some(500), Some("removed")),
            ("erin", Some(100), Some("promoted")),
            ("frank", None, None),
        ]
    );
    assert!(event_analytics(&store, "nobody-here").await.unwrap().is_none());
}

/// The scripted sessions of docs/ANALYTICS.md ("recordings and clips").
async fn recording_analytics_are_exact_for_scripted_sessions(db: &TestDb) {
    let store = db.open().await;
    scripted_recordings(&store, "launch").await;
    run_to_end(&store, Projection::Analytics).await;
    let a = event_analytics(&store, "launch").await.unwrap().expect("analytics for launch");

    let r = &a.recordings;
    assert_eq!((r.sessions, r.completed, r.failed), (2, 1, 1));
    assert_eq!(r.total_recorded_ms, 60_500 + 9_500);
    let sessions: Vec<_> = r
        .list
        .iter()
        .map(|s| {
            (
                s.session_id.as_str(),
                s.started_at,
                s.stopped_at,
                s.duration_ms,
                s.asset_duration_ms,
                s.ended_at,
                s.outcome.as_str(),
                s.failure_reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        sessions,
        vec![
            ("launch-s1", Some(11_000), Some(71_500), Some(60_500), Some(60_250), Some(75_000), "completed", None),
            ("launch-s2", Some(81_000), Some(90_500), Some(9_500), None, Some(91_000), "failed", Some("egress lost")),
        ]
    );

    let c = &a.clips;
    assert_eq!((c.total, c.ready, c.errored), (3, 2, 1));
    let per_participant: Vec<_> =
        c.per_participant.iter().map(|p| (p.user_id.as_str(), p.clips, p.ready, p.errored, p.total_ms)).collect();
    assert_eq!(per_participant, vec![("alice", 2, 2, 0, 18_500 + 10_000), ("bob", 1, 0, 1, 25_500)]);
    let clips: Vec<_> = c
        .list
        .iter()
        .map(|k| (k.clip_id.as_str(), k.user_id.as_str(), k.start_ms, k.end_ms, k.status.as_str(), k.error.as_deref()))
        .collect();
    assert_eq!(
        clips,
        vec![
            ("c1", "alice", 1_500, 20_000, "ready", None),
            ("c2", "bob", 20_000, 45_500, "errored", Some("asset too short")),
            ("c3", "alice", 50_000, 60_000, "ready", None),
        ]
    );
    // The JSON the route serves.
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["recordings"]["list"][0]["durationMs"], 60_500);
    assert_eq!(json["clips"]["perParticipant"][1]["userId"], "bob");
}

// ------------------------------------------------------------- time travel

async fn state_at_a_position_is_the_state_after_that_event(db: &TestDb) {
    use cqrs_es::Aggregate;
    use eventuall_domain::room::EventRoom;
    let store = db.open().await;
    let script = [open("c1", "alice", 10), enter("alice", 20), open("c2", "bob", 30), exit("alice", 40)];
    let mut expected = EventRoom::default();
    let mut positions = Vec::new();
    for (n, e) in script.iter().enumerate() {
        let outcome = store.append(&room("tt"), ExpectedVersion::Exact(n as u64), vec![room_event(e)]).await.unwrap();
        expected.apply(e.clone());
        positions.push((outcome.last_position, serde_json::to_value(expected.snapshot("tt", n as u64 + 1)).unwrap()));
    }
    for (position, snapshot) in positions {
        let at =
            state::state_at(&store, Registry::standard(), &room("tt"), state::At::Position(position)).await.unwrap();
        assert_eq!(at.state, snapshot);
        assert_eq!(at.global_position, Some(position));
    }
    let before = state::state_at(&store, Registry::standard(), &room("tt"), state::At::Position(0)).await.unwrap();
    assert_eq!(before.version, 0);
    assert_eq!(before.state["presence"], serde_json::json!([]));
}

// ------------------------------------------------------------ the binary

/// `eventuall replay verify` on a tampered SQLite log: exit code 1 and the
/// event named, in text and in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_command_exits_non_zero_and_names_the_event() {
    let db = TestDb::sqlite().await;
    let store = db.open().await;
    small_log(&store).await;
    let run = |json: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_eventuall"));
        command.args(["replay", "verify", "--database-url", &db.url]);
        if json {
            command.arg("--json");
        }
        command.env("EVENTUALL_LOG", "warn").output().expect("binary runs")
    };
    let sound = run(false);
    assert_eq!(sound.status.code(), Some(0), "{}", String::from_utf8_lossy(&sound.stderr));
    assert!(String::from_utf8_lossy(&sound.stdout).starts_with("sound: 11 events in 3 streams"));

    sql(&store, "update events set payload = '{}' where stream_id = 'room-other' and stream_version = 2", &[]).await;
    store.shutdown().await;
    let tampered = run(false);
    assert_eq!(tampered.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&tampered.stdout);
    assert!(stdout.contains("room-other version 2 (position "), "{stdout}");
    assert!(stdout.contains("): hash mismatch"), "{stdout}");

    let json = run(true);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    assert_eq!(report["problemCount"], 1);
    assert_eq!(report["problems"][0]["streamId"], "room-other");
    assert_eq!(report["problems"][0]["streamVersion"], 2);
    assert_eq!(report["problems"][0]["kind"], "hash_mismatch");
}

/// `history --json` and `export` print one JSON document per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_export_print_json_lines() {
    let db = TestDb::sqlite().await;
    let store = db.open().await;
    small_log(&store).await;
    store.shutdown().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventuall"))
            .arg("replay")
            .args(args)
            .args(["--database-url", &db.url])
            .env("EVENTUALL_LOG", "warn")
            .output()
            .expect("binary runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let history: Vec<serde_json::Value> =
        run(&["history", "room-launch", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(history.len(), 5);
    assert_eq!(history[2]["eventType"], "StageEntered");
    assert_eq!(history[2]["actor"], "tester");
    assert_eq!(history[2]["summary"], "user_id=alice");
    let text = run(&["history", "room-launch"]);
    assert!(text.lines().nth(2).unwrap().contains("StageEntered"), "{text}");

    let export: Vec<serde_json::Value> =
        run(&["export", "--category", "room"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(export.len(), 10);
    assert_eq!(export[0]["payload"]["ConnectionOpened"]["user_id"], "alice");
    assert_eq!(export[0]["metadata"]["actor"], "tester");
    assert_eq!(export[0]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(run(&["export", "--all"]).lines().count(), 11);
    assert_eq!(run(&["export", "--stream", "queue-launch"]).lines().count(), 1);

    let status: serde_json::Value = serde_json::from_str(&run(&["status", "--json"])).unwrap();
    assert_eq!(status[0]["name"], "room_presence");
    assert_eq!(status[0]["lag"], 11);
    let state: serde_json::Value =
        serde_json::from_str(&run(&["state", "room-launch", "--at", "3", "--json"])).unwrap();
    assert_eq!(state["version"], 3);
}

/// Issue #22, defect 11: an audit fails loudly on a log or a stream that is
/// not there. A mistyped path is not created and verified as an empty log;
/// the history of a missing stream exits 1 as `state` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_commands_fail_on_a_missing_log_or_stream() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("mistyped.db");
    let url = format!("sqlite://{}", missing.display());
    let run = |url: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_eventuall"))
            .arg("replay")
            .args(args)
            .args(["--database-url", url])
            .env("EVENTUALL_LOG", "warn")
            .output()
            .expect("binary runs")
    };
    let verify = run(&url, &["verify"]);
    assert_eq!(verify.status.code(), Some(1), "{}", String::from_utf8_lossy(&verify.stdout));
    assert!(
        String::from_utf8_lossy(&verify.stderr).contains("it must exist"),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(!missing.exists(), "verify created the file it was asked to audit");

    let db = TestDb::sqlite().await;
    let store = db.open().await;
    small_log(&store).await;
    store.shutdown().await;
    for args in [["history", "room-nosuch"], ["state", "room-nosuch"]] {
        let out = run(&db.url, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stderr).contains("room-nosuch has no events"), "{args:?}");
    }
    assert!(run(&db.url, &["history", "room-launch"]).status.success());
}
